//! The benchmark behind `scripts/bench` (root, uses the lab). Everything is measured
//! side by side in one run, interleaved, and printed as ratios to the floor or the
//! peer, because this machine is shared and absolute times drift:
//!
//! - upgrade: the same 3-member 3.4.23 -> newest Debian 3.5 procedure run three ways on fresh
//!   labs: the floor (the steps run directly inside each namespace, no SSH),
//!   etcdroll, and a hand-written OpenSSH script with ControlMaster
//!   (scripts/bench-openssh-peer.sh). A poller in the root namespace asks every
//!   member's /health every 20 ms and measures each member's time down.
//! - upload: 24 MB to one host, etcdroll's upload vs scp, first on a new
//!   connection and again on the same one.
//! - fan-out: `exec -- true` and `check` on 30 and 100 hosts vs a parallel
//!   OpenSSH loop of `ssh host true`.
//!
//! Results go to stdout and target/bench/results.json.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcdroll::etcd::client::{BoxStream, Dial, DialFuture};
use etcdroll::etcd::{commands, EtcdClient, Version};
use etcdroll::inventory::{load, Host, LoadOptions};
use etcdroll::ssh::RemoteCommand;
use etcdroll::upgrade::phase::roll::turn::{Restart, Swap};
use etcdroll_lab::{Lab, LabHost, LabSpec};
use serde_json::json;
use sha2::Digest;

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

/// An etcd client straight to a member's client port from the root namespace: the
/// same HTTP calls etcdroll makes, without the SSH tunnel.
struct DirectDial(SocketAddr);

impl Dial for DirectDial {
    fn dial(&self) -> DialFuture<'_> {
        let addr = self.0;
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s) as BoxStream)
        })
    }
}

fn client(m: &LabHost) -> EtcdClient {
    let addr = SocketAddr::new(m.ip(), 2379);
    EtcdClient::new(
        &format!("http://{addr}"),
        Box::new(DirectDial(addr)),
        Duration::from_secs(5),
    )
}

