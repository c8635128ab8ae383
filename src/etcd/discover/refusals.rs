//! What systemd's view of a unit refuses at the pre-flight: a unit that could
//! not be started again after its stop, or that would not run the binary
//! etcdroll swaps. Kept apart from discovery itself, which only reads.

use super::UnitFacts;

/// The pre-flight's refusals from systemd's view of the unit: each names the
/// unit, what is wrong and what to do. `binary` is the etcd binary etcdroll
/// would swap; `replace_packaged` is the user's consent to swap a dpkg-owned one.
pub fn unit_problems(
    u: &UnitFacts,
    binary: &str,
    service: &str,
    replace_packaged: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let id = if u.id.is_empty() {
        service
    } else {
        u.id.as_str()
    };
    match u.load_state.as_str() {
        "loaded" => {}
        "masked" => {
            out.push(format!(
                "{id} is masked: once stopped it could not be started again; unmask it (systemctl unmask {service}) if it is meant to run, then run again"
            ));
            return out;
        }
        "not-found" | "" => {
            out.push(format!(
                "systemd has no unit {service} (etcd_service): set etcd_service to the unit that runs etcd, \
                 or etcd_service_manager=command with etcd_start_cmd, etcd_stop_cmd and etcd_status_cmd"
            ));
            return out;
        }
        other => {
            out.push(format!("{id} could not be loaded by systemd ({other}): check it with systemctl status {service}"));
            return out;
        }
    }
    match u.active_state.as_str() {
        "activating" | "deactivating" | "reloading" => out.push(format!(
            "{id} is {} ({}): it is starting, stopping or restarting in a loop; wait until it is active and healthy \
             (systemctl status {service}; journalctl -u {service} -n 50), then run again",
            u.active_state, u.sub_state
        )),
        "failed" => out.push(format!(
            "{id} has failed: start it and make it healthy first (systemctl status {service}; journalctl -u {service} -n 50)"
        )),
        _ => {}
    }
    if u.need_daemon_reload {
        out.push(format!(
            "{} changed on disk since systemd last loaded it: a start now would run the old definition and later ones the new; \
             review the change, run systemctl daemon-reload, then run again",
            u.fragment.as_deref().unwrap_or(id)
        ));
    }
    if let Some(exec) = &u.exec_path {
        if exec != binary {
            out.push(format!(
                "{id} starts {exec} (ExecStart), not etcd_binary {binary}: swapping {binary} would not change what the service runs; \
                 set etcd_binary to {exec} if that is etcd, or make the unit run {binary}"
            ));
        }
    }
    if let Some(exe) = &u.exe {
        if exe != binary && u.exec_path.as_deref() == Some(binary) {
            out.push(format!(
                "the running member's executable is {exe}, not etcd_binary {binary}: it was started from another file; \
                 restart it through {id} first, or set etcd_binary to {exe}"
            ));
        }
    }
    if let Some(pkg) = u.packaged.get(binary) {
        if !replace_packaged {
            out.push(format!(
                "{binary} belongs to the Debian package {pkg}: swapping it would last only until the next apt upgrade \
                 of {pkg}, which would put the packaged version back on every host at once. Upgrade through the package, \
                 or set etcdroll_replace_packaged_binary=true (e.g. -e etcdroll_replace_packaged_binary=true): etcdroll then \
                 swaps it and holds {pkg} (apt-mark hold) so apt leaves it alone"
            ));
        }
    }
    for (pid, other) in &u.sharing {
        let other = if other.is_empty() {
            "another process"
        } else {
            other.as_str()
        };
        out.push(format!(
            "{other} (pid {pid}) runs the same binary {binary}: swapping it would upgrade that service too, unplanned, \
             at its next restart (kubespray's etcd-events shares etcd's binary). etcdroll upgrades one service per binary: \
             give {other} a binary of its own, or stop it for the upgrade"
        ));
    }
    out
}
