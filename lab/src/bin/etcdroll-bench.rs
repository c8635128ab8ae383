//! The benchmark behind `scripts/bench` (root, uses the lab). Everything is measured
//! side by side in one run, interleaved, and printed as ratios to the floor or the
//! peer, because this machine is shared and absolute times drift. Scenarios
//! (`ETCDROLL_BENCH_ONLY=lan,far,bigdata,thin,memory,upload,fanout`, default all):
//!
//! - lan: the same 3-member 3.4.23 -> newest Debian 3.5 procedure run three ways on
//!   fresh labs: the floor (the steps run directly inside each namespace, no SSH),
//!   etcdroll, and a hand-written OpenSSH script with ControlMaster
//!   (scripts/bench-openssh-peer.sh). A poller in the root namespace asks every
//!   member's /health every 20 ms, directly (never through a relay), and measures
//!   each member's time down.
//! - far: the same three through the lab's delaying relay (100 ms RTT, or
//!   `--link rtt=…,rate=…`), interleaved with etcdroll on the LAN, so the excess is
//!   counted in round trips paid. The floor there pays one RTT per remote command
//!   and sends its HTTP through relays of its own.
//! - bigdata: etcdroll on members filled to ~1 GiB of data dir each, against the
//!   LAN runs' empty data dirs, for time down per member.
//! - thin: etcdroll's staging against scp of the same binary to the same hosts,
//!   through the same 20 Mbit/s link (shared, as one uplink is).
//! - memory: etcdroll's peak RSS upgrading 1 and 10 clusters at once.
//! - upload: 24 MB to one host, etcdroll's upload vs scp, on the LAN.
//! - fanout: `exec -- true` and `check` on 30 and 100 hosts vs a parallel
//!   OpenSSH loop of `ssh host true`.
//!
//! Then every target of issue 15 with its measured ratio and PASS or MISS. Results
//! go to stdout and target/bench/results.json.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use etcdroll::etcd::client::{BoxStream, Dial, DialFuture};
use etcdroll::etcd::{commands, EtcdClient, Version};
use etcdroll::inventory::{load, Host, LoadOptions};
use etcdroll::ssh::RemoteCommand;
use etcdroll::upgrade::phase::roll::turn::{Restart, Swap};
use etcdroll_lab::{Lab, LabHost, LabSpec, LinkModel, Relays};
use serde_json::json;
use sha2::Digest;

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

#[derive(PartialEq)]
enum Probe {
    Healthy,
    /// Answered unhealthy, or not within 300 ms.
    Unhealthy,
    /// Nothing listens on the client port: etcd is not running.
    Closed,
}

fn probe(addr: &SocketAddr) -> Probe {
    use std::io::{Read, Write};
    let mut c = match TcpStream::connect_timeout(addr, Duration::from_millis(50)) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Closed,
        Err(_) => return Probe::Unhealthy,
    };
    let _ = c.set_read_timeout(Some(Duration::from_millis(300)));
    if c.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return Probe::Unhealthy;
    }
    let mut s = String::new();
    let _ = c.read_to_string(&mut s);
    if s.contains("\"health\":\"true\"") {
        Probe::Healthy
    } else {
        Probe::Unhealthy
    }
}

/// Each member's total time (ms) not healthy, and of that the time its client port
/// was closed (etcd not running): on a loaded machine a slow /health counts as
/// down, and the second figure tells the stopped window apart from slowness.
struct Down {
    down_ms: Vec<f64>,
    closed_ms: Vec<f64>,
}

