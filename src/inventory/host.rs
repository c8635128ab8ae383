//! One host's variables into a `Host`: the Ansible connection variables,
//! etcdroll's own and the etcd ones (into `EtcdVars`), kubespray's accepted and
//! ignored, and a misspelt one of ours refused with the name it was probably
//! meant to be.

use std::collections::BTreeMap;
use std::path::Path;

use super::values::{at, bool_of, expand_home, local_path, port_of, required, string_of, unusable};
use super::{EtcdVars, Host, InventoryError, Location, RawVar, Secret};
use crate::etcd::ServiceManager;

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
    "etcdroll_replace_packaged_binary",
];

/// The variables that fill `EtcdVars` (ours, but not `etcd_cluster`): where
/// each was set is kept, so that discovery on the host never overrides one the
/// user wrote.
fn is_etcd_setting(key: &str) -> bool {
    KNOWN_OURS.contains(&key)
        && key != "etcd_cluster"
        && ["etcd_", "etcdctl_", "etcdutl_"]
            .iter()
            .any(|p| key.starts_with(p))
}

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
    // kubespray's role defaults (roles/*/defaults), which users copy into group_vars.
    "etcd_binary_checksum",
    "etcd_binary_checksums",
    "etcd_blkio_weight",
    "etcd_cert_alt_ips",
    "etcd_cert_alt_names",
    "etcd_cert_group",
    "etcd_cluster_setup",
    "etcd_cpu_limit",
    "etcd_download_url",
    "etcd_extra_vars",
    "etcd_hosts",
    "etcd_max_snapshots",
    "etcd_max_wals",
    "etcd_memory_limit",
    "etcd_metrics_addresses",
    "etcd_metrics_port",
    "etcd_metrics_service_labels",
    "etcd_node_cert_hosts",
    "etcd_owner",
    "etcd_peer_addresses",
    "etcd_peer_url",
    "etcd_secure_client",
    "etcd_supported_versions",
    "etcd_tls_cipher_suites",
];

/// Connection variables `Host` is made of: where each was set goes to `Host::origins`.
const CONNECTION_VARS: &[&str] = &[
    "ansible_host",
    "ansible_ssh_host",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_become",
    "ansible_become_user",
    "ansible_become_pass",
    "ansible_become_password",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
    "etcd_cluster",
];

/// Where a variable was set, as `etcdroll inventory` would show it:
/// `FILE:LINE:COL`, `-e`, `-e @FILE`, or a dynamic inventory's `SCRIPT --list`.
pub(super) fn origin(v: &RawVar) -> String {
    if v.loc.line > 0 || v.loc.is_program_output() {
        v.loc.to_string()
    } else if v.loc.file == Path::new("-e") {
        "-e".to_string()
    } else {
        format!("-e @{}", v.loc.file.display())
    }
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

/// `-o ProxyJump=x`, `-o ProxyJump x`, `-J x` and `-o UserKnownHostsFile=y` out of
/// ansible_ssh_common_args.
pub(super) fn from_ssh_args(args: &str) -> (Option<String>, Option<String>) {
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

pub(super) fn build_host(
    name: &str,
    location: Location,
    group: &str,
    vars: &BTreeMap<String, RawVar>,
    notes: &mut Vec<String>,
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
        origins: BTreeMap::new(),
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
            "ansible_become_pass" | "ansible_become_password" => match unusable(v) {
                // Not an error: -K and ETCDROLL_BECOME_PASS, read after the
                // inventory, are the way to give it, and take precedence.
                Some(why) => {
                    notes.push(format!("{}: {why}; not used", origin(v)));
                    h.become_password = None;
                }
                None => h.become_password = s()?.map(Secret::new),
            },
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
            "etcdroll_replace_packaged_binary" => h.etcd.replace_packaged = bool_of(v)?,
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
                && !k.starts_with("etcd_experimental_")
                && !k.starts_with("etcd_events_") =>
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
    for v in vars.values() {
        let key = v.key.as_str();
        if is_etcd_setting(key) {
            h.etcd.origins.insert(v.key.clone(), origin(v));
        } else if CONNECTION_VARS.contains(&key) || key.starts_with("etcdroll_") {
            h.origins.insert(v.key.clone(), origin(v));
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
