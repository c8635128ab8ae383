// TEMPORARY STUB: replaced by the real parser.
use std::path::{Path, PathBuf};
pub struct Inventory {
    pub path: PathBuf,
    pub hosts: Vec<Host>,
}
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub private_key_file: Option<PathBuf>,
    pub become_: bool,
    pub become_user: Option<String>,
    pub jump: Option<String>,
    pub known_hosts_file: Option<PathBuf>,
    pub cluster: String,
    pub etcd: EtcdVars,
}
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EtcdVars {
    pub binary: String,
    pub etcdctl_binary: String,
    pub etcdutl_binary: Option<String>,
    pub data_dir: String,
    pub client_url: String,
    pub service: String,
    pub service_manager: ServiceManager,
    pub start_cmd: Option<String>,
    pub stop_cmd: Option<String>,
    pub status_cmd: Option<String>,
    pub logs_cmd: Option<String>,
    pub backup_dir: String,
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceManager {
    #[default]
    Systemd,
    Command,
}
pub struct LoadOptions<'a> {
    pub group: &'a str,
    pub limit: Option<&'a str>,
}
#[derive(Debug, thiserror::Error)]
#[error("stub")]
pub struct InventoryError;
pub fn load(_path: &Path, _opts: &LoadOptions) -> Result<Inventory, InventoryError> {
    Err(InventoryError)
}
