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
    let out = upgrade_351(&s, &inv);
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
    let mut child = spawn_upgrade_351(&s, &inv);
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
    // The next steps, as data: the same command to continue, and the rollback.
    let next = last["next"].as_array().expect("run_finished.next");
    let what: Vec<&str> = next.iter().map(|n| n["what"].as_str().unwrap()).collect();
    assert_eq!(what, ["continue", "rollback"], "{last}");
    let again = next[0]["command"].as_str().unwrap();
    assert!(again.contains("upgrade") && again.contains(&inv), "{last}");
    assert!(
        next[1]["command"]
            .as_str()
            .unwrap()
            .starts_with("etcdroll rollback -i "),
        "{last}"
    );

    let out = upgrade_351(&s, &inv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_all_on(&lab, "3.5.1");
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
    let mut first = spawn_upgrade_351(&s, &inv);
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

/// One acknowledged-or-not write through etcd's JSON gateway, by plain HTTP/1.1
/// from the root namespace (members are reachable on the lab bridge).
fn put(addr: std::net::SocketAddr, key: &str, value: &str) -> bool {
    use base64::Engine;
    use std::io::{Read, Write};
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let body = format!("{{\"key\":\"{}\",\"value\":\"{}\"}}", b64(key), b64(value));
    let Ok(mut c) =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300))
    else {
        return false;
    };
    let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(3)));
    let req = format!(
        "POST /v3/kv/put HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if c.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.1 200") && resp.contains("\"header\"")
}

#[test]
fn nothing_acknowledged_is_lost_while_a_client_writes_through_the_upgrade() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let addrs: Vec<std::net::SocketAddr> = lab
        .members
        .iter()
        .map(|m| std::net::SocketAddr::new(m.ip(), 2379))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut acked, mut refused) = (Vec::new(), 0usize);
            let mut i = 0usize;
            // Bounded: stops when told, or after 20 000 writes.
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < 20_000 {
                let key = format!("/load/{i:06}");
                if put(addrs[i % addrs.len()], &key, &format!("v{i}")) {
                    acked.push(key);
                } else {
                    refused += 1;
                }
                i += 1;
            }
            (acked, refused)
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = upgrade_351(&s, &inv);
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, refused) = writer.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stored = lab
        .etcdctl(
            &lab.members[0],
            &["get", "--prefix", "/load/", "--keys-only"],
        )
        .unwrap();
    let stored: std::collections::HashSet<&str> =
        stored.lines().filter(|l| !l.is_empty()).collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|k| !stored.contains(k.as_str()))
        .collect();
    eprintln!(
        "load during the upgrade: {} writes acknowledged, {refused} refused or unanswered (to a member being restarted), {} lost",
        acked.len(),
        lost.len()
    );
    assert!(acked.len() > 50, "the client kept writing: {}", acked.len());
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

#[test]
fn a_host_that_accepts_tcp_but_never_speaks_ssh_fails_within_the_connect_timeout() {
    // A listener on loopback that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = std::thread::spawn(move || {
        let mut conns = Vec::new();
        if let Ok((c, _)) = listener.accept() {
            conns.push(c);
            std::thread::sleep(std::time::Duration::from_secs(8));
        }
    });
    let s = Scratch::new();
    let inv = s.path("silent.ini");
    std::fs::write(
        &inv,
        format!("[etcd]\nsilent ansible_host=127.0.0.1 ansible_port={port} ansible_user=root\n"),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let out = etcdroll(
        s.dir.path(),
        &[
            "exec",
            "-i",
            inv.to_str().unwrap(),
            "--connect-timeout",
            "2s",
            "--output",
            "plain",
            "--",
            "true",
        ],
    );
    let took = t0.elapsed();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(
        t.contains("silent") && t.contains("no SSH answer within 2s"),
        "{t}"
    );
    assert!(took < std::time::Duration::from_secs(6), "took {took:?}");
    let _ = hold.join();
}

