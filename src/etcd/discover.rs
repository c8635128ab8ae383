//! A member that describes itself. On a systemd host, the unit and the running
//! process say where etcd's binary, data dir, client URL and TLS files are, so an
//! inventory that names only the hosts is enough (kubespray's and Debian's
//! layouts). One remote script (`discover.sh`) gathers it; `parse` reads it;
//! `apply` fills the settings the user left to the default, each with its
//! source, and never one the user set. `unit_problems` are the pre-flight's
//! refusals that only systemd's view can give.

use std::collections::BTreeMap;

use crate::etcd::EtcdVars;
use crate::ssh::RemoteCommand;

const DISCOVER_SH: &str = include_str!("discover.sh");

/// The discovery script for this host's unit.
pub fn command(v: &EtcdVars) -> RemoteCommand {
    let told = if v.origins.contains_key("etcd_binary") {
        v.binary.as_str()
    } else {
        ""
    };
    RemoteCommand::new("sh")
        .arg("-c")
        .arg(DISCOVER_SH)
        .arg("etcdroll-discover")
        .arg(&v.service)
        .arg(told)
}

/// What systemd and the host said about the etcd unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitFacts {
    /// `Id`: the unit's full name (`etcd.service`).
    pub id: String,
    /// `loaded`, `not-found`, `masked`, …
    pub load_state: String,
    /// `active`, `inactive`, `activating`, `failed`, `deactivating`, …
    pub active_state: String,
    pub sub_state: String,
    /// `enabled`, `disabled`, `masked`, `static`, …
    pub unit_file_state: String,
    /// The unit file changed on disk since systemd last loaded it.
    pub need_daemon_reload: bool,
    /// `notify`, `simple`, `exec`, …
    pub service_type: String,
    /// `always`, `on-failure`, `no`, …
    pub restart: String,
    pub main_pid: Option<u32>,
    /// `ExecStart`'s program and its arguments as written (variables unexpanded).
    pub exec_path: Option<String>,
    pub exec_argv: Vec<String>,
    pub fragment: Option<String>,
    /// The running process's executable, " (deleted)" and a swap's `.old` taken off.
    pub exe: Option<String>,
    /// Binaries a Debian package owns: path → package.
    pub packaged: BTreeMap<String, String>,
    /// Other processes running the same binary: pid and their unit.
    pub sharing: Vec<(u32, String)>,
}

/// One setting found on the host, and where.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// The inventory variable it stands for (`etcd_data_dir`).
    pub var: String,
    pub value: String,
    pub source: String,
}

/// Everything the discovery script printed, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// None when the host has no systemctl.
    pub unit: Option<UnitFacts>,
    /// The running process's arguments (`/proc/PID/cmdline`).
    pub cmdline: Vec<String>,
    /// Its etcd environment (`/proc/PID/environ`).
    pub environ: Vec<(String, String)>,
    /// The unit's environment files: (file, name, value), in order.
    pub env_files: Vec<(String, String, String)>,
    /// The unit's `Environment=`.
    pub unit_env: Vec<(String, String)>,
}

