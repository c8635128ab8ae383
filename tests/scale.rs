//! Several clusters in one inventory, upgraded in parallel; fan-out of `exec`.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Watches every member's client port every 20 ms; returns, per cluster, the most
/// members seen down at the same moment.
fn poll_down(
    clusters: Vec<Vec<SocketAddr>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<usize>> {
    std::thread::spawn(move || {
        let mut worst = vec![0; clusters.len()];
        while !stop.load(Ordering::SeqCst) {
            for (i, c) in clusters.iter().enumerate() {
                let down = c
                    .iter()
                    .filter(|a| TcpStream::connect_timeout(a, Duration::from_millis(100)).is_err())
                    .count();
                worst[i] = worst[i].max(down);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        worst
    })
}

/// The two tests that load this machine most (two labs rolling; 30 logins at
/// once) take turns, so that neither's timing is the other's load.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn two_clusters_upgrade_in_parallel_one_member_at_a_time_and_a_failure_stays_in_its_cluster() {
    let _turn = heavy();
    let Some(a) = lab_default() else { return };
    let Some(b) = lab_default() else { return };
    let s = Scratch::new();
    // beta's hosts name a binary of their own (etcdroll_binary) that never serves:
    // beta's first member is rolled back and beta stops, alpha is upgraded to the
    // --binary all the same. A pause after each member (5 s, against
    // beta's 3 s health limit) keeps alpha's roll long enough that a busy
    // machine's slow handshakes for beta cannot make the runs look sequential.
    let broken = never_healthy_binary(&s, "3.5.1");
    let two = |beta_extra: &str| {
        let path = s.path(&format!("two-{}.yml", beta_extra.len()));
        std::fs::write(
            &path,
            format!(
                "all:\n  vars:\n    ansible_user: root\n  children:\n    etcd:\n      hosts:\n{}{}",
                a.member_entries("a-", "etcd_cluster: alpha"),
                b.member_entries("b-", &format!("etcd_cluster: beta\n{beta_extra}"))
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let inv = two(&format!("etcdroll_binary: {broken}"));
    let addrs = |l: &Lab| {
        l.members
            .iter()
            .map(|m| SocketAddr::new(m.ip(), 2379))
            .collect::<Vec<_>>()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let poller = poll_down(vec![addrs(&a), addrs(&b)], stop.clone());

    let bin = etcd_bin("3.5.1", "etcd");
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &bin,
            "--forks",
            "2",
            "--settle",
            "5s",
            "--health-timeout",
            "3s",
            "--yes",
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let evs = events(&out);
    let finished = of_kind(&evs, "cluster_finished");
    assert_eq!(finished.len(), 2, "{t}");
    assert!(
        finished
            .iter()
            .any(|e| e["cluster"] == "alpha" && e["ok"] == true),
        "{t}"
    );
    assert!(
        finished
            .iter()
            .any(|e| e["cluster"] == "beta" && e["ok"] == false),
        "{t}"
    );
    assert_all_on(&a, "3.5.1");
    // beta's member that took the broken binary was put back on its old one.
    assert_all_on(&b, "3.4.23");
    // In parallel: both clusters began before either ended a phase, and beta's
    // failure came before alpha finished its members. The timeline (phases and
    // member outcomes, no upload or step events) is what a failure shows.
    let timeline = evs
        .iter()
        .filter(|e| !matches!(e["event"].as_str(), Some("upload" | "step" | "catch_up")))
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let pos = |pred: &dyn Fn(&serde_json::Value) -> bool| evs.iter().position(pred).unwrap();
    let began = |c: &str| pos(&|e| e["event"] == "phase" && e["cluster"] == c);
    let first_end = pos(&|e| e["event"] == "phase_finished");
    assert!(
        began("alpha") < first_end && began("beta") < first_end,
        "both clusters start at once: {timeline}"
    );
    let beta_failed =
        pos(&|e| e["event"] == "host_failed" && e["host"].as_str().unwrap().starts_with("b-"));
    let alpha_last_done = evs
        .iter()
        .rposition(|e| e["event"] == "host_done" && e["host"].as_str().unwrap().starts_with("a-"))
        .unwrap();
    assert!(
        beta_failed < alpha_last_done,
        "clusters ran one after the other: {timeline}"
    );
    assert_eq!(evs.last().unwrap()["event"], "run_finished");

    // A rollback takes each cluster on its own too: alpha's cluster version has
    // moved to 3.5, so it is refused there; beta has nothing to roll back.
    let out = etcdroll(
        s.dir.path(),
        &["rollback", "-i", &inv, "--yes", "--output", "json"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    let evs = events(&out);
    let finished = of_kind(&evs, "cluster_finished");
    assert_eq!(finished.len(), 2, "{t}");
    assert!(
        finished.iter().any(|e| e["cluster"] == "alpha"
            && e["ok"] == false
            && e["message"]
                .as_str()
                .unwrap()
                .contains("cluster version has moved")),
        "{t}"
    );
    assert!(
        finished
            .iter()
            .any(|e| e["cluster"] == "beta" && e["ok"] == true),
        "{t}"
    );
    assert_all_on(&a, "3.5.1");

    // With beta back on --binary, a re-run upgrades beta and leaves alpha be.
    let inv = two("");
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--forks", "2", "--yes", "--output", "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for m in a.members.iter().chain(&b.members) {
        assert_eq!(installed_version(m), "3.5.1");
    }
    stop.store(true, Ordering::SeqCst);
    let worst = poller.join().unwrap();
    assert_eq!(
        worst,
        vec![1, 1],
        "never two members of one cluster down at once"
    );
}

#[test]
fn exec_on_30_hosts_runs_them_concurrently() {
    let _turn = heavy();
    let Some(lab) = lab(LabSpec {
        members: 0,
        plain_hosts: 30,
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    // A barrier on this machine's filesystem (the lab's hosts are network
    // namespaces of it): each command arrives, then waits up to 50 s until all
    // 30 have. Only a run that has all 30 commands going at once gets every one
    // to see 30; a sequential one (or one with fewer at a time) leaves the first
    // waiting out its 50 s alone. Unlike a race between start and end times,
    // this does not depend on how fast 30 logins are on two shared cores (2.5 s
    // alone, up to 8 s while the kernel tears down earlier tests' namespaces).
    let barrier = s.dir.path().join("barrier");
    std::fs::create_dir_all(&barrier).unwrap();
    let d = etcdroll::ssh::quote(&barrier.display().to_string());
    let command = format!(
        "d={d}; mktemp \"$d/arrived.XXXXXX\" >/dev/null; i=0; \
         while [ \"$(ls \"$d\" | wc -l)\" -lt 30 ] && [ $i -lt 500 ]; do sleep 0.1; i=$((i+1)); done; \
         ls \"$d\" | wc -l"
    );
    let t0 = std::time::Instant::now();
    let out = etcdroll(
        s.dir.path(),
        &[
            "exec", "-i", &inv, "--group", "hosts", "--output", "json", "--", &command,
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    let res = of_kind(&evs, "exec_result");
    assert_eq!(res.len(), 30, "{t}");
    let seen: Vec<&str> = res
        .iter()
        .map(|e| e["stdout"].as_str().unwrap().trim())
        .collect();
    assert!(
        seen.iter().all(|n| *n == "30"),
        "every command saw all 30 running at once: {seen:?}"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(45),
        "no command waited out the barrier: {:?}",
        t0.elapsed()
    );
}

/// One cluster takes one binary: hosts of a cluster naming different ones are
/// refused before any host is contacted; a relative path is the inventory's.
#[test]
fn a_cluster_whose_hosts_name_different_binaries_is_refused_before_connecting() {
    let s = Scratch::new();
    let good = etcd_bin("3.5.1", "etcd");
    std::fs::create_dir_all(s.path("bins")).unwrap();
    std::fs::copy(&good, s.path("bins/etcd")).unwrap();
    let inv = s.path("mixed.yml");
    // 198.18.255.x is never given to a lab host: nothing may be contacted.
    std::fs::write(
        &inv,
        format!(
            "all:\n  children:\n    etcd:\n      hosts:\n        \
             x1:\n          ansible_host: 198.18.255.1\n          etcdroll_binary: bins/etcd\n        \
             x2:\n          ansible_host: 198.18.255.2\n          etcdroll_binary: {good}\n"
        ),
    )
    .unwrap();
    let inv = inv.display().to_string();
    let out = etcdroll(s.dir.path(), &["upgrade", "-i", &inv, "--yes"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("cluster etcd")
            && t.contains(&format!("x1: {}", s.path("bins/etcd").display()))
            && t.contains(&format!("x2: {good}")),
        "{t}"
    );
    assert!(!t.contains("connect"), "no host was contacted: {t}");
}

/// `check` on an inventory of several clusters surveys each cluster on its own
/// (each with its own members, leader and cluster version) and says which is
/// ready; the target of a cluster is its `etcdroll_binary`, else `--binary`.
/// `backup` takes each cluster on its own too.
#[test]
fn check_and_backup_take_each_cluster_of_the_inventory_on_its_own() {
    let Some(a) = lab_default() else { return };
    let Some(b) = lab(etcdroll_lab::LabSpec {
        version: "3.5.0".into(),
        ..Default::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = s.path("two.yml");
    // beta is already on 3.5.0; its own binary takes it to 3.5.1, while alpha's
    // --binary (3.5.0) is a step from 3.4.23.
    std::fs::write(
        &inv,
        format!(
            "all:\n  vars:\n    ansible_user: root\n  children:\n    etcd:\n      hosts:\n{}{}",
            a.member_entries("a-", "etcd_cluster: alpha"),
            b.member_entries(
                "b-",
                &format!(
                    "etcd_cluster: beta\netcdroll_binary: {}",
                    etcd_bin("3.5.1", "etcd")
                )
            )
        ),
    )
    .unwrap();
    let inv = inv.display().to_string();
    let out = etcdroll(
        s.dir.path(),
        &[
            "check",
            "-i",
            &inv,
            "--binary",
            &etcd_bin("3.5.0", "etcd"),
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    let checks = of_kind(&evs, "check");
    assert_eq!(checks.len(), 6, "{t}");
    for c in &checks {
        let host = c["host"].as_str().unwrap();
        let (version, target) = if host.starts_with("a-") {
            ("3.4.23", "3.5.0")
        } else {
            ("3.5.0", "3.5.1")
        };
        assert_eq!(c["version"], version, "{t}");
        assert_eq!(c["target"], target, "{t}");
        assert_eq!(c["problems"].as_array().map(Vec::len), Some(0), "{t}");
    }
    let finished = of_kind(&evs, "cluster_finished");
    assert_eq!(finished.len(), 2, "{t}");
    assert!(finished.iter().all(|e| e["ok"] == true), "{t}");

    let mut named: Vec<&str> = of_kind(&evs, "cluster")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    named.sort();
    assert_eq!(named, ["alpha", "beta"], "{t}");

    // `status` asks each cluster for its own members and leader.
    let out = etcdroll(s.dir.path(), &["status", "-i", &inv, "--output", "json"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    assert_eq!(of_kind(&evs, "member_status").len(), 6, "{t}");
    for c in of_kind(&evs, "cluster") {
        assert_eq!(c["members"], 3, "{t}");
        assert_eq!(c["healthy"], 3, "{t}");
        let leader = c["leader"].as_str().unwrap();
        let prefix = if c["name"] == "alpha" { "a-" } else { "b-" };
        assert!(leader.starts_with(prefix), "{t}");
    }
    assert_eq!(of_kind(&evs, "cluster").len(), 2, "{t}");

    // `backup` too takes each cluster on its own: a snapshot of every member.
    let out = etcdroll(s.dir.path(), &["backup", "-i", &inv, "--output", "json"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    let done = of_kind(&evs, "host_done");
    assert_eq!(done.len(), 6, "{t}");
    for d in done {
        let snap = d["backup"].as_str().unwrap();
        assert!(std::fs::metadata(snap).unwrap().len() > 0, "{snap}");
    }
    assert_eq!(of_kind(&evs, "cluster_finished").len(), 2, "{t}");
}
