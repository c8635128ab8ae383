//! Dynamic inventories: an executable `-i` (Ansible's inventory script
//! protocol: `--list`, then `--host NAME` when `_meta` is missing) and an
//! inventory plugin config (a YAML file with a top-level `plugin:` key), which
//! only Ansible can evaluate, so `ansible-inventory --list --export` does. Both
//! print the same JSON, read here into the raw form the static formats use, so
//! precedence, `group_vars/`, `host_vars/` and validation stay in one place.
//! Nothing here runs on a remote host: these are programs on this machine.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::yaml::Ordered;
use super::{InventoryError, Location, RawGroup, RawInventory, RawVar, Value};

/// How long an inventory script may take for `--list` (and for each `--host`).
pub(super) const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `ansible-inventory` may take: a cloud plugin lists every region.
const ANSIBLE_TIMEOUT: Duration = Duration::from_secs(180);
/// At most this many `--host` calls at once.
const HOST_CALLS: usize = 8;
/// The program to run for plugin configs and `--inventory-via-ansible`
/// (else `ansible-inventory` on PATH).
pub(super) const ANSIBLE_INVENTORY_ENV: &str = "ETCDROLL_ANSIBLE_INVENTORY";

/// A regular file with an execute bit that is a program (`#!` or ELF):
/// Ansible's script plugin runs it. An executable YAML or INI file (loose
/// permissions) is read as what it is, where Ansible ends up after the script
/// plugin fails on it.
pub(super) fn is_script(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !executable {
        return false;
    }
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n].starts_with(b"#!") || head[..n] == *b"\x7fELF"
}

/// A `*.yml`/`*.yaml` file whose top-level mapping has a `plugin:` key: an
/// inventory plugin's config (Ansible's `auto` plugin reads it so, and its YAML
/// plugin refuses such a file as an inventory).
pub(super) fn is_plugin_config(path: &Path) -> bool {
    if !path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    text.lines().any(|l| {
        l.strip_prefix("plugin")
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    })
}

/// Runs an inventory script: `--list`, and `--host NAME` for each host when
/// its output has no `_meta`.
pub(super) fn script(path: &Path, timeout: Duration) -> Result<RawInventory, InventoryError> {
    let program = absolute(path);
    let dir = program
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let run = |arg: &[&str]| -> Result<Vec<u8>, InventoryError> {
        let mut cmd = Command::new(&program);
        cmd.args(arg).current_dir(&dir);
        let what = format!("{} {}", path.display(), arg.join(" "));
        run_bounded(cmd, timeout).map_err(|message| InventoryError::File {
            path: PathBuf::from(&what),
            message,
        })
    };
    let list_label = PathBuf::from(format!("{} --list", path.display()));
    let out = run(&["--list"])?;
    let (mut raw, meta) = parse_json(&out, &list_label)?;
    if !meta {
        let names: Vec<String> = host_names(&raw);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<(String, Vec<RawVar>), InventoryError>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..HOST_CALLS.min(names.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut got = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(name) = names.get(i) else { break };
                            let label = PathBuf::from(format!("{} --host {name}", path.display()));
                            got.push((
                                i,
                                run(&["--host", name]).and_then(|out| {
                                    host_vars(&out, &label).map(|v| (name.clone(), v))
                                }),
                            ));
                        }
                        got
                    })
                })
                .collect();
            let mut all: Vec<_> = workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect();
            all.sort_by_key(|(i, _)| *i);
            all.into_iter().map(|(_, r)| r).collect()
        });
        let mut by_host = std::collections::HashMap::new();
        for r in results {
            let (name, vars) = r?;
            by_host.insert(name, vars);
        }
        attach_host_vars(&mut raw, by_host);
    }
    Ok(raw)
}

