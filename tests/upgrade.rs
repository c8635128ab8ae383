//! The rolling upgrade against the lab: real sshd, real etcd 3.4.23 / 3.5.0 / 3.5.1.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::*;
use serde_json::Value;

fn put_keys(lab: &Lab, n: usize) {
    let m = &lab.members[0];
    for k in 0..n {
        lab.etcdctl(
            m,
            &["put", &format!("/test/key{k:03}"), &format!("value {k}")],
        )
        .unwrap();
    }
}

fn member_versions(s: &Scratch, inv: &str) -> Vec<Value> {
    let out = etcdroll(s.dir.path(), &["status", "-i", inv, "--output", "json"]);
    of_kind(&events(&out), "member_status")
        .into_iter()
        .cloned()
        .collect()
}

#[test]
fn upgrades_3_4_to_3_5_keeping_every_key_with_restorable_backups() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    put_keys(&lab, 50);
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &etcd_bin("3.5.1", "etcd"),
            "--etcdctl",
            &etcd_bin("3.5.1", "etcdctl"),
            "--yes",
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);

    // Every key written before is readable after, through each member.
    for m in &lab.members {
        let got = lab
            .etcdctl(m, &["get", "--prefix", "/test/", "--keys-only"])
            .unwrap();
        assert_eq!(
            got.lines().filter(|l| !l.is_empty()).count(),
            50,
            "{}: {got}",
            m.name
        );
    }
    // Every member runs 3.5.1, and the cluster version reached 3.5.0.
    let rows = member_versions(&s, &inv);
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r["server_version"], "3.5.1", "{r}");
        assert_eq!(r["cluster_version"], "3.5.0", "{r}");
        assert_eq!(r["healthy"], true);
    }
    for m in &lab.members {
        assert_eq!(installed_version(m), "3.5.1");
        assert!(
            m.etcd_binary.with_extension("old").exists(),
            "etcd.old kept for rollback"
        );
    }

    // The leader (as the pre-flight saw it) went last.
    let leader = of_kind(&evs, "check")
        .into_iter()
        .find(|c| c["leader"] == true)
        .map(|c| c["host"].as_str().unwrap().to_string())
        .expect("a leader in the pre-flight");
    let done: Vec<String> = of_kind(&evs, "host_done")
        .iter()
        .map(|e| e["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(done.len(), 3, "{t}");
    assert_eq!(done.last(), Some(&leader), "{t}");

    // Backups: a snapshot and a data dir copy per member, reported in the summary.
    let summary = of_kind(&evs, "upgrade_summary");
    let rows = summary[0]["rows"].as_array().unwrap();
    for r in rows {
        let b = r["backup"].as_str().expect("backup path");
        assert!(Path::new(b).join("snapshot.db").is_file(), "{b}");
        assert!(Path::new(b).join("data/member/snap/db").is_file(), "{b}");
        assert!(r["down_ms"].as_u64().is_some(), "{r}");
    }
    // Restore one snapshot into a scratch data dir and read a key from it.
    let snap = Path::new(rows[0]["backup"].as_str().unwrap()).join("snapshot.db");
    let restored = s.path("restored");
    let st = std::process::Command::new(etcd_bin("3.5.1", "etcdutl"))
        .args(["snapshot", "restore"])
        .arg(&snap)
        .arg("--data-dir")
        .arg(&restored)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let value = read_key_from_data_dir(&restored, "/test/key042");
    assert_eq!(value, "value 42");
}

use std::path::Path;

/// Start a throwaway etcd on loopback over a restored data dir and read one key.
fn read_key_from_data_dir(dir: &Path, key: &str) -> String {
    let port = 20000 + (std::process::id() % 20000) as u16;
    let client = format!("http://127.0.0.1:{port}");
    let mut etcd = std::process::Command::new(etcd_bin("3.5.1", "etcd"))
        .args(["--data-dir"])
        .arg(dir)
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
        let out = std::process::Command::new(etcd_bin("3.5.1", "etcdctl"))
            .args(["--endpoints", &client, "get", key, "--print-value-only"])
            .output()
            .unwrap();
        if out.status.success() {
            value = String::from_utf8_lossy(&out.stdout).trim().to_string();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = etcd.kill();
    let _ = etcd.wait();
    value
}

#[test]
fn patch_upgrade_then_a_second_run_changes_nothing() {
    let Some(lab) = lab(LabSpec {
        version: "3.5.0".into(),
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let out = upgrade_351(&s, &inv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_all_on(&lab, "3.5.1");
    let pids: Vec<String> = lab.members.iter().map(etcd_pid).collect();
    let out = upgrade_351(&s, &inv);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("nothing to do"), "{t}");
    let evs = events(&out);
    assert!(of_kind(&evs, "host_done").is_empty(), "{t}");
    assert!(
        of_kind(&evs, "step").iter().all(|e| e["step"] == "skipped"),
        "only skips: {t}"
    );
    let after: Vec<String> = lab.members.iter().map(etcd_pid).collect();
    assert_eq!(pids, after, "no member was restarted");
}

#[test]
fn a_binary_that_cannot_run_is_refused_at_staging_and_no_member_stops() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let broken = s.path("etcd-broken");
    std::fs::write(
        &broken,
        b"\x7fELF\x02\x01\x01 this is not a real executable",
    )
    .unwrap();
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pids: Vec<String> = lab.members.iter().map(etcd_pid).collect();
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            broken.to_str().unwrap(),
            "--target-version",
            "3.5.1",
            "--yes",
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("staging failed, no member was stopped"), "{t}");
    assert!(t.contains("does not run on this host"), "{t}");
    let evs = events(&out);
    assert!(
        of_kind(&evs, "step")
            .iter()
            .all(|e| e["step"] != "stopping"),
        "{t}"
    );
    assert_eq!(
        pids,
        lab.members.iter().map(etcd_pid).collect::<Vec<_>>(),
        "no restart"
    );
    for m in &lab.members {
        assert_eq!(installed_version(m), "3.4.23");
        assert!(
            !m.etcd_binary.with_extension("new").exists(),
            "staged file removed"
        );
    }
}

#[test]
fn a_member_that_never_becomes_healthy_is_rolled_back_and_the_rest_untouched() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let fake = never_healthy_binary(&s, "3.5.1");
    let pids: Vec<String> = lab.members.iter().map(etcd_pid).collect();
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &fake,
            "--yes",
            "--health-timeout",
            "4s",
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let evs = events(&out);
    let failed: Vec<&str> = of_kind(&evs, "host_failed")
        .iter()
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert!(!failed.is_empty(), "{t}");
    let victim = failed[0];
    let finished = of_kind(&evs, "run_finished");
    let msg = finished[0]["message"].as_str().unwrap();
    assert!(
        msg.contains(victim) && msg.contains("rolled back") || msg.contains("running 3.4.23 again"),
        "{msg}"
    );
    // The victim runs 3.4.23 again; the others were never restarted.
    for (m, pid) in lab.members.iter().zip(&pids) {
        assert_eq!(installed_version(m), "3.4.23", "{}", m.name);
        if m.name != victim {
            assert_eq!(&etcd_pid(m), pid, "{} was touched", m.name);
        }
    }
    let rows = member_versions(&s, &inv);
    assert!(
        rows.iter()
            .all(|r| r["healthy"] == true && r["server_version"] == "3.4.23"),
        "{rows:?}"
    );
}

#[test]
fn a_stopped_member_or_a_member_missing_from_the_inventory_is_refused() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let bin = etcd_bin("3.5.1", "etcd");

    // Missing from the inventory: limit to two of three.
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--limit", "m0,m1", "--binary", &bin, "--yes", "--output",
            "plain",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("is in the cluster but not in the inventory"),
        "{t}"
    );

    // One member stopped before the run.
    lab.service(&lab.members[1], "stop").unwrap();
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--yes", "--output", "plain",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("m1") && t.contains("every member must be up and healthy"),
        "{t}"
    );
    for m in &lab.members {
        assert_eq!(installed_version(m), "3.4.23");
        assert!(!m.etcd_binary.with_extension("new").exists());
    }
}

