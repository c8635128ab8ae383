//! Every etcd from the upgrade guide's 2.3 to today's newest Debian 3.5, on real
//! binaries: the guide's own 2.3 → 3.0 path with v2 data, `status` on old
//! versions, rollback while mixed, the 3.2 panic guard, a member being added,
//! and 3.4 → the newest 3.5.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `etcdctl` v2 on a member, through its own etcdctl (2.3's or 3.x's).
fn v2_ctl(lab: &Lab, m: &LabHost, args: &str) -> String {
    let out = lab
        .run_in(
            m,
            &format!(
                "ETCDCTL_API=2 {} --endpoints http://127.0.0.1:2379 {args}",
                m.etcdctl_binary.display()
            ),
        )
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args} on {}: {}",
        m.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn status_rows(s: &Scratch, inv: &str) -> Vec<Value> {
    let out = etcdroll(s.dir.path(), &["status", "-i", inv, "--output", "json"]);
    of_kind(&events(&out), "member_status")
        .into_iter()
        .cloned()
        .collect()
}

fn leader_of(rows: &[Value]) -> String {
    let leaders: Vec<&Value> = rows.iter().filter(|r| r["leader"] == true).collect();
    assert_eq!(leaders.len(), 1, "one leader: {rows:?}");
    leaders[0]["host"].as_str().unwrap().to_string()
}

fn upgrade(s: &Scratch, inv: &str, binaries: &[&str]) -> std::process::Output {
    let mut args = vec!["upgrade", "-i", inv, "--yes", "--output", "json"];
    for b in binaries {
        args.extend_from_slice(&["--binary", b]);
    }
    etcdroll(s.dir.path(), &args)
}

