//! The remote commands etcdroll runs on a member: probing it, controlling its
//! service, backing it up, staging and swapping binaries. Built here, run by the
//! engine through an SSH session; every value is quoted by `RemoteCommand`.

use crate::etcd::{EtcdVars, ServiceManager};
use crate::ssh::{quote, RemoteCommand};

use super::Version;

/// Start, stop, query and read the logs of the etcd service.
pub fn service_start(v: &EtcdVars) -> RemoteCommand {
    match v.service_manager {
        ServiceManager::Systemd => RemoteCommand::new("systemctl").arg("start").arg(&v.service),
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

/// One shell script that prints `key=value` lines with every fact the pre-flight needs.
/// It changes nothing on the host. `turn_file` is where restart scripts leave their
/// turn file.
pub fn probe(v: &EtcdVars, turn_file: &str) -> RemoteCommand {
    let status = service_status(v);
    let script = format!(
        r#"B={b}; C={c}; D={d}; K={k}; T={t}
[ -f "$T" ] && echo "unfinished_turn=$(head -n 1 "$T")"
v() {{ "$1" --version 2>/dev/null | sed -n 's/^etcd Version: *//p' | head -n 1; }}
{ctl_version}
echo "user=$(id -un)"
[ -x "$B" ] && echo "binary_version=$(v "$B")" && echo "binary_stat=$(stat -c '%a %u:%g' "$B")"
[ -x "$B.old" ] && echo "old_binary_version=$(v "$B.old")"
[ -e "$B.new" ] && echo "new_binary_present=1"
[ -x "$C" ] && echo "etcdctl_version=$(ctl_version "$C")"
if {status} >/dev/null 2>&1; then echo service_active=1; else echo service_active=0; fi
[ -d "$D" ] && echo data_dir_exists=1 && echo "data_kib=$(du -sk "$D" 2>/dev/null | cut -f1)"
[ -f "$D/member/snap/db" ] && echo has_v3_data=1
p="$K"; while [ ! -d "$p" ] && [ "$p" != / ] && [ -n "$p" ]; do p=$(dirname "$p"); done
echo "backup_free_kib=$(df -Pk "$p" 2>/dev/null | awk 'NR==2 {{print $4}}')"
{member_settings}
exit 0"#,
        b = quote(&v.binary),
        c = quote(&v.etcdctl_binary),
        d = quote(&v.data_dir),
        k = quote(&v.backup_dir),
        t = quote(turn_file),
        ctl_version = ETCDCTL_VERSION_FN,
        member_settings = MEMBER_SETTINGS_SH.replace(
            "@SYSTEMD_UNIT@",
            &match v.service_manager {
                ServiceManager::Systemd => quote(&v.service),
                ServiceManager::Command => "''".into(),
            }
        ),
    );
    RemoteCommand::script(&script)
}

/// The running member's process and the settings the guides' rules ask about,
/// read from `/proc/PID/cmdline` and `/proc/PID/environ` (what etcd really got,
/// whatever unit, env file or wrapper set it). The process is the unit's MainPID
/// under systemd, else the one whose executable is the binary (or its saved
/// `.old`, after a swap). Also `etcdutl check v2store` where it exists (3.5.32+).
const MEMBER_SETTINGS_SH: &str = r#"U=@SYSTEMD_UNIT@; pid=
[ -n "$U" ] && pid=$(systemctl show -p MainPID --value "$U" 2>/dev/null)
if [ -z "$pid" ] || [ "$pid" = 0 ]; then
  pid=; real=$(readlink -f "$B" 2>/dev/null)
  for p in /proc/[0-9]*; do
    e=$(readlink "$p/exe" 2>/dev/null) || continue
    case "$e" in "$real"|"$real.old"|"$real (deleted)") pid=${p#/proc/}; break;; esac
  done
fi
if [ -n "$pid" ]; then
  echo "pid=$pid"
  tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -a -E '^--?(enable-v2|experimental-)' | sed "s|^|setting=/proc/$pid/cmdline |"
  tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -a -E '^ETCD_(ENABLE_V2|EXPERIMENTAL_)' | sed "s|^|setting=/proc/$pid/environ |"
fi
E="$(dirname "$B")/etcdutl"
if [ -x "$E" ] && "$E" check v2store --help >/dev/null 2>&1; then
  if o=$("$E" check v2store --data-dir "$D" 2>&1); then echo v2store=clean; else echo "v2store=$(printf '%s' "$o" | tail -n 1)"; fi
fi"#;

/// `ctl_version PATH` prints an etcdctl's version on every release: 3.x answers
/// `version` only with `ETCDCTL_API=3` before 3.4 ("etcdctl version: 3.0.16"),
/// 2.3 has no `version` command but `--version` ("etcdctl version 2.3.7").
const ETCDCTL_VERSION_FN: &str = r#"ctl_version() {
  x=$(ETCDCTL_API=3 "$1" version 2>/dev/null | sed -n 's/^etcdctl version:* *//p' | sed -n 1p)
  [ -n "$x" ] || x=$("$1" --version 2>/dev/null | sed -n 's/^etcdctl version:* *//p' | sed -n 1p)
  printf '%s\n' "$x"
}"#;

/// Prints the version of the etcdctl at `path`, empty when it does not run.
pub fn etcdctl_version(path: &str) -> RemoteCommand {
    RemoteCommand::script(&format!(
        "{ETCDCTL_VERSION_FN}\nctl_version {}",
        quote(path)
    ))
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

/// Swap `etcd.new` in: the running binary becomes `etcd.old` (a hard link, so the
/// old name stays valid throughout), then an atomic rename puts the new one in place.
pub fn swap_in(binary: &str) -> RemoteCommand {
    let script = format!(
        "B={b}; N={n}; O={o}; [ -e \"$N\" ] || {{ echo \"staged binary $N is missing\" >&2; exit 1; }}; \
         rm -f \"$O\" && ln \"$B\" \"$O\" && mv -f \"$N\" \"$B\"",
        b = quote(binary),
        n = quote(&staged_path(binary)),
        o = quote(&saved_path(binary)),
    );
    RemoteCommand::script(&script)
}

/// Put `etcd.old` back in place (keeping the failed new one as `etcd.new` for a look).
pub fn swap_back(binary: &str) -> RemoteCommand {
    let script = format!(
        "B={b}; N={n}; O={o}; [ -e \"$O\" ] || {{ echo \"saved binary $O is missing\" >&2; exit 1; }}; \
         rm -f \"$N\" && ln \"$B\" \"$N\" && mv -f \"$O\" \"$B\"",
        b = quote(binary),
        n = quote(&staged_path(binary)),
        o = quote(&saved_path(binary)),
    );
    RemoteCommand::script(&script)
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

/// The offline backups, taken while the member is stopped: a copy of the data dir,
/// and for v2 data the guide's `etcdctl backup`.
pub fn offline_backup(v: &EtcdVars, dest_dir: &str, v2_data: bool) -> RemoteCommand {
    let mut c = RemoteCommand::new("mkdir")
        .arg("-p")
        .arg(dest_dir)
        .raw("&&")
        .arg("cp")
        .arg("-a")
        .arg(&v.data_dir)
        .arg(format!("{dest_dir}/data"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output_parses() {
        let out = "user=root\nbinary_version=3.4.23\nbinary_stat=755 0:0\nnew_binary_present=1\n\
                   etcdctl_version=3.4.23\nservice_active=1\ndata_dir_exists=1\ndata_kib=124\n\
                   has_v3_data=1\nbackup_free_kib=99999\n";
        let f = parse_probe(out);
        assert_eq!(f.binary_version.as_deref(), Some("3.4.23"));
        assert_eq!(f.binary_mode.as_deref(), Some("755"));
        assert_eq!(f.binary_owner.as_deref(), Some("0:0"));
        assert!(f.new_binary_present && f.service_active && f.has_v3_data && f.data_dir_exists);
        assert_eq!(f.data_kib, 124);
        assert_eq!(f.backup_free_kib, Some(99999));
        assert_eq!(f.old_binary_version, None);
    }

    #[test]
    fn final_health_reads_both_etcdctl_outputs() {
        let v2 = "member 8e9e05c52164694d is healthy: got healthy result from http://127.0.0.1:2379\n\
                  member 91bc3c398fb3c146 is healthy: got healthy result from http://10.0.1.2:2379\n\
                  cluster is healthy\n";
        assert!(cluster_health_v2_ok(v2));
        let one_down = "member 8e9e05c52164694d is healthy: got healthy result from http://127.0.0.1:2379\n\
                        member 91bc3c398fb3c146 is unreachable: [http://10.0.1.2:2379] are all unreachable\n\
                        cluster is healthy\n";
        assert!(
            !cluster_health_v2_ok(one_down),
            "exit 0 and 'cluster is healthy' do not count"
        );
        assert!(!cluster_health_v2_ok(
            "Error: client: etcd cluster is unavailable\n"
        ));
        assert!(endpoint_health_ok(
            "http://127.0.0.1:2379 is healthy: successfully committed proposal: took = 1.2ms\n"
        ));
        assert!(!endpoint_health_ok(
            "http://127.0.0.1:2379 is unhealthy: failed to commit proposal: context deadline exceeded\n"
        ));
        let plain = EtcdVars::default();
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(
            final_health(&plain, v("2.3.7"), v("3.0.0")).what,
            "etcdctl cluster-health (v2)"
        );
        assert_eq!(
            final_health(&plain, v("3.0.16"), v("2.3.0")).what,
            "etcdctl cluster-health (v2)"
        );
        assert_eq!(
            final_health(&plain, v("3.0.16"), v("3.0.0")).what,
            "etcdctl endpoint health"
        );
        let tls = EtcdVars {
            client_url: "https://127.0.0.1:2379".into(),
            ..EtcdVars::default()
        };
        assert_eq!(
            final_health(&tls, v("3.0.16"), v("3.0.0")).what,
            "etcdctl cluster-health (v2)"
        );
        assert_eq!(
            final_health(&tls, v("3.1.20"), v("3.1.0")).what,
            "etcdctl endpoint health"
        );
    }

    /// `ctl_version` reads every etcdctl's version, each its own way (2.3:
    /// `--version`; 3.0–3.3: `version` only with ETCDCTL_API=3). Real binaries
    /// from scripts/prepare; a version not installed is skipped loudly.
    #[test]
    fn etcdctl_versions_are_read_from_every_release() {
        let cache = concat!(env!("CARGO_MANIFEST_DIR"), "/target/etcd");
        let mut seen = 0;
        for v in ["2.3.7", "3.0.16", "3.3.27", "3.5.0"] {
            let ctl = format!("{cache}/{v}/etcdctl");
            if !std::path::Path::new(&ctl).exists() {
                eprintln!("!!!!! etcdctl {v} not installed (scripts/prepare): SKIPPED !!!!!");
                continue;
            }
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(etcdctl_version(&ctl).as_str())
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), v);
            seen += 1;
        }
        if std::path::Path::new("/usr/bin/etcdctl").exists() {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(etcdctl_version("/usr/bin/etcdctl").as_str())
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3.4.23");
            seen += 1;
        }
        let builds = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/etcd-builds");
        if std::env::var_os("ETCDROLL_REQUIRE_LAB").is_some()
            && std::path::Path::new(builds).is_dir()
        {
            assert_eq!(seen, 5, "scripts/test installs every one of them");
        }
    }

    /// The restart script never writes its turn file through a symlink: a link
    /// in its place is replaced by a file, and the link's target is untouched.
    #[test]
    fn the_turn_file_is_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me\n").unwrap();
        let turn = dir.path().join("run/etcdroll.turn");
        std::fs::create_dir_all(turn.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, &turn).unwrap();
        let started = dir.path().join("started");
        let vars = EtcdVars {
            service_manager: ServiceManager::Command,
            start_cmd: Some(format!("touch {}", quote(&started.display().to_string()))),
            stop_cmd: Some("true".into()),
            ..crate::etcd::EtcdVars::default()
        };
        let t = turn.display().to_string();
        let script = restart_with_swap(
            &vars,
            // While the member is stopped, the turn file is a file of its own.
            &[RemoteCommand::script(&format!(
                "test -f {t} && ! test -h {t} && grep -q run=abc {t}",
                t = quote(&t)
            ))],
            None,
            None,
            &Turn {
                file: &t,
                line: "run=abc",
            },
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script.as_str())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
        assert!(started.exists());
        assert!(!turn.exists(), "removed once started");
    }

    /// The probe script is plain sh: run it locally against a fake layout.
    #[test]
    fn probe_runs_in_sh_and_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("etcdroll-probe-{}", std::process::id()));
        let bin = dir.join("bin dir");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.join("data/member/snap")).unwrap();
        std::fs::write(dir.join("data/member/snap/db"), b"x").unwrap();
        let etcd = bin.join("etcd");
        std::fs::write(&etcd, "#!/bin/sh\necho 'etcd Version: 3.4.23'\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&etcd, std::fs::Permissions::from_mode(0o755)).unwrap();
        let vars = EtcdVars {
            binary: etcd.display().to_string(),
            etcdctl_binary: bin.join("etcdctl").display().to_string(),
            data_dir: dir.join("data").display().to_string(),
            backup_dir: dir.join("backups/not/yet").display().to_string(),
            service_manager: ServiceManager::Command,
            status_cmd: Some("true".into()),
            ..crate::etcd::EtcdVars::default()
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(probe(&vars, &dir.join("run/etcdroll.turn").display().to_string()).as_str())
            .output()
            .unwrap();
        let f = parse_probe(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(f.binary_version.as_deref(), Some("3.4.23"));
        assert!(f.has_v3_data && f.service_active && f.data_dir_exists);
        assert!(f.backup_free_kib.unwrap_or(0) > 0);
        assert!(!dir.join("backups").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Markers a restart script prints on stdout, one per line, as it goes.
pub mod marker {
    pub const STOPPING: &str = "@etcdroll stopping";
    pub const STOPPED: &str = "@etcdroll stopped";
    pub const BACKED_UP: &str = "@etcdroll backed_up";
    pub const SWAPPED: &str = "@etcdroll swapped";
    pub const STARTING: &str = "@etcdroll starting";
    pub const STARTED: &str = "@etcdroll started";
}

/// Exit codes of a restart script, telling where it stopped.
pub mod restart_exit {
    /// The online backup (snapshot) failed; nothing was stopped.
    pub const SNAPSHOT_FAILED: u32 = 9;
    /// The stop command failed; a start was attempted.
    pub const STOP_FAILED: u32 = 10;
    /// The offline backup failed; the old binary was started again.
    pub const BACKUP_FAILED: u32 = 11;
    /// The swap failed; the old binary was started again.
    pub const SWAP_FAILED: u32 = 12;
    /// The start command failed: the member may be down.
    pub const START_FAILED: u32 = 13;
}

/// Where a member's turn is recorded while its restart script runs.
pub struct Turn<'a> {
    /// The turn file (beside the run lock).
    pub file: &'a str,
    /// Its one line: which run stopped the member, read back by a later pre-flight.
    pub line: &'a str,
}

/// A member's whole turn as one remote script, so it costs one round trip: the
/// online backup (while it serves; a failure stops here with nothing stopped),
/// stop, the offline backup of the stopped data dir, swap the binaries, start.
/// Each step prints a marker; a failure before the swap starts the old binary again.
/// The turn file is written before the stop and removed once the start succeeded,
/// so a member found stopped with it was left so by this script (killed half-way):
/// the next run's pre-flight knows to start it again.
pub fn restart_with_swap(
    v: &EtcdVars,
    swaps: &[RemoteCommand],
    online_backup: Option<&RemoteCommand>,
    backup: Option<&RemoteCommand>,
    turn: &Turn,
) -> RemoteCommand {
    let start = service_start(v);
    let stop = service_stop(v);
    // SIGPIPE and SIGHUP are ignored so a dropped SSH connection never leaves the
    // script half-way with the member stopped.
    // `up` starts the service and, once it started, clears the turn file.
    let mut s = format!(
        "trap '' PIPE HUP; TURN={}; up() {{ ( {start} ) && rm -f \"$TURN\"; }}; ",
        quote(turn.file)
    );
    if let Some(b) = online_backup {
        s.push_str(&format!(
            "( {b} ) || exit {}; ",
            restart_exit::SNAPSHOT_FAILED
        ));
    }
    // Only a hint for a later run: a turn file that cannot be written stops nothing.
    s.push_str(&format!(
        // Removed first and created with noclobber (O_EXCL): never written through a symlink.
        "{{ mkdir -p \"$(dirname \"$TURN\")\" && rm -f \"$TURN\" && ( set -C; printf '%s\\n' {} > \"$TURN\" ); }} 2>/dev/null; ",
        quote(turn.line)
    ));
    s.push_str(&format!(
        "echo '{}'; ( {stop} ) || {{ up; exit {}; }}; echo '{}'; ",
        marker::STOPPING,
        restart_exit::STOP_FAILED,
        marker::STOPPED
    ));
    if let Some(b) = backup {
        s.push_str(&format!(
            "( {b} ) || {{ up; exit {}; }}; echo '{}'; ",
            restart_exit::BACKUP_FAILED,
            marker::BACKED_UP
        ));
    }
    for sw in swaps {
        s.push_str(&format!(
            "( {sw} ) || {{ up; exit {}; }}; ",
            restart_exit::SWAP_FAILED
        ));
    }
    if !swaps.is_empty() {
        s.push_str(&format!("echo '{}'; ", marker::SWAPPED));
    }
    s.push_str(&format!(
        "echo '{}'; up || exit {}; echo '{}'",
        marker::STARTING,
        restart_exit::START_FAILED,
        marker::STARTED
    ));
    RemoteCommand::script(&s)
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

/// True when `etcdctl endpoint health` output says healthy for every endpoint.
pub fn endpoint_health_ok(out: &str) -> bool {
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("healthy")).collect();
    !lines.is_empty()
        && lines
            .iter()
            .all(|l| l.contains(" is healthy") && !l.contains("unhealthy"))
}