/// Run an upgrade, kill the controller (SIGKILL) right after the first member is done.
#[test]
fn a_killed_run_is_completed_by_running_it_again() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let bin = etcd_bin("3.5.1", "etcd");
    let first = killed_after_first_member(&s, &inv, &bin);
    let out = upgrade_351(&s, &inv);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    let skipped: Vec<&str> = of_kind(&evs, "step")
        .iter()
        .filter(|e| e["step"] == "skipped")
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert!(
        skipped.contains(&first.as_str()),
        "{first} skipped on the re-run: {t}"
    );
    // The journal tells where the killed run stopped; its lock is taken over.
    let warnings: Vec<&str> = of_kind(&evs, "warning")
        .iter()
        .map(|w| w["message"].as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("did not finish") && w.contains(&format!("{first}: done"))),
        "{t}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("took over the stale lock")),
        "{t}"
    );
    assert_all_on(&lab, "3.5.1");
}

#[test]
fn rollback_while_mixed_works_and_is_refused_once_the_cluster_version_moved() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let bin = etcd_bin("3.5.1", "etcd");
    let first = killed_after_first_member(&s, &inv, &bin);
    let out = etcdroll(
        s.dir.path(),
        &["rollback", "-i", &inv, "--yes", "--output", "json"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let m = lab.members.iter().find(|m| m.name == first).unwrap();
    assert_eq!(installed_version(m), "3.4.23");
    let rows = member_versions(&s, &inv);
    assert!(
        rows.iter()
            .all(|r| r["healthy"] == true && r["server_version"] == "3.4.23"),
        "{rows:?}"
    );

    // Upgrade fully: the cluster version moves to 3.5, and rollback is refused.
    let out = upgrade_351(&s, &inv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = etcdroll(
        s.dir.path(),
        &["rollback", "-i", &inv, "--yes", "--output", "plain"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("cluster version has moved to 3.5"), "{t}");
    assert_all_on(&lab, "3.5.1");
}

#[test]
fn v2_data_is_backed_up_the_guides_way_and_survives() {
    let Some(lab) = lab(LabSpec {
        enable_v2: true,
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let m0 = &lab.members[0];
    let ctl = m0.etcdctl_binary.display().to_string();
    let set = lab
        .run_in(
            m0,
            &format!("ETCDCTL_API=2 {ctl} --endpoints http://127.0.0.1:2379 set /v2key 'v2 value'"),
        )
        .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let out = upgrade_351(&s, &inv);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("etcdctl backup (v2)"), "{t}");
    let evs = events(&out);
    for r in of_kind(&evs, "upgrade_summary")[0]["rows"]
        .as_array()
        .unwrap()
    {
        let b = Path::new(r["backup"].as_str().unwrap());
        assert!(
            b.join("v2/member/wal").is_dir(),
            "etcdctl backup output in {}",
            b.display()
        );
    }
    // The v2 key is still there (the 3.4 etcdctl was kept, it speaks v2).
    for m in &lab.members {
        let get = lab
            .run_in(
                m,
                &format!(
                    "ETCDCTL_API=2 {} --endpoints http://127.0.0.1:2379 get /v2key",
                    m.etcdctl_binary.display()
                ),
            )
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&get.stdout).trim(),
            "v2 value",
            "{}",
            m.name
        );
    }
}

#[test]
fn plain_output_has_a_line_per_step_per_host_and_dry_run_changes_nothing() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let bin = etcd_bin("3.5.1", "etcd");
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &bin,
            "--dry-run",
            "--output",
            "plain",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("Plan:") && t.contains("dry run"), "{t}");
    for m in &lab.members {
        assert!(
            !m.etcd_binary.with_extension("new").exists(),
            "dry run staged nothing"
        );
    }

    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--yes", "--output", "plain",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for m in &lab.members {
        for step in [
            "uploading",
            "staged",
            "backing up",
            "stopping",
            "starting",
            "waiting for health",
            "catching up",
            "done",
        ] {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.contains(&format!(" {} {step}", m.name))),
                "no '{} {step}' line:\n{t}",
                m.name
            );
        }
    }
    // Timestamps lead every progress line.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("20") && l.contains("Z m0 stopping")),
        "{t}"
    );
}

