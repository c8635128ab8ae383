//! The lab's far link: the delaying relay carries bytes intact and in order both
//! ways, adds its delay to every round trip without serializing a stream, holds a
//! transfer to its rate cap, carries SSH with strict host key checking from the
//! relayed inventory (directly and through a bastion), and leaves no listener or
//! thread behind. Behaviour only: the speed targets live in the bench. Needs root
//! for the lab parts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use etcdroll_lab::{Lab, LabSpec, LinkModel, Relays};
use sha2::{Digest, Sha256};

fn link(s: &str) -> LinkModel {
    s.parse().unwrap()
}

/// A TCP server on loopback that runs `serve` on each connection, in a thread each.
fn server(serve: fn(TcpStream)) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || serve(c));
        }
    });
    addr
}

fn echo(mut c: TcpStream) {
    let _ = c.set_nodelay(true);
    let mut r = c.try_clone().unwrap();
    let _ = std::io::copy(&mut r, &mut c);
    let _ = c.shutdown(std::net::Shutdown::Write);
}

/// Reads to EOF, then answers with the byte count.
fn sink(mut c: TcpStream) {
    let n = std::io::copy(&mut c, &mut std::io::sink()).unwrap_or(0);
    let _ = c.write_all(n.to_string().as_bytes());
}

/// A stream no two offsets of which look alike within a run: reordered, lost or
/// doubled chunks change the digest.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn bytes_arrive_intact_and_in_order_in_both_directions_on_many_connections() {
    let target = server(echo);
    let mut relays = Relays::new(link("delay=5ms")).unwrap();
    let at = relays.add("127.0.0.1".parse().unwrap(), target).unwrap();
    // Eight connections at once, 16 MiB each, written and echoed back concurrently.
    let workers: Vec<_> = (0..8u64)
        .map(|i| {
            std::thread::spawn(move || {
                let data = pattern(16 << 20, i + 1);
                let sent = Sha256::digest(&data);
                let mut c = TcpStream::connect(at).unwrap();
                let mut w = c.try_clone().unwrap();
                let writer = std::thread::spawn(move || {
                    w.write_all(&data).unwrap();
                    w.shutdown(std::net::Shutdown::Write).unwrap();
                });
                let mut back = Vec::new();
                c.read_to_end(&mut back).unwrap();
                writer.join().unwrap();
                assert_eq!(back.len(), 16 << 20, "connection {i}: length");
                assert_eq!(Sha256::digest(&back), sent, "connection {i}: content");
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn a_round_trip_through_a_50ms_one_way_relay_takes_at_least_100ms_and_delay_does_not_serialize() {
    let target = server(echo);
    let mut relays = Relays::new(link("rtt=100ms")).unwrap();
    let at = relays.add("127.0.0.1".parse().unwrap(), target).unwrap();
    let mut c = TcpStream::connect(at).unwrap();
    c.set_nodelay(true).unwrap();
    let mut one = [0u8; 1];
    for i in 0..3u8 {
        let t = Instant::now();
        c.write_all(&[i]).unwrap();
        c.read_exact(&mut one).unwrap();
        let rtt = t.elapsed();
        assert_eq!(one[0], i);
        assert!(rtt >= Duration::from_millis(100), "round trip {i}: {rtt:?}");
    }
    // 20 messages 10 ms apart without waiting for the answers: every one is delayed
    // by the RTT, overlapping, so the last answer comes about 0.3 s after the first
    // message, not 20 RTTs (2 s) later as a relay that waits per chunk would make it.
    let mut r = c.try_clone().unwrap();
    let t = Instant::now();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; 20];
        r.read_exact(&mut got).unwrap();
        got
    });
    for i in 0..20u8 {
        c.write_all(&[i]).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = reader.join().unwrap();
    let all = t.elapsed();
    assert_eq!(got, (0..20u8).collect::<Vec<_>>(), "answers in order");
    assert!(all >= Duration::from_millis(290), "{all:?}");
    assert!(
        all < Duration::from_millis(1000),
        "delays serialized: {all:?}"
    );
}

#[test]
fn the_rate_cap_keeps_a_transfer_from_exceeding_the_rate() {
    let target = server(sink);
    let mut relays = Relays::new(link("rtt=2ms,rate=8mbit")).unwrap();
    let at = relays.add("127.0.0.1".parse().unwrap(), target).unwrap();
    // 2 MB at 8 Mbit/s (1 MB/s) cannot take less than 2 s.
    let data = pattern(2_000_000, 7);
    let t = Instant::now();
    let mut c = TcpStream::connect(at).unwrap();
    c.write_all(&data).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut n = String::new();
    c.read_to_string(&mut n).unwrap();
    let took = t.elapsed();
    assert_eq!(n, "2000000");
    assert!(
        took >= Duration::from_millis(1900),
        "2 MB at 1 MB/s in {took:?}"
    );
    // The other direction is capped too: an echo of 1 MB crosses the link both
    // ways (each direction its own wire), so it cannot take less than 1 s.
    let target = server(echo);
    let at = relays.add("127.0.0.1".parse().unwrap(), target).unwrap();
    let data = pattern(1_000_000, 9);
    let t = Instant::now();
    let mut c = TcpStream::connect(at).unwrap();
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), 1_000_000);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(950),
        "1 MB echoed in {took:?}"
    );
}