pub fn parse(out: &str) -> Discovery {
    let mut d = Discovery::default();
    let mut u = UnitFacts::default();
    let mut systemctl = true;
    for line in out.lines() {
        let Some((key, val)) = line.split_once('=') else {
            continue;
        };
        match key {
            "no_systemctl" => systemctl = false,
            "exe" => {
                let e = val.trim_end_matches(" (deleted)");
                let e = e.strip_suffix(".old").unwrap_or(e);
                u.exe = (!e.is_empty()).then(|| e.to_string());
            }
            "arg" => d.cmdline.push(val.to_string()),
            "env" => {
                if let Some((k, v)) = env_line(val) {
                    d.environ.push((k, v));
                }
            }
            "envfile" => {
                if let Some((file, rest)) = val.split_once('\t') {
                    if let Some((k, v)) = env_line(rest) {
                        d.env_files.push((file.to_string(), k, v));
                    }
                }
            }
            "owner" => {
                if let Some((path, pkg)) = val.split_once('\t') {
                    u.packaged.insert(path.to_string(), pkg.to_string());
                }
            }
            "shared" => {
                if let Some((pid, unit)) = val.split_once('\t') {
                    if let Ok(pid) = pid.parse() {
                        u.sharing.push((pid, unit.to_string()));
                    }
                }
            }
            k => {
                let Some(prop) = k.strip_prefix("unit.") else {
                    continue;
                };
                let some = || (!val.is_empty()).then(|| val.to_string());
                match prop {
                    "Id" => u.id = val.to_string(),
                    "LoadState" => u.load_state = val.to_string(),
                    "ActiveState" => u.active_state = val.to_string(),
                    "SubState" => u.sub_state = val.to_string(),
                    "UnitFileState" => u.unit_file_state = val.to_string(),
                    "NeedDaemonReload" => u.need_daemon_reload = val == "yes",
                    "Type" => u.service_type = val.to_string(),
                    "Restart" => u.restart = val.to_string(),
                    "MainPID" => u.main_pid = val.parse().ok().filter(|p| *p != 0),
                    "FragmentPath" => u.fragment = some(),
                    "ExecStart" => {
                        let (path, argv) = exec_start(val);
                        u.exec_path = path;
                        u.exec_argv = argv;
                    }
                    "Environment" => d.unit_env = unit_environment(val),
                    _ => {}
                }
            }
        }
    }
    d.unit = systemctl.then_some(u);
    d
}

/// `NAME=value` of an environment file or environ line, quotes taken off.
fn env_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let (k, v) = line.split_once('=')?;
    let v = v.trim();
    let v = if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        &v[1..v.len() - 1]
    } else {
        v
    };
    Some((k.trim().to_string(), v.to_string()))
}

/// `{ path=/usr/bin/etcd ; argv[]=/usr/bin/etcd $DAEMON_ARGS ; ignore_errors=no ; … }`.
fn exec_start(val: &str) -> (Option<String>, Vec<String>) {
    let field = |name: &str| -> Option<String> {
        let start = val.find(name)? + name.len();
        let rest = &val[start..];
        let end = rest.find(" ; ").unwrap_or(rest.len());
        Some(rest[..end].trim().to_string())
    };
    let path = field("path=").filter(|p| !p.is_empty());
    let argv = field("argv[]=")
        .map(|a| {
            shlex::split(&a).unwrap_or_else(|| a.split_whitespace().map(String::from).collect())
        })
        .unwrap_or_default();
    (path, argv)
}

/// systemd prints `Environment=A=1 "B=two words"`.
fn unit_environment(val: &str) -> Vec<(String, String)> {
    shlex::split(val)
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A flag's value in an argument list: `--name=value` or `--name value` (etcd
/// takes one dash or two).
fn flag(args: &[String], name: &str) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let bare = a.trim_start_matches('-');
        if !a.starts_with('-') {
            continue;
        }
        if let Some(v) = bare.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
        if bare == name {
            return it.next().cloned();
        }
    }
    None
}

/// `$NAME` (split into words) and `${NAME}` (one word) in ExecStart's arguments,
/// as systemd expands them, from the unit's environment and its files.
fn expand(argv: &[String], env: &[(String, String)]) -> Vec<String> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut out = Vec::new();
    for a in argv {
        if let Some(name) = a.strip_prefix('$').filter(|n| !n.starts_with('{')) {
            if let Some(v) = lookup(name) {
                out.extend(shlex::split(&v).unwrap_or_default());
            }
            continue;
        }
        let mut s = a.clone();
        while let Some(start) = s.find("${") {
            let Some(len) = s[start..].find('}') else {
                break;
            };
            let name = s[start + 2..start + len].to_string();
            s.replace_range(start..start + len + 1, &lookup(&name).unwrap_or_default());
        }
        out.push(s);
    }
    out
}

