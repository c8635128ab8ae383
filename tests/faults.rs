//! Faults a user can cause, in the lab: Ctrl-C mid-upgrade, a full or read-only
//! backup filesystem; and the `backup` command.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// A tmpfs over a member's backup dir, mounted in the mount namespace its sshd
/// (and so every command etcdroll runs there) lives in; unmounted on drop.
struct Mount {
    sshd_pid: String,
    dir: String,
}

impl Mount {
    fn tmpfs(host: &LabHost, opts: &str) -> Mount {
        let sshd_pid = std::fs::read_to_string(host.dir.join("sshd.pid"))
            .unwrap()
            .trim()
            .to_string();
        let dir = host.backup_dir.display().to_string();
        let st = Command::new("nsenter")
            .args([
                "-t", &sshd_pid, "-m", "--", "mount", "-t", "tmpfs", "-o", opts, "tmpfs", &dir,
            ])
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {dir}");
        Mount { sshd_pid, dir }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("nsenter")
            .args(["-t", &self.sshd_pid, "-m", "--", "umount", "-l", &self.dir])
            .status();
    }
}

#[test]
fn a_backup_filesystem_too_small_is_refused_at_preflight() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let _m = Mount::tmpfs(&lab.members[2], "size=256k");
    let out = etcdroll(
        s.dir.path(),
        &[
            "check",
            "-i",
            &inv,
            "--binary",
            &etcd_bin("3.5.1", "etcd"),
            "--output",
            "plain",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("m2") && t.contains("not enough space for the backup"),
        "{t}"
    );
}

#[test]
fn a_backup_that_fails_at_run_time_leaves_the_member_running() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    // Big enough for the pre-flight's space check, but read-only.
    let victim = lab.members.iter().find(|m| m.name == "m0").unwrap();
    let _m = Mount::tmpfs(victim, "size=512m,ro");
    let pids: Vec<String> = lab.members.iter().map(etcd_pid).collect();
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &etcd_bin("3.5.1", "etcd"),
            "--yes",
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let evs = events(&out);
    let failed = of_kind(&evs, "host_failed");
    assert!(
        failed.iter().any(|e| e["host"] == "m0"
            && e["step"] == "backing_up"
            && e["error"]
                .as_str()
                .unwrap()
                .contains("the member was not stopped")),
        "{t}"
    );
    // m0 was never restarted.
    let m0 = lab.members.iter().position(|m| m.name == "m0").unwrap();
    assert_eq!(etcd_pid(&lab.members[m0]), pids[m0]);
    assert_eq!(installed_version(&lab.members[m0]), "3.4.23");
}

#[test]
fn ctrl_c_finishes_the_current_member_then_stops_and_a_rerun_completes() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let bin = etcd_bin("3.5.1", "etcd");
    let mut child = etcdroll_cmd(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--yes", "--output", "json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut interrupted_host = String::new();
    let mut evs: Vec<Value> = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if interrupted_host.is_empty() && v["event"] == "step" && v["step"] == "stopping" {
            interrupted_host = v["host"].as_str().unwrap().to_string();
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
        }
        evs.push(v);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{evs:#?}");
    assert!(!interrupted_host.is_empty());
    // The member being restarted was brought up and finished; no other was stopped.
    let done: Vec<&str> = of_kind(&evs, "host_done")
        .iter()
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert_eq!(done, vec![interrupted_host.as_str()], "{evs:#?}");
    let stopped: Vec<&str> = of_kind(&evs, "step")
        .iter()
        .filter(|e| e["step"] == "stopping")
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert_eq!(stopped, vec![interrupted_host.as_str()]);
    let last = evs.last().unwrap();
    assert_eq!(last["event"], "run_finished");
    assert!(
        last["message"].as_str().unwrap().contains("interrupted"),
        "{last}"
    );

    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--yes", "--output", "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for m in &lab.members {
        assert_eq!(installed_version(m), "3.5.1");
    }
}

#[test]
fn backup_takes_a_snapshot_of_every_member() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    lab.etcdctl(&lab.members[0], &["put", "/b/k", "v"]).unwrap();
    let out = etcdroll(s.dir.path(), &["backup", "-i", &inv, "--output", "json"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    let done = of_kind(&evs, "host_done");
    assert_eq!(done.len(), 3, "{t}");
    for d in done {
        let snap = d["backup"].as_str().unwrap();
        assert!(snap.ends_with("/snapshot.db"), "{snap}");
        let meta = std::fs::metadata(snap).unwrap();
        assert!(meta.len() > 0);
    }
}

#[test]
fn a_second_run_fails_at_once_naming_the_first_and_a_stale_lock_can_be_broken() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let bin = etcd_bin("3.5.1", "etcd");
    let mut first = etcdroll_cmd(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--yes", "--output", "json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "step" && v["step"] == "stopping" {
            break;
        }
    }
    let t0 = std::time::Instant::now();
    let second = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--yes", "--output", "plain",
        ],
    );
    let t = text(&second);
    assert_eq!(second.status.code(), Some(3), "{t}");
    assert!(t.contains("locked by another etcdroll: run "), "{t}");
    assert!(
        t.contains("--binary"),
        "the holder's command line is shown: {t}"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(10),
        "fails at once"
    );
    for _ in lines {}
    assert_eq!(first.wait().unwrap().code(), Some(0));
    let again = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--yes", "--output", "plain",
        ],
    );
    let t = text(&again);
    assert_eq!(again.status.code(), Some(0), "{t}");
    assert!(t.contains("nothing to do"), "{t}");

    // A lock left by a run that died: refused, then broken on request.
    let lock_dir = lab.members[1].dir.join("run");
    std::fs::create_dir_all(&lock_dir).unwrap();
    std::fs::write(
        lock_dir.join("etcdroll.lock"),
        "run_id=deadbeef\noperator=alice\ncontroller=laptop\nstarted=2026-01-01T00:00:00Z\ncommand=etcdroll upgrade\n",
    )
    .unwrap();
    let out = etcdroll(s.dir.path(), &["backup", "-i", &inv, "--output", "plain"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("run deadbeef by alice on laptop"), "{t}");
    let out = etcdroll(
        s.dir.path(),
        &["backup", "-i", &inv, "--break-lock", "--output", "plain"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("removed the lock of run deadbeef"), "{t}");
    assert!(
        !lock_dir.join("etcdroll.lock").exists(),
        "our own lock is released too"
    );
}
