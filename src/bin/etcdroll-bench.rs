//! The benchmark behind `scripts/bench` (root, uses the lab). Everything is measured
//! side by side in one run, interleaved, and printed as ratios to the floor or the
//! peer, because this machine is shared and absolute times drift:
//!
//! - upgrade: the same 3-member 3.4.23 -> 3.5.1 procedure run three ways on fresh
//!   labs: the floor (the steps run directly inside each namespace, no SSH),
//!   etcdroll, and a hand-written OpenSSH script with ControlMaster
//!   (scripts/bench-openssh-peer.sh). A poller in the root namespace asks every
//!   member's /health every 20 ms and measures each member's time down.
//! - upload: 24 MB to one host, etcdroll's upload vs scp.
//! - fan-out: `exec -- true` on 30 and 100 hosts vs a parallel OpenSSH loop.
//!
//! Results go to stdout and target/bench/results.json.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcdroll::lab::{Lab, LabHost, LabSpec};
use serde_json::json;

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn healthy(addr: &SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = TcpStream::connect_timeout(addr, Duration::from_millis(50)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_millis(300)));
    if c.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut s = String::new();
    let _ = c.read_to_string(&mut s);
    s.contains("\"health\":\"true\"")
}

/// Polls every member every 20 ms; returns each member's total time unhealthy (ms).
fn poller(addrs: Vec<SocketAddr>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let mut down_since: Vec<Option<Instant>> = vec![None; addrs.len()];
        let mut total = vec![0.0; addrs.len()];
        while !stop.load(Ordering::SeqCst) {
            for (i, a) in addrs.iter().enumerate() {
                let ok = healthy(a);
                match (ok, down_since[i]) {
                    (false, None) => down_since[i] = Some(Instant::now()),
                    (true, Some(t)) => {
                        total[i] += t.elapsed().as_secs_f64() * 1000.0;
                        down_since[i] = None;
                    }
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        total
    })
}

/// Run a child to completion; wall time (s) and peak RSS (KiB).
fn run_measured(cmd: &mut Command) -> Result<(f64, u64, bool)> {
    run_measured_cpu(cmd).map(|(wall, rss, _, ok)| (wall, rss, ok))
}

/// Also the child's own CPU time (user + system, s): the controller's share of a
/// run on a machine whose cores the lab's "remote" hosts compete for.
fn run_measured_cpu(cmd: &mut Command) -> Result<(f64, u64, f64, bool)> {
    let t0 = Instant::now();
    let child = cmd.spawn().with_context(|| format!("{cmd:?}"))?;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        t0.elapsed().as_secs_f64(),
        usage.ru_maxrss as u64,
        secs(usage.ru_utime) + secs(usage.ru_stime),
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    ))
}

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"))
}

