//! What etcdroll needs to know about one host's etcd, whoever found it out: the
//! inventory fills these in from a host's variables, and the etcd commands read
//! them. Kept here, with the etcd code, so that etcd never depends on how
//! inventories are written.

/// How etcd is laid out and run on one host: where its binaries, data and
/// backups are, how to reach its client port, and how its service is managed.
#[derive(Debug, Clone, PartialEq)]
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
    /// kubespray's `etcd_member_name`.
    pub member_name: Option<String>,
    /// Where each setting came from, by its inventory variable name
    /// (`etcd_data_dir` → `group_vars/etcd.yml:3:1`, or `discovered: ETCD_DATA_DIR
    /// in /etc/etcd.env`). A setting not named here is etcdroll's default, which
    /// discovery may replace; one named here was set by the user and wins.
    pub origins: std::collections::BTreeMap<String, String>,
    /// `etcdroll_replace_packaged_binary`: consent to swap a binary a Debian
    /// package owns (etcdroll then holds the package so apt leaves it alone).
    pub replace_packaged: bool,
}

impl Default for EtcdVars {
    fn default() -> Self {
        EtcdVars {
            binary: "/usr/local/bin/etcd".into(),
            etcdctl_binary: "/usr/local/bin/etcdctl".into(),
            etcdutl_binary: None,
            data_dir: "/var/lib/etcd".into(),
            client_url: "http://127.0.0.1:2379".into(),
            service: "etcd".into(),
            service_manager: ServiceManager::Systemd,
            start_cmd: None,
            stop_cmd: None,
            status_cmd: None,
            logs_cmd: None,
            backup_dir: "/var/backups/etcdroll".into(),
            cacert: None,
            cert: None,
            key: None,
            member_name: None,
            origins: Default::default(),
            replace_packaged: false,
        }
    }
}

/// How the etcd service is started, stopped and asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceManager {
    #[default]
    Systemd,
    Command,
}