/// Polls every member every 20 ms.
fn poller(addrs: Vec<SocketAddr>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Down> {
    std::thread::spawn(move || {
        let n = addrs.len();
        let (mut down_since, mut closed_since) = (vec![None; n], vec![None::<Instant>; n]);
        let (mut down, mut closed) = (vec![0.0; n], vec![0.0; n]);
        let close = |since: &mut Option<Instant>, total: &mut f64| {
            if let Some(t) = since.take() {
                *total += t.elapsed().as_secs_f64() * 1000.0;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            for (i, a) in addrs.iter().enumerate() {
                let p = probe(a);
                if p == Probe::Healthy {
                    close(&mut down_since[i], &mut down[i]);
                } else if down_since[i].is_none() {
                    down_since[i] = Some(Instant::now());
                }
                if p == Probe::Closed {
                    closed_since[i].get_or_insert_with(Instant::now);
                } else {
                    close(&mut closed_since[i], &mut closed[i]);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // A member still down when the run ends counts to the end.
        for i in 0..n {
            close(&mut down_since[i], &mut down[i]);
            close(&mut closed_since[i], &mut closed[i]);
        }
        Down {
            down_ms: down,
            closed_ms: closed,
        }
    })
}

/// The file GNU time writes etcdroll's peak RSS to (see `etcdroll_measured`).
fn rss_file() -> PathBuf {
    std::env::temp_dir().join(format!("etcdroll-bench-rss-{}", std::process::id()))
}

/// etcdroll, run under GNU time when it is there. A child's `ru_maxrss` from
/// `wait4` counts the address space it started in: Rust spawns with vfork (or
/// fork, whose copy counts the same pages), and the kernel records the old
/// address space's peak at exec — the bench's own, tens of MiB. GNU time's is
/// ~2 MiB, so what it reports of its child is etcdroll's.
fn etcdroll_measured() -> Command {
    let time = Path::new("/usr/bin/time");
    let etcdroll = bin_dir().join("etcdroll");
    if !time.exists() {
        return Command::new(etcdroll);
    }
    let _ = std::fs::remove_file(rss_file());
    let mut c = Command::new(time);
    c.args(["-f", "%M", "-o"]).arg(rss_file()).arg(etcdroll);
    c
}

/// Run a child to completion; wall time (s) and peak RSS (KiB; etcdroll's own
/// when it ran under GNU time, see `etcdroll_measured`).
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
    let timed = std::fs::read_to_string(rss_file())
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| l.trim().parse::<u64>().ok()));
    let _ = std::fs::remove_file(rss_file());
    Ok((
        t0.elapsed().as_secs_f64(),
        timed.unwrap_or(usage.ru_maxrss as u64),
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

/// An etcd client straight to a member's client port from the root namespace (or
/// to a relay in front of it): the same HTTP calls etcdroll makes, without SSH.
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

fn client(addr: SocketAddr) -> EtcdClient {
    EtcdClient::new(
        &format!("http://{addr}"),
        Box::new(DirectDial(addr)),
        Duration::from_secs(5),
    )
}

/// Run one of etcdroll's own remote commands inside the member's namespace; on a
/// far link the floor pays one round trip for it, the least a remote command costs.
fn sh_in(
    lab: &Lab,
    m: &LabHost,
    cmd: &RemoteCommand,
    link: Option<LinkModel>,
) -> Result<std::process::Output> {
    let out = lab.run_in(m, cmd.as_str())?;
    if let Some(l) = link {
        std::thread::sleep(l.rtt());
    }
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
///
/// On a far link (`link`), every HTTP call goes through `http` (relays in front of
/// the members' client ports), every command pays one RTT, and staging pays the
/// binary's time on the link's rate for every host.
async fn floor(
    lab: &Lab,
    hosts: &[Host],
    new_etcd: &Path,
    phases: &mut Phases,
    link: Option<LinkModel>,
    http: &[SocketAddr],
) -> Result<()> {
    let poll = Duration::from_millis(50);
    // The version the new binary reports: the newest Debian 3.5 moves.
    let want = Version::parse(&Lab::newest_debian_35()?)
        .context("the newest Debian 3.5's version does not parse")?;
    let mut clients: Vec<EtcdClient> = http.iter().copied().map(client).collect();
    let t = Instant::now();
    let probes = lab.members.iter().zip(hosts).map(|(m, h)| async move {
        let turn_file = format!("{}/etcdroll.turn", h.lock_dir);
        tokio::task::block_in_place(|| sh_in(lab, m, &commands::probe(&h.etcd, &turn_file), link))
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
                let out = sh_in(lab, m, &RemoteCommand::new("sha256sum").arg(&tmp), link)?;
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
                    link,
                )?;
                let staged = commands::staged_path(&h.etcd.binary);
                sh_in(lab, m, &RemoteCommand::new(&staged).arg("--version"), link)?;
                Ok(())
            })
        }
    });
    for s in futures::future::join_all(stages).await {
        s?;
    }
    // The copies on a capped link: every host's binary over the one shared link.
    if let Some(rate) = link.and_then(|l| l.rate_bits_per_sec) {
        let bytes = std::fs::metadata(new_etcd)?.len() * lab.members.len() as u64;
        tokio::time::sleep(Duration::from_secs_f64(bytes as f64 * 8.0 / rate as f64)).await;
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
        tokio::task::block_in_place(|| sh_in(lab, m, &script, link))?;
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
        tokio::task::block_in_place(|| sh_in(lab, m, &commands::endpoint_health(&h.etcd), link))
    });
    for c in futures::future::join_all(checks).await {
        if !commands::endpoint_health_ok(&String::from_utf8_lossy(&c?.stdout)) {
            bail!("floor: endpoint health failed");
        }
    }
    phases.finish = t.elapsed().as_secs_f64();
    Ok(())
}

/// What etcdroll's JSON events say about a run: its phases split by the events'
/// timestamps (pre-flight up to the plan, staging up to the last `staged`, the roll
/// up to the last `host_done`, then the finish), and the round trips it counted
/// (`phase_finished` events and `run_finished`), where it emits them.
#[derive(Default, Clone)]
struct Events {
    phases: Phases,
    /// Phase name -> (round trips, seconds), from `phase_finished`.
    round_trips: BTreeMap<String, (Option<u64>, Option<f64>)>,
    total_round_trips: Option<u64>,
}

fn events_of(events: &str) -> Events {
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
    let mut round_trips = BTreeMap::new();
    for e in evs.iter().filter(|e| e["event"] == "phase_finished") {
        if let Some(p) = e["phase"].as_str() {
            // Several clusters or binaries: a phase's counts add up.
            let (rt, secs) = round_trips.entry(p.to_string()).or_insert((None, None));
            if let Some(n) = e["round_trips"].as_u64() {
                *rt = Some(rt.unwrap_or(0) + n);
            }
            if let Some(s) = e["seconds"].as_f64() {
                *secs = Some(secs.unwrap_or(0.0) + s);
            }
        }
    }
    let total_round_trips = evs
        .iter()
        .find(|e| e["event"] == "run_finished")
        .and_then(|e| e["round_trips"].as_u64());
    Events {
        phases: Phases {
            preflight: d(start, plan),
            stage: d(plan, staged),
            roll: d(staged, done),
            finish: d(done, end),
        },
        round_trips,
        total_round_trips,
    }
}

impl Events {
    /// Staging time: etcdroll's own `phase_finished` for `stage` when it emits one,
    /// else the span from the plan to the last `staged` step.
    fn stage_seconds(&self) -> f64 {
        match self.round_trips.get("stage") {
            Some((_, Some(s))) => *s,
            _ => self.phases.stage,
        }
    }
}

/// How the hosts of one upgrade run are set up.
#[derive(Clone, Copy, PartialEq)]
struct Setup {
    name: &'static str,
    link: Option<LinkModel>,
    /// Fill each member to this many bytes of data dir before the upgrade.
    fill_bytes: u64,
}

struct UpgradeRun {
    wall: f64,
    down_ms: Vec<f64>,
    /// Of that, the client port closed (etcd not running).
    closed_ms: Vec<f64>,
    rss_kib: u64,
    phases: Option<Phases>,
    events: Option<Events>,
    /// thin: scp of the same binary to the same hosts through the same link (s).
    scp_s: Option<f64>,
    /// Each member's data dir before the upgrade (bytes).
    data_dir_bytes: Vec<u64>,
}

fn du_bytes(p: &Path) -> u64 {
    Command::new("du")
        .arg("-sb")
        .arg(p)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Fill the cluster until every member's data dir (db + WAL) holds `target` bytes:
/// distinct keys of ~1 MiB random values (under etcd's 1.5 MiB request limit),
/// put by four writers at once through the v3 HTTP gateway, straight to the
/// members' client ports.
fn fill(lab: &Lab, target: u64) -> Result<Vec<u64>> {
    use std::io::{Read, Write};
    // Random base64 text decodes to random bytes: 1 398 100 characters are
    // 1 048 575 bytes. Each key takes its own window of a longer random text.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    const ALPHA: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let text: Arc<Vec<u8>> = Arc::new(
        (0..2 * 1_398_100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ALPHA[(x & 63) as usize]
            })
            .collect(),
    );
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let addrs: Vec<SocketAddr> = lab
        .members
        .iter()
        .map(|m| SocketAddr::new(m.ip(), 2379))
        .collect();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (text, next, done) = (text.clone(), next.clone(), done.clone());
            let addr = addrs[w % addrs.len()];
            std::thread::spawn(move || -> Result<()> {
                while !done.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let off = ((i * 4099) % 1_398_100) as usize & !3;
                    let value = std::str::from_utf8(&text[off..off + 1_398_100])?;
                    let key = b64(format!("bench/fill/{i:08}").as_bytes());
                    let body = format!("{{\"key\":\"{key}\",\"value\":\"{value}\"}}");
                    // A loaded machine drops an answer now and then: a few tries.
                    let put = || -> Result<String> {
                        let mut c = TcpStream::connect(addr)?;
                        write!(
                            c,
                            "POST /v3/kv/put HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )?;
                        c.write_all(body.as_bytes())?;
                        let mut resp = String::new();
                        c.read_to_string(&mut resp)?;
                        Ok(resp)
                    };
                    let mut last = String::new();
                    let ok = (0..5).any(|_| match put() {
                        Ok(r) if r.starts_with("HTTP/1.1 200") && !r.contains("\"error\"") => true,
                        Ok(r) => {
                            last = r.lines().last().unwrap_or("").to_string();
                            std::thread::sleep(Duration::from_millis(500));
                            false
                        }
                        Err(e) => {
                            last = e.to_string();
                            std::thread::sleep(Duration::from_millis(500));
                            false
                        }
                    });
                    if !ok {
                        bail!("fill: put {i} refused 5 times: {last}");
                    }
                }
                Ok(())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut failed = None;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if writers.iter().any(|w| w.is_finished()) {
            break;
        }
        let least = lab
            .members
            .iter()
            .map(|m| du_bytes(&m.data_dir))
            .min()
            .unwrap_or(0);
        if least >= target {
            break;
        }
        if Instant::now() > deadline {
            failed = Some(anyhow::anyhow!(
                "fill: {least} of {target} bytes after 300 s"
            ));
            break;
        }
    }
    done.store(true, Ordering::SeqCst);
    for w in writers {
        w.join()
            .map_err(|_| anyhow::anyhow!("fill writer panicked"))??;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(lab.members.iter().map(|m| du_bytes(&m.data_dir)).collect())
}

/// OpenSSH options for a lab host, with a ControlMaster at `control`.
fn ssh_opts(lab: &Lab, control: &Path, c: &mut Command) {
    c.arg("-i")
        .arg(&lab.client_key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", lab.known_hosts.display()))
        .args(["-o", "BatchMode=yes", "-F", "/dev/null"])
        .args(["-o", "ControlMaster=auto", "-o", "ControlPersist=60"])
        .arg("-o")
        .arg(format!("ControlPath={}", control.display()));
}

/// Where the controller dials a host's sshd: its relay on a linked lab.
fn ssh_target(lab: &Lab, h: &LabHost) -> SocketAddr {
    lab.relay_of(h).unwrap_or(SocketAddr::new(h.ip(), 22))
}

/// scp of `file` to every member at once, each on a connection opened just before
/// (ControlMaster), so the transfer is timed and not the login: seconds for all.
fn scp_to_members(lab: &Lab, file: &Path, scratch: &Path) -> Result<f64> {
    let controls: Vec<PathBuf> = (0..lab.members.len())
        .map(|i| scratch.join(format!("scp-members-{i}")))
        .collect();
    for (m, control) in lab.members.iter().zip(&controls) {
        let at = ssh_target(lab, m);
        let mut warm = Command::new("ssh");
        ssh_opts(lab, control, &mut warm);
        if !warm
            .arg("-p")
            .arg(at.port().to_string())
            .arg(format!("root@{}", at.ip()))
            .arg("true")
            .status()?
            .success()
        {
            bail!("ssh to {} failed", m.name);
        }
    }
    let t0 = Instant::now();
    let mut children = Vec::new();
    for (m, control) in lab.members.iter().zip(&controls) {
        let at = ssh_target(lab, m);
        let mut scp = Command::new("scp");
        scp.arg("-q");
        ssh_opts(lab, control, &mut scp);
        children.push(
            scp.arg("-P")
                .arg(at.port().to_string())
                .arg(file)
                .arg(format!(
                    "root@{}:/tmp/etcdroll-bench-scp-{}",
                    at.ip(),
                    m.name
                ))
                .spawn()?,
        );
    }
    for mut c in children {
        if !c.wait()?.success() {
            bail!("scp failed");
        }
    }
    let took = t0.elapsed().as_secs_f64();
    for (m, control) in lab.members.iter().zip(&controls) {
        let at = ssh_target(lab, m);
        let mut close = Command::new("ssh");
        ssh_opts(lab, control, &mut close);
        let _ = close
            .args(["-O", "exit", "-p"])
            .arg(at.port().to_string())
            .arg(format!("root@{}", at.ip()))
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_file(format!("/tmp/etcdroll-bench-scp-{}", m.name));
    }
    Ok(took)
}

fn one_upgrade(kind: &str, setup: &Setup, new_etcd: &Path, scratch: &Path) -> Result<UpgradeRun> {
    let lab = Lab::start(&LabSpec {
        link: setup.link,
        // A filled data dir must fit etcd's quota with room for the run's writes.
        quota_backend_bytes: (setup.fill_bytes > 0).then_some(8 << 30),
        ..LabSpec::default()
    })?;
    let data_dir_bytes = if setup.fill_bytes > 0 {
        fill(&lab, setup.fill_bytes)?
    } else {
        lab.members.iter().map(|m| du_bytes(&m.data_dir)).collect()
    };
    // A machine shared with other work can leave a fresh or just-filled cluster
    // unhealthy for a while (seen: every member `health: false` after a big
    // tear-down); every tool starts from a healthy cluster, which the pre-flight
    // requires anyway.
    lab.wait_cluster_healthy(Duration::from_secs(120))?;
    let inv = scratch.join(format!("inv-{kind}.yml"));
    lab.write_inventory(&inv)?;
    let addrs: Vec<SocketAddr> = lab
        .members
        .iter()
        .map(|m| SocketAddr::new(m.ip(), 2379))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let poll = poller(addrs.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let mut phases = None;
    let mut events = None;
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
            // The floor's HTTP on a far link: relays of its own, same link model.
            let mut http_relays = None;
            let http = match setup.link {
                Some(l) => {
                    let mut r = Relays::new(l)?;
                    let at = addrs
                        .iter()
                        .map(|a| r.add("127.0.0.1".parse().expect("loopback"), *a))
                        .collect::<Result<Vec<_>>>()?;
                    http_relays = Some(r);
                    at
                }
                None => addrs.clone(),
            };
            let rt = tokio::runtime::Runtime::new()?;
            let mut p = Phases::default();
            let t0 = Instant::now();
            rt.block_on(floor(&lab, &hosts, new_etcd, &mut p, setup.link, &http))?;
            let wall = t0.elapsed().as_secs_f64();
            drop(rt);
            drop(http_relays);
            phases = Some(p);
            (wall, 0, true)
        }
        "etcdroll" => {
            let out = scratch.join("events.jsonl");
            let r = run_measured(
                etcdroll_measured()
                    .args(["upgrade", "-i"])
                    .arg(&inv)
                    .arg("--binary")
                    .arg(new_etcd)
                    // Stated, so etcdroll does not run `etcd --version` here: that
                    // child's peak RSS (~22 MB) would count as etcdroll's (wait4).
                    .arg("--target-version")
                    .arg(Lab::newest_debian_35()?)
                    .args(["--yes", "--output", "json"])
                    .env("HOME", scratch)
                    .env_remove("SSH_AUTH_SOCK")
                    .stdout(std::fs::File::create(&out)?),
            )?;
            let e = events_of(&std::fs::read_to_string(&out)?);
            phases = Some(e.phases.clone());
            events = Some(e);
            r
        }
        _ => {
            let peer =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench-openssh-peer.sh");
            let mut c = Command::new("bash");
            c.arg(peer)
                .arg(&lab.client_key)
                .arg(&lab.known_hosts)
                .arg(new_etcd)
                .arg(lab.local_client_url());
            for m in &lab.members {
                let at = ssh_target(&lab, m);
                c.arg(format!("{}:{}={}", at.ip(), at.port(), m.dir.display()));
            }
            run_measured(
                c.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null()),
            )?
        }
    };
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    let Down { down_ms, closed_ms } = poll
        .join()
        .map_err(|_| anyhow::anyhow!("poller panicked"))?;
    if !ok {
        bail!("{kind} upgrade ({}) failed", setup.name);
    }
    // thin: scp of the same binary, same hosts, same link, right after.
    let scp_s = if setup.name == "thin" {
        Some(scp_to_members(&lab, new_etcd, scratch)?)
    } else {
        None
    };
    Ok(UpgradeRun {
        wall,
        down_ms,
        closed_ms,
        rss_kib: rss,
        phases,
        events,
        scp_s,
        data_dir_bytes,
    })
}

/// One measured target of issue 15.
struct Target {
    what: String,
    measured: String,
    goal: String,
    pass: Option<bool>,
}

fn verdict(p: Option<bool>) -> &'static str {
    match p {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "n/a",
    }
}