/// A setting read from the running process first, else from the unit's
/// configuration, with where it was read.
struct Sources<'d> {
    d: &'d Discovery,
    unit: &'d str,
    pid: Option<u32>,
    /// ExecStart's arguments with the unit's variables expanded.
    exec_args: Vec<String>,
    /// The unit's environment: `Environment=`, then its files (later wins).
    config_env: Vec<(String, String, String)>,
}

impl<'d> Sources<'d> {
    fn new(d: &'d Discovery) -> Sources<'d> {
        let u = d.unit.as_ref();
        let mut config_env: Vec<(String, String, String)> = d
            .unit_env
            .iter()
            .map(|(k, v)| {
                (
                    format!("Environment= of {}", u.map(|u| u.id.as_str()).unwrap_or("")),
                    k.clone(),
                    v.clone(),
                )
            })
            .collect();
        config_env.extend(d.env_files.iter().cloned());
        let plain: Vec<(String, String)> = config_env
            .iter()
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        Sources {
            d,
            unit: u.map(|u| u.id.as_str()).unwrap_or("the unit"),
            pid: u.and_then(|u| u.main_pid),
            exec_args: u.map(|u| expand(&u.exec_argv, &plain)).unwrap_or_default(),
            config_env,
        }
    }

    /// etcd's flag `name` or its `ETCD_*` variable.
    fn setting(&self, name: &str) -> Option<(String, String)> {
        let var = format!("ETCD_{}", name.to_ascii_uppercase().replace('-', "_"));
        self.env_or_flag(name, &var)
    }

    /// A flag wins over its variable, as in etcd; the running process over the unit.
    fn env_or_flag(&self, flag_name: &str, var: &str) -> Option<(String, String)> {
        if let Some(pid) = self.pid {
            if let Some(v) = flag(&self.d.cmdline, flag_name) {
                return Some((v, format!("--{flag_name} in /proc/{pid}/cmdline")));
            }
            if let Some(v) = self.environ(var) {
                return Some((v, format!("{var} in /proc/{pid}/environ")));
            }
        }
        if let Some(v) = flag(&self.exec_args, flag_name) {
            return Some((v, format!("--{flag_name} in ExecStart of {}", self.unit)));
        }
        self.config(var)
    }

    fn environ(&self, var: &str) -> Option<String> {
        self.d
            .environ
            .iter()
            .rev()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.clone())
    }

    /// An `ETCDCTL_*` variable: for etcdctl, only the environment says it.
    fn variable(&self, var: &str) -> Option<(String, String)> {
        if let Some(pid) = self.pid {
            if let Some(v) = self.environ(var) {
                return Some((v, format!("{var} in /proc/{pid}/environ")));
            }
        }
        self.config(var)
    }

    fn config(&self, var: &str) -> Option<(String, String)> {
        self.config_env
            .iter()
            .rev()
            .find(|(_, k, _)| k == var)
            .map(|(file, _, v)| (v.clone(), format!("{var} in {file}")))
    }
}

/// The URL etcdroll should use from the host itself: etcdctl's own endpoint
/// first, then a loopback listener, a wildcard one made loopback, any listener,
/// any advertised URL.
fn client_url(s: &Sources) -> Option<(String, String)> {
    let first = |list: &str| {
        list.split(',')
            .map(str::trim)
            .find(|u| !u.is_empty())
            .map(str::to_string)
    };
    if let Some((v, src)) = s.variable("ETCDCTL_ENDPOINTS") {
        if let Some(u) = first(&v) {
            return Some((u, src));
        }
    }
    if let Some((list, src)) = s.setting("listen-client-urls") {
        let urls: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let host_of = |u: &str| {
            u.split_once("://")
                .map(|(_, r)| r.split('/').next().unwrap_or("").to_string())
        };
        let loopback = urls.iter().find(|u| {
            host_of(u).is_some_and(|h| {
                h.starts_with("127.") || h.starts_with("localhost") || h.starts_with("[::1]")
            })
        });
        if let Some(u) = loopback {
            return Some((u.to_string(), src));
        }
        for u in &urls {
            if let Some(h) = host_of(u) {
                for (wild, local) in [("0.0.0.0:", "127.0.0.1:"), ("[::]:", "[::1]:")] {
                    if let Some(port) = h.strip_prefix(wild) {
                        let scheme = u.split("://").next().unwrap_or("http");
                        return Some((
                            format!("{scheme}://{local}{port}"),
                            format!("{src} (wildcard, reached on loopback)"),
                        ));
                    }
                }
            }
        }
        if let Some(u) = urls.first() {
            return Some((u.to_string(), src));
        }
    }
    s.setting("advertise-client-urls")
        .and_then(|(v, src)| first(&v).map(|u| (u, src)))
}