#[test]
fn a_member_cut_off_while_waited_on_times_out_cleanly_and_a_rerun_completes() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let bin = etcd_bin("3.5.1", "etcd");
    let pids: Vec<String> = lab.members.iter().map(etcd_pid).collect();
    let mut child = etcdroll_cmd(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &bin,
            "--yes",
            "--output",
            "json",
            "--health-timeout",
            "4s",
            "--command-timeout",
            "6s",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut cut: Option<LabHost> = None;
    let mut evs: Vec<Value> = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if cut.is_none() && v["event"] == "step" && v["step"] == "starting" {
            let h = lab
                .members
                .iter()
                .find(|m| m.name == v["host"])
                .unwrap()
                .clone();
            let o = lab.run_in(&h, "ip link set eth0 down").unwrap();
            assert!(o.status.success());
            cut = Some(h);
        }
        evs.push(v);
    }
    let code = child.wait().unwrap().code();
    let cut = cut.expect("a member was cut");
    let last = evs.last().unwrap();
    assert_ne!(code, Some(0), "{evs:#?}");
    let msg = last["message"].as_str().unwrap_or("");
    assert!(
        msg.contains(&cut.name),
        "the report names the member: {msg}"
    );
    assert!(
        msg.contains("within 4s") || msg.contains("timed out"),
        "the report names the limit: {msg}"
    );
    // No other member was stopped.
    for (m, pid) in lab.members.iter().zip(&pids) {
        if m.name != cut.name {
            assert_eq!(&etcd_pid(m), pid, "{} was restarted", m.name);
        }
    }
    let o = lab.run_in(&cut, "ip link set eth0 up").unwrap();
    assert!(o.status.success());
    lab.wait_cluster_healthy(std::time::Duration::from_secs(30))
        .unwrap();
    let out = upgrade_351(&s, &inv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_all_on(&lab, "3.5.1");
}

/// The sshd processes serving connections on a host (children of its listener).
fn session_sshds(lab: &Lab, host: &LabHost) -> Vec<i32> {
    let listener = std::fs::read_to_string(host.dir.join("sshd.pid"))
        .unwrap()
        .trim()
        .to_string();
    let out = Command::new("ip")
        .args(["netns", "pids", &host.netns])
        .output()
        .unwrap();
    let _ = lab;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let after = stat.rsplit_once(") ").map(|(_, a)| a).unwrap_or("");
            let ppid = after.split_whitespace().nth(1).unwrap_or("");
            stat.contains("(sshd)") && ppid == listener
        })
        .collect()
}

#[test]
fn a_session_killed_during_staging_is_reconnected_and_no_partial_binary_is_in_place() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let mut child = spawn_upgrade_351(&s, &inv);
    let victim = lab.members[0].clone();
    let mut killed = 0;
    let mut evs: Vec<Value> = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if killed == 0 && v["event"] == "upload" && v["host"] == victim.name.as_str() {
            for pid in session_sshds(&lab, &victim) {
                // SAFETY: killing an sshd session process inside our own lab namespace.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
                killed += 1;
            }
            // Whatever is at the binary's name now must be a whole binary.
            assert!(
                !victim.etcd_binary.with_extension("new").exists() || installed_staged_ok(&victim)
            );
        }
        evs.push(v);
    }
    let status = child.wait().unwrap();
    assert!(killed > 0, "no session was killed");
    assert_eq!(status.code(), Some(0), "{evs:#?}");
    assert!(
        of_kind(&evs, "warning")
            .iter()
            .any(|w| w["message"].as_str().unwrap().contains("reconnecting")),
        "{evs:#?}"
    );
    for m in &lab.members {
        assert_eq!(installed_version(m), "3.5.1");
        let leftovers: Vec<String> = std::fs::read_dir(m.dir.join("bin"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{}: {leftovers:?}", m.name);
    }
}

/// A staged etcd.new, if present, is the complete binary (it only ever gets that
/// name after its checksum matched).
fn installed_staged_ok(h: &LabHost) -> bool {
    let out = Command::new(h.etcd_binary.with_extension("new"))
        .arg("--version")
        .output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("3.5.1"))
}