/// Run one of etcdroll's own remote commands inside the member's namespace.
fn sh_in(lab: &Lab, m: &LabHost, cmd: &RemoteCommand) -> Result<std::process::Output> {
    let out = lab.run_in(m, cmd.as_str())?;
    if !out.status.success() {
        bail!(
            "floor on {}: `{}` failed: {}",
            m.name,
            cmd.as_str(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Seconds spent in each phase, as etcdroll's events split them.
#[derive(Default, Clone)]
struct Phases {
    preflight: f64,
    stage: f64,
    roll: f64,
    finish: f64,
}

/// The floor: etcdroll's steps, with etcdroll's own command scripts and HTTP client,
/// run directly inside the namespaces (no SSH, no login, no upload: the new binary
/// is copied in place locally). Pre-flight (probe, /version, /health, status,
/// member list), staging (copy, sha256 check, install as etcd.new, --version), then
/// followers first and the leader last with leadership moved away first: snapshot,
/// stop, copy, swap, start in one script, wait until healthy on the new version,
/// caught up and every member healthy; then the cluster version (with the same
/// leadership nudge) and `etcdctl endpoint health` on every member.
async fn floor(lab: &Lab, hosts: &[Host], new_etcd: &Path, phases: &mut Phases) -> Result<()> {
    let poll = Duration::from_millis(50);
    let want = Version::new(3, 5, 1);
    let mut clients: Vec<EtcdClient> = lab.members.iter().map(client).collect();
    let t = Instant::now();
    let probes = lab.members.iter().zip(hosts).map(|(m, h)| async move {
        let turn_file = format!("{}/etcdroll.turn", h.lock_dir);
        tokio::task::block_in_place(|| sh_in(lab, m, &commands::probe(&h.etcd, &turn_file)))
    });
    for p in futures::future::join_all(probes).await {
        p?;
    }
    let mut ids = Vec::new();
    let mut leader = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        c.version().await?;
        if !c.health().await?.healthy {
            bail!("floor: member {i} unhealthy before the upgrade");
        }
        let s = c.status().await?;
        if s.leader == s.member_id {
            leader = i;
        }
        ids.push(s.member_id);
    }
    clients[leader].members().await?;
    phases.preflight = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let sum = hex::encode(sha2::Sha256::digest(std::fs::read(new_etcd)?));
    let stages = lab.members.iter().zip(hosts).map(|(m, h)| {
        let sum = sum.clone();
        async move {
            tokio::task::block_in_place(|| -> Result<()> {
                let tmp = commands::upload_tmp_path(&h.etcd.binary, "floor", 0);
                std::fs::copy(new_etcd, &tmp)?;
                let out = sh_in(lab, m, &RemoteCommand::new("sha256sum").arg(&tmp))?;
                if !String::from_utf8_lossy(&out.stdout).starts_with(&sum) {
                    bail!("floor: checksum mismatch on {}", m.name);
                }
                sh_in(
                    lab,
                    m,
                    &commands::stage_installed(
                        &tmp,
                        &h.etcd.binary,
                        &commands::staged_path(&h.etcd.binary),
                    ),
                )?;
                let staged = commands::staged_path(&h.etcd.binary);
                sh_in(lab, m, &RemoteCommand::new(&staged).arg("--version"))?;
                Ok(())
            })
        }
    });
    for s in futures::future::join_all(stages).await {
        s?;
    }
    phases.stage = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut order: Vec<usize> = (0..lab.members.len()).filter(|&i| i != leader).collect();
    order.push(leader);
    for i in order {
        if i == leader {
            let to = (i + 1) % ids.len();
            clients[i].move_leader(ids[to]).await?;
            loop {
                let s = clients[i].status().await?;
                if s.leader != s.member_id && s.leader != 0 {
                    break;
                }
                tokio::time::sleep(poll).await;
            }
        }
        let (m, v) = (&lab.members[i], &hosts[i].etcd);
        let dir = format!("{}/floor", v.backup_dir);
        let turn_file = format!("{}/etcdroll.turn", hosts[i].lock_dir);
        let script = Restart {
            vars: v,
            turn_file,
            turn_line: "run floor".into(),
            snapshot: Some(commands::snapshot_save(v, &dir)),
            offline: Some(commands::offline_backup(v, &dir, false)),
            swap: Swap::In,
            binaries: vec![v.binary.clone()],
            start_limit: Duration::from_secs(60),
        }
        .command();
        tokio::task::block_in_place(|| sh_in(lab, m, &script))?;
        clients[i].reset();
        loop {
            let up = match clients[i].version().await {
                Ok(vi) if Version::parse(&vi.server) == Some(want) => {
                    matches!(clients[i].health().await, Ok(h) if h.healthy)
                }
                _ => false,
            };
            if up {
                break;
            }
            tokio::time::sleep(poll).await;
        }
        let mut now_leader = 0;
        for (j, c) in clients.iter_mut().enumerate() {
            let s = c.status().await?;
            if s.leader == s.member_id {
                now_leader = j;
            }
        }
        let target = clients[now_leader].status().await?.raft_index;
        while clients[i].status().await?.raft_index < target {
            tokio::time::sleep(poll).await;
        }
        for c in clients.iter_mut() {
            while !matches!(c.health().await, Ok(h) if h.healthy) {
                tokio::time::sleep(poll).await;
            }
        }
    }
    phases.roll = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let minor = |c: &str| Version::parse(c).is_some_and(|v| v >= Version::new(3, 5, 0));
    if !minor(&clients[0].version().await?.cluster) {
        for (j, c) in clients.iter_mut().enumerate() {
            let s = c.status().await?;
            if s.leader == s.member_id {
                let _ = c.move_leader(ids[(j + 1) % ids.len()]).await;
                break;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !minor(&clients[0].version().await?.cluster) {
        if Instant::now() > deadline {
            bail!("floor: the cluster version did not reach 3.5");
        }
        tokio::time::sleep(poll).await;
    }
    let checks = lab.members.iter().zip(hosts).map(|(m, h)| async move {
        tokio::task::block_in_place(|| sh_in(lab, m, &commands::endpoint_health(&h.etcd)))
    });
    for c in futures::future::join_all(checks).await {
        if !commands::endpoint_health_ok(&String::from_utf8_lossy(&c?.stdout)) {
            bail!("floor: endpoint health failed");
        }
    }
    phases.finish = t.elapsed().as_secs_f64();
    Ok(())
}

/// etcdroll's phases from its JSON events: pre-flight up to the plan, staging up to
/// the last `staged`, the roll up to the last `host_done`, then the finish.
fn phases_of(events: &str) -> Phases {
    let ts = |l: &serde_json::Value| {
        l["ts"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
    };
    let evs: Vec<serde_json::Value> = events
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool, last: bool| {
        let mut it = evs.iter().filter(|e| pred(e)).filter_map(ts);
        if last {
            it.last()
        } else {
            it.next()
        }
    };
    let start = at(&|e| e["event"] == "run_started", false);
    let plan = at(&|e| e["event"] == "plan", false);
    let staged = at(&|e| e["event"] == "step" && e["step"] == "staged", true);
    let done = at(&|e| e["event"] == "host_done", true);
    let end = at(&|e| e["event"] == "run_finished", false);
    let d = |a: Option<std::time::SystemTime>, b: Option<std::time::SystemTime>| match (a, b) {
        (Some(a), Some(b)) => b.duration_since(a).map(|d| d.as_secs_f64()).unwrap_or(0.0),
        _ => f64::NAN,
    };
    Phases {
        preflight: d(start, plan),
        stage: d(plan, staged),
        roll: d(staged, done),
        finish: d(done, end),
    }
}

struct UpgradeRun {
    wall: f64,
    down_ms: Vec<f64>,
    rss_kib: u64,
    phases: Option<Phases>,
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
    let mut phases = None;
    let (wall, rss, ok) = match kind {
        "floor" => {
            let hosts = load(
                &inv,
                &LoadOptions {
                    group: "etcd",
                    limit: None,
                    extra_vars: None,
                    via_ansible: false,
                },
            )?
            .hosts;
            let rt = tokio::runtime::Runtime::new()?;
            let mut p = Phases::default();
            let t0 = Instant::now();
            rt.block_on(floor(&lab, &hosts, new_etcd, &mut p))?;
            phases = Some(p);
            (t0.elapsed().as_secs_f64(), 0, true)
        }
        "etcdroll" => {
            let events = scratch.join("events.jsonl");
            let r = run_measured(
                Command::new(bin_dir().join("etcdroll"))
                    .args(["upgrade", "-i"])
                    .arg(&inv)
                    .arg("--binary")
                    .arg(new_etcd)
                    .args(["--yes", "--output", "json"])
                    .env("HOME", scratch)
                    .env_remove("SSH_AUTH_SOCK")
                    .stdout(std::fs::File::create(&events)?),
            )?;
            phases = Some(phases_of(&std::fs::read_to_string(&events)?));
            r
        }
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
        phases,
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
    let newest = Lab::newest_debian_35()?;
    let (new_etcd, _, _) = Lab::etcd_binaries(&newest)?;
    let scratch = tempdir()?;
    let mut results = serde_json::Map::new();

    // 1. The upgrade, three ways, interleaved.
    let kinds = ["floor", "etcdroll", "openssh"];
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut downs: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut rss = Vec::new();
    let mut phase_runs: Vec<Vec<Phases>> = vec![Vec::new(); 3];
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
            if let Some(p) = run.phases {
                phase_runs[k].push(p);
            }
            if *kind == "etcdroll" {
                rss.push(run.rss_kib as f64);
            }
        }
    }
    let wall: Vec<f64> = walls.iter().map(|w| median(w.clone())).collect();
    let down: Vec<f64> = downs.iter().map(|d| median(d.clone())).collect();
    println!("\nUpgrade 3 members 3.4.23 -> {newest} (median of {runs} interleaved runs)");
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
    // Where the wall time goes, phase by phase (medians), floor vs etcdroll.
    let phase = |k: usize, f: fn(&Phases) -> f64| median(phase_runs[k].iter().map(f).collect());
    type Pick = fn(&Phases) -> f64;
    let rows: [(&str, Pick); 4] = [
        ("pre-flight", |p| p.preflight),
        ("staging", |p| p.stage),
        ("roll (3 members)", |p| p.roll),
        ("cluster version + health", |p| p.finish),
    ];
    println!(
        "\n{:<28} {:>10} {:>10} {:>10}",
        "phase", "floor", "etcdroll", "× floor"
    );
    let mut phase_json = serde_json::Map::new();
    for (name, f) in rows {
        let (a, b) = (phase(0, f), phase(1, f));
        println!("{name:<28} {a:>9.2}s {b:>9.2}s {:>9.2}×", b / a);
        phase_json.insert(name.into(), json!({"floor_s": a, "etcdroll_s": b}));
    }
    results.insert(
        "upgrade".into(),
        json!({
            "runs": runs,
            "wall_s": {"floor": wall[0], "etcdroll": wall[1], "openssh_peer": wall[2]},
            "ratio_to_floor": {"etcdroll": wall[1] / wall[0], "openssh_peer": wall[2] / wall[0]},
            "down_ms_per_member": {"floor": down[0], "etcdroll": down[1], "openssh_peer": down[2]},
            "etcdroll_overhead_ms_per_member": down[1] - down[0],
            "etcdroll_peak_rss_kib": median(rss),
            "phases": phase_json,
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
    let rt = tokio::runtime::Runtime::new()?;
    let h = &lab.plain_hosts[0];
    // Both sides on a connection already open (etcdroll's session after a first
    // command, scp through a ControlMaster after `ssh true`): the transfer, not the
    // login. A connection's first 24 MB go at a third of the speed of the next
    // (TCP and sshd ramping up; OpenSSH shows it as much as russh), so the first
    // transfer on a new connection, which is what a run does, and a second one on
    // the same connection are reported apart.
    let (mut ours_first, mut ours_again, mut scp_first, mut scp_again) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs.max(3) {
        let (first, again) = rt.block_on(upload_twice(&inv, &new_etcd))?;
        ours_first.push(size / first);
        ours_again.push(size / again);
        let control = scratch.join(format!("scp-control-{run}"));
        let ssh_opts = |c: &mut Command| {
            c.arg("-i")
                .arg(&lab.client_key)
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", lab.known_hosts.display()))
                .args(["-o", "BatchMode=yes", "-F", "/dev/null"])
                .args(["-o", "ControlMaster=auto", "-o", "ControlPersist=60"])
                .arg("-o")
                .arg(format!("ControlPath={}", control.display()));
        };
        let mut warm = Command::new("ssh");
        ssh_opts(&mut warm);
        warm.arg(format!("root@{}", h.ip())).arg("true").status()?;
        for times in [&mut scp_first, &mut scp_again] {
            let mut scp_cmd = Command::new("scp");
            scp_cmd.arg("-q");
            ssh_opts(&mut scp_cmd);
            let (t, _, ok) = run_measured(
                scp_cmd
                    .arg(&new_etcd)
                    .arg(format!("root@{}:/tmp/etcdroll-bench-scp", h.ip())),
            )?;
            if !ok {
                bail!("scp failed");
            }
            times.push(size / t);
        }
        let mut close = Command::new("ssh");
        ssh_opts(&mut close);
        let _ = close
            .args(["-O", "exit"])
            .arg(format!("root@{}", h.ip()))
            .stderr(std::process::Stdio::null())
            .status();
    }
    let (of, oa, sf, sa) = (
        median(ours_first),
        median(ours_again),
        median(scp_first),
        median(scp_again),
    );
    println!(
        "\nUpload {size:.1} MB to one host (median of {} runs)",
        runs.max(3)
    );
    println!(
        "first on a new connection: etcdroll {of:.0} MB/s, scp {sf:.0} MB/s: {:.0}% of scp",
        100.0 * of / sf
    );
    println!(
        "again on the same connection: etcdroll {oa:.0} MB/s, scp {sa:.0} MB/s: {:.0}% of scp",
        100.0 * oa / sa
    );
    results.insert(
        "upload".into(),
        json!({
            "mb": size,
            "first": {"etcdroll_mb_s": of, "scp_mb_s": sf, "ratio": of / sf},
            "again": {"etcdroll_mb_s": oa, "scp_mb_s": sa, "ratio": oa / sa},
        }),
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
        let (mut check_wall, mut check_mem, mut check_cpu) = (Vec::new(), Vec::new(), Vec::new());
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
            // `check` on the same hosts: probe, tunnel and HTTP per host. They run
            // no etcd, so it refuses (exit 3) after asking every one of them.
            let (t, r, c, _) = run_measured_cpu(
                Command::new(bin_dir().join("etcdroll"))
                    .args(["check", "-i"])
                    .arg(&inv)
                    .args(["--group", "hosts", "--output", "json"])
                    .env("HOME", &scratch)
                    .stdout(std::process::Stdio::null()),
            )?;
            check_wall.push(t);
            check_mem.push(r as f64);
            check_cpu.push(c);
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
        let (cw, cm, cc) = (median(check_wall), median(check_mem), median(check_cpu));
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
        println!(
            "check on {n} hosts: etcdroll {cw:.2}s (controller CPU {cc:.2}s, peak RSS {:.1} MiB): \
             {:.2}× the OpenSSH `true` loop",
            cm / 1024.0,
            cw / t
        );
        fan.insert(
            format!("check_{n}"),
            json!({"etcdroll_s": cw, "etcdroll_cpu_s": cc, "etcdroll_peak_rss_kib": cm, "openssh_true_loop_s": t, "ratio": cw / t}),
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

/// Times two uploads on one new session, after a first command (in a run the
/// pre-flight has started the session's kept shell by then).
async fn upload_twice(inv: &Path, file: &Path) -> Result<(f64, f64)> {
    use etcdroll::inventory::{load, LoadOptions};
    use etcdroll::reach::ReachOptions;
    use etcdroll::ssh::{Connector, Payload, SshOptions};
    use etcdroll::upgrade::connect_all;
    let inv = load(
        inv,
        &LoadOptions {
            group: "hosts",
            limit: None,
            extra_vars: None,
            via_ansible: false,
        },
    )?;
    let connector = std::sync::Arc::new(Connector::new(SshOptions {
        use_agent: false,
        ..SshOptions::default()
    }));
    let links = connect_all(connector, &inv.hosts, &ReachOptions::default()).await;
    let session = links[0].session()?;
    let payload = Payload::read(file)?;
    session
        .exec(
            &etcdroll::ssh::RemoteCommand::script("true"),
            None,
            Duration::from_secs(10),
        )
        .await?;
    let mut times = [0.0; 2];
    for t in &mut times {
        let t0 = Instant::now();
        session
            .upload(
                &payload,
                "/tmp/etcdroll-bench-upload",
                Duration::from_secs(60),
                &|_| {},
            )
            .await?;
        *t = t0.elapsed().as_secs_f64();
    }
    session.close().await;
    Ok((times[0], times[1]))
}

fn tempdir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("etcdroll-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
