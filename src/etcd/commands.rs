//! The remote commands etcdroll runs on a member: probing it, controlling its
//! service, backing it up, staging and swapping binaries. Built here, run by the
//! engine through an SSH session; every value is quoted by `RemoteCommand`.

use crate::etcd::{EtcdVars, ServiceManager};
use crate::ssh::{quote, RemoteCommand};

use super::Version;

/// Start, stop, query and read the logs of the etcd service. A start waits at
/// most `limit`: under systemd a `Type=notify` unit's `systemctl start` blocks
/// until etcd says it is ready, and with `Restart=always` a new binary that
/// crashes could keep it waiting for as long as `TimeoutStartSec`. `timeout`
/// exits 124 then, and the unit's job is left to the rollback's stop.
pub fn service_start(v: &EtcdVars, limit: std::time::Duration) -> RemoteCommand {
    match v.service_manager {
        ServiceManager::Systemd => RemoteCommand::new("timeout")
            .arg(limit.as_secs().max(1).to_string())
            .arg("systemctl")
            .arg("start")
            .arg(&v.service),
        ServiceManager::Command => RemoteCommand::script(v.start_cmd.as_deref().unwrap_or("false")),
    }
}

pub fn service_stop(v: &EtcdVars) -> RemoteCommand {
    match v.service_manager {
        ServiceManager::Systemd => RemoteCommand::new("systemctl").arg("stop").arg(&v.service),
        ServiceManager::Command => RemoteCommand::script(v.stop_cmd.as_deref().unwrap_or("false")),
    }
}

/// Exit 0 when the service runs.
pub fn service_status(v: &EtcdVars) -> RemoteCommand {
    match v.service_manager {
        ServiceManager::Systemd => RemoteCommand::new("systemctl")
            .arg("is-active")
            .arg("--quiet")
            .arg(&v.service),
        ServiceManager::Command => {
            RemoteCommand::script(v.status_cmd.as_deref().unwrap_or("false"))
        }
    }
}

/// The service's last log lines, where the service manager can show them.
pub fn service_logs(v: &EtcdVars, lines: u32) -> Option<RemoteCommand> {
    match v.service_manager {
        ServiceManager::Systemd => Some(
            RemoteCommand::new("journalctl")
                .arg("-u")
                .arg(&v.service)
                .arg("-n")
                .arg(lines.to_string())
                .arg("--no-pager")
                .arg("-o")
                .arg("cat"),
        ),
        ServiceManager::Command => v
            .logs_cmd
            .as_deref()
            .map(|c| RemoteCommand::script(&format!("{c} 2>&1 | tail -n {lines}"))),
    }
}

/// `etcdctl` with the TLS flags and endpoint of this member, API version chosen.
fn etcdctl(v: &EtcdVars, api: u8, etcdctl_path: &str) -> RemoteCommand {
    let mut c = RemoteCommand::script(&format!("ETCDCTL_API={api}")).arg(etcdctl_path);
    let (ep_flag, ca, cert, key) = if api == 2 {
        ("--endpoints", "--ca-file", "--cert-file", "--key-file")
    } else {
        ("--endpoints", "--cacert", "--cert", "--key")
    };
    c = c.arg(ep_flag).arg(&v.client_url);
    if let Some(p) = &v.cacert {
        c = c.arg(ca).arg(p);
    }
    if let Some(p) = &v.cert {
        c = c.arg(cert).arg(p);
    }
    if let Some(p) = &v.key {
        c = c.arg(key).arg(p);
    }
    c
}

/// What the pre-flight learns about a host in one remote command.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostFacts {
    /// `etcd --version` of the installed binary, if it runs.
    pub binary_version: Option<String>,
    pub binary_mode: Option<String>,
    pub binary_owner: Option<String>,
    /// The saved binary of an earlier upgrade, if any, and its version.
    pub old_binary_version: Option<String>,
    /// A staged binary left by an interrupted run.
    pub new_binary_present: bool,
    pub etcdctl_version: Option<String>,
    pub service_active: bool,
    /// `member/snap/db` exists: the data dir holds v3 data.
    pub has_v3_data: bool,
    pub data_dir_exists: bool,
    pub data_kib: u64,
    pub backup_free_kib: Option<u64>,
    pub user: String,
    /// The turn file of a restart script that did not finish (see
    /// `restart_with_swap`): the run that stopped this member, if it never started it.
    pub unfinished_turn: Option<String>,
    /// The running etcd's process, found through the service or its binary.
    pub pid: Option<u32>,
    /// Its settings the guides' rules ask about (`--enable-v2`, `--experimental-*`
    /// and their `ETCD_*` forms), with where each was read.
    pub settings: Vec<(String, String)>,
    /// `etcdutl check v2store` (3.5.32+, where an etcdutl sits beside etcd):
    /// "clean", or what it said of custom v2 data.
    pub v2store: Option<String>,
}

