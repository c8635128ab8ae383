//! A host as etcdroll resolved it, as rows of (variable, value, origin): what
//! `etcdroll inventory` prints, so the user sees every value and where it came
//! from without connecting. Secrets show as `***`.

use super::Host;

/// One resolved setting of a host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    pub var: &'static str,
    pub value: String,
    /// `FILE:LINE:COL`, `-e`, `-e @FILE`, or `default`.
    pub origin: String,
}

/// Every setting etcdroll uses for this host, each with its origin.
pub fn describe(h: &Host) -> Vec<Setting> {
    let conn = |var: &'static str, names: &[&str], value: String| Setting {
        var,
        value,
        origin: names
            .iter()
            .find_map(|n| h.origins.get(*n))
            .cloned()
            .unwrap_or_else(|| "default".into()),
    };
    let etcd = |var: &'static str, value: String| Setting {
        var,
        value,
        origin: h
            .etcd
            .origins
            .get(var)
            .cloned()
            .unwrap_or_else(|| "default".into()),
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into())
    };
    let e = &h.etcd;
    vec![
        conn(
            "ansible_host",
            &["ansible_host", "ansible_ssh_host"],
            h.address.clone(),
        ),
        conn(
            "ansible_port",
            &["ansible_port", "ansible_ssh_port"],
            h.port.map(|p| p.to_string()).unwrap_or_else(|| "22".into()),
        ),
        conn(
            "ansible_user",
            &["ansible_user", "ansible_ssh_user"],
            opt(&h.user),
        ),
        conn(
            "ansible_ssh_private_key_file",
            &["ansible_ssh_private_key_file", "ansible_private_key_file"],
            path(&h.private_key_file),
        ),
        conn(
            "etcdroll_jump",
            &[
                "etcdroll_jump",
                "ansible_ssh_common_args",
                "ansible_ssh_extra_args",
            ],
            opt(&h.jump),
        ),
        conn("ansible_become", &["ansible_become"], h.become_.to_string()),
        conn(
            "ansible_become_user",
            &["ansible_become_user"],
            opt(&h.become_user),
        ),
        conn(
            "ansible_become_pass",
            &["ansible_become_pass", "ansible_become_password"],
            if h.become_password.is_some() {
                "***"
            } else {
                "-"
            }
            .into(),
        ),
        conn("etcd_cluster", &["etcd_cluster"], h.cluster.clone()),
        etcd("etcd_binary", e.binary.clone()),
        etcd("etcdctl_binary", e.etcdctl_binary.clone()),
        etcd("etcd_data_dir", e.data_dir.clone()),
        etcd("etcd_client_url", e.client_url.clone()),
        etcd("etcd_service", e.service.clone()),
        etcd(
            "etcd_service_manager",
            format!("{:?}", e.service_manager).to_lowercase(),
        ),
        etcd("etcd_backup_dir", e.backup_dir.clone()),
        etcd("etcd_cacert", opt(&e.cacert)),
        etcd("etcd_cert", opt(&e.cert)),
        etcd("etcd_key", opt(&e.key)),
    ]
}