#[test]
fn json_events_follow_the_documented_schema() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let out = upgrade_351(&s, &inv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let evs = events(&out);
    let known = [
        "run_started",
        "host_unreachable",
        "exec_result",
        "member_status",
        "check",
        "step",
        "upload",
        "catch_up",
        "host_done",
        "host_failed",
        "cluster",
        "warning",
        "plan",
        "summary",
        "upgrade_summary",
        "recap",
        "phase",
        "phase_finished",
        "discovered",
        "hop",
        "hop_finished",
        "cluster_finished",
        "run_finished",
    ];
    for e in &evs {
        let kind = e["event"].as_str().expect("event tag");
        assert!(known.contains(&kind), "undocumented event {kind}");
        assert!(e["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
        match kind {
            "step" => {
                assert!(e["host"].is_string() && e["step"].is_string(), "{e}");
            }
            "upload" => assert!(e["sent"].as_u64().unwrap() <= e["total"].as_u64().unwrap()),
            "host_done" => {
                assert_eq!(e["to"], "3.5.1");
                assert_eq!(e["from"], "3.4.23");
                assert!(
                    e["down_ms"].is_u64() && e["catch_up_ms"].is_u64() && e["backup"].is_string(),
                    "{e}"
                );
            }
            "check" => assert!(e["problems"].as_array().unwrap().is_empty(), "{e}"),
            "phase" => assert!(e["phase"].is_string(), "{e}"),
            "phase_finished" => assert!(
                e["phase"].is_string() && e["round_trips"].is_u64() && e["seconds"].is_f64(),
                "{e}"
            ),
            _ => {}
        }
    }
    let last = evs.last().unwrap();
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["ok"], true);
    assert_eq!(last["exit_code"], 0);
    // Every phase that began ended with its count, and the phases' rounds are
    // part of the run's (which adds connecting and discovery).
    let began: Vec<&str> = of_kind(&evs, "phase")
        .iter()
        .filter_map(|e| e["phase"].as_str())
        .filter(|p| !p.starts_with("settle"))
        .collect();
    let finished = of_kind(&evs, "phase_finished");
    let ended: Vec<&str> = finished
        .iter()
        .filter_map(|e| e["phase"].as_str())
        .collect();
    assert_eq!(began, ended);
    let in_phases: u64 = finished
        .iter()
        .filter_map(|e| e["round_trips"].as_u64())
        .sum();
    let total = last["round_trips"].as_u64().unwrap();
    assert!(in_phases > 0 && in_phases < total, "{in_phases} of {total}");
}

/// `--compress gzip` through the whole upgrade: every member ends up running a
/// binary byte-identical to the one given (the hash checked on each host after
/// decompression), and the upload says it went gzipped.
#[test]
fn an_upgrade_with_gzip_uploads_installs_the_identical_binary() {
    use sha2::Digest;
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let bin = etcd_bin("3.5.1", "etcd");
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &bin,
            "--compress",
            "gzip",
            "--yes",
            "--output",
            "json",
            "-vvv",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_all_on(&lab, "3.5.1");
    let sum = |p: &Path| hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()));
    let want = sum(Path::new(&bin));
    for m in &lab.members {
        assert_eq!(sum(&m.etcd_binary), want, "{}", m.name);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let gzipped = stderr.lines().filter(|l| l.contains(" as Gzip (")).count();
    assert_eq!(gzipped, lab.members.len(), "{stderr}");
}