/// The probe and its helper, kept as scripts (`probe.sh`, `ctl-version.sh`).
const PROBE_SH: &str = include_str!("probe.sh");
const CTL_VERSION_SH: &str = include_str!("ctl-version.sh");

/// One shell script that prints `key=value` lines with every fact the pre-flight
/// needs. It changes nothing on the host. `turn_file` is where restart scripts
/// leave their turn file.
pub fn probe(v: &EtcdVars, turn_file: &str) -> RemoteCommand {
    let unit = match v.service_manager {
        ServiceManager::Systemd => v.service.as_str(),
        ServiceManager::Command => "",
    };
    RemoteCommand::new("sh")
        .arg("-c")
        .arg(format!("{CTL_VERSION_SH}\n{PROBE_SH}"))
        .arg("etcdroll-probe")
        .arg(&v.binary)
        .arg(&v.etcdctl_binary)
        .arg(&v.data_dir)
        .arg(&v.backup_dir)
        .arg(turn_file)
        .arg(service_status(v).as_str())
        .arg(unit)
}

/// Prints the version of the etcdctl at `path`, empty when it does not run.
pub fn etcdctl_version(path: &str) -> RemoteCommand {
    RemoteCommand::new("sh")
        .arg("-c")
        .arg(format!("{CTL_VERSION_SH}\nctl_version \"$1\""))
        .arg("etcdroll-ctl-version")
        .arg(path)
}

pub fn parse_probe(out: &str) -> HostFacts {
    let mut f = HostFacts::default();
    for line in out.lines() {
        let Some((key, val)) = line.split_once('=') else {
            continue;
        };
        let val = val.trim();
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        match key {
            "user" => f.user = val.to_string(),
            "binary_version" => f.binary_version = some(val),
            "binary_stat" => {
                let mut it = val.split_whitespace();
                f.binary_mode = it.next().map(str::to_string);
                f.binary_owner = it.next().map(str::to_string);
            }
            "old_binary_version" => f.old_binary_version = some(val),
            "new_binary_present" => f.new_binary_present = val == "1",
            "etcdctl_version" => f.etcdctl_version = some(val),
            "service_active" => f.service_active = val == "1",
            "data_dir_exists" => f.data_dir_exists = val == "1",
            "data_kib" => f.data_kib = val.parse().unwrap_or(0),
            "has_v3_data" => f.has_v3_data = val == "1",
            "backup_free_kib" => f.backup_free_kib = val.parse().ok(),
            "unfinished_turn" => f.unfinished_turn = some(val),
            "pid" => f.pid = val.parse().ok(),
            "setting" => {
                if let Some((source, text)) = val.split_once(' ') {
                    f.settings.push((text.to_string(), source.to_string()));
                }
            }
            "v2store" => f.v2store = some(val),
            _ => {}
        }
    }
    f
}

/// Paths of the staged and saved binaries beside the installed one.
pub fn staged_path(binary: &str) -> String {
    format!("{binary}.new")
}
pub fn saved_path(binary: &str) -> String {
    format!("{binary}.old")
}
/// A binary staged up front for a later hop of a path.
pub fn staged_path_for(binary: &str, version: Version) -> String {
    format!("{binary}.new-{version}")
}

/// At the start of a path's later hop: its binary, staged as `NAME.new-X.Y.Z`
/// when the path began, becomes `NAME.new`.
pub fn activate_staged(binary: &str, version: Version) -> RemoteCommand {
    RemoteCommand::new("mv")
        .arg("-f")
        .arg(staged_path_for(binary, version))
        .arg(staged_path(binary))
}

