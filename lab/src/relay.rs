//! A delaying TCP relay: the lab's far link. This kernel has no netem, so latency
//! between the controller and the hosts is made in userspace: each relay listens on
//! a lab address (or loopback) in the root namespace, forwards every accepted
//! connection to one target (a host's sshd), and holds each chunk it reads for the
//! one-way delay before writing it on, in each direction, optionally behind a rate
//! cap. Delay is a per-chunk deadline, not a sleep between reads, so a steady
//! stream keeps its throughput and only gains latency (a link, not a queue); the
//! queue of chunks in flight is bounded in bytes, which gives the sender TCP
//! backpressure instead of unbounded memory.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// What the link between the controller and the hosts looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkModel {
    /// Added to every byte in each direction (RTT = twice this).
    pub one_way_delay: Duration,
    /// Cap per direction (bits/s), shared by every connection through one set of
    /// relays, as the controller's one uplink would be; None: as fast as the relay goes.
    pub rate_bits_per_sec: Option<u64>,
}

impl LinkModel {
    pub fn rtt(&self) -> Duration {
        self.one_way_delay * 2
    }

    /// How many bytes one chunk carries: up to 64 KiB, and with a rate cap about 5 ms
    /// of the rate, so the cap is smooth rather than one burst per 64 KiB.
    fn chunk_bytes(&self) -> usize {
        match self.rate_bits_per_sec {
            Some(r) => ((r / 8 / 200) as usize).clamp(1460, 64 * 1024),
            None => 64 * 1024,
        }
    }
}

impl fmt::Display for LinkModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rtt={}ms", self.rtt().as_millis())?;
        if let Some(r) = self.rate_bits_per_sec {
            if r % 1_000_000 == 0 {
                write!(f, ",rate={}mbit", r / 1_000_000)?;
            } else if r % 1000 == 0 {
                write!(f, ",rate={}kbit", r / 1000)?;
            } else {
                write!(f, ",rate={r}bit")?;
            }
        }
        Ok(())
    }
}

/// `rtt=100ms,rate=20mbit`, `delay=50ms` (one way), `rate=1gbit` (tc's units:
/// bit, kbit, mbit, gbit, decimal).
impl FromStr for LinkModel {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut link = LinkModel {
            one_way_delay: Duration::ZERO,
            rate_bits_per_sec: None,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                bail!("link: `{part}` is not KEY=VALUE (rtt=100ms, delay=50ms, rate=20mbit)");
            };
            match k {
                "rtt" => link.one_way_delay = humantime::parse_duration(v)? / 2,
                "delay" => link.one_way_delay = humantime::parse_duration(v)?,
                "rate" => {
                    let v = v.to_ascii_lowercase();
                    let (num, mult) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
                        .iter()
                        .find_map(|(u, m)| v.strip_suffix(u).map(|n| (n.to_string(), *m)))
                        .unwrap_or((v.clone(), 1.0));
                    let n: f64 = num
                        .parse()
                        .with_context(|| format!("link: rate `{v}` (e.g. 20mbit)"))?;
                    if n <= 0.0 {
                        bail!("link: rate must be positive");
                    }
                    link.rate_bits_per_sec = Some((n * mult) as u64);
                }
                _ => bail!("link: unknown key `{k}` (rtt, delay, rate)"),
            }
        }
        Ok(link)
    }
}

/// The most bytes a direction of one connection holds in flight: enough for a fast
/// stream through a 50 ms delay (~600 MB/s), and the sender waits beyond it.
const QUEUE_BYTES: usize = 32 << 20;

/// Only lab addresses: 198.18.0.0/15, the lab's ULA prefix, loopback.
fn is_lab_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback() || (a.octets()[0] == 198 && a.octets()[1] & 0xfe == 18),
        IpAddr::V6(a) => a.is_loopback() || a.segments()[..3] == [0xfd65, 0x7463, 0x6472],
    }
}

/// A set of relays sharing one small runtime. Dropping it closes every listener and
/// connection and stops its threads.
pub struct Relays {
    id: u32,
    rt: Option<tokio::runtime::Runtime>,
    link: LinkModel,
    /// The modelled wire of each direction (towards the targets, back): when it is
    /// free again. Shared by every connection, so a rate cap is the link's.
    wires: [Wire; 2],
    routes: Vec<(SocketAddr, SocketAddr)>,
}

type Wire = Arc<std::sync::Mutex<Instant>>;

