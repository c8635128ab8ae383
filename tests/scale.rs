//! Several clusters in one inventory, upgraded in parallel; fan-out of `exec`.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
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

fn ro_backups(lab: &Lab) -> Vec<String> {
    lab.members
        .iter()
        .map(|m| {
            let pid = std::fs::read_to_string(m.dir.join("sshd.pid"))
                .unwrap()
                .trim()
                .to_string();
            let dir = m.backup_dir.display().to_string();
            let st = Command::new("nsenter")
                .args([
                    "-t",
                    &pid,
                    "-m",
                    "--",
                    "mount",
                    "-t",
                    "tmpfs",
                    "-o",
                    "size=512m,ro",
                    "tmpfs",
                    &dir,
                ])
                .status()
                .unwrap();
            assert!(st.success());
            format!("{pid} {dir}")
        })
        .collect()
}

fn unmount(mounts: Vec<String>) {
    for m in mounts {
        let (pid, dir) = m.split_once(' ').unwrap();
        let _ = Command::new("nsenter")
            .args(["-t", pid, "-m", "--", "umount", "-l", dir])
            .status();
    }
}

#[test]
fn two_clusters_upgrade_in_parallel_one_member_at_a_time_and_a_failure_stays_in_its_cluster() {
    let Some(a) = lab_default() else { return };
    let Some(b) = lab_default() else { return };
    let s = Scratch::new();
    let inv = s.path("two.yml");
    let yaml = format!(
        "all:\n  vars:\n    ansible_user: root\n  children:\n    etcd:\n      hosts:\n{}{}",
        a.member_entries("a-", "etcd_cluster: alpha"),
        b.member_entries("b-", "etcd_cluster: beta")
    );
    std::fs::write(&inv, yaml).unwrap();
    let inv = inv.display().to_string();
    let addrs = |l: &Lab| {
        l.members
            .iter()
            .map(|m| SocketAddr::new(m.ip(), 2379))
            .collect::<Vec<_>>()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let poller = poll_down(vec![addrs(&a), addrs(&b)], stop.clone());

    // beta cannot back up (read-only backup dirs): beta stops at its first member,
    // alpha is upgraded all the same. A pause after each member keeps alpha's roll
    // long enough that a busy machine's slow handshakes for beta cannot make the
    // runs look sequential.
    let mounts = ro_backups(&b);
    let bin = etcd_bin("3.5.1", "etcd");
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--forks", "2", "--settle", "1s", "--yes",
            "--output", "json",
        ],
    );
    unmount(mounts);
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
    for m in &a.members {
        assert_eq!(installed_version(m), "3.5.1");
    }
    for m in &b.members {
        assert_eq!(installed_version(m), "3.4.23");
    }
    // In parallel: beta's failure came before alpha finished its members.
    let pos = |pred: &dyn Fn(&serde_json::Value) -> bool| evs.iter().position(pred).unwrap();
    let beta_failed =
        pos(&|e| e["event"] == "host_failed" && e["host"].as_str().unwrap().starts_with("b-"));
    let alpha_last_done = evs
        .iter()
        .rposition(|e| e["event"] == "host_done" && e["host"].as_str().unwrap().starts_with("a-"))
        .unwrap();
    assert!(
        beta_failed < alpha_last_done,
        "clusters ran one after the other: {t}"
    );
    assert_eq!(evs.last().unwrap()["event"], "run_finished");

    // With the backups writable again, a re-run upgrades beta and leaves alpha be.
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
    let Some(lab) = lab(LabSpec {
        members: 0,
        plain_hosts: 30,
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    // Each host sleeps 5 s rather than 2: all 30 "hosts" share this machine's two
    // cores, and 30 sshd logins plus root's bash start-up (~80 ms of pyenv init
    // each) take about 2.5 s of CPU on their own — measured here, an OpenSSH
    // parallel loop needs 3.3 s for `true` on the same 30 hosts. The check is
    // still ordering only: every start comes before the first end.
    let out = etcdroll(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--group",
            "hosts",
            "--output",
            "json",
            "--",
            "date +%s.%N; sleep 5; date +%s.%N",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    let res = of_kind(&evs, "exec_result");
    assert_eq!(res.len(), 30, "{t}");
    let times: Vec<(f64, f64)> = res
        .iter()
        .map(|e| {
            let out = e["stdout"].as_str().unwrap();
            let mut l = out.lines().map(|x| x.trim().parse::<f64>().unwrap());
            (l.next().unwrap(), l.next().unwrap())
        })
        .collect();
    let last_start = times.iter().map(|t| t.0).fold(f64::MIN, f64::max);
    let first_end = times.iter().map(|t| t.1).fold(f64::MAX, f64::min);
    assert!(
        last_start < first_end,
        "all 30 started before the first ended: {times:?}"
    );
}