/// After an upload to `tmp`: give it the installed binary's mode and owner and move
/// it to `staged` (`NAME.new`; the caller then runs it once to prove it works on
/// this host).
pub fn stage_installed(tmp: &str, binary: &str, staged: &str) -> RemoteCommand {
    let script = format!(
        "T={t}; B={b}; N={n}; chmod --reference=\"$B\" \"$T\" && chown --reference=\"$B\" \"$T\" && mv -f \"$T\" \"$N\"",
        t = quote(tmp),
        b = quote(binary),
        n = quote(staged),
    );
    RemoteCommand::script(&script)
}

/// A private temporary name beside the target, so the final rename stays on one
/// filesystem. Each attempt gets its own: after a dropped connection, the writer of
/// the previous attempt may still be running on the host.
pub fn upload_tmp_path(binary: &str, run_id: &str, attempt: u32) -> String {
    format!("{binary}.etcdroll-{run_id}-{attempt}.tmp")
}

/// Remove the temporary files of every upload attempt of this run.
pub fn remove_upload_tmps(binary: &str, run_id: &str) -> RemoteCommand {
    // run_id is hex, so the glob part needs no quoting.
    let run_id: String = run_id.chars().filter(char::is_ascii_alphanumeric).collect();
    RemoteCommand::script(&format!(
        "rm -f -- {}.etcdroll-{run_id}-*.tmp",
        quote(binary)
    ))
}

/// Hold a Debian package, so apt leaves the binary etcdroll swapped alone.
pub fn hold_package(package: &str) -> RemoteCommand {
    RemoteCommand::new("apt-mark")
        .arg("hold")
        .arg(package)
        .raw(">/dev/null")
}

/// Remove a staged binary that will not be used (`staged`: its staged name).
pub fn unstage(staged: &str) -> RemoteCommand {
    RemoteCommand::new("rm").arg("-f").arg(staged)
}

/// The online v3 backup, taken while the member runs: `etcdctl snapshot save`.
pub fn snapshot_save(v: &EtcdVars, dest_dir: &str) -> RemoteCommand {
    let file = format!("{dest_dir}/snapshot.db");
    RemoteCommand::new("mkdir")
        .arg("-p")
        .arg(dest_dir)
        .raw("&&")
        .raw(
            etcdctl(v, 3, &v.etcdctl_binary)
                .arg("snapshot")
                .arg("save")
                .arg(&file)
                .as_str(),
        )
        .raw(">/dev/null")
}

/// The data dir backup's script (see its opening comment): links what etcd never
/// rewrites, so a member's downtime does not grow with its data.
pub const DATA_BACKUP_SH: &str = include_str!("data-backup.sh");

fn data_backup(action: &str, v: &EtcdVars, dest_dir: &str) -> RemoteCommand {
    RemoteCommand::new("sh")
        .arg("-c")
        .arg(DATA_BACKUP_SH)
        .arg("etcdroll-data-backup")
        .arg(action)
        .arg(&v.data_dir)
        .arg(dest_dir)
}

/// The online backup of a member's turn: the snapshot, with what the offline
/// backup needs to use it as the data dir copy's db (the .snap files before it,
/// and the db without the snapshot's checksum).
pub fn turn_snapshot(v: &EtcdVars, dest_dir: &str) -> RemoteCommand {
    data_backup("before", v, dest_dir)
        .raw("&&")
        .raw(snapshot_save(v, dest_dir).as_str())
        .raw("&&")
        .raw(data_backup("prepare", v, dest_dir).as_str())
}

/// The offline backups, taken while the member is stopped: the data dir (linked
/// and copied as `data-backup.sh` says), and for v2 data the guide's `etcdctl backup`.
pub fn offline_backup(v: &EtcdVars, dest_dir: &str, v2_data: bool) -> RemoteCommand {
    let mut c = data_backup("offline", v, dest_dir);
    if v2_data {
        c = c
            .raw("&& ETCDCTL_API=2")
            .arg(&v.etcdctl_binary)
            .arg("backup")
            .arg("--data-dir")
            .arg(&v.data_dir)
            .arg("--backup-dir")
            .arg(format!("{dest_dir}/v2"))
            .raw(">/dev/null");
    }
    c
}

/// Can this etcdctl run the guide's v2 `etcdctl backup` of a data dir written by
/// etcd `server`? 3.5 dropped the command, and a 2.x etcdctl cannot read the WAL
/// a 3.x server wrote (it panics in wal.decode, seen in the lab).
pub fn etcdctl_has_v2_backup(etcdctl: Version, server: Version) -> bool {
    etcdctl < Version::new(3, 5, 0) && etcdctl.major >= server.major
}

