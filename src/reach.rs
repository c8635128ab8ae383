//! How an inventory host is reached: its SSH endpoint from the command line,
//! the inventory and ssh_config, in that order, and whether its privileged steps
//! run under sudo. The bridge between `inventory` and `ssh`, so neither imports
//! the other.

use crate::inventory::{Host, Secret};
use crate::ssh::{config, parse_jumps, Endpoint};

/// Settings for how hosts are reached, from the command line.
#[derive(Clone, Debug, Default)]
pub struct ReachOptions {
    /// `-J`: jump hosts for every host, overriding the inventory.
    pub jump: Option<String>,
    /// `-u`: login user overriding the inventory.
    pub user: Option<String>,
    /// `--become`: run privileged steps with sudo.
    pub become_: bool,
    /// The sudo password (`--ask-become-pass` or ETCDROLL_BECOME_PASS), for every
    /// host; `ansible_become_pass` in the inventory is used where this is unset.
    pub become_password: Option<Secret>,
    /// `-F`: the ssh_config file (else ~/.ssh/config if it exists).
    pub ssh_config: Option<std::path::PathBuf>,
}

/// The SSH endpoint of an inventory host. Precedence: command line, then
/// inventory, then ssh_config (resolved by OpenSSH's `ssh -G`), then defaults.
pub async fn endpoint_for(host: &Host, reach: &ReachOptions) -> Result<Endpoint, String> {
    let cfg = match config::config_file(reach.ssh_config.as_deref()) {
        Some(file) => Some(config::resolve(&host.address, &file).await?),
        None => None,
    };
    let cfg = cfg.unwrap_or_default();
    let user = reach
        .user
        .clone()
        .or_else(|| host.user.clone())
        .or_else(|| cfg.user.clone())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".to_string());
    let address = cfg
        .hostname
        .clone()
        .filter(|h| h != &host.address)
        .unwrap_or_else(|| host.address.clone());
    let identity_file = host
        .private_key_file
        .clone()
        .or_else(|| cfg.identity_files.iter().find(|p| p.exists()).cloned());
    let known_hosts_file = host
        .known_hosts_file
        .clone()
        .or_else(|| cfg.known_hosts_files.iter().find(|p| p.exists()).cloned());
    let jump_spec = reach
        .jump
        .clone()
        .or_else(|| host.jump.clone())
        .or(cfg.proxy_jump.clone());
    let jumps = match jump_spec.as_deref() {
        Some(spec) if !spec.trim().is_empty() && spec.trim() != "none" => parse_jumps(
            spec,
            &user,
            identity_file.as_deref(),
            known_hosts_file.as_deref(),
        )
        .map_err(|e| format!("{}: {e}", host.name))?,
        _ => Vec::new(),
    };
    Ok(Endpoint {
        label: host.name.clone(),
        host: address,
        port: host.port.or(cfg.port).unwrap_or(22),
        user,
        identity_file,
        known_hosts_file,
        jumps,
    })
}