fn lab(spec: LabSpec) -> Lab {
    if let Err(why) = Lab::available() {
        panic!("\n!!!!! this lab test cannot run: {why}; run it as root !!!!!\n");
    }
    Lab::start(&spec).expect("lab starts")
}

/// ssh with OpenSSH, strict host key checking against the lab's known_hosts.
fn openssh(lab: &Lab, at: SocketAddr, cmd: &str) -> std::process::Output {
    Command::new("ssh")
        .arg("-i")
        .arg(&lab.client_key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", lab.known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .args(["-o", "ConnectTimeout=5", "-F", "/dev/null", "-p"])
        .arg(at.port().to_string())
        .arg(format!("root@{}", at.ip()))
        .arg(cmd)
        .output()
        .expect("ssh runs")
}

/// Every host of the inventory, through etcdroll's own connector (strict host key
/// checking, known_hosts from the inventory): the addresses each one answers from.
fn etcdroll_addresses(inv: &std::path::Path, group: &str) -> Vec<String> {
    use etcdroll::inventory::{load, LoadOptions};
    use etcdroll::reach::ReachOptions;
    use etcdroll::ssh::{Connector, RemoteCommand, SshOptions};
    let inv = load(
        inv,
        &LoadOptions {
            group,
            limit: None,
            extra_vars: None,
            via_ansible: false,
        },
    )
    .expect("inventory loads");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let connector = std::sync::Arc::new(Connector::new(SshOptions {
            use_agent: false,
            ..SshOptions::default()
        }));
        let links =
            etcdroll::upgrade::connect_all(connector, &inv.hosts, &ReachOptions::default()).await;
        let mut out = Vec::new();
        for l in &links {
            let s = l.session().expect("connected through the relay");
            let o = s
                .exec(
                    &RemoteCommand::script("ip -4 -o addr show scope global"),
                    None,
                    Duration::from_secs(10),
                )
                .await
                .expect("command runs");
            assert!(o.success());
            out.push(String::from_utf8_lossy(&o.stdout).into_owned());
            s.close().await;
        }
        out
    })
}