/// Resolves an inventory (a plugin config, a directory, anything Ansible
/// reads) with `ansible-inventory -i PATH --list --export`: groups keep their
/// own vars, so etcdroll applies Ansible's precedence itself (and `-e`).
pub(super) fn via_ansible(path: &Path) -> Result<RawInventory, InventoryError> {
    let program = std::env::var_os(ANSIBLE_INVENTORY_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("ansible-inventory"));
    let mut cmd = Command::new(&program);
    cmd.arg("-i").arg(path).args(["--list", "--export"]);
    let what = format!("{} -i {} --list", program.display(), path.display());
    let file_error = |message: String| InventoryError::File {
        path: path.to_path_buf(),
        message,
    };
    let out = match run_bounded(cmd, ANSIBLE_TIMEOUT) {
        Ok(out) => out,
        Err(message) if message == NOT_FOUND => {
            return Err(file_error(format!(
                "{} is not installed (not on PATH{}): an inventory plugin config (`plugin:`) \
                 and --inventory-via-ansible need Ansible's own ansible-inventory; install it \
                 with `pipx install ansible-core` (or `pip install ansible-core`), or set {} \
                 to the program. A static INI or YAML inventory needs no Ansible",
                program.display(),
                if std::env::var_os(ANSIBLE_INVENTORY_ENV).is_some() {
                    format!(", or {ANSIBLE_INVENTORY_ENV} names a missing program")
                } else {
                    String::new()
                },
                ANSIBLE_INVENTORY_ENV,
            )))
        }
        Err(message) => return Err(file_error(format!("{what} {message}"))),
    };
    // Where values come from: this inventory, as ansible-inventory read it. The
    // label's parent is the inventory's directory, which relative local paths
    // (`etcdroll_binary`) are taken from.
    let label = if path.is_dir() {
        path.join("(ansible-inventory)")
    } else {
        PathBuf::from(format!("{} (ansible-inventory)", path.display()))
    };
    Ok(parse_json(&out, &label)?.0)
}

const NOT_FOUND: &str = "\0not found";

