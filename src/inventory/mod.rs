//! Ansible inventories (YAML and INI) into typed hosts. Both formats are read into
//! the same raw form (groups, hosts, vars with their positions), then resolved
//! with Ansible's precedence and validated. Every error names file:line:col.

mod ini;
mod yaml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::etcd::{EtcdVars, ServiceManager};

/// The hosts of the selected group.
#[derive(Debug)]
pub struct Inventory {
    pub path: PathBuf,
    pub hosts: Vec<Host>,
}

/// A secret that never shows in Debug output or logs. Shared, not copied, by
/// every host that uses it, and wiped from memory when the last user drops it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<zeroize::Zeroizing<String>>);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(std::sync::Arc::new(zeroize::Zeroizing::new(value)))
    }

    /// The secret itself, for the one place that hands it over (sudo's stdin).
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    /// `ansible_host`, else the name.
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub private_key_file: Option<PathBuf>,
    pub become_: bool,
    pub become_user: Option<String>,
    pub become_password: Option<Secret>,
    /// Jump hosts (ProxyJump syntax), from `etcdroll_jump` or `ansible_ssh_common_args`.
    pub jump: Option<String>,
    pub known_hosts_file: Option<PathBuf>,
    /// Where the run lock lives on the host (`etcdroll_lock_dir`).
    pub lock_dir: String,
    /// `etcd_cluster`, else the selected group's name.
    pub cluster: String,
    /// The new binaries for this host's cluster, on this machine
    /// (`etcdroll_binary`, `etcdroll_etcdctl`): instead of `--binary`/`--etcdctl`,
    /// for fleets whose clusters need different builds (another architecture).
    pub new_binary: Option<PathBuf>,
    pub new_etcdctl: Option<PathBuf>,
    pub etcd: EtcdVars,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    At { location: Location, message: String },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

pub struct LoadOptions<'a> {
    pub group: &'a str,
    pub limit: Option<&'a str>,
}

/// A variable value as written: INI gives strings, YAML typed scalars.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Float(f64),
    Null,
    /// A list or map: fine for variables etcdroll ignores.
    Complex,
}

#[derive(Debug, Clone)]
pub(crate) struct RawVar {
    pub key: String,
    pub value: Value,
    pub loc: Location,
}

#[derive(Debug, Default)]
pub(crate) struct RawGroup {
    pub name: String,
    pub loc: Location,
    /// Hosts listed directly, each with its vars, in order.
    pub hosts: Vec<(String, Location, Vec<RawVar>)>,
    pub vars: Vec<RawVar>,
    pub children: Vec<(String, Location)>,
}

/// Both formats parse into this; groups may repeat (merged in order).
#[derive(Debug, Default)]
pub(crate) struct RawInventory {
    pub groups: Vec<RawGroup>,
}

pub fn load(path: &Path, opts: &LoadOptions) -> Result<Inventory, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, path, opts)
}

fn looks_like_yaml(text: &str, path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yml" | "yaml") => true,
        Some("ini" | "cfg") => false,
        _ => {
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
            match first {
                Some(l) => !l.starts_with('[') && (l.ends_with(':') || l.starts_with("---")),
                None => false,
            }
        }
    }
}

pub fn parse_str(text: &str, path: &Path, opts: &LoadOptions) -> Result<Inventory, InventoryError> {
    let raw = if looks_like_yaml(text, path) {
        yaml::parse(text, path)?
    } else {
        ini::parse(text, path)?
    };
    resolve(raw, path, opts)
}