#[test]
fn ssh_through_the_relayed_inventory_works_with_strict_host_key_checking() {
    let lab = lab(LabSpec {
        members: 2,
        link: Some(link("rtt=40ms")),
        ..LabSpec::default()
    });
    let dir = tempdir("inv");
    let inv = dir.join("inventory.yml");
    lab.write_inventory(&inv).unwrap();
    let text = std::fs::read_to_string(&inv).unwrap();
    for m in &lab.members {
        let at = lab.relay_of(m).expect("every member has a relay");
        assert!(
            text.contains(&format!(
                "ansible_host: \"{}\"\n          ansible_port: {}",
                at.ip(),
                at.port()
            )),
            "{text}"
        );
        // No address of the member itself is dialled: only the relay's.
        assert!(!text.contains(&format!("\"{}\"", m.ip())), "{text}");
        let o = openssh(&lab, at, "ip -4 -o addr show scope global");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("{}/", m.addr)));
    }
    let seen = etcdroll_addresses(&inv, "etcd");
    for (m, s) in lab.members.iter().zip(&seen) {
        assert!(
            s.contains(&format!("{}/", m.addr)),
            "{} answered {s}",
            m.name
        );
    }
    // A known_hosts without the relays' `[addr]:port` entries is refused: the check
    // is strict, not skipped.
    let kh = std::fs::read_to_string(&lab.known_hosts).unwrap();
    let plain: String = kh
        .lines()
        .filter(|l| !l.starts_with('['))
        .map(|l| l.to_string() + "\n")
        .collect();
    std::fs::write(&lab.known_hosts, plain).unwrap();
    let o = openssh(&lab, lab.relay_of(&lab.members[0]).unwrap(), "true");
    assert!(
        !o.status.success(),
        "an unknown relayed host key was accepted"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn behind_a_bastion_only_the_first_bastion_is_relayed_and_the_members_answer_through_it() {
    let lab = lab(LabSpec {
        members: 1,
        bastions: 1,
        link: Some(link("rtt=20ms")),
        ..LabSpec::default()
    });
    assert!(lab.relay_of(&lab.members[0]).is_none());
    let at = lab
        .relay_of(&lab.bastions[0])
        .expect("the bastion has a relay");
    let dir = tempdir("bastion");
    let inv = dir.join("inventory.yml");
    lab.write_inventory(&inv).unwrap();
    let text = std::fs::read_to_string(&inv).unwrap();
    assert!(
        text.contains(&format!("etcdroll_jump: root@{}:{}", at.ip(), at.port())),
        "{text}"
    );
    let seen = etcdroll_addresses(&inv, "etcd");
    assert!(
        seen[0].contains(&format!("{}/", lab.members[0].addr)),
        "{seen:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn listening() -> String {
    let o = Command::new("ss")
        .args(["-Hltn"])
        .output()
        .expect("ss runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .count()
}

#[test]
fn tear_down_leaves_no_listener_and_no_thread() {
    // A relay alone: its port is refused once it is dropped, with a connection open.
    let target = server(echo);
    let mut relays = Relays::new(link("delay=1ms")).unwrap();
    let at = relays.add("127.0.0.1".parse().unwrap(), target).unwrap();
    let threads = relays.thread_name();
    let mut open = TcpStream::connect(at).unwrap();
    open.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    open.read_exact(&mut one).unwrap();
    assert!(threads_named(&threads) > 0);
    drop(relays);
    assert!(TcpStream::connect(at).is_err(), "{at} still accepts");
    assert_eq!(
        threads_named(&threads),
        0,
        "relay threads outlive their relays"
    );
    // The open connection was closed too: EOF (or a reset), not a hang.
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(matches!(open.read(&mut one), Ok(0) | Err(_)));

    // A lab's relays: listening while it runs, gone after it is dropped.
    let lab = lab(LabSpec {
        members: 1,
        link: Some(link("rtt=10ms")),
        ..LabSpec::default()
    });
    let at = lab.relay_of(&lab.members[0]).unwrap();
    let threads = lab.relay_thread_name().unwrap();
    assert!(
        listening().contains(&at.to_string()),
        "{at} is not listening"
    );
    drop(lab);
    assert!(
        !listening().contains(&at.to_string()),
        "{at} still listening"
    );
    assert_eq!(threads_named(&threads), 0);
}

fn tempdir(what: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("etcdroll-relay-test-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
