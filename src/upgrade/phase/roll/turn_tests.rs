//! `restart.sh` run locally under `sh`, `dash` and `bash` with fake start and
//! stop commands: each step's failure ends in its exit code and leaves the old
//! binary running (or, for a failed start, the turn file in place).

use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::etcd::{EtcdVars, ServiceManager};

const SHELLS: &[&str] = &["sh", "dash", "bash"];

/// A fake member: `bin/etcd` (the old one, "old"), `bin/etcd.new` ("new"), a
/// start command that copies the binary in place to `running`, a stop command
/// that removes it. `fail` names the command to make fail.
struct Fake {
    dir: PathBuf,
}

impl Fake {
    fn new(shell: &str, case: &str) -> Fake {
        let dir = std::env::temp_dir().join(format!(
            "etcdroll-restart-{}-{shell}-{case}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin dir")).unwrap();
        std::fs::write(dir.join("bin dir/etcd"), "old\n").unwrap();
        std::fs::write(dir.join("bin dir/etcd.new"), "new\n").unwrap();
        std::fs::write(dir.join("bin dir/etcdctl"), "old ctl\n").unwrap();
        std::fs::write(dir.join("running"), "old\n").unwrap();
        std::fs::write(dir.join("data"), "the data dir\n").unwrap();
        Fake { dir }
    }

    fn path(&self, p: &str) -> String {
        self.dir.join(p).display().to_string()
    }

    fn vars(&self, start_fails: bool, stop_fails: bool) -> EtcdVars {
        let running = crate::ssh::quote(&self.path("running"));
        let bin = crate::ssh::quote(&self.path("bin dir/etcd"));
        EtcdVars {
            binary: self.path("bin dir/etcd"),
            etcdctl_binary: self.path("bin dir/etcdctl"),
            service_manager: ServiceManager::Command,
            start_cmd: Some(if start_fails {
                "false".into()
            } else {
                format!("cp {bin} {running}")
            }),
            stop_cmd: Some(if stop_fails {
                "false".into()
            } else {
                format!("rm -f {running}")
            }),
            ..EtcdVars::default()
        }
    }

    fn running(&self) -> String {
        std::fs::read_to_string(self.dir.join("running")).unwrap_or_else(|_| "(stopped)".into())
    }

