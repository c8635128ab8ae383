//! Ansible inventories (YAML and INI) into typed hosts. Both formats are read into
//! the same raw form (groups, hosts, vars with their positions), then resolved
//! with Ansible's precedence and validated. Every error names file:line:col.

mod extra;
pub use extra::ExtraVars;
mod host;
mod ini;
mod limit;
mod raw;
mod resolve;
mod values;
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
    /// `-e`: above every host and group variable.
    pub extra_vars: Option<&'a ExtraVars>,
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
    resolve::resolve(raw, path, opts)
}

#[cfg(test)]
mod tests;