impl Relays {
    pub fn new(link: LinkModel) -> Result<Relays> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(Relays::thread_name_of(id))
            .enable_all()
            .build()?;
        Ok(Relays {
            id,
            rt: Some(rt),
            link,
            wires: [
                Arc::new(std::sync::Mutex::new(Instant::now())),
                Arc::new(std::sync::Mutex::new(Instant::now())),
            ],
            routes: Vec::new(),
        })
    }

    /// The name of this set's threads (as /proc/PID/task/*/comm shows it, ≤ 15
    /// bytes), so a test can see that none outlives it.
    pub fn thread_name(&self) -> String {
        Relays::thread_name_of(self.id)
    }

    fn thread_name_of(id: u32) -> String {
        format!("erelay{id}")
    }

    pub fn link(&self) -> LinkModel {
        self.link
    }

    /// A relay listening on `listen_ip` (a free port) to `target`; returns the address
    /// it listens on.
    pub fn add(&mut self, listen_ip: IpAddr, target: SocketAddr) -> Result<SocketAddr> {
        if !is_lab_address(listen_ip) || !is_lab_address(target.ip()) {
            bail!("relay {listen_ip} -> {target}: only loopback and lab addresses");
        }
        let Some(rt) = &self.rt else {
            bail!("relays stopped")
        };
        let std_listener = std::net::TcpListener::bind(SocketAddr::new(listen_ip, 0))
            .with_context(|| format!("relay: binding {listen_ip}"))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _guard = rt.enter();
            TcpListener::from_std(std_listener)?
        };
        rt.spawn(accept_loop(listener, target, self.link, self.wires.clone()));
        self.routes.push((addr, target));
        Ok(addr)
    }

    /// (listening address, target) of each relay.
    pub fn routes(&self) -> &[(SocketAddr, SocketAddr)] {
        &self.routes
    }

    /// Close every listener and connection; waits for the runtime's threads unless
    /// called from inside another runtime (where blocking is not allowed).
    pub fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_secs(2));
            }
        }
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, link: LinkModel, wires: [Wire; 2]) {
    loop {
        match listener.accept().await {
            Ok((inbound, _)) => {
                let wires = wires.clone();
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        relay_connection(inbound, outbound, link, wires).await;
                    }
                });
            }
            // Out of file descriptors and the like: try again shortly rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn relay_connection(
    inbound: TcpStream,
    outbound: TcpStream,
    link: LinkModel,
    [up, down]: [Wire; 2],
) {
    // Chunks leave when they are due; Nagle would hold small ones back further.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_r, in_w) = inbound.into_split();
    let (out_r, out_w) = outbound.into_split();
    tokio::join!(
        direction(in_r, out_w, link, up),
        direction(out_r, in_w, link, down)
    );
}

/// A chunk and when it is due at the far end; None marks the end of the stream.
type Chunk = (Instant, Option<Vec<u8>>, Option<OwnedSemaphorePermit>);

/// One direction: a reader stamps each chunk with its due time (after the rate cap's
/// serialization, plus the delay) and queues it; a writer writes each when due. The
/// writer sleeps per chunk, but since due times only grow with the order of reads,
/// the delays overlap: a chunk read at t leaves at t + delay whatever follows it.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: LinkModel, wire: Wire) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Chunk>();
    let budget = Arc::new(Semaphore::new(QUEUE_BYTES));
    let chunk = link.chunk_bytes();
    let reader = async move {
        loop {
            let mut buf = vec![0u8; chunk];
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            if n == 0 {
                let _ = tx.send((Instant::now() + link.one_way_delay, None, None));
                return;
            }
            buf.truncate(n);
            let mut sent = Instant::now();
            if let Some(rate) = link.rate_bits_per_sec {
                // The chunk takes the wire after whatever any connection put on it.
                let mut free = wire.lock().unwrap_or_else(|e| e.into_inner());
                *free = (*free).max(sent) + Duration::from_secs_f64(n as f64 * 8.0 / rate as f64);
                sent = *free;
            }
            // Backpressure: past the budget, stop reading until the writer catches up.
            let Ok(permit) = budget.clone().acquire_many_owned(n as u32).await else {
                return;
            };
            if tx
                .send((sent + link.one_way_delay, Some(buf), Some(permit)))
                .is_err()
            {
                return;
            }
            // On a capped wire the next chunk cannot start before this one is out:
            // the sender waits in TCP, as it would behind a real thin pipe.
            if link.rate_bits_per_sec.is_some() {
                tokio::time::sleep_until(sent).await;
            }
        }
    };
    let writer = async move {
        while let Some((due, data, _permit)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            match data {
                Some(d) => {
                    if to.write_all(&d).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_reads_rtt_delay_and_rate_in_tc_units() {
        let l: LinkModel = "rtt=100ms,rate=20mbit".parse().unwrap();
        assert_eq!(l.one_way_delay, Duration::from_millis(50));
        assert_eq!(l.rate_bits_per_sec, Some(20_000_000));
        assert_eq!(l.to_string(), "rtt=100ms,rate=20mbit");
        let l: LinkModel = "delay=30ms".parse().unwrap();
        assert_eq!(l.rtt(), Duration::from_millis(60));
        assert_eq!(l.rate_bits_per_sec, None);
        assert!("rtt=fast".parse::<LinkModel>().is_err());
        assert!("speed=1".parse::<LinkModel>().is_err());
    }

    #[test]
    fn relays_refuse_addresses_outside_the_lab() {
        let mut r = Relays::new("delay=1ms".parse().unwrap()).unwrap();
        let lab: SocketAddr = "198.18.3.10:22".parse().unwrap();
        assert!(r.add("10.0.0.1".parse().unwrap(), lab).is_err());
        assert!(r
            .add(
                "127.0.0.1".parse().unwrap(),
                "192.0.2.1:22".parse().unwrap()
            )
            .is_err());
        assert!(is_lab_address("198.19.0.1".parse().unwrap()));
        assert!(!is_lab_address("198.20.0.1".parse().unwrap()));
        assert!(is_lab_address("fd65:7463:6472:3::a".parse().unwrap()));
        assert!(!is_lab_address("fd00::1".parse().unwrap()));
    }
}