/// Fill the settings the user left to the default from what the host said, and
/// return what was filled (each with its source) for the report.
pub fn apply(d: &Discovery, v: &mut EtcdVars) -> Vec<Found> {
    let Some(unit) = d.unit.as_ref() else {
        return Vec::new();
    };
    if unit.load_state != "loaded" {
        return Vec::new();
    }
    let s = Sources::new(d);
    let mut found = Vec::new();
    let user_set: Vec<String> = v.origins.keys().cloned().collect();
    let v_is_set = |var: &str| user_set.iter().any(|k| k == var);
    let set =
        |var: &str, slot: &mut String, value: Option<(String, String)>, found: &mut Vec<Found>| {
            if v_is_set(var) {
                return;
            }
            if let Some((value, source)) = value {
                *slot = value.clone();
                found.push(Found {
                    var: var.into(),
                    value,
                    source,
                });
            }
        };

    let binary = match (&unit.exe, unit.main_pid) {
        (Some(e), Some(pid)) => Some((e.clone(), format!("/proc/{pid}/exe of {}", unit.id))),
        _ => unit
            .exec_path
            .clone()
            .map(|p| (p, format!("ExecStart of {}", unit.id))),
    };
    let binary_found = binary.is_some() && !v_is_set("etcd_binary");
    set("etcd_binary", &mut v.binary, binary, &mut found);
    if binary_found && !v_is_set("etcdctl_binary") {
        let dir = std::path::Path::new(&v.binary)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        v.etcdctl_binary = format!("{dir}/etcdctl");
    }
    set(
        "etcd_data_dir",
        &mut v.data_dir,
        s.setting("data-dir"),
        &mut found,
    );
    set(
        "etcd_client_url",
        &mut v.client_url,
        client_url(&s),
        &mut found,
    );
    if v.client_url.starts_with("https://") {
        let mut opt = |var: &str, slot: &mut Option<String>, ctl: &[&str], server: &str| {
            if v_is_set(var) {
                return;
            }
            let value = ctl
                .iter()
                .find_map(|c| s.variable(c))
                .or_else(|| s.setting(server));
            if let Some((value, source)) = value {
                *slot = Some(value.clone());
                found.push(Found {
                    var: var.into(),
                    value,
                    source,
                });
            }
        };
        opt(
            "etcd_cacert",
            &mut v.cacert,
            &["ETCDCTL_CACERT", "ETCDCTL_CA_FILE"],
            "trusted-ca-file",
        );
        opt(
            "etcd_cert",
            &mut v.cert,
            &["ETCDCTL_CERT", "ETCDCTL_CERT_FILE"],
            "cert-file",
        );
        opt(
            "etcd_key",
            &mut v.key,
            &["ETCDCTL_KEY", "ETCDCTL_KEY_FILE"],
            "key-file",
        );
    }
    for f in &found {
        v.origins
            .insert(f.var.clone(), format!("discovered: {}", f.source));
    }
    found
}

mod refusals;
pub use refusals::unit_problems;

#[cfg(test)]
#[path = "discover_tests.rs"]
mod tests;