/// `etcdctl endpoint health` for this member with the v3 API; its output is parsed,
/// never its exit code (3.0 exits 0 while printing "unhealthy").
pub fn endpoint_health(v: &EtcdVars) -> RemoteCommand {
    etcdctl(v, 3, &v.etcdctl_binary)
        .arg("endpoint")
        .arg("health")
        .raw("2>&1")
}

/// The v2 `etcdctl cluster-health` through this member (2.3's etcdctl has no
/// `endpoint health`); parsed, never its exit code (it exits 0 when any one member
/// is healthy).
pub fn cluster_health_v2(v: &EtcdVars) -> RemoteCommand {
    etcdctl(v, 2, &v.etcdctl_binary)
        .arg("cluster-health")
        .raw("2>&1")
}

/// True when every member line of `etcdctl cluster-health` says healthy.
pub fn cluster_health_v2_ok(out: &str) -> bool {
    let members: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("member "))
        .collect();
    !members.is_empty() && members.iter().all(|l| l.contains(" is healthy"))
}

/// The final etcdctl check that means the same on every version: "this member,
/// asked by the etcdctl on its host, is healthy". `endpoint health` (v3) where the
/// etcdctl and the cluster have v3, else the v2 `cluster-health` (every member
/// healthy), so a 2.3 etcdctl or a cluster still on 2.3 is checked too. A TLS
/// cluster on etcd < 3.1 built with a modern Go cannot serve v3 over TLS (the
/// upgrade guide's known issue), so it is checked through v2 as well.
pub fn final_health(v: &EtcdVars, etcdctl: Version, cluster: Version) -> FinalHealth {
    let v3 = etcdctl >= Version::new(3, 0, 0)
        && cluster >= Version::new(3, 0, 0)
        && !(v.client_url.starts_with("https://") && cluster < Version::new(3, 1, 0));
    if v3 {
        FinalHealth {
            command: endpoint_health(v),
            ok: endpoint_health_ok,
            what: "etcdctl endpoint health",
        }
    } else {
        FinalHealth {
            command: cluster_health_v2(v),
            ok: cluster_health_v2_ok,
            what: "etcdctl cluster-health (v2)",
        }
    }
}

/// Which etcdctl check to run, and how to read its output.
pub struct FinalHealth {
    pub command: RemoteCommand,
    pub ok: fn(&str) -> bool,
    pub what: &'static str,
}

/// What may explain a failed final health check, from the guide and the lab
/// ("" when nothing known): the guide's TLS known issue before 3.1, and a 3.5
/// member that refuses v3 as "not capable".
pub fn final_health_hints(v: &EtcdVars, cluster: Version, etcdctl_output: &str) -> String {
    let mut hints = known_tls_issue(&v.client_url, cluster).to_string();
    if etcdctl_output.contains("not capable") {
        // Seen in the lab: a 3.5 member replaying a WAL that still begins in
        // the 2.3 era keeps 2.3's capabilities.
        hints.push_str(
            " (the member refuses v3 as \"not capable\": etcd 3.5 keeps the API capabilities of the \
             first cluster version in its WAL, so a cluster migrated from 2.3 that has taken no raft \
             snapshot since (fewer writes than --snapshot-count) serves no v3 on 3.5 — let it take a \
             snapshot on 3.4, e.g. restart it with a small --snapshot-count, then upgrade)",
        );
    }
    hints
}

/// etcd < 3.1 built with Go > 1.7 breaks the v3 API over TLS: the guide's known
/// issue, named in errors where it may be the cause.
pub fn known_tls_issue(client_url: &str, version: Version) -> &'static str {
    if client_url.starts_with("https://") && version < Version::new(3, 1, 0) {
        " (known issue: etcd before 3.1 built with Go newer than 1.7 cannot serve the v3 API over TLS; \
         use an official release build, or check through v2 and /health)"
    } else {
        ""
    }
}

/// True when `etcdctl endpoint health` output says healthy for every endpoint.
pub fn endpoint_health_ok(out: &str) -> bool {
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("healthy")).collect();
    !lines.is_empty()
        && lines
            .iter()
            .all(|l| l.contains(" is healthy") && !l.contains("unhealthy"))
}

#[cfg(test)]
#[path = "commands_tests.rs"]
mod tests;