/// Start one etcd on a copy of a backup with --force-new-cluster, and read a v2
/// key from it: the backup restores.
fn v2_key_from_backup(etcd: &str, etcdctl: &str, backup: &std::path::Path, key: &str) -> String {
    let copy = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(backup)
        .arg(copy.path().join("data"))
        .status()
        .unwrap();
    assert!(st.success());
    let port = 21000 + (std::process::id() % 19000) as u16;
    let client = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new(etcd)
        .arg("--data-dir")
        .arg(copy.path().join("data"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{}", port + 1),
            "--force-new-cluster",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut value = String::new();
    for _ in 0..100 {
        let out = std::process::Command::new(etcdctl)
            .args(["--endpoints", &client, "get", key])
            .env("ETCDCTL_API", "2")
            .output()
            .unwrap();
        if out.status.success() {
            value = String::from_utf8_lossy(&out.stdout).trim().to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    value
}

/// The guide's own path: 2.3.7 → 3.0.16 on 3 members holding v2 keys.
#[test]
fn the_guides_path_2_3_to_3_0_keeps_v2_keys_with_restorable_v2_backups() {
    let Some(lab) = old_lab("2.3.7", LabSpec::default()) else {
        return;
    };
    let Some(bin) = old_etcd("3.0.16", "etcd") else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let m0 = &lab.members[0];
    for k in 0..5 {
        v2_ctl(&lab, m0, &format!("set /guide/k{k} 'value {k}'"));
    }
    let rows = status_rows(&s, &inv);
    let leader = leader_of(&rows);

    // The pre-flight is clean.
    let out = etcdroll(
        s.dir.path(),
        &["check", "-i", &inv, "--binary", &bin, "--output", "json"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for row in of_kind(&events(&out), "check") {
        assert_eq!(row["problems"], serde_json::json!([]), "{t}");
        assert_eq!(row["plan"], "minor upgrade", "{t}");
    }

    let out = upgrade(&s, &inv, &[&bin]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    // Followers first, the leader last, and the report says leadership could
    // not be moved (2.3 has no move-leader).
    let done: Vec<&str> = of_kind(&evs, "host_done")
        .iter()
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert_eq!(done.len(), 3, "{t}");
    // Leadership may change during the run (2.3 has no pre-vote): at each stop,
    // the member stopped is not the leader of the latest cluster line, unless it
    // is the last one, and then the report says leadership could not be moved.
    let mut leader_now = leader;
    for e in &evs {
        if e["event"] == "cluster" {
            if let Some(l) = e["leader"].as_str() {
                leader_now = l.to_string();
            }
        }
        if e["event"] == "step" && e["step"] == "stopping" {
            let h = e["host"].as_str().unwrap();
            if h != done[2] {
                assert_ne!(h, leader_now, "a follower goes first: {t}");
            } else if h == leader_now {
                assert!(
                    of_kind(&evs, "warning").iter().any(|w| w["message"]
                        .as_str()
                        .unwrap()
                        .contains("leadership could not be moved")),
                    "{t}"
                );
            }
        }
    }
    // Mixed: after the first member, the cluster version is still 2.3; at the
    // end it is 3.0 (design §7).
    let first_done = evs.iter().position(|e| e["event"] == "host_done").unwrap();
    let after_first = evs[first_done..]
        .iter()
        .find(|e| e["event"] == "cluster")
        .unwrap();
    assert_eq!(after_first["cluster_version"], "2.3.0", "{t}");
    let clusters = of_kind(&evs, "cluster");
    assert_eq!(clusters.last().unwrap()["cluster_version"], "3.0.0", "{t}");
    let finished = of_kind(&evs, "run_finished");
    assert!(
        finished[0]["message"]
            .as_str()
            .unwrap()
            .contains("cluster version 3.0.0"),
        "{t}"
    );
    // Every member on 3.0.16, healthy, the keys there.
    for r in status_rows(&s, &inv) {
        assert_eq!(r["server_version"], "3.0.16", "{r}");
        assert_eq!(r["cluster_version"], "3.0.0", "{r}");
        assert_eq!(r["healthy"], true, "{r}");
    }
    for m in &lab.members {
        assert_eq!(v2_ctl(&lab, m, "get /guide/k3"), "value 3", "{}", m.name);
    }
    // The guide's v2 backup of every member restores.
    let rows = of_kind(&evs, "upgrade_summary")[0]["rows"]
        .as_array()
        .unwrap()
        .clone();
    for r in &rows {
        let b = std::path::Path::new(r["backup"].as_str().unwrap()).join("v2");
        assert!(b.join("member/wal").is_dir(), "{}", b.display());
        assert!(
            !b.join("../snapshot.db").exists(),
            "no v3 snapshot of a 2.3 cluster"
        );
    }
    let b = std::path::Path::new(rows[0]["backup"].as_str().unwrap()).join("v2");
    assert_eq!(
        v2_key_from_backup(
            &old_etcd("2.3.7", "etcd").unwrap(),
            &old_etcd("2.3.7", "etcdctl").unwrap(),
            &b,
            "/guide/k4"
        ),
        "value 4"
    );
}

/// `status` on 2.3 (v2 only), 3.0 (`/v3alpha`) and 3.2: name, id, leader and
/// raft index for every member.
#[test]
fn status_shows_every_member_on_2_3_3_0_and_3_2() {
    for version in ["2.3.7", "3.0.16", "3.2.32"] {
        let Some(lab) = old_lab(version, LabSpec::default()) else {
            return;
        };
        let s = Scratch::new();
        let inv = inventory(&lab, &s);
        let rows = status_rows(&s, &inv);
        assert_eq!(rows.len(), 3, "{version}: {rows:?}");
        for r in &rows {
            assert_eq!(r["name"], r["host"], "{version}: {r}");
            assert!(!r["id"].as_str().unwrap().is_empty(), "{version}: {r}");
            assert!(r["raft_index"].as_u64().unwrap() > 0, "{version}: {r}");
            assert_eq!(r["server_version"], version, "{r}");
            assert_eq!(r["error"], Value::Null, "{version}: {r}");
        }
        leader_of(&rows);
    }
}

/// Downgrade only while mixed. From 2.3/3.0 it is refused with the reason
/// (2.3 cannot read the WAL 3.0 wrote: seen here, and kubernetes#32253), with
/// nothing changed and the cluster serving; the upgrade then completes. From
/// 3.0/3.1 the rollback works; once the cluster version moved it is refused.
#[test]
fn rollback_while_mixed_is_refused_to_2_3_works_to_3_0_and_is_refused_after_the_move() {
    let Some(lab) = old_lab("2.3.7", LabSpec::default()) else {
        return;
    };
    let (Some(bin30), Some(bin31)) = (old_etcd("3.0.16", "etcd"), old_etcd("3.1.20", "etcd"))
    else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    v2_ctl(&lab, &lab.members[0], "set /mixed yes");
    let first = killed_after_first_member(&s, &inv, &bin30);
    let rows = status_rows(&s, &inv);
    let mixed = rows.iter().find(|r| r["host"] == first.as_str()).unwrap();
    assert_eq!(mixed["server_version"], "3.0.16", "{rows:?}");
    assert_eq!(mixed["cluster_version"], "2.3.0", "mixed: {rows:?}");

    let out = etcdroll(
        s.dir.path(),
        &["rollback", "-i", &inv, "--yes", "--output", "plain"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("cannot read") && t.contains(&first), "{t}");
    assert!(t.contains("nothing was changed"), "{t}");
    let rows = status_rows(&s, &inv);
    assert!(rows.iter().all(|r| r["healthy"] == true), "{rows:?}");
    assert_eq!(v2_ctl(&lab, &lab.members[1], "get /mixed"), "yes");

    // The upgrade completes from the mixed state; then 3.0 → 3.1, interrupted.
    let out = upgrade(&s, &inv, &[&bin30]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_all_on(&lab, "3.0.16");
    let first = killed_after_first_member(&s, &inv, &bin31);
    let out = etcdroll(
        s.dir.path(),
        &["rollback", "-i", &inv, "--yes", "--output", "json"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for r in status_rows(&s, &inv) {
        assert_eq!(r["server_version"], "3.0.16", "{first}: {r}");
        assert_eq!(r["healthy"], true, "{r}");
    }
    assert_eq!(v2_ctl(&lab, &lab.members[2], "get /mixed"), "yes");

    let out = upgrade(&s, &inv, &[&bin31]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = etcdroll(
        s.dir.path(),
        &["rollback", "-i", &inv, "--yes", "--output", "plain"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("cluster version has moved to 3.1"), "{t}");
    assert_all_on(&lab, "3.1.20");
}

/// The guide's NOTE: a data dir with snapshots but no `member/snap/db` is
/// refused before a 3.2 target; and a member added to a 2.3 cluster but not
/// started is refused (no membership change during an upgrade).
#[test]
fn the_3_2_panic_guard_and_a_member_being_added_are_refused() {
    let Some(lab) = old_lab("3.1.20", LabSpec::default()) else {
        return;
    };
    let Some(bin) = old_etcd("3.2.32", "etcd") else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    // The member keeps its db open; the probe sees the data dir as one migrated
    // from v2 with no v3 data (or whose db was moved away).
    let db = lab.members[1].data_dir.join("member/snap/db");
    let moved = db.with_extension("moved");
    std::fs::rename(&db, &moved).unwrap();
    let out = etcdroll(
        s.dir.path(),
        &["check", "-i", &inv, "--binary", &bin, "--output", "plain"],
    );
    std::fs::rename(&moved, &db).unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("v3.2+ panics"), "{t}");
    assert!(t.contains("member/snap/db"), "{t}");
    assert!(t.contains(&lab.members[1].name), "{t}");

    // A member added to the cluster but never started.
    drop(lab);

    // A member added to a 2.3 cluster but never started: the guide's words.
    let Some(lab) = old_lab("2.3.7", LabSpec::default()) else {
        return;
    };
    let Some(bin) = old_etcd("3.0.16", "etcd") else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    // etcd's strict reconfiguration check can refuse an add until every member
    // has been connected for a while: retry.
    let m0 = &lab.members[0];
    let add = format!(
        "{} --endpoints http://127.0.0.1:2379 member add m9 http://198.18.255.250:2380",
        m0.etcdctl_binary.display()
    );
    let mut added = lab.run_in(m0, &add).unwrap();
    for _ in 0..40 {
        if added.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        added = lab.run_in(m0, &add).unwrap();
    }
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let out = upgrade(&s, &inv, &[&bin]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("added but not started"), "{t}");
    assert!(t.contains("membership change"), "{t}");
    assert!(t.contains("Adding a v3 node to a v2.3 cluster"), "{t}");
    assert_all_on(&lab, "2.3.7");
}

/// 3.4.23 (bookworm) → the newest Debian 3.5, and 3.5.16 (trixie) → the newest
/// as a patch upgrade. Versions are read from the binaries, never assumed.
#[test]
fn debian_3_4_to_the_newest_3_5_and_a_3_5_patch_upgrade() {
    let newest = newest_debian_35();
    assert!(newest.starts_with("3.5."), "{newest}");
    let Some(lab34) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab34, &s);
    lab34
        .etcdctl(&lab34.members[0], &["put", "/k34", "kept"])
        .unwrap();
    let out = upgrade(&s, &inv, &[&etcd_bin(&newest, "etcd")]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_all_on(&lab34, &newest);
    assert!(lab34
        .etcdctl(&lab34.members[2], &["get", "/k34", "--print-value-only"])
        .unwrap()
        .contains("kept"));
    drop(lab34);

    let trixie = debian_version("trixie");
    let Some(lab) = lab(LabSpec {
        version: trixie.clone(),
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let out = etcdroll(
        s.dir.path(),
        &[
            "check",
            "-i",
            &inv,
            "--binary",
            &etcd_bin(&newest, "etcd"),
            "--output",
            "json",
        ],
    );
    assert!(
        of_kind(&events(&out), "check")
            .iter()
            .all(|r| r["plan"] == "patch upgrade"),
        "{}",
        text(&out)
    );
    let out = upgrade(&s, &inv, &[&etcd_bin(&newest, "etcd")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_all_on(&lab, &newest);
}

/// `GET path` on a member's client port over the lab's bridge: v2 reads that do
/// not depend on which etcdctl the member has now.
fn http_get(m: &LabHost, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((m.ip(), 2379)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: lab\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// A v3 put through the 3.0 gateway (`/v3alpha`), retried while members restart.
fn v3alpha_put(lab: &Lab, key: &str, value: &str) {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let body = format!("{{\"key\":\"{}\",\"value\":\"{}\"}}", b64(key), b64(value));
    for _ in 0..100 {
        for m in &lab.members {
            use std::io::{Read, Write};
            let Ok(mut s) = std::net::TcpStream::connect((m.ip(), 2379)) else {
                continue;
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let _ = write!(
                s,
                "POST /v3alpha/kv/put HTTP/1.0\r\nHost: lab\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.0 200") && answer.contains("revision") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("could not put {key} through /v3alpha");
}

/// One run along the whole path: 2.3.7 → 3.0.16 → 3.1.20 → 3.2.32 → 3.3.27 →
/// 3.4.23 → the newest Debian 3.5. Keys written at 2.3 (v2) and at 3.0 (v3, while
/// the path runs on) are all there at the end, and every hop shows.
#[test]
fn one_run_walks_the_whole_path_from_2_3_to_the_newest_3_5() {
    // A raft snapshot every 25 entries: etcd 3.5 keeps the capabilities of the
    // first cluster version its WAL holds, so a WAL that still begins at 2.3
    // (a small, quiet cluster) gives a 3.5 that refuses v3 as "not capable".
    // Real clusters take snapshots as they write; this one is made to.
    let Some(lab) = old_lab(
        "2.3.7",
        LabSpec {
            enable_v2: true,
            snapshot_count: Some(25),
            ..LabSpec::default()
        },
    ) else {
        return;
    };
    let mut bins = Vec::new();
    for v in ["3.0.16", "3.1.20", "3.2.32", "3.3.27"] {
        let Some(b) = old_etcd(v, "etcd") else { return };
        bins.push(b);
    }
    let newest = newest_debian_35();
    bins.push(etcd_bin("3.4.23", "etcd"));
    bins.push(etcd_bin(&newest, "etcd"));
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    v2_ctl(&lab, &lab.members[0], "set /path/v2 'written at 2.3'");

    // --dry-run prints the whole path and changes nothing.
    let mut args = vec!["upgrade", "-i", &inv, "--dry-run", "--output", "json"];
    for b in bins.iter().rev() {
        args.extend_from_slice(&["--binary", b]);
    }
    let out = etcdroll(s.dir.path(), &args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let plan: Vec<String> = of_kind(&events(&out), "plan")[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert!(
        plan.iter()
            .any(|p| p.contains("hop 1 of 6: 2.3.7 → 3.0.16")),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|p| p.contains(&format!("hop 6 of 6: 3.4.23 → {newest}"))),
        "{plan:?}"
    );
    assert_all_on(&lab, "2.3.7");

    let args: Vec<&str> = args.into_iter().filter(|a| *a != "--dry-run").collect();
    let mut args = args;
    args.push("--yes");
    let mut child = etcdroll_cmd(s.dir.path(), &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "hop_finished" && v["index"] == 1 {
            // The cluster is 3.0 now: v3 keys, while the path goes on.
            for k in 0..40 {
                v3alpha_put(&lab, &format!("/path/v3/{k}"), "written at 3.0");
            }
        }
        lines.push(v);
    }
    let status = child.wait().unwrap();
    let t: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(status.code(), Some(0), "{t}");
    let hops: Vec<String> = lines
        .iter()
        .filter(|e| e["event"] == "hop_finished")
        .map(|e| {
            format!(
                "{} → {} {}",
                e["from"].as_str().unwrap(),
                e["to"].as_str().unwrap(),
                e["ok"]
            )
        })
        .collect();
    assert_eq!(
        hops,
        [
            "2.3.7 → 3.0.16 true".to_string(),
            "3.0.16 → 3.1.20 true".into(),
            "3.1.20 → 3.2.32 true".into(),
            "3.2.32 → 3.3.27 true".into(),
            "3.3.27 → 3.4.23 true".into(),
            format!("3.4.23 → {newest} true"),
        ],
        "{t}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|e| e["event"] == "upgrade_summary")
            .count(),
        6,
        "{t}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|e| e["event"] == "run_finished")
            .count(),
        1
    );
    assert_all_on(&lab, &newest);
    for m in &lab.members {
        let v2 = http_get(m, "/v2/keys/path/v2");
        assert!(v2.contains("written at 2.3"), "{}: {v2}", m.name);
        let got = lab
            .etcdctl(m, &["get", "/path/v3/39", "--print-value-only"])
            .unwrap();
        assert_eq!(got.trim(), "written at 3.0", "{}", m.name);
    }
}

/// A path whose 3.2 binary never becomes healthy stops at that hop, with every
/// member back on 3.1 and healthy; the same path with a good 3.2 then finishes,
/// continuing at the hop that failed.
#[test]
fn a_path_stops_at_a_bad_hop_and_a_rerun_continues_there() {
    let Some(lab) = old_lab("3.0.16", LabSpec::default()) else {
        return;
    };
    let (Some(b31), Some(b32), Some(b33)) = (
        old_etcd("3.1.20", "etcd"),
        old_etcd("3.2.32", "etcd"),
        old_etcd("3.3.27", "etcd"),
    ) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    lab.etcdctl(&lab.members[0], &["put", "/bad/hop", "kept"])
        .unwrap();
    let bad = never_healthy_binary(&s, "3.2.32");
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &b31,
            "--binary",
            &bad,
            "--binary",
            &b33,
            "--health-timeout",
            "5s",
            "--yes",
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let evs = events(&out);
    let hops: Vec<(String, bool)> = of_kind(&evs, "hop_finished")
        .iter()
        .map(|e| (e["to"].as_str().unwrap().to_string(), e["ok"] == true))
        .collect();
    assert_eq!(
        hops,
        [("3.1.20".to_string(), true), ("3.2.32".into(), false)],
        "{t}"
    );
    let end = of_kind(&evs, "run_finished")[0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(end.contains("stopped at hop 2 of 3"), "{end}");
    assert!(end.contains("continue at this hop"), "{end}");
    let rows = status_rows(&s, &inv);
    for r in &rows {
        assert_eq!(r["server_version"], "3.1.20", "{rows:?}");
        assert_eq!(r["healthy"], true, "{rows:?}");
    }
    // The third hop's binary was staged up front, and is still there for the re-run.
    for m in &lab.members {
        assert!(m.dir.join("bin/etcd.new-3.3.27").exists(), "{}", m.name);
    }

    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &b31, "--binary", &b32, "--binary", &b33, "--yes",
            "--output", "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    let hops: Vec<String> = of_kind(&evs, "hop")
        .iter()
        .map(|e| e["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        hops,
        ["3.2.32", "3.3.27"],
        "continues at the failed hop: {t}"
    );
    assert_all_on(&lab, "3.3.27");
    assert_eq!(
        lab.etcdctl(&lab.members[2], &["get", "/bad/hop", "--print-value-only"])
            .unwrap()
            .trim(),
        "kept"
    );
}

/// The guides' member rules read what the running member really got: its
/// environment (`ETCD_ENABLE_V2=true` from the service's environment file, seen
/// in /proc/PID/environ) and its command line (an `--experimental-*` flag, seen
/// in /proc/PID/cmdline). No 3.6 or 3.7 binary can be had here, so the targets
/// are stated with --target-version.
#[test]
fn the_rules_read_a_members_real_flags_and_environment() {
    let newest = newest_debian_35();
    let Some(lab) = lab(LabSpec {
        version: newest.clone(),
        enable_v2: true,
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    // One member gets an experimental flag on its command line.
    let m1 = &lab.members[1];
    let flags = std::fs::read_to_string(m1.dir.join("etcd.flags")).unwrap();
    std::fs::write(
        m1.dir.join("etcd.flags"),
        format!(
            "{} --experimental-initial-corrupt-check=true\n",
            flags.trim_end()
        ),
    )
    .unwrap();
    assert!(lab.service(m1, "stop").unwrap().status.success());
    assert!(lab.service(m1, "start").unwrap().status.success());
    lab.wait_cluster_healthy(Duration::from_secs(20)).unwrap();

    let check = |target: &str| {
        let out = etcdroll(
            s.dir.path(),
            &[
                "check",
                "-i",
                &inv,
                "--target-version",
                target,
                "--output",
                "json",
            ],
        );
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        of_kind(&events(&out), "check")
            .into_iter()
            .map(|r| {
                (
                    r["host"].as_str().unwrap().to_string(),
                    r["problems"].to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    for (host, problems) in check("3.6.0") {
        assert!(problems.contains("3.5.32"), "{host}: {problems}");
        assert!(
            problems.contains("v2 is enabled (ETCD_ENABLE_V2=true in /proc/")
                && problems.contains("/environ)"),
            "{host}: {problems}"
        );
    }
    for (host, problems) in check("3.7.0") {
        if host == m1.name {
            assert!(
                problems.contains("--experimental-initial-corrupt-check=true in /proc/")
                    && problems.contains("/cmdline"),
                "{host}: {problems}"
            );
        } else {
            assert!(!problems.contains("experimental"), "{host}: {problems}");
        }
    }
}
