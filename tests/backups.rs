//! The data dir backup of a member's turn (`src/etcd/data-backup.sh`) against real
//! etcd processes on loopback: each kind of backup it makes — hard links with the
//! online snapshot as the db, a whole copy when a raft snapshot came after the
//! online one, hard links of a 2.3 data dir — is started by the old etcd
//! (`--force-new-cluster`) and holds every key written before the stop,
//! including those written after the online snapshot.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use common::*;

const DATA_BACKUP_SH: &str = include_str!("../src/etcd/data-backup.sh");

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Two free-looking loopback ports (client, peer) of this test process's own.
fn ports() -> (u16, u16) {
    let base = 22000 + (std::process::id() % 3000) as u16 * 10;
    let n = NEXT_PORT.fetch_add(2, Ordering::SeqCst);
    (base + n, base + n + 1)
}

struct Etcd {
    child: Child,
    client: String,
    etcdctl: String,
    api: &'static str,
}

impl Etcd {
    fn start(version: &str, data: &Path, extra: &[&str]) -> Etcd {
        let (c, p) = ports();
        let client = format!("http://127.0.0.1:{c}");
        let peer = format!("http://127.0.0.1:{p}");
        let child = Command::new(etcd_bin(version, "etcd"))
            .arg("--data-dir")
            .arg(data)
            .args(["--name", "m0"])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("m0={peer}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        let e = Etcd {
            child,
            client,
            etcdctl: etcd_bin(version, "etcdctl"),
            api: if version.starts_with('2') { "2" } else { "3" },
        };
        for _ in 0..200 {
            if e.ctl(&["get", "/probe"]).is_some() || e.ctl(&["ls", "/"]).is_some() {
                return e;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd {version} on {} did not answer", data.display());
    }

    fn ctl(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(&self.etcdctl)
            .args(["--endpoints", &self.client])
            .args(args)
            .env("ETCDCTL_API", self.api)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }

    fn put(&self, key: &str, value: &str) {
        let args: &[&str] = if self.api == "2" {
            &["set", key, value]
        } else {
            &["put", key, value]
        };
        assert!(self.ctl(args).is_some(), "put {key}");
    }

    fn keys(&self, prefix: &str) -> usize {
        if self.api == "2" {
            let out = self.ctl(&["ls", prefix]).unwrap_or_default();
            return out.lines().filter(|l| !l.is_empty()).count();
        }
        let out = self
            .ctl(&["get", "--prefix", prefix, "--keys-only"])
            .unwrap_or_default();
        out.lines().filter(|l| !l.is_empty()).count()
    }

    /// Stops it as a service manager does (SIGTERM), and waits.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn data_backup(action: &str, data: &Path, dest: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(DATA_BACKUP_SH)
        .arg("etcdroll-data-backup")
        .arg(action)
        .arg(data)
        .arg(dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "data-backup.sh {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn snapshot_save(e: &Etcd, dest: &Path) {
    let file = dest.join("snapshot.db");
    let out = e.ctl(&["snapshot", "save", file.to_str().unwrap()]);
    assert!(out.is_some(), "snapshot save");
}

/// A restore as the README tells it: the backup's data dir copied into place,
/// started alone with --force-new-cluster. Returns the keys under `prefix`.
fn keys_after_restore(version: &str, backup: &Path, scratch: &Path, prefix: &str) -> usize {
    let restored = scratch.join("restored");
    let st = Command::new("cp")
        .arg("-a")
        .arg(backup.join("data"))
        .arg(&restored)
        .status()
        .unwrap();
    assert!(st.success());
    let e = Etcd::start(version, &restored, &["--force-new-cluster"]);
    let n = e.keys(prefix);
    e.stop();
    n
}

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("member/wal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_linked_backup_with_the_online_snapshot_as_db_restores_every_key_written_before_the_stop() {
    let s = Scratch::new();
    let data = s.path("data");
    let dest = s.path("backup");
    // Small WAL segments would take 64 MB each; a new segment comes with a raft
    // snapshot, so the default snapshot count keeps this to one segment.
    let e = Etcd::start("3.4.23", &data, &[]);
    for k in 0..20 {
        e.put(&format!("/t/before-{k}"), "v");
    }
    data_backup("before", &data, &dest);
    snapshot_save(&e, &dest);
    data_backup("prepare", &data, &dest);
    // Written after the online snapshot: only the WAL has them.
    for k in 0..20 {
        e.put(&format!("/t/after-{k}"), "v");
    }
    e.stop();
    assert_eq!(
        data_backup("offline", &data, &dest),
        "@etcdroll backup linked"
    );
    let b = dest.join("data");
    // The db is the snapshot's, not a link to the live one; the WAL segment etcd
    // writes in place is a copy; nothing half-made is left.
    let live_db = std::fs::metadata(data.join("member/snap/db")).unwrap();
    let backup_db = std::fs::metadata(b.join("member/snap/db")).unwrap();
    assert_ne!(live_db.ino(), backup_db.ino());
    assert_eq!(
        backup_db.len() % 512,
        0,
        "the snapshot's checksum is cut off"
    );
    let (live_wal, backup_wal) = (wal_files(&data), wal_files(&b));
    assert_eq!(live_wal.len(), backup_wal.len());
    assert_ne!(
        std::fs::metadata(live_wal.last().unwrap()).unwrap().ino(),
        std::fs::metadata(backup_wal.last().unwrap()).unwrap().ino()
    );
    for leftover in [".data", ".snapshot-db", ".snaps-before"] {
        assert!(!dest.join(leftover).exists(), "{leftover} left behind");
    }
    assert!(dest.join("snapshot.db").is_file());
    assert_eq!(keys_after_restore("3.4.23", &dest, s.dir.path(), "/t/"), 40);
}

#[test]
fn closed_wal_segments_and_snap_files_are_hard_links() {
    let s = Scratch::new();
    let data = s.path("data");
    let dest = s.path("backup");
    // A raft snapshot every 10 entries: .snap files, and a new WAL segment cut
    // with each (after the first 64 MB preallocation, segments are cut on size;
    // with --snapshot-count the .snap files are what this checks).
    let e = Etcd::start("3.4.23", &data, &["--snapshot-count", "10"]);
    for k in 0..30 {
        e.put(&format!("/t/k{k}"), "v");
    }
    e.stop();
    // No online snapshot: a data dir with a db is copied whole, never linked.
    assert_eq!(
        data_backup("offline", &data, &dest),
        "@etcdroll backup copied"
    );
    assert_eq!(keys_after_restore("3.4.23", &dest, s.dir.path(), "/t/"), 30);

    // With the snapshot taken after the last raft snapshot, the .snap files are links.
    let e = Etcd::start("3.4.23", &data, &["--snapshot-count", "100000"]);
    let dest2 = s.path("backup2");
    data_backup("before", &data, &dest2);
    snapshot_save(&e, &dest2);
    data_backup("prepare", &data, &dest2);
    e.stop();
    assert_eq!(
        data_backup("offline", &data, &dest2),
        "@etcdroll backup linked"
    );
    let snaps: Vec<PathBuf> = std::fs::read_dir(data.join("member/snap"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    assert!(!snaps.is_empty(), "raft snapshots were taken");
    for snap in &snaps {
        let linked = dest2
            .join("data/member/snap")
            .join(snap.file_name().unwrap());
        assert_eq!(
            std::fs::metadata(snap).unwrap().ino(),
            std::fs::metadata(&linked).unwrap().ino(),
            "{} is a hard link",
            linked.display()
        );
    }
    let restored = s.path("r2");
    std::fs::create_dir_all(&restored).unwrap();
    assert_eq!(keys_after_restore("3.4.23", &dest2, &restored, "/t/"), 30);
}

#[test]
fn a_raft_snapshot_after_the_online_one_makes_a_whole_copy_that_restores() {
    let s = Scratch::new();
    let data = s.path("data");
    let dest = s.path("backup");
    let e = Etcd::start("3.4.23", &data, &["--snapshot-count", "5"]);
    for k in 0..10 {
        e.put(&format!("/t/before-{k}"), "v");
    }
    data_backup("before", &data, &dest);
    snapshot_save(&e, &dest);
    data_backup("prepare", &data, &dest);
    // Enough entries for etcd to take a raft snapshot newer than the online one:
    // a db from the online snapshot would be older than it, which etcd refuses.
    for k in 0..20 {
        e.put(&format!("/t/after-{k}"), "v");
    }
    e.stop();
    assert_eq!(
        data_backup("offline", &data, &dest),
        "@etcdroll backup copied"
    );
    let live_db = std::fs::metadata(data.join("member/snap/db")).unwrap();
    let backup_db = std::fs::metadata(dest.join("data/member/snap/db")).unwrap();
    assert_eq!(
        live_db.len(),
        backup_db.len(),
        "the stopped member's own db"
    );
    assert_eq!(keys_after_restore("3.4.23", &dest, s.dir.path(), "/t/"), 30);
}

#[test]
fn a_2_3_data_dir_without_a_db_is_linked_and_restores() {
    let Some(_) = old_etcd("2.3.7", "etcd") else {
        return;
    };
    let s = Scratch::new();
    let data = s.path("data");
    let dest = s.path("backup");
    let e = Etcd::start("2.3.7", &data, &["--snapshot-count", "10"]);
    for k in 0..25 {
        e.put(&format!("/t/k{k}"), "v");
    }
    e.stop();
    assert!(!data.join("member/snap/db").exists());
    assert_eq!(
        data_backup("offline", &data, &dest),
        "@etcdroll backup linked"
    );
    assert_eq!(keys_after_restore("2.3.7", &dest, s.dir.path(), "/t"), 25);
}

#[test]
fn data_backup_sh_refuses_an_unknown_action() {
    let out = Command::new("sh")
        .arg("-c")
        .arg(DATA_BACKUP_SH)
        .args([
            "etcdroll-data-backup",
            "sideways",
            "/nonexistent",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown action sideways"));
}