#[test]
fn a_second_ctrl_c_stops_at_once_and_says_which_member_is_in_which_state() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let mut child = spawn_upgrade_351(&s, &inv);
    let mut evs: Vec<Value> = Vec::new();
    let mut pressed = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if pressed == 0 && v["event"] == "step" && v["step"] == "stopping" {
            for _ in 0..2 {
                // SAFETY: signalling our own child.
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGINT);
                }
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
            pressed = 2;
        }
        evs.push(v);
    }
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let last = evs.last().unwrap();
    assert_eq!(last["event"], "run_finished", "{evs:#?}");
    let msg = last["message"].as_str().unwrap();
    assert!(
        msg.contains("stopped NOW") && msg.contains("Member states"),
        "{msg}"
    );
    for m in &lab.members {
        assert!(msg.contains(&format!("{}:", m.name)), "{msg}");
    }
    // The member mid-restart still comes back (its remote script ignores the hang-up).
    lab.wait_cluster_healthy(std::time::Duration::from_secs(30))
        .unwrap();
    let out = upgrade_351(&s, &inv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A disk that fills up while the new binary arrives: staging fails on that host,
/// naming it and the cause, no member is stopped, and no partial file is left.
#[test]
fn a_disk_that_fills_during_the_upload_fails_staging_and_stops_nothing() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let victim = lab.members.iter().find(|m| m.name == "m1").unwrap();
    let bin_dir = victim.etcd_binary.parent().unwrap().to_path_buf();
    // The bin dir becomes a tmpfs holding copies of its binaries and 4 MiB to spare.
    let keep = s.path("bin-copy");
    std::fs::create_dir_all(&keep).unwrap();
    let mut used = 0;
    for f in std::fs::read_dir(&bin_dir).unwrap() {
        let f = f.unwrap();
        used += f.metadata().unwrap().len();
        std::fs::copy(f.path(), keep.join(f.file_name())).unwrap();
    }
    let size = format!("size={}k", used / 1024 + 4096);
    let m = Mount {
        sshd_pid: std::fs::read_to_string(victim.dir.join("sshd.pid"))
            .unwrap()
            .trim()
            .to_string(),
        dir: bin_dir.display().to_string(),
    };
    let st = Command::new("nsenter")
        .args(["-t", &m.sshd_pid, "-m", "--", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o {size} tmpfs \"$1\" && cp -a \"$2\"/. \"$1\"/"
        ))
        .args(["sh", &m.dir, &keep.display().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let pids: Vec<String> = lab.members.iter().map(etcd_pid).collect();
    let out = upgrade_351(&s, &inv);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(
        t.contains("m1") && t.contains("No space left on device"),
        "{t}"
    );
    assert!(t.contains("no member was stopped"), "{t}");
    let now: Vec<String> = lab.members.iter().map(etcd_pid).collect();
    assert_eq!(now, pids, "no member was restarted");
    // Nothing half-written is left in the full directory.
    let listing = Command::new("nsenter")
        .args(["-t", &m.sshd_pid, "-m", "--", "ls", "-a", &m.dir])
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(
        !names.contains(".tmp") && !names.contains("etcd.new"),
        "{names}"
    );
}

/// Kill a member's restart script (and the controller) while the member is
/// stopped, at `step`; the slow part is a `sleep` spliced into the inventory's
/// stop or start command. Returns the member left stopped. (What kills it stands in
/// for whatever can end a script on a host: an OOM kill, a reboot, an operator.)
fn leave_a_member_stopped(lab: &Lab, s: &Scratch, inv: &str, step: &str) -> LabHost {
    // A pause of its own per test, so tests running side by side never meet.
    let pause = if step == "stopping" { "31.7" } else { "31.8" };
    let text_inv = std::fs::read_to_string(inv).unwrap();
    let slow: String = text_inv
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if step == "stopping" && t.starts_with("etcd_stop_cmd:") {
                format!("{l} && sleep {pause}")
            } else if step == "starting" && t.starts_with("etcd_start_cmd:") {
                l.replacen(
                    "etcd_start_cmd: ",
                    &format!("etcd_start_cmd: sleep {pause} && "),
                    1,
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let slow_inv = s.path("slow.yml");
    std::fs::write(&slow_inv, slow).unwrap();
    let mut child = spawn_upgrade_351(s, slow_inv.to_str().unwrap());
    let mut victim = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "step" && v["step"] == step {
            victim = v["host"].as_str().unwrap().to_string();
            break;
        }
    }
    assert!(!victim.is_empty(), "the run never reached {step}");
    // Let the stop happen (or the swap), then kill everything that would finish it.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = child.kill();
    let _ = child.wait();
    // The sleep's parent is the subshell running the command, whose parent is the
    // restart script: kill those first, so nothing goes on after the sleep dies.
    let found = Command::new("pgrep")
        .args(["-f", &format!("^sleep {pause}$")])
        .output()
        .unwrap();
    let parent = |pid: &str| -> String {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        after.split_whitespace().nth(1).unwrap_or("0").to_string()
    };
    let sleeps: Vec<String> = String::from_utf8_lossy(&found.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(sleeps.len(), 1, "one sleep {pause} expected: {sleeps:?}");
    let sub = parent(&sleeps[0]);
    let script = parent(&sub);
    for pid in [&script, &sub, &sleeps[0]] {
        Command::new("kill").args(["-9", pid]).status().unwrap();
    }
    let host = lab
        .members
        .iter()
        .find(|m| m.name == victim)
        .unwrap()
        .clone();
    let status = lab.service(&host, "status").unwrap();
    assert!(!status.status.success(), "{victim} should be stopped now");
    host
}

/// Design §1: a re-run recognises a member an interrupted run left stopped before
/// its binary was swapped, starts it again, then upgrades the whole cluster.
#[test]
fn a_member_left_stopped_before_the_swap_is_started_again_by_the_rerun() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let host = leave_a_member_stopped(&lab, &s, &inv, "stopping");
    assert_eq!(installed_version(&host), "3.4.23");

    // `check` names it and what `upgrade` will do, and changes nothing.
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
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&host.name) && t.contains("left so by an interrupted etcdroll run"),
        "{t}"
    );
    assert!(!lab.service(&host, "status").unwrap().status.success());

    let out = upgrade_351(&s, &inv);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    assert!(
        of_kind(&evs, "warning")
            .iter()
            .any(|w| w["host"] == host.name.as_str()
                && w["message"]
                    .as_str()
                    .unwrap()
                    .contains("started again on 3.4.23")),
        "{t}"
    );
    assert_all_on(&lab, "3.5.1");
}

/// The same after the swap: the member is started on the new binary and counts as
/// upgraded; the others are upgraded after it.
#[test]
fn a_member_left_stopped_after_the_swap_is_started_on_the_new_binary() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let host = leave_a_member_stopped(&lab, &s, &inv, "starting");
    assert_eq!(installed_version(&host), "3.5.1");

    let out = upgrade_351(&s, &inv);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    assert!(
        of_kind(&evs, "warning")
            .iter()
            .any(|w| w["host"] == host.name.as_str()
                && w["message"]
                    .as_str()
                    .unwrap()
                    .contains("started again on 3.5.1")),
        "{t}"
    );
    // It was not restarted a second time by the roll.
    assert!(
        !of_kind(&evs, "step")
            .iter()
            .any(|e| e["host"] == host.name.as_str() && e["step"] == "stopping"),
        "{t}"
    );
    assert_all_on(&lab, "3.5.1");
}