/// The floor: the same steps as etcdroll's, run inside each namespace, no SSH.
fn floor(lab: &Lab, new_etcd: &Path) -> Result<()> {
    let url = lab.local_client_url();
    // Followers first, leader last, as etcdroll does.
    let mut order: Vec<&LabHost> = lab.members.iter().collect();
    let leader = lab.etcdctl(
        &lab.members[0],
        &["endpoint", "status", "--cluster", "-w", "json"],
    )?;
    order.sort_by_key(|m| is_leader(&leader, m));
    for m in &lab.members {
        std::fs::copy(new_etcd, m.dir.join("bin/etcd.new"))?;
    }
    for m in order {
        let d = m.dir.display();
        let script = format!(
            "set -e; B={d}/backup/floor-$$; mkdir -p $B; \
             ETCDCTL_API=3 {d}/bin/etcdctl --endpoints {url} snapshot save $B/snapshot.db >/dev/null; \
             {d}/etcd-service stop; cp -a {d}/data $B/data; ln -f {d}/bin/etcd {d}/bin/etcd.old; \
             mv -f {d}/bin/etcd.new {d}/bin/etcd; {d}/etcd-service start; \
             until exec 3<>/dev/tcp/127.0.0.1/2379 2>/dev/null && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && \
             grep -q '\"health\":\"true\"' <&3; do sleep 0.005; done"
        );
        let out = lab.run_in(m, &format!("bash -c {}", shlex::try_quote(&script)?))?;
        if !out.status.success() {
            bail!(
                "floor on {}: {}",
                m.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    nudge_cluster_version(lab)?;
    wait_cluster_version(lab)
}

/// The same nudge etcdroll gives: hand leadership to another member so the new
/// leader decides the cluster version at once.
fn nudge_cluster_version(lab: &Lab) -> Result<()> {
    let status = lab.etcdctl(
        &lab.members[0],
        &["endpoint", "status", "--cluster", "-w", "json"],
    )?;
    let v: serde_json::Value = serde_json::from_str(&status)?;
    let entries = v.as_array().cloned().unwrap_or_default();
    let leader = entries
        .iter()
        .find(|e| e["Status"]["header"]["member_id"] == e["Status"]["leader"])
        .and_then(|e| e["Endpoint"].as_str().map(str::to_string));
    let other = entries
        .iter()
        .find(|e| e["Status"]["header"]["member_id"] != e["Status"]["leader"])
        .and_then(|e| e["Status"]["header"]["member_id"].as_u64());
    if let (Some(ep), Some(id)) = (leader, other) {
        lab.etcdctl(
            &lab.members[0],
            &["--endpoints", &ep, "move-leader", &format!("{id:x}")],
        )?;
    }
    Ok(())
}

fn is_leader(status_json: &str, m: &LabHost) -> bool {
    // endpoint status JSON: find this member's entry and compare member_id to leader.
    let Ok(v) = serde_json::from_str::<serde_json::Value>(status_json) else {
        return false;
    };
    v.as_array().into_iter().flatten().any(|e| {
        e["Endpoint"]
            .as_str()
            .is_some_and(|ep| ep.contains(&m.ip().to_string()))
            && e["Status"]["header"]["member_id"] == e["Status"]["leader"]
    })
}

fn wait_cluster_version(lab: &Lab) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = &lab.members[0];
    while Instant::now() < deadline {
        let out = lab.run_in(
            m,
            "bash -c 'exec 3<>/dev/tcp/127.0.0.1/2379; printf \"GET /version HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'",
        )?;
        if String::from_utf8_lossy(&out.stdout).contains("\"etcdcluster\":\"3.5.0\"") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("cluster version did not reach 3.5")
}

struct UpgradeRun {
    wall: f64,
    down_ms: Vec<f64>,
    rss_kib: u64,
}

fn one_upgrade(kind: &str, new_etcd: &Path, scratch: &Path) -> Result<UpgradeRun> {
    let lab = Lab::start(&LabSpec::default())?;
    let inv = scratch.join(format!("inv-{kind}.yml"));
    lab.write_inventory(&inv)?;
    let addrs: Vec<SocketAddr> = lab
        .members
        .iter()
        .map(|m| SocketAddr::new(m.ip(), 2379))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let poll = poller(addrs, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let (wall, rss, ok) = match kind {
        "floor" => {
            let t0 = Instant::now();
            floor(&lab, new_etcd)?;
            (t0.elapsed().as_secs_f64(), 0, true)
        }
        "etcdroll" => run_measured(
            Command::new(bin_dir().join("etcdroll"))
                .args(["upgrade", "-i"])
                .arg(&inv)
                .arg("--binary")
                .arg(new_etcd)
                .args(["--yes", "--output", "json"])
                .env("HOME", scratch)
                .env_remove("SSH_AUTH_SOCK")
                .stdout(std::process::Stdio::null()),
        )?,
        _ => {
            let peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench-openssh-peer.sh");
            let mut c = Command::new("bash");
            c.arg(peer)
                .arg(&lab.client_key)
                .arg(&lab.known_hosts)
                .arg(new_etcd)
                .arg(lab.local_client_url());
            for m in &lab.members {
                c.arg(format!("{}={}", m.ip(), m.dir.display()));
            }
            run_measured(
                c.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null()),
            )?
        }
    };
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    let down_ms = poll
        .join()
        .map_err(|_| anyhow::anyhow!("poller panicked"))?;
    if !ok {
        bail!("{kind} upgrade failed");
    }
    Ok(UpgradeRun {
        wall,
        down_ms,
        rss_kib: rss,
    })
}

fn main() -> Result<()> {
    if let Err(why) = Lab::available() {
        bail!("the benchmark needs the lab: {why}");
    }
    let runs: usize = std::env::var("ETCDROLL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (new_etcd, _, _) = Lab::etcd_binaries("3.5.1")?;
    let scratch = tempdir()?;
    let mut results = serde_json::Map::new();

    // 1. The upgrade, three ways, interleaved.
    let kinds = ["floor", "etcdroll", "openssh"];
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut downs: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut rss = Vec::new();
    for r in 0..runs {
        for (k, kind) in kinds.iter().enumerate() {
            let run = one_upgrade(kind, &new_etcd, &scratch)?;
            eprintln!(
                "run {r} {kind:<9} wall {:.2}s, down per member {:?} ms",
                run.wall,
                run.down_ms
                    .iter()
                    .map(|d| d.round() as i64)
                    .collect::<Vec<_>>()
            );
            walls[k].push(run.wall);
            downs[k].extend(run.down_ms);
            if *kind == "etcdroll" {
                rss.push(run.rss_kib as f64);
            }
        }
    }
    let wall: Vec<f64> = walls.iter().map(|w| median(w.clone())).collect();
    let down: Vec<f64> = downs.iter().map(|d| median(d.clone())).collect();
    println!("\nUpgrade 3 members 3.4.23 -> 3.5.1 (median of {runs} interleaved runs)");
    println!(
        "{:<28} {:>10} {:>12} {:>16}",
        "", "wall", "× floor", "down/member"
    );
    for (k, kind) in kinds.iter().enumerate() {
        println!(
            "{:<28} {:>9.2}s {:>11.2}× {:>13.0} ms",
            kind,
            wall[k],
            wall[k] / wall[0],
            down[k]
        );
    }
    println!(
        "etcdroll overhead per member (down time minus the floor's): {:.0} ms; peak RSS {:.1} MiB",
        down[1] - down[0],
        median(rss.clone()) / 1024.0
    );
    results.insert(
        "upgrade".into(),
        json!({
            "runs": runs,
            "wall_s": {"floor": wall[0], "etcdroll": wall[1], "openssh_peer": wall[2]},
            "ratio_to_floor": {"etcdroll": wall[1] / wall[0], "openssh_peer": wall[2] / wall[0]},
            "down_ms_per_member": {"floor": down[0], "etcdroll": down[1], "openssh_peer": down[2]},
            "etcdroll_overhead_ms_per_member": down[1] - down[0],
            "etcdroll_peak_rss_kib": median(rss),
        }),
    );

    // 2. Upload, etcdroll vs scp, interleaved.
    let lab = Lab::start(&LabSpec {
        members: 0,
        plain_hosts: 1,
        ..LabSpec::default()
    })?;
    let inv = scratch.join("inv-upload.yml");
    lab.write_inventory(&inv)?;
    let size = std::fs::metadata(&new_etcd)?.len() as f64 / 1e6;
    let (mut ours, mut scp) = (Vec::new(), Vec::new());
    let rt = tokio::runtime::Runtime::new()?;
    let h = &lab.plain_hosts[0];
    for _ in 0..runs.max(3) {
        ours.push(size / rt.block_on(upload_once(&inv, &new_etcd))?);
        let (t, _, ok) = run_measured(
            Command::new("scp")
                .arg("-q")
                .arg("-i")
                .arg(&lab.client_key)
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", lab.known_hosts.display()))
                .args(["-o", "BatchMode=yes", "-F", "/dev/null"])
                .arg(&new_etcd)
                .arg(format!("root@{}:/tmp/etcdroll-bench-scp", h.ip())),
        )?;
        if !ok {
            bail!("scp failed");
        }
        scp.push(size / t);
    }
    let (o, s) = (median(ours), median(scp));
    println!("\nUpload {size:.1} MB to one host");
    println!(
        "etcdroll {o:.0} MB/s, scp {s:.0} MB/s: {:.0}% of scp",
        100.0 * o / s
    );
    results.insert(
        "upload".into(),
        json!({"mb": size, "etcdroll_mb_s": o, "scp_mb_s": s, "ratio": o / s}),
    );
    drop(lab);

    // 3. Fan-out: exec -- true on 30 and 100 hosts vs a parallel OpenSSH loop.
    let mut fan = serde_json::Map::new();
    for n in [30usize, 100] {
        let lab = Lab::start(&LabSpec {
            members: 0,
            plain_hosts: n,
            ..LabSpec::default()
        })?;
        let inv = scratch.join(format!("inv-{n}.yml"));
        lab.write_inventory(&inv)?;
        let (mut ours, mut theirs, mut mem, mut cpu) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let (t, r, c, ok) = run_measured_cpu(
                Command::new(bin_dir().join("etcdroll"))
                    .args(["exec", "-i"])
                    .arg(&inv)
                    .args(["--group", "hosts", "--output", "json", "--", "true"])
                    .env("HOME", &scratch)
                    .stdout(std::process::Stdio::null()),
            )?;
            if !ok {
                bail!("etcdroll exec on {n} hosts failed");
            }
            ours.push(t);
            mem.push(r as f64);
            cpu.push(c);
            let mut loop_script = String::new();
            for h in &lab.plain_hosts {
                loop_script.push_str(&format!(
                    "ssh -i {} -o UserKnownHostsFile={} -o BatchMode=yes -F /dev/null root@{} true & ",
                    lab.client_key.display(),
                    lab.known_hosts.display(),
                    h.ip()
                ));
            }
            loop_script.push_str("wait");
            let (t, _, _) = run_measured(
                Command::new("bash")
                    .arg("-c")
                    .arg(&loop_script)
                    .stderr(std::process::Stdio::null()),
            )?;
            theirs.push(t);
        }
        let (o, t, m, c) = (median(ours), median(theirs), median(mem), median(cpu));
        println!(
            "\nexec -- true on {n} hosts: etcdroll {o:.2}s (controller CPU {c:.2}s, peak RSS {:.1} MiB), \
             OpenSSH loop {t:.2}s: {:.2}× the loop",
            m / 1024.0,
            o / t
        );
        fan.insert(
            format!("{n}"),
            json!({"etcdroll_s": o, "etcdroll_cpu_s": c, "openssh_loop_s": t, "ratio": o / t, "etcdroll_peak_rss_kib": m}),
        );
    }
    results.insert("fan_out".into(), serde_json::Value::Object(fan));

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!("\nwritten to {}", out.join("results.json").display());
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

async fn upload_once(inv: &Path, file: &Path) -> Result<f64> {
    use etcdroll::inventory::{load, LoadOptions};
    use etcdroll::ssh::{Connector, Payload, SshOptions};
    use etcdroll::upgrade::{connect_all, ReachOptions};
    let inv = load(
        inv,
        &LoadOptions {
            group: "hosts",
            limit: None,
        },
    )?;
    let connector = std::sync::Arc::new(Connector::new(SshOptions {
        use_agent: false,
        ..SshOptions::default()
    }));
    let links = connect_all(connector, &inv.hosts, &ReachOptions::default()).await;
    let session = links[0].session()?;
    let payload = Payload::read(file)?;
    let t0 = Instant::now();
    session
        .upload(
            &payload,
            "/tmp/etcdroll-bench-upload",
            Duration::from_secs(60),
            &|_| {},
        )
        .await?;
    Ok(t0.elapsed().as_secs_f64())
}

fn tempdir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("etcdroll-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