/// Runs a program with stdin closed, bounded by `timeout`; its stdout, or why
/// not (to follow its name): the exit status (or the timeout) and the last
/// lines of its stderr.
fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Vec<u8>, String> {
    use std::os::unix::process::CommandExt;
    // Its own process group, so a timeout kills what it started too.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(NOT_FOUND.to_string()),
            // Just written, its writer's descriptor may still be open in a
            // process being forked elsewhere: a moment later it is not.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("could not be started: {e}")),
        }
    };
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                    // SAFETY: a plain syscall on the group this child leads.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("could not be waited for: {e}")),
        }
    };
    // A grandchild holding the pipes open must not hang us after a timeout:
    // the readers are only joined when the program itself exited.
    let said = |err: Vec<u8>| {
        let text = String::from_utf8_lossy(&err);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(10)..];
        if tail.is_empty() {
            " (nothing on stderr)".to_string()
        } else {
            format!("; it said:\n  {}", tail.join("\n  "))
        }
    };
    match status {
        None => Err(format!(
            "did not finish within {}s (killed)",
            timeout.as_secs()
        )),
        Some(status) => {
            let out = out_reader.join().unwrap_or_default();
            let err = err_reader.join().unwrap_or_default();
            if status.success() {
                Ok(out)
            } else {
                Err(format!("failed ({status}){}", said(err)))
            }
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

fn at(label: &Path, message: String) -> InventoryError {
    InventoryError::File {
        path: label.to_path_buf(),
        message,
    }
}

fn location(label: &Path) -> Location {
    Location::program_output(label)
}

impl Location {
    /// A value a program printed (`SCRIPT --list`): no line to name, shown as
    /// the label alone; told from an `-e @FILE` value (also line 0) by its
    /// column.
    fn program_output(label: &Path) -> Location {
        Location {
            file: label.to_path_buf(),
            line: 0,
            column: usize::MAX,
        }
    }

    pub(super) fn is_program_output(&self) -> bool {
        self.line == 0 && self.column == usize::MAX
    }
}

fn vars_of(label: &Path, what: &str, v: &serde_json::Value) -> Result<Vec<RawVar>, InventoryError> {
    let serde_json::Value::Object(m) = v else {
        return Err(at(
            label,
            format!("{what}: expected a mapping of variables, found {v}"),
        ));
    };
    Ok(m.iter()
        .map(|(k, v)| RawVar {
            key: k.clone(),
            value: value_of(v),
            loc: location(label),
        })
        .collect())
}

/// A value as Ansible prints it: ansible-core 2.19 wraps a templated one in
/// `{"__ansible_unsafe": "..."}` and an encrypted one in `{"__ansible_vault": ...}`.
fn value_of(v: &serde_json::Value) -> Value {
    if let serde_json::Value::Object(m) = v {
        if m.len() == 1 {
            if let Some(serde_json::Value::String(s)) = m.get("__ansible_unsafe") {
                return Value::of_json(&serde_json::Value::String(s.clone()));
            }
            if m.contains_key("__ansible_vault") {
                return Value::Vault;
            }
        }
    }
    Value::of_json(v)
}

fn names_of(
    label: &Path,
    what: &str,
    v: &serde_json::Value,
) -> Result<Vec<String>, InventoryError> {
    let bad = || {
        at(
            label,
            format!("{what}: expected a list of names, found {v}"),
        )
    };
    let serde_json::Value::Array(a) = v else {
        return Err(bad());
    };
    a.iter()
        .map(|n| n.as_str().map(str::to_string).ok_or_else(bad))
        .collect()
}

/// Ansible's inventory JSON: each key a group (`{"hosts": [...], "vars":
/// {...}, "children": [...]}`, or a plain list of hosts), and `_meta.hostvars`.
/// Also says whether `_meta` was there (else each host's vars are asked for).
fn parse_json(out: &[u8], label: &Path) -> Result<(RawInventory, bool), InventoryError> {
    let text = String::from_utf8_lossy(out);
    let top: Ordered<String, serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
        let start: String = text.trim_start().chars().take(80).collect();
        at(
            label,
            format!(
                "not the JSON of an Ansible inventory ({e}); it printed: {:?}",
                start
            ),
        )
    })?;
    let mut raw = RawInventory::default();
    let mut meta = None;
    for (name, g) in top.0 {
        if name == "_meta" {
            meta = Some(g);
            continue;
        }
        let what = format!("group {name:?}");
        let mut group = RawGroup {
            name: name.clone(),
            loc: location(label),
            ..RawGroup::default()
        };
        let hosts = match &g {
            serde_json::Value::Array(_) => names_of(label, &what, &g)?,
            serde_json::Value::Object(m) => {
                if !m.is_empty()
                    && !["hosts", "vars", "children"]
                        .iter()
                        .any(|k| m.contains_key(*k))
                {
                    return Err(at(
                        label,
                        format!("{what}: expected hosts, vars or children, found {g}"),
                    ));
                }
                if let Some(v) = m.get("vars") {
                    group.vars = vars_of(label, &format!("{what} vars"), v)?;
                }
                if let Some(c) = m.get("children") {
                    group.children = names_of(label, &format!("{what} children"), c)?
                        .into_iter()
                        .map(|c| (c, location(label)))
                        .collect();
                }
                match m.get("hosts") {
                    Some(h) => names_of(label, &format!("{what} hosts"), h)?,
                    None => Vec::new(),
                }
            }
            serde_json::Value::Null => Vec::new(),
            other => {
                return Err(at(
                    label,
                    format!("{what}: expected a mapping or a list of hosts, found {other}"),
                ))
            }
        };
        group.hosts = hosts
            .into_iter()
            .map(|h| (h, location(label), Vec::new()))
            .collect();
        raw.groups.push(group);
    }
    let has_meta = meta.is_some();
    if let Some(meta) = meta {
        let mut by_host = std::collections::HashMap::new();
        match meta.get("hostvars") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(hv)) => {
                for (h, v) in hv {
                    by_host.insert(
                        h.clone(),
                        vars_of(label, &format!("_meta.hostvars.{h}"), v)?,
                    );
                }
            }
            Some(other) => {
                return Err(at(
                    label,
                    format!("_meta.hostvars: expected a mapping of hosts, found {other}"),
                ))
            }
        }
        attach_host_vars(&mut raw, by_host);
    }
    Ok((raw, has_meta))
}

/// `--host NAME`'s answer: that host's variables (`{}` for none).
fn host_vars(out: &[u8], label: &Path) -> Result<Vec<RawVar>, InventoryError> {
    let text = String::from_utf8_lossy(out);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        let start: String = text.trim_start().chars().take(80).collect();
        at(label, format!("not JSON ({e}); it printed: {start:?}"))
    })?;
    vars_of(label, "the host's variables", &v)
}

fn host_names(raw: &RawInventory) -> Vec<String> {
    let mut names = Vec::new();
    for g in &raw.groups {
        for (h, _, _) in &g.hosts {
            if !names.contains(h) {
                names.push(h.clone());
            }
        }
    }
    names
}

/// Each host's variables go with its first listing; a host only in
/// `_meta.hostvars` is in no group, and so not in the inventory (as in Ansible).
fn attach_host_vars(
    raw: &mut RawInventory,
    mut by_host: std::collections::HashMap<String, Vec<RawVar>>,
) {
    for g in &mut raw.groups {
        for (h, _, vars) in &mut g.hosts {
            if let Some(v) = by_host.remove(h.as_str()) {
                *vars = v;
            }
        }
    }
}

#[cfg(test)]
#[path = "dynamic_tests.rs"]
mod tests;
