//! Ansible inventories (YAML and INI, a file or a directory of them, with the
//! `group_vars/` and `host_vars/` beside them) into typed hosts. Every source is
//! read into the same raw form (groups, hosts, vars with their positions), then
//! resolved with Ansible's precedence and validated. Every error names
//! file:line:col.

mod describe;
pub use describe::{describe, Setting};
mod dynamic;
mod extra;
pub use extra::ExtraVars;
mod host;
mod ini;
mod limit;
mod raw;
mod resolve;
mod values;
mod vars_dirs;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::etcd::EtcdVars;
use raw::{RawGroup, RawInventory, RawVar, Value};

/// The hosts of the selected group.
#[derive(Debug)]
pub struct Inventory {
    pub path: PathBuf,
    pub hosts: Vec<Host>,
    /// Warnings for the user (stderr): what was not read, and why (a
    /// Vault-encrypted vars file, a become password etcdroll cannot use).
    pub notes: Vec<String>,
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
    /// Where each connection variable this host uses was set (`ansible_host`,
    /// `ansible_port`, `ansible_user`, `ansible_become*`, `etcdroll_*`, …), by
    /// the name it was written under: `group_vars/all/all.yml:3:15`, `-e`,
    /// `-e @FILE`. The etcd ones are in `etcd.origins`.
    pub origins: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    /// `file:line:col`; a value with no line (`-e`, an `-e @FILE` value) names the file alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}", self.file.display());
        }
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
    /// `-e`: above every host and group variable.
    pub extra_vars: Option<&'a ExtraVars>,
    /// `--inventory-via-ansible`: whatever `-i` is, `ansible-inventory` reads it.
    pub via_ansible: bool,
}

/// Reads an inventory file, or a directory of them, with the `group_vars/` and
/// `host_vars/` beside it (in the file's directory, or in the directory given).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Inventory, InventoryError> {
    let io = |source| InventoryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let (raw, base) = if meta.is_dir() {
        let mut sources = Vec::new();
        dir_sources(path, &mut sources).map_err(io)?;
        if sources.is_empty() {
            return Err(InventoryError::File {
                path: path.to_path_buf(),
                message: "an inventory directory with no inventory file in it".to_string(),
            });
        }
        // A plugin config may build on the sources before it (`constructed`):
        // only Ansible can read such a directory.
        let raw = if opts.via_ansible || sources.iter().any(|s| dynamic::is_plugin_config(s)) {
            dynamic::via_ansible(path)?
        } else {
            let mut raw = RawInventory::default();
            for source in sources {
                raw.groups.extend(parse_source(&source)?.groups);
            }
            raw
        };
        (raw, path.to_path_buf())
    } else {
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let raw = if opts.via_ansible || dynamic::is_plugin_config(path) {
            dynamic::via_ansible(path)?
        } else {
            parse_source(path)?
        };
        (raw, base)
    };
    let mut dirs = vars_dirs::VarsDirs::new(&base);
    resolve::resolve(raw, path, Some(&mut dirs), opts)
}

/// Names Ansible skips in an inventory directory: hidden ones, the vars
/// directories, and `INVENTORY_IGNORE_EXTS` (its default).
fn ignored_in_dir(name: &str) -> bool {
    const EXTS: &[&str] = &[
        ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg",
        ".retry",
    ];
    name.starts_with('.')
        || matches!(name, "host_vars" | "group_vars" | "vars_plugins")
        || EXTS.iter().any(|e| name.ends_with(e))
}

/// The inventory files of a directory, in Ansible's order: sorted, recursively.
fn dir_sources(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        if ignored_in_dir(&name.to_string_lossy()) {
            continue;
        }
        let path = dir.join(&name);
        if path.is_dir() {
            dir_sources(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn parse_source(path: &Path) -> Result<RawInventory, InventoryError> {
    if dynamic::is_script(path) {
        return dynamic::script(path, dynamic::SCRIPT_TIMEOUT);
    }
    let bytes = std::fs::read(path).map_err(|source| InventoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file_error = |message: &str| InventoryError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    if bytes.starts_with(b"#!") {
        return Err(file_error(
            "an inventory script without an execute bit: `chmod +x` it to have etcdroll \
             run it as Ansible would (with --list), or move it out of the inventory directory",
        ));
    }
    if path.extension().is_some_and(|e| e == "toml") {
        return Err(file_error(
            "a TOML inventory, which etcdroll does not read (write it as YAML or INI)",
        ));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| file_error("not UTF-8 text: not an inventory"))?;
    if raw::is_vault(&text) {
        return Err(file_error(
            "Ansible Vault-encrypted, which etcdroll cannot decrypt: \
             keep the hosts in a plain inventory and the secrets elsewhere",
        ));
    }
    parse_raw(&text, path)
}

fn looks_like_yaml(text: &str, path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yml" | "yaml" | "json") => true,
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

fn parse_raw(text: &str, path: &Path) -> Result<RawInventory, InventoryError> {
    if looks_like_yaml(text, path) {
        yaml::parse(text, path)
    } else {
        ini::parse(text, path)
    }
}

/// One inventory's text alone: no `group_vars/` or `host_vars/` are read.
pub fn parse_str(text: &str, path: &Path, opts: &LoadOptions) -> Result<Inventory, InventoryError> {
    resolve::resolve(parse_raw(text, path)?, path, None, opts)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vars_dirs_tests;