/// Group membership, variable precedence, validation.
fn resolve(
    raw: RawInventory,
    path: &Path,
    opts: &LoadOptions,
) -> Result<Inventory, InventoryError> {
    // Merge repeated group sections.
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, RawGroup> = HashMap::new();
    for g in raw.groups {
        match groups.get_mut(&g.name) {
            Some(existing) => {
                existing.hosts.extend(g.hosts);
                existing.vars.extend(g.vars);
                existing.children.extend(g.children);
            }
            None => {
                order.push(g.name.clone());
                groups.insert(g.name.clone(), g);
            }
        }
    }
    // Parents of each group, and cycle check.
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    for name in &order {
        for (child, loc) in &groups[name].children {
            if !groups.contains_key(child) {
                // A child named but never defined is an empty group, as in Ansible.
                parents.entry(child.clone()).or_default();
            }
            let _ = loc;
            parents.entry(child.clone()).or_default().push(name.clone());
        }
    }
    for name in &order {
        let mut seen = HashSet::new();
        if has_cycle(name, &groups, &mut seen, &mut Vec::new()) {
            let loc = groups[name].loc.clone();
            return Err(InventoryError::At {
                location: loc,
                message: format!("group {name:?} is its own descendant through children"),
            });
        }
    }
    let depth = |g: &str| -> usize { group_depth(g, &parents, &mut HashSet::new()) };

    let Some(selected) = groups.get(opts.group) else {
        let mut names: Vec<&str> = order
            .iter()
            .map(String::as_str)
            .filter(|n| *n != "all")
            .collect();
        names.sort();
        return Err(InventoryError::File {
            path: path.to_path_buf(),
            message: format!(
                "group {:?} not found; groups are: {} (pick one with --group)",
                opts.group,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        });
    };
    let _ = selected;
    // Hosts of the selected group (and its descendants), first-seen order.
    let mut host_names: Vec<(String, Location)> = Vec::new();
    collect_hosts(opts.group, &groups, &mut host_names, &mut HashSet::new());
    if host_names.is_empty() {
        return Err(InventoryError::At {
            location: groups[opts.group].loc.clone(),
            message: format!("group {:?} has no hosts", opts.group),
        });
    }
    // Which groups contain each host (directly or through children).
    let mut member_of: HashMap<String, Vec<String>> = HashMap::new();
    for name in &order {
        let mut hs = Vec::new();
        collect_hosts(name, &groups, &mut hs, &mut HashSet::new());
        for (h, _) in hs {
            member_of.entry(h).or_default().push(name.clone());
        }
    }
    let mut hosts = Vec::new();
    for (hname, loc) in &host_names {
        let mut gs: Vec<&String> = member_of
            .get(hname)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        gs.sort_by_key(|g| {
            (
                if g.as_str() == "all" { 0 } else { 1 + depth(g) },
                (*g).clone(),
            )
        });
        let mut vars: BTreeMap<String, RawVar> = BTreeMap::new();
        if !gs.iter().any(|g| g.as_str() == "all") {
            if let Some(all) = groups.get("all") {
                for v in &all.vars {
                    vars.insert(v.key.clone(), v.clone());
                }
            }
        }
        for g in gs {
            for v in &groups[g].vars {
                vars.insert(v.key.clone(), v.clone());
            }
        }
        for name in &order {
            for (h, _, hv) in &groups[name].hosts {
                if h == hname {
                    for v in hv {
                        vars.insert(v.key.clone(), v.clone());
                    }
                }
            }
        }
        hosts.push(build_host(hname, loc.clone(), opts.group, &vars)?);
    }
    if let Some(limit) = opts.limit {
        hosts = apply_limit(hosts, limit).map_err(|message| InventoryError::File {
            path: path.to_path_buf(),
            message,
        })?;
    }
    Ok(Inventory {
        path: path.to_path_buf(),
        hosts,
    })
}

fn has_cycle(
    name: &str,
    groups: &HashMap<String, RawGroup>,
    seen: &mut HashSet<String>,
    stack: &mut Vec<String>,
) -> bool {
    if stack.iter().any(|s| s == name) {
        return true;
    }
    if !seen.insert(name.to_string()) {
        return false;
    }
    stack.push(name.to_string());
    let cyc = groups
        .get(name)
        .map(|g| {
            g.children
                .iter()
                .any(|(c, _)| has_cycle(c, groups, seen, stack))
        })
        .unwrap_or(false);
    stack.pop();
    cyc
}

fn group_depth(
    g: &str,
    parents: &HashMap<String, Vec<String>>,
    seen: &mut HashSet<String>,
) -> usize {
    if !seen.insert(g.to_string()) {
        return 0;
    }
    parents
        .get(g)
        .map(|ps| {
            ps.iter()
                .filter(|p| p.as_str() != "all")
                .map(|p| 1 + group_depth(p, parents, seen))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn collect_hosts(
    name: &str,
    groups: &HashMap<String, RawGroup>,
    out: &mut Vec<(String, Location)>,
    seen: &mut HashSet<String>,
) {
    if !seen.insert(name.to_string()) {
        return;
    }
    let Some(g) = groups.get(name) else { return };
    for (h, loc, _) in &g.hosts {
        if !out.iter().any(|(x, _)| x == h) {
            out.push((h.clone(), loc.clone()));
        }
    }
    for (c, _) in &g.children {
        collect_hosts(c, groups, out, seen);
    }
    if name == "all" {
        for other in groups.keys() {
            collect_hosts(other, groups, out, seen);
        }
    }
}

/// etcd and etcdroll variables etcdroll reads.
const KNOWN_OURS: &[&str] = &[
    "etcd_binary",
    "etcdctl_binary",
    "etcdutl_binary",
    "etcd_data_dir",
    "etcd_client_url",
    "etcd_service",
    "etcd_service_manager",
    "etcd_start_cmd",
    "etcd_stop_cmd",
    "etcd_status_cmd",
    "etcd_logs_cmd",
    "etcd_backup_dir",
    "etcd_cacert",
    "etcd_cert",
    "etcd_key",
    "etcd_cluster",
    "etcd_member_name",
    "etcdroll_jump",
    "etcdroll_known_hosts",
    "etcdroll_lock_dir",
    "etcdroll_binary",
    "etcdroll_etcdctl",
];

/// kubespray's etcd variables: accepted and ignored, so its inventories work as they are.
const KUBESPRAY_ETCD_VARS: &[&str] = &[
    "etcd_deployment_type",
    "etcd_version",
    "etcd_image_tag",
    "etcd_image_repo",
    "etcd_kubeadm_enabled",
    "etcd_events_cluster_setup",
    "etcd_events_cluster_enabled",
    "etcd_metrics",
    "etcd_listen_metrics_urls",
    "etcd_heartbeat_interval",
    "etcd_election_timeout",
    "etcd_snapshot_count",
    "etcd_quota_backend_bytes",
    "etcd_max_request_bytes",
    "etcd_log_level",
    "etcd_compaction_retention",
    "etcd_retries",
    "etcd_cert_dir",
    "etcd_config_dir",
    "etcd_script_dir",
    "etcd_peer_client_auth",
    "etcd_backup_prefix",
    "etcd_backup_retention_count",
    "etcd_access_addresses",
    "etcd_address",
    "etcd_access_address",
    "etcd_client_url_https",
];

/// A path on this machine: `~` expanded, a relative one taken from the
/// inventory file's directory (where it was written).
fn local_path(v: &RawVar) -> Result<PathBuf, InventoryError> {
    let p = expand_home(&required(v)?);
    if p.is_relative() {
        if let Some(dir) = v.loc.file.parent() {
            return Ok(dir.join(p));
        }
    }
    Ok(p)
}

fn is_ours(key: &str) -> bool {
    key.starts_with("etcd_")
        || key.starts_with("etcdctl_")
        || key.starts_with("etcdutl_")
        || key.starts_with("etcdroll_")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn at(v: &RawVar, message: String) -> InventoryError {
    InventoryError::At {
        location: v.loc.clone(),
        message,
    }
}

fn string_of(v: &RawVar) -> Result<Option<String>, InventoryError> {
    match &v.value {
        Value::Str(s) => Ok(Some(s.clone())),
        Value::Int(i) => Ok(Some(i.to_string())),
        Value::Float(f) => Ok(Some(f.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Null => Ok(None),
        Value::Complex => Err(at(
            v,
            format!("{} must be a string, found a list or map", v.key),
        )),
    }
}

fn bool_of(v: &RawVar) -> Result<bool, InventoryError> {
    match &v.value {
        Value::Bool(b) => Ok(*b),
        Value::Int(1) => Ok(true),
        Value::Int(0) => Ok(false),
        Value::Str(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(at(
                v,
                format!("{} must be a boolean (true/false), found {s:?}", v.key),
            )),
        },
        other => Err(at(
            v,
            format!("{} must be a boolean (true/false), found {other:?}", v.key),
        )),
    }
}

fn port_of(v: &RawVar) -> Result<u16, InventoryError> {
    let s = string_of(v)?.unwrap_or_default();
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            at(
                v,
                format!("{} must be a port number (1-65535), found {s:?}", v.key),
            )
        })
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// `-o ProxyJump=x`, `-o ProxyJump x`, `-J x` and `-o UserKnownHostsFile=y` out of
/// ansible_ssh_common_args.
fn from_ssh_args(args: &str) -> (Option<String>, Option<String>) {
    let words = shlex::split(args).unwrap_or_default();
    let (mut jump, mut kh) = (None, None);
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let next = words.get(i + 1).cloned();
        if w == "-J" {
            jump = next;
            i += 2;
            continue;
        }
        let opt = if w == "-o" {
            i += 1;
            next
        } else {
            w.strip_prefix("-o").map(str::to_string)
        };
        if let Some(o) = opt {
            let (k, v) = match o.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                None => {
                    let mut it = o.splitn(2, ' ');
                    let k = it.next().unwrap_or("").to_string();
                    let v = it.next().map(str::to_string).or_else(|| {
                        i += 1;
                        words.get(i).cloned()
                    });
                    (k, v)
                }
            };
            match k.to_ascii_lowercase().as_str() {
                "proxyjump" => jump = v,
                "userknownhostsfile" => kh = v,
                _ => {}
            }
        }
        i += 1;
    }
    (jump, kh)
}

fn build_host(
    name: &str,
    location: Location,
    group: &str,
    vars: &BTreeMap<String, RawVar>,
) -> Result<Host, InventoryError> {
    // The name becomes part of paths on the hosts (backups are
    // `etcdroll-NAME-TIME/`): it must not be able to step out of them.
    if name.contains('/') || name.contains("..") || name.contains('\0') {
        return Err(InventoryError::At {
            location,
            message: format!(
                "host name {name:?} cannot be used: it names backup paths, so it may hold no '/' and no '..' \
                 (give the host another name and its address as ansible_host)"
            ),
        });
    }
    let mut h = Host {
        name: name.to_string(),
        address: name.to_string(),
        port: None,
        user: None,
        private_key_file: None,
        become_: false,
        become_user: None,
        become_password: None,
        jump: None,
        known_hosts_file: None,
        lock_dir: "/run/etcdroll".to_string(),
        cluster: group.to_string(),
        new_binary: None,
        new_etcdctl: None,
        etcd: EtcdVars::default(),
        location,
    };
    let mut etcdctl_set = false;
    let mut common_args: Option<String> = None;
    for v in vars.values() {
        let key = v.key.as_str();
        let s = || string_of(v);
        match key {
            "ansible_host" | "ansible_ssh_host" => {
                h.address = s()?.unwrap_or_else(|| name.to_string())
            }
            "ansible_port" | "ansible_ssh_port" => h.port = Some(port_of(v)?),
            "ansible_user" | "ansible_ssh_user" => h.user = s()?,
            "ansible_ssh_private_key_file" | "ansible_private_key_file" => {
                h.private_key_file = s()?.map(|p| expand_home(&p))
            }
            "ansible_become" => h.become_ = bool_of(v)?,
            "ansible_become_user" => h.become_user = s()?,
            "ansible_become_pass" | "ansible_become_password" => {
                h.become_password = s()?.map(Secret::new)
            }
            "ansible_ssh_common_args" | "ansible_ssh_extra_args" => {
                common_args = Some(format!(
                    "{} {}",
                    common_args.unwrap_or_default(),
                    s()?.unwrap_or_default()
                ))
            }
            "etcdroll_jump" => h.jump = s()?,
            "etcdroll_known_hosts" => h.known_hosts_file = s()?.map(|p| expand_home(&p)),
            "etcdroll_lock_dir" => h.lock_dir = required(v)?,
            "etcdroll_binary" => h.new_binary = Some(local_path(v)?),
            "etcdroll_etcdctl" => h.new_etcdctl = Some(local_path(v)?),
            "etcd_binary" => h.etcd.binary = required(v)?,
            "etcdctl_binary" => {
                h.etcd.etcdctl_binary = required(v)?;
                etcdctl_set = true;
            }
            "etcdutl_binary" => h.etcd.etcdutl_binary = s()?,
            "etcd_data_dir" => h.etcd.data_dir = required(v)?,
            "etcd_client_url" => {
                let url = required(v)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(at(
                        v,
                        format!(
                            "etcd_client_url must start with http:// or https://, found {url:?}"
                        ),
                    ));
                }
                h.etcd.client_url = url;
            }
            "etcd_service" => h.etcd.service = required(v)?,
            "etcd_service_manager" => {
                h.etcd.service_manager = match required(v)?.as_str() {
                    "systemd" => ServiceManager::Systemd,
                    "command" => ServiceManager::Command,
                    other => {
                        return Err(at(
                            v,
                            format!(
                        "etcd_service_manager must be \"systemd\" or \"command\", found {other:?}"
                    ),
                        ))
                    }
                }
            }
            "etcd_start_cmd" => h.etcd.start_cmd = s()?,
            "etcd_stop_cmd" => h.etcd.stop_cmd = s()?,
            "etcd_status_cmd" => h.etcd.status_cmd = s()?,
            "etcd_logs_cmd" => h.etcd.logs_cmd = s()?,
            "etcd_backup_dir" => h.etcd.backup_dir = required(v)?,
            "etcd_cacert" => h.etcd.cacert = s()?,
            "etcd_cert" => h.etcd.cert = s()?,
            "etcd_key" => h.etcd.key = s()?,
            "etcd_cluster" => h.cluster = required(v)?,
            "etcd_member_name" => h.etcd.member_name = s()?,
            k if is_ours(k)
                && !KUBESPRAY_ETCD_VARS.contains(&k)
                && !k.starts_with("etcd_experimental_") =>
            {
                let close = KNOWN_OURS
                    .iter()
                    .map(|known| (edit_distance(k, known), known))
                    .min()
                    .filter(|(d, _)| *d <= 3)
                    .map(|(_, known)| format!(" Did you mean {known}?"))
                    .unwrap_or_default();
                return Err(at(
                    v,
                    format!(
                        "unknown variable {k}.{close} Known: {}",
                        KNOWN_OURS.join(", ")
                    ),
                ));
            }
            _ => {}
        }
    }
    if let Some(args) = common_args {
        let (jump, kh) = from_ssh_args(&args);
        if h.jump.is_none() {
            h.jump = jump;
        }
        if h.known_hosts_file.is_none() {
            h.known_hosts_file = kh.map(|p| expand_home(&p));
        }
    }
    if !etcdctl_set {
        let dir = Path::new(&h.etcd.binary)
            .parent()
            .unwrap_or(Path::new("/usr/local/bin"));
        h.etcd.etcdctl_binary = dir.join("etcdctl").display().to_string();
    }
    if h.etcd.service_manager == ServiceManager::Command {
        for (name, val) in [
            ("etcd_start_cmd", &h.etcd.start_cmd),
            ("etcd_stop_cmd", &h.etcd.stop_cmd),
            ("etcd_status_cmd", &h.etcd.status_cmd),
        ] {
            if val.as_deref().is_none_or(|c| c.trim().is_empty()) {
                let loc = vars
                    .get("etcd_service_manager")
                    .map(|v| v.loc.clone())
                    .unwrap_or_else(|| h.location.clone());
                return Err(InventoryError::At {
                    location: loc,
                    message: format!(
                        "host {}: etcd_service_manager is \"command\" but {name} is not set",
                        h.name
                    ),
                });
            }
        }
    }
    Ok(h)
}

fn required(v: &RawVar) -> Result<String, InventoryError> {
    match string_of(v)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(at(v, format!("{} must not be empty", v.key))),
    }
}

fn glob(pat: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star) = (0, 0, None);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Ansible-style `--limit`: patterns separated by `,` or `:`, `!` excludes.
fn apply_limit(hosts: Vec<Host>, limit: &str) -> Result<Vec<Host>, String> {
    let pats: Vec<&str> = limit
        .split([',', ':'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let (neg, pos): (Vec<&str>, Vec<&str>) = pats.into_iter().partition(|p| p.starts_with('!'));
    let out: Vec<Host> = hosts
        .into_iter()
        .filter(|h| pos.is_empty() || pos.iter().any(|p| glob(p, &h.name)))
        .filter(|h| !neg.iter().any(|p| glob(&p[1..], &h.name)))
        .collect();
    if out.is_empty() {
        return Err(format!("--limit {limit:?} selects no host of the group"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