    fn turn_file(&self) -> PathBuf {
        self.dir.join("lock/turn")
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    steps: Vec<TurnStep>,
    stderr: String,
}

fn run(shell: &str, restart: &Restart) -> Ran {
    // The command as etcdroll sends it is `sh -c SCRIPT NAME ARGS…`; run the same
    // words with the shell under test in place of `sh`.
    let line = restart.command().to_string();
    let line = line.strip_prefix("sh ").expect("starts with sh");
    let out = Command::new(shell)
        .arg("-c")
        .arg(format!("exec {shell} {line}"))
        .output()
        .unwrap();
    let steps = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(TurnStep::parse)
        .collect();
    Ran {
        code: out.status.code(),
        steps,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn restart<'v>(fake: &Fake, vars: &'v EtcdVars, swap: Swap) -> Restart<'v> {
    Restart {
        vars,
        turn_file: fake.turn_file().display().to_string(),
        turn_line: "run abc (upgrade to 3.5.0)".into(),
        snapshot: Some(RemoteCommand::new("true")),
        offline: Some(
            RemoteCommand::new("cp")
                .arg(fake.path("data"))
                .arg(fake.path("copy")),
        ),
        swap,
        binaries: vec![vars.binary.clone()],
        start_limit: std::time::Duration::from_secs(5),
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn a_whole_turn_swaps_starts_and_clears_the_turn_file() {
    for shell in SHELLS {
        let fake = Fake::new(shell, "ok");
        let vars = fake.vars(false, false);
        let ran = run(shell, &restart(&fake, &vars, Swap::In));
        assert_eq!(ran.code, Some(0), "{shell}: {ran:?}");
        use TurnStep::*;
        assert_eq!(
            ran.steps,
            [Stopping, Stopped, BackedUp, Swapped, Starting, Started],
            "{shell}"
        );
        assert_eq!(fake.running(), "new\n", "{shell}: the new binary runs");
        assert_eq!(read(&fake.dir.join("bin dir/etcd.old")), "old\n", "{shell}");
        assert_eq!(
            read(&fake.dir.join("copy")),
            "the data dir\n",
            "{shell}: backed up while stopped"
        );
        assert!(
            !fake.turn_file().exists(),
            "{shell}: turn file removed once started"
        );
    }
}

#[test]
fn a_failed_snapshot_stops_nothing() {
    for shell in SHELLS {
        let fake = Fake::new(shell, "snap");
        let vars = fake.vars(false, false);
        let mut r = restart(&fake, &vars, Swap::In);
        r.snapshot = Some(RemoteCommand::new("false"));
        let ran = run(shell, &r);
        assert_eq!(
            TurnExit::from_code(ran.code.unwrap() as u32),
            TurnExit::SnapshotFailed
        );
        assert!(ran.steps.is_empty(), "{shell}: {:?}", ran.steps);
        assert_eq!(fake.running(), "old\n", "{shell}");
        assert!(!fake.turn_file().exists(), "{shell}");
    }
}

#[test]
fn a_failed_stop_backup_or_swap_starts_the_old_binary_again() {
    for shell in SHELLS {
        // The stop command fails: a start is attempted, the old binary runs.
        let fake = Fake::new(shell, "stop");
        let vars = fake.vars(false, true);
        let ran = run(shell, &restart(&fake, &vars, Swap::In));
        let exit = TurnExit::from_code(ran.code.unwrap() as u32);
        assert_eq!(exit, TurnExit::StopFailed, "{shell}");
        assert!(exit.old_binary_restarted());
        assert_eq!(fake.running(), "old\n", "{shell}");

        // The offline backup fails (a full disk): the old binary is started again.
        let fake = Fake::new(shell, "backup");
        let vars = fake.vars(false, false);
        let mut r = restart(&fake, &vars, Swap::In);
        r.offline = Some(RemoteCommand::new("false"));
        let ran = run(shell, &r);
        assert_eq!(
            TurnExit::from_code(ran.code.unwrap() as u32),
            TurnExit::BackupFailed
        );
        assert_eq!(fake.running(), "old\n", "{shell}");
        assert!(!fake.turn_file().exists(), "{shell}: started, so cleared");

        // The second swap (etcdctl, with no etcdctl.new) fails: the first is
        // undone, so the old etcd starts again, and etcd.new is still there.
        let fake = Fake::new(shell, "swap");
        let vars = fake.vars(false, false);
        let mut r = restart(&fake, &vars, Swap::In);
        r.binaries.push(vars.etcdctl_binary.clone());
        let ran = run(shell, &r);
        assert_eq!(
            TurnExit::from_code(ran.code.unwrap() as u32),
            TurnExit::SwapFailed
        );
        assert_eq!(fake.running(), "old\n", "{shell}: the old binary runs");
        assert_eq!(read(&fake.dir.join("bin dir/etcd")), "old\n", "{shell}");
        assert_eq!(read(&fake.dir.join("bin dir/etcd.new")), "new\n", "{shell}");
        assert!(!ran.steps.contains(&TurnStep::Swapped), "{shell}");
        assert!(
            ran.stderr.contains("etcdctl.new is missing"),
            "{shell}: {ran:?}"
        );
    }
}

#[test]
fn a_failed_start_leaves_the_turn_file_for_the_next_run() {
    for shell in SHELLS {
        let fake = Fake::new(shell, "start");
        let vars = fake.vars(true, false);
        let ran = run(shell, &restart(&fake, &vars, Swap::In));
        assert_eq!(
            TurnExit::from_code(ran.code.unwrap() as u32),
            TurnExit::StartFailed
        );
        assert_eq!(fake.running(), "(stopped)", "{shell}");
        assert_eq!(
            read(&fake.turn_file()),
            "run abc (upgrade to 3.5.0)\n",
            "{shell}: the next pre-flight learns who stopped it"
        );
    }
}

#[test]
fn swapping_back_restores_the_saved_binary() {
    for shell in SHELLS {
        let fake = Fake::new(shell, "back");
        std::fs::write(fake.dir.join("bin dir/etcd"), "new\n").unwrap();
        std::fs::write(fake.dir.join("bin dir/etcd.old"), "old\n").unwrap();
        std::fs::remove_file(fake.dir.join("bin dir/etcd.new")).unwrap();
        std::fs::write(fake.dir.join("running"), "new\n").unwrap();
        let vars = fake.vars(false, false);
        let mut r = restart(&fake, &vars, Swap::Back);
        r.snapshot = None;
        r.offline = None;
        let ran = run(shell, &r);
        assert_eq!(ran.code, Some(0), "{shell}");
        assert_eq!(fake.running(), "old\n", "{shell}");
        assert_eq!(
            read(&fake.dir.join("bin dir/etcd.new")),
            "new\n",
            "{shell}: kept for a look"
        );
    }
}

#[test]
fn the_turn_file_is_never_written_through_a_symlink() {
    for shell in SHELLS {
        let fake = Fake::new(shell, "symlink");
        let victim = fake.dir.join("victim");
        std::fs::write(&victim, "keep me\n").unwrap();
        std::fs::create_dir_all(fake.dir.join("lock")).unwrap();
        std::os::unix::fs::symlink(&victim, fake.turn_file()).unwrap();
        let mut vars = fake.vars(false, false);
        // While the member is stopped, the turn file is a file of its own.
        let t = crate::ssh::quote(&fake.turn_file().display().to_string());
        vars.stop_cmd = Some(format!(
            "test -f {t} && ! test -h {t} && grep -q 'run abc' {t} && {}",
            vars.stop_cmd.clone().unwrap()
        ));
        let ran = run(shell, &restart(&fake, &vars, Swap::In));
        assert_eq!(ran.code, Some(0), "{shell}");
        assert_eq!(read(&victim), "keep me\n", "{shell}");
        assert!(!fake.turn_file().exists(), "{shell}: removed once started");
    }
}

#[test]
fn markers_and_exit_codes_decode() {
    assert_eq!(
        TurnStep::parse("@etcdroll stopping\n"),
        Some(TurnStep::Stopping)
    );
    assert_eq!(
        TurnStep::parse("@etcdroll started"),
        Some(TurnStep::Started)
    );
    assert_eq!(TurnStep::parse("etcd says @etcdroll stopping"), None);
    assert_eq!(TurnExit::from_code(12), TurnExit::SwapFailed);
    assert_eq!(TurnExit::from_code(1), TurnExit::Other(1));
    assert!(!TurnExit::StartFailed.old_binary_restarted());
}