fn rt_cell(n: Option<u64>) -> String {
    n.map_or("n/a".into(), |n| n.to_string())
}

#[derive(Default)]
struct Series {
    walls: Vec<f64>,
    downs: Vec<f64>,
    closed: Vec<f64>,
    /// The worst member of each run.
    worst_downs: Vec<f64>,
    rss: Vec<f64>,
    phases: Vec<Phases>,
    events: Vec<Events>,
    scp: Vec<f64>,
    data_dir_bytes: Vec<f64>,
}

fn series_of<'a>(
    series: &'a BTreeMap<(&'static str, &'static str), Series>,
    setup: &str,
    kind: &str,
) -> Option<&'a Series> {
    series
        .iter()
        .find(|((s, k), _)| *s == setup && *k == kind)
        .map(|(_, v)| v)
}

const SCENARIOS: [&str; 7] = [
    "lan", "far", "bigdata", "thin", "memory", "upload", "fanout",
];

fn main() -> Result<()> {
    if let Err(why) = Lab::available() {
        bail!("the benchmark needs the lab: {why}");
    }
    let mut args = std::env::args().skip(1);
    let mut custom_link: Option<LinkModel> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--link" => custom_link = Some(args.next().context("--link needs a value")?.parse()?),
            s if s.starts_with("--link=") => custom_link = Some(s["--link=".len()..].parse()?),
            "-h" | "--help" => {
                println!(
                    "etcdroll-bench [--link rtt=100ms,rate=20mbit]\n\
                     env: ETCDROLL_BENCH_RUNS (interleaved rounds, default 3),\n     \
                     ETCDROLL_BENCH_ONLY={} (default all; with --link: far)",
                    SCENARIOS.join(",")
                );
                return Ok(());
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    let runs: usize = std::env::var("ETCDROLL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let only: Vec<String> = match std::env::var("ETCDROLL_BENCH_ONLY") {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        Err(_) if custom_link.is_some() => vec!["far".into()],
        Err(_) => SCENARIOS.iter().map(|s| s.to_string()).collect(),
    };
    for s in &only {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!(
                "ETCDROLL_BENCH_ONLY: unknown scenario {s} ({})",
                SCENARIOS.join(",")
            );
        }
    }
    let on = |s: &str| only.iter().any(|o| o == s);
    let newest = Lab::newest_debian_35()?;
    let (new_etcd, _, _) = Lab::etcd_binaries(&newest)?;
    let scratch = tempdir()?;
    let mut results = serde_json::Map::new();
    let mut targets: Vec<Target> = Vec::new();

    let far_link = custom_link.unwrap_or(LinkModel {
        one_way_delay: Duration::from_millis(50),
        rate_bits_per_sec: None,
    });
    let thin_link = LinkModel {
        one_way_delay: Duration::ZERO,
        rate_bits_per_sec: Some(20_000_000),
    };
    let lan = Setup {
        name: "lan",
        link: None,
        fill_bytes: 0,
    };
    let far = Setup {
        name: "far",
        link: Some(far_link),
        fill_bytes: 0,
    };
    let big = Setup {
        name: "bigdata",
        link: None,
        fill_bytes: 1 << 30,
    };
    let thin = Setup {
        name: "thin",
        link: Some(thin_link),
        fill_bytes: 0,
    };

    // 1. The upgrades, every setup and tool of one round after the other, round
    // after round: drift on this shared machine hits them all alike.
    let mut plan: Vec<(Setup, &str)> = Vec::new();
    if on("lan") {
        plan.extend([(lan, "floor"), (lan, "etcdroll"), (lan, "openssh")]);
    } else if on("far") || on("bigdata") {
        // Their targets are relative to etcdroll's own LAN runs.
        plan.push((lan, "etcdroll"));
    }
    if on("far") {
        plan.extend([(far, "floor"), (far, "etcdroll"), (far, "openssh")]);
    }
    if on("bigdata") {
        plan.push((big, "etcdroll"));
    }
    if on("thin") {
        plan.push((thin, "etcdroll"));
    }
    let mut series: BTreeMap<(&str, &str), Series> = BTreeMap::new();
    for r in 0..runs {
        for (setup, kind) in &plan {
            let run = one_upgrade(kind, setup, &new_etcd, &scratch)?;
            let rts = run
                .events
                .as_ref()
                .map(|e| format!(", round trips {}", rt_cell(e.total_round_trips)))
                .unwrap_or_default();
            eprintln!(
                "run {r} {:<8} {kind:<9} wall {:.2}s, down per member {:?} ms (port closed {:?} ms){rts}{}{}",
                setup.name,
                run.wall,
                run.down_ms
                    .iter()
                    .map(|d| d.round() as i64)
                    .collect::<Vec<_>>(),
                run.closed_ms
                    .iter()
                    .map(|d| d.round() as i64)
                    .collect::<Vec<_>>(),
                if setup.fill_bytes > 0 {
                    format!(
                        ", data dirs {:?} MiB",
                        run.data_dir_bytes
                            .iter()
                            .map(|b| b >> 20)
                            .collect::<Vec<_>>()
                    )
                } else {
                    String::new()
                },
                run.scp_s
                    .map(|s| format!(
                        ", staging {:.2}s, scp {s:.2}s",
                        run.events.as_ref().map_or(f64::NAN, Events::stage_seconds)
                    ))
                    .unwrap_or_default(),
            );
            let s = series.entry((setup.name, kind)).or_default();
            s.walls.push(run.wall);
            s.worst_downs.push(max(&run.down_ms));
            s.downs.extend(run.down_ms);
            s.closed.extend(run.closed_ms);
            s.rss.push(run.rss_kib as f64);
            s.data_dir_bytes
                .extend(run.data_dir_bytes.iter().map(|&b| b as f64));
            if let Some(p) = run.phases {
                s.phases.push(p);
            }
            if let Some(e) = run.events {
                s.events.push(e);
            }
            if let Some(t) = run.scp_s {
                s.scp.push(t);
            }
        }
    }
    let get = |setup: &str, kind: &str| series_of(&series, setup, kind);
    let wall =
        |setup: &str, kind: &str| get(setup, kind).map_or(f64::NAN, |s| median(s.walls.clone()));
    let down =
        |setup: &str, kind: &str| get(setup, kind).map_or(f64::NAN, |s| median(s.downs.clone()));
    let worst =
        |setup: &str, kind: &str| get(setup, kind).map_or(f64::NAN, |s| max(&s.worst_downs));
    // Round trips per phase (medians over runs), "n/a" where etcdroll emits none.
    let round_trip_rows = |setup: &str| -> (Vec<(String, String)>, serde_json::Value) {
        let Some(s) = get(setup, "etcdroll") else {
            return (Vec::new(), serde_json::Value::Null);
        };
        let mut names: Vec<String> = s
            .events
            .iter()
            .flat_map(|e| e.round_trips.keys().cloned())
            .collect();
        names.dedup();
        names.sort();
        names.dedup();
        let mut rows = Vec::new();
        let mut js = serde_json::Map::new();
        let med = |v: Vec<f64>| {
            if v.is_empty() {
                None
            } else {
                Some(median(v).round() as u64)
            }
        };
        for n in names {
            let v = med(s
                .events
                .iter()
                .filter_map(|e| e.round_trips.get(&n).and_then(|r| r.0))
                .map(|x| x as f64)
                .collect());
            rows.push((n.clone(), rt_cell(v)));
            js.insert(n, json!(v));
        }
        let total = med(s
            .events
            .iter()
            .filter_map(|e| e.total_round_trips)
            .map(|x| x as f64)
            .collect());
        rows.push(("whole run".into(), rt_cell(total)));
        js.insert("run".into(), json!(total));
        (rows, serde_json::Value::Object(js))
    };

    for (setup, label) in [
        (&lan, "LAN".to_string()),
        (&far, format!("far link ({far_link})")),
    ] {
        if !on(setup.name) {
            continue;
        }
        let kinds = ["floor", "etcdroll", "openssh"];
        let w: Vec<f64> = kinds.iter().map(|k| wall(setup.name, k)).collect();
        let d: Vec<f64> = kinds.iter().map(|k| down(setup.name, k)).collect();
        println!(
            "\nUpgrade 3 members 3.4.23 -> {newest}, {label} (median of {runs} interleaved runs)"
        );
        println!(
            "{:<28} {:>10} {:>12} {:>16} {:>16}",
            "", "wall", "× floor", "down/member", "worst member"
        );
        for (k, kind) in kinds.iter().enumerate() {
            println!(
                "{:<28} {:>9.2}s {:>11.2}× {:>13.0} ms {:>13.0} ms",
                kind,
                w[k],
                w[k] / w[0],
                d[k],
                worst(setup.name, kind)
            );
        }
        let rss = get(setup.name, "etcdroll").map_or(f64::NAN, |s| median(s.rss.clone()));
        println!(
            "etcdroll: {:.2}× the OpenSSH script; overhead per member (down time minus the floor's) {:.0} ms; peak RSS {:.1} MiB",
            w[1] / w[2],
            d[1] - d[0],
            rss / 1024.0
        );
        let phase = |k: &str, f: fn(&Phases) -> f64| {
            get(setup.name, k).map_or(f64::NAN, |s| median(s.phases.iter().map(f).collect()))
        };
        type Pick = fn(&Phases) -> f64;
        let rows: [(&str, Pick); 4] = [
            ("pre-flight", |p| p.preflight),
            ("staging", |p| p.stage),
            ("roll (3 members)", |p| p.roll),
            ("cluster version + health", |p| p.finish),
        ];
        println!(
            "{:<28} {:>10} {:>10} {:>10}",
            "phase", "floor", "etcdroll", "× floor"
        );
        let mut phase_json = serde_json::Map::new();
        for (name, f) in rows {
            let (a, b) = (phase("floor", f), phase("etcdroll", f));
            println!("{name:<28} {a:>9.2}s {b:>9.2}s {:>9.2}×", b / a);
            phase_json.insert(name.into(), json!({"floor_s": a, "etcdroll_s": b}));
        }
        let (rt_rows, rt_json) = round_trip_rows(setup.name);
        println!(
            "etcdroll round trips (its phase_finished events; n/a: not emitted by this build)"
        );
        for (n, v) in &rt_rows {
            println!("  {n:<26} {v:>10}");
        }
        let mut j = json!({
            "runs": runs,
            "link": setup.link.map(|l| l.to_string()),
            "wall_s": {"floor": w[0], "etcdroll": w[1], "openssh_peer": w[2]},
            "ratio_to_floor": {"etcdroll": w[1] / w[0], "openssh_peer": w[2] / w[0]},
            "etcdroll_vs_openssh_peer": w[1] / w[2],
            "down_ms_per_member": {"floor": d[0], "etcdroll": d[1], "openssh_peer": d[2]},
            "worst_member_down_ms": {"floor": worst(setup.name, "floor"), "etcdroll": worst(setup.name, "etcdroll"), "openssh_peer": worst(setup.name, "openssh")},
            "etcdroll_overhead_ms_per_member": d[1] - d[0],
            "etcdroll_peak_rss_kib": rss,
            "phases": phase_json,
            "etcdroll_round_trips": rt_json,
        });
        if setup.name == "far" {
            let rtt = far_link.rtt().as_secs_f64();
            let lan_wall = wall("lan", "etcdroll");
            let paid = (w[1] - lan_wall) / rtt;
            println!(
                "far link: etcdroll {:.2}s against its LAN {lan_wall:.2}s: {paid:.1} round trips paid ((far − LAN) / RTT){}",
                w[1],
                if far_link.rate_bits_per_sec.is_some() {
                    "; with a rate cap this also holds the transfers' time on the link"
                } else {
                    ""
                }
            );
            j["etcdroll_lan_wall_s"] = json!(lan_wall);
            j["round_trips_paid"] = json!(paid);
            targets.push(Target {
                what: format!("far ({far_link}): etcdroll ≤ its LAN time + 30 RTT"),
                measured: format!("{:.2}s vs LAN {lan_wall:.2}s: +{paid:.1} RTT", w[1]),
                goal: "≤ 30 RTT".into(),
                pass: Some(paid <= 30.0),
            });
            targets.push(Target {
                what: format!("far ({far_link}): etcdroll vs the OpenSSH script"),
                measured: format!("{:.2}s vs {:.2}s: {:.2}×", w[1], w[2], w[1] / w[2]),
                goal: "≤ 0.35×".into(),
                pass: Some(w[1] / w[2] <= 0.35),
            });
            let (fw, lw) = (worst("far", "etcdroll"), worst("lan", "etcdroll"));
            targets.push(Target {
                what: format!("far ({far_link}): longest member down vs the LAN's + 1 RTT"),
                measured: format!("{fw:.0} ms vs {lw:.0} ms + {:.0} ms", rtt * 1000.0),
                goal: format!("≤ {:.0} ms", lw + rtt * 1000.0),
                pass: Some(fw <= lw + rtt * 1000.0),
            });
        } else {
            targets.push(Target {
                what: "LAN: etcdroll vs the OpenSSH script".into(),
                measured: format!("{:.2}s vs {:.2}s: {:.2}×", w[1], w[2], w[1] / w[2]),
                goal: "≤ 0.35×".into(),
                pass: Some(w[1] / w[2] <= 0.35),
            });
            targets.push(Target {
                what: "LAN: time down per member over the floor".into(),
                measured: format!(
                    "{:.0} ms vs floor {:.0} ms: {:+.0} ms",
                    d[1],
                    d[0],
                    d[1] - d[0]
                ),
                goal: "≤ +50 ms".into(),
                pass: Some(d[1] - d[0] <= 50.0),
            });
        }
        results.insert(setup.name.into(), j);
    }

    if on("bigdata") {
        let (e, b) = (down("lan", "etcdroll"), down("bigdata", "etcdroll"));
        let (ew, bw) = (worst("lan", "etcdroll"), worst("bigdata", "etcdroll"));
        let closed =
            |setup: &str| get(setup, "etcdroll").map_or(f64::NAN, |s| median(s.closed.clone()));
        let (ec, bc) = (closed("lan"), closed("bigdata"));
        let mib = get("bigdata", "etcdroll").map_or(f64::NAN, |s| median(s.data_dir_bytes.clone()))
            / (1u64 << 20) as f64;
        let empty_mib = get("lan", "etcdroll")
            .map_or(f64::NAN, |s| median(s.data_dir_bytes.clone()))
            / (1u64 << 20) as f64;
        println!("\nBig data: etcdroll, data dir {mib:.0} MiB per member vs {empty_mib:.1} MiB (median of {runs} interleaved runs)");
        println!("time down per member: {b:.0} ms vs {e:.0} ms ({:.2}×); worst member {bw:.0} ms vs {ew:.0} ms; wall {:.2}s vs {:.2}s",
            b / e, wall("bigdata", "etcdroll"), wall("lan", "etcdroll"));
        println!("of which etcd's client port was closed (not running): {bc:.0} ms vs {ec:.0} ms ({:.2}×)", bc / ec);
        targets.push(Target {
            what: format!("big data ({mib:.0} MiB per member): time down vs an empty data dir"),
            measured: format!("{b:.0} ms vs {e:.0} ms: {:.2}×", b / e),
            goal: "≤ 1.2×".into(),
            pass: Some(b / e <= 1.2),
        });
        results.insert(
            "bigdata".into(),
            json!({
                "runs": runs,
                "data_dir_mib": mib,
                "empty_data_dir_mib": empty_mib,
                "down_ms_per_member": {"empty": e, "big": b},
            "port_closed_ms_per_member": {"empty": ec, "big": bc},
                "worst_member_down_ms": {"empty": ew, "big": bw},
                "ratio": b / e,
                "wall_s": {"empty": wall("lan", "etcdroll"), "big": wall("bigdata", "etcdroll")},
            }),
        );
    }

    if on("thin") {
        let s = get("thin", "etcdroll");
        let stage = s.map_or(f64::NAN, |s| {
            median(s.events.iter().map(Events::stage_seconds).collect())
        });
        let scp = s.map_or(f64::NAN, |s| median(s.scp.clone()));
        let size = std::fs::metadata(&new_etcd)?.len() as f64 / 1e6;
        println!("\nThin pipe ({thin_link}, shared by the 3 hosts): {size:.1} MB to each of 3 members (median of {runs} runs)");
        println!("etcdroll staging {stage:.2}s, scp of the same binary {scp:.2}s: scp / staging = {:.2}×; etcdroll's whole upgrade {:.2}s",
            scp / stage, wall("thin", "etcdroll"));
        targets.push(Target {
            what: format!("thin ({thin_link}): staging vs scp of the same binary"),
            measured: format!("{stage:.2}s vs {scp:.2}s: {:.2}× faster", scp / stage),
            goal: "≥ 2×".into(),
            pass: Some(scp / stage >= 2.0),
        });
        results.insert(
            "thin".into(),
            json!({
                "runs": runs, "link": thin_link.to_string(), "mb_per_host": size,
                "etcdroll_stage_s": stage, "scp_s": scp, "speedup": scp / stage,
                "etcdroll_wall_s": wall("thin", "etcdroll"),
            }),
        );
    }

    if on("memory") {
        memory(
            runs,
            &new_etcd,
            &scratch,
            &mut results,
            &mut targets,
            get("lan", "etcdroll").map(|s| median(s.rss.clone())),
        )?;
    }
    if on("upload") {
        upload(runs, &new_etcd, &scratch, &mut results)?;
    }
    if on("fanout") {
        fanout(runs, &scratch, &mut results)?;
    }

    println!("\nTargets (issue 15), measured in this run");
    println!("{:<66} {:<34} {:<10} verdict", "target", "measured", "goal");
    for t in &targets {
        println!(
            "{:<66} {:<34} {:<10} {}",
            t.what,
            t.measured,
            t.goal,
            verdict(t.pass)
        );
    }
    results.insert(
        "targets".into(),
        serde_json::Value::Array(
            targets
                .iter()
                .map(|t| json!({"target": t.what, "measured": t.measured, "goal": t.goal, "verdict": verdict(t.pass)}))
                .collect(),
        ),
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    println!("\nwritten to {}", out.join("results.json").display());
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// Members per cluster in the memory scenario: 10 clusters of 3 would be 30 etcd
/// members and 30 sshd on this machine's 2 cores; 10 of 1 keeps the controller's
/// per-cluster cost (a binary, a plan, sessions) without drowning it in the hosts'.
const MEMORY_MEMBERS: usize = 1;

/// etcdroll's peak RSS upgrading 1 and then 10 clusters at once (`-f 10`), each
/// cluster with a binary of its own (`etcdroll_binary`, a copy per cluster): the
/// case where holding binaries in memory grows with the clusters.
fn memory(
    runs: usize,
    new_etcd: &Path,
    scratch: &Path,
    results: &mut serde_json::Map<String, serde_json::Value>,
    targets: &mut Vec<Target>,
    lan_rss_kib: Option<f64>,
) -> Result<()> {
    let mut rss: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut walls: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for r in 0..runs {
        for n in [1usize, 10] {
            let labs: Vec<Lab> = (0..n)
                .map(|_| {
                    Lab::start(&LabSpec {
                        members: MEMORY_MEMBERS,
                        ..LabSpec::default()
                    })
                })
                .collect::<Result<_>>()?;
            let mut y = String::from(
                "all:\n  vars:\n    ansible_user: root\n  children:\n    etcd:\n      hosts:\n",
            );
            for (i, lab) in labs.iter().enumerate() {
                let bin = scratch.join(format!("etcd-c{i}"));
                if !bin.exists() {
                    std::fs::copy(new_etcd, &bin)?;
                }
                y.push_str(&lab.member_entries(
                    &format!("c{i}-"),
                    &format!("etcd_cluster: c{i}\netcdroll_binary: {}", bin.display()),
                ));
            }
            for lab in &labs {
                lab.wait_cluster_healthy(Duration::from_secs(120))?;
            }
            let inv = scratch.join(format!("inv-memory-{n}.yml"));
            std::fs::write(&inv, y)?;
            let (t, kib, ok) = run_measured(
                etcdroll_measured()
                    .args(["upgrade", "-i"])
                    .arg(&inv)
                    // As in the LAN runs: no local `etcd --version` child counted.
                    .arg("--target-version")
                    .arg(Lab::newest_debian_35()?)
                    .args(["--yes", "--output", "json", "-f", "10"])
                    .env("HOME", scratch)
                    .env_remove("SSH_AUTH_SOCK")
                    .stdout(std::fs::File::create(scratch.join("events-memory.jsonl"))?),
            )?;
            if !ok {
                bail!(
                    "etcdroll upgrade of {n} clusters failed: {}",
                    std::fs::read_to_string(scratch.join("events-memory.jsonl"))
                        .unwrap_or_default()
                        .lines()
                        .last()
                        .unwrap_or("")
                );
            }
            eprintln!("run {r} memory   {n:>2} clusters of {MEMORY_MEMBERS}: wall {t:.2}s, peak RSS {:.1} MiB", kib as f64 / 1024.0);
            rss.entry(n).or_default().push(kib as f64);
            walls.entry(n).or_default().push(t);
        }
    }
    let one = median(rss[&1].clone());
    let ten = median(rss[&10].clone());
    println!(
        "\nMemory: etcdroll peak RSS, clusters of {MEMORY_MEMBERS} member(s), a binary each, -f 10 (median of {runs} runs): \
         1 cluster {:.1} MiB ({:.2}s), 10 clusters {:.1} MiB ({:.2}s): {:.2}×",
        one / 1024.0, median(walls[&1].clone()), ten / 1024.0, median(walls[&10].clone()), ten / one
    );
    if let Some(l) = lan_rss_kib {
        targets.push(Target {
            what: "memory: peak RSS, 3-member upgrade (the LAN runs)".into(),
            measured: format!("{:.1} MB", l * 1024.0 / 1e6),
            goal: "≤ 20 MB".into(),
            pass: Some(l * 1024.0 <= 20e6),
        });
    }
    targets.push(Target {
        what: format!("memory: peak RSS, 10 clusters vs 1 (of {MEMORY_MEMBERS} member)"),
        measured: format!(
            "{:.1} vs {:.1} MiB: {:.2}×",
            ten / 1024.0,
            one / 1024.0,
            ten / one
        ),
        goal: "0.9–1.1×".into(),
        pass: Some((0.9..=1.1).contains(&(ten / one))),
    });
    results.insert(
        "memory".into(),
        json!({
            "runs": runs, "members_per_cluster": MEMORY_MEMBERS,
            "peak_rss_kib": {"1": one, "10": ten}, "ratio": ten / one,
            "wall_s": {"1": median(walls[&1].clone()), "10": median(walls[&10].clone())},
            "three_member_peak_rss_kib": lan_rss_kib,
        }),
    );
    Ok(())
}

/// Upload of the binary to one host on the LAN, etcdroll vs scp, interleaved.
fn upload(
    runs: usize,
    new_etcd: &Path,
    scratch: &Path,
    results: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    // 2. Upload, etcdroll vs scp, interleaved.
    let lab = Lab::start(&LabSpec {
        members: 0,
        plain_hosts: 1,
        ..LabSpec::default()
    })?;
    let inv = scratch.join("inv-upload.yml");
    lab.write_inventory(&inv)?;
    let size = std::fs::metadata(new_etcd)?.len() as f64 / 1e6;
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
        let (first, again) = rt.block_on(upload_twice(&inv, new_etcd))?;
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
                    .arg(new_etcd)
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
    Ok(())
}

/// `exec -- true` and `check` on 30 and 100 hosts vs a parallel OpenSSH loop.
fn fanout(
    runs: usize,
    scratch: &Path,
    results: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
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
                etcdroll_measured()
                    .args(["exec", "-i"])
                    .arg(&inv)
                    .args(["--group", "hosts", "--output", "json", "--", "true"])
                    .env("HOME", scratch)
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
                etcdroll_measured()
                    .args(["check", "-i"])
                    .arg(&inv)
                    .args(["--group", "hosts", "--output", "json"])
                    .env("HOME", scratch)
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
