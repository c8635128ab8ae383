//! The lab: real hosts on one machine. Each host is a network namespace with its own
//! address in 198.18.0.0/15, a real OpenSSH sshd on port 22 and (for members) a real
//! etcd member; the members form one cluster. Tests, the demo and the benchmarks
//! share it. Needs root. Everything it makes is torn down on drop, even on panic.
//!
//! Addressing: a lab takes a "slot" N by creating the bridge `erbrN` (the kernel's
//! "File exists" makes this an atomic allocator across threads and processes) and
//! uses 198.18.N.0/24 (198.19.(N-256).0/24 beyond 255). The controller is .1 on the
//! bridge. Behind bastions, each further network takes a slot of its own and its
//! bridge lives inside the bastion's namespace, so only that bastion reaches it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

pub mod relay;
pub mod systemd;
pub use relay::{LinkModel, Relays};
pub use systemd::Layout;

const SERVICE_SCRIPT: &str = include_str!("etcd-service.sh");
const OWNERS_DIR: &str = "/run/etcdroll-lab";
const MAX_SLOTS: u32 = 500;

#[derive(Debug, Clone)]
pub struct LabSpec {
    pub members: usize,
    /// Hosts with sshd only, no etcd (for `exec` fan-out).
    pub plain_hosts: usize,
    /// "3.4.23", "3.5.0" or "3.5.1".
    pub version: String,
    /// 0, 1 or 2 jump hosts in front of the members.
    pub bastions: usize,
    pub enable_v2: bool,
    /// `--snapshot-count` (as ETCD_SNAPSHOT_COUNT), for raft snapshots in a
    /// small lab: etcd's default takes one only every 10 000 (2.3) or 100 000
    /// (3.4+) entries.
    pub snapshot_count: Option<u32>,
    pub start_etcd: bool,
    /// Clients over TLS with client certificates (`--client-cert-auth`); peers stay plain.
    pub tls: bool,
    /// Hosts get only IPv6 addresses (a ULA prefix of the lab's own).
    pub ipv6: bool,
    /// systemd hosts: each host a `systemd-nspawn --boot` container (real systemd as
    /// PID 1, sshd and `etcd.service` under it) laid out as `Layout` says; None:
    /// script hosts (sshd and etcd straight in the namespace).
    pub systemd: Option<Layout>,
    /// With the kubespray layout: kubespray's second cluster `etcd-events` on the
    /// same members (`etcd-events.service`, clients on 2383, peers on 2382).
    pub etcd_events: bool,
    /// A far or thin link between the controller and the hosts: every SSH
    /// connection the lab's inventories describe goes through a delaying relay
    /// (in front of each host, or of the first bastion). Members still reach each
    /// other, and tests still reach members, directly.
    pub link: Option<LinkModel>,
    /// `--quota-backend-bytes` (as ETCD_QUOTA_BACKEND_BYTES), for big data dirs.
    pub quota_backend_bytes: Option<u64>,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            members: 3,
            plain_hosts: 0,
            version: "3.4.23".into(),
            bastions: 0,
            enable_v2: false,
            snapshot_count: None,
            start_etcd: true,
            tls: false,
            ipv6: false,
            systemd: None,
            etcd_events: false,
            link: None,
            quota_backend_bytes: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabHost {
    pub name: String,
    pub netns: String,
    /// The host's IPv4 address (unassigned in an IPv6 lab).
    pub addr: Ipv4Addr,
    /// The host's IPv6 address, in an IPv6 lab.
    pub addr6: Option<Ipv6Addr>,
    pub dir: PathBuf,
    pub etcd_binary: PathBuf,
    pub etcdctl_binary: PathBuf,
    pub data_dir: PathBuf,
    pub backup_dir: PathBuf,
    pub service_script: PathBuf,
    pub is_member: bool,
    /// systemd hosts: the container's root (the merged overlay), so a test can read
    /// the host's files from outside. There, `etcd_binary`, `etcdctl_binary`,
    /// `data_dir` and `backup_dir` are paths inside the container (see `outside`).
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// systemd hosts: the container's nspawn process and what the lab made for it.
    #[serde(default)]
    pub container: Option<systemd::Container>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabTls {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl LabHost {
    /// A path on the host as the controller sees it: under the container's root on a
    /// systemd host, the path itself on a script host.
    pub fn outside(&self, inside: &Path) -> PathBuf {
        match &self.root {
            Some(r) => r.join(inside.strip_prefix("/").unwrap_or(inside)),
            None => inside.to_path_buf(),
        }
    }

    /// The address clients use: IPv6 in an IPv6 lab, else IPv4.
    pub fn ip(&self) -> IpAddr {
        match self.addr6 {
            Some(a) => IpAddr::V6(a),
            None => IpAddr::V4(self.addr),
        }
    }
}

/// `scheme://host:port`, brackets around IPv6.
fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{scheme}://{a}:{port}"),
        IpAddr::V6(a) => format!("{scheme}://[{a}]:{port}"),
    }
}

/// The lab's own ULA prefix (not fd00::/64, which the machine uses).
fn addr6(slot: u32, host: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd65, 0x7463, 0x6472, slot as u16, 0, 0, 0, host as u16)
}

#[derive(Serialize, Deserialize)]
pub struct Lab {
    pub id: String,
    pub dir: PathBuf,
    /// Slots taken (bridges `erbrN` in the root namespace reserve them).
    pub slots: Vec<u32>,
    pub members: Vec<LabHost>,
    pub plain_hosts: Vec<LabHost>,
    pub bastions: Vec<LabHost>,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    pub version: String,
    /// CA, client certificate and key, in a TLS lab.
    pub tls: Option<LabTls>,
    namespaces: Vec<String>,
    #[serde(default)]
    ipv6: bool,
    /// The layout of a systemd lab (None: script hosts).
    #[serde(default)]
    pub systemd: Option<Layout>,
    /// kubespray's `etcd-events` cluster runs beside `etcd` (ports 2383/2382).
    #[serde(default)]
    pub etcd_events: bool,
    /// Host name -> the relay address the controller uses for its sshd, on a
    /// lab with a link model.
    #[serde(default)]
    pub relayed: Vec<(String, std::net::SocketAddr)>,
    /// The link model of the relays, if any.
    #[serde(skip)]
    pub link: Option<LinkModel>,
    #[serde(skip)]
    relays: Option<Relays>,
    #[serde(skip)]
    keep: bool,
    #[serde(skip)]
    torn_down: bool,
}

fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<Output> {
    run(Command::new("ip").args(args))
}

fn subnet(slot: u32) -> (u8, u8) {
    if slot < 256 {
        (18, slot as u8)
    } else {
        (19, (slot - 256) as u8)
    }
}

fn addr(slot: u32, host: u8) -> Ipv4Addr {
    let (b, c) = subnet(slot);
    Ipv4Addr::new(198, b, c, host)
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// One network a host can be attached to: the root bridge, or a bridge inside a bastion.
#[derive(Clone)]
struct Net {
    slot: u32,
    /// None: the bridge `erbrN` in the root namespace; Some(ns): `br0` inside ns.
    owner: Option<String>,
}

impl Lab {
    /// Why the lab cannot run here, if it cannot.
    pub fn available() -> std::result::Result<(), String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("the lab needs root (network namespaces)".into());
        }
        for tool in [
            "/usr/sbin/sshd",
            "/usr/bin/ssh-keygen",
            "/usr/bin/etcd",
            "/usr/bin/etcdctl",
        ] {
            if !Path::new(tool).exists() {
                return Err(format!("{tool} is missing (scripts/prepare installs it)"));
            }
        }
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "`ip netns` does not work: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Err(format!("`ip` is missing: {e}")),
        }
    }

    /// The newest etcd 3.5 of Debian sid, as scripts/prepare found it (its
    /// version is read from the binary there, never assumed).
    pub fn newest_debian_35() -> Result<String> {
        let cache = std::env::var_os("ETCDROLL_ETCD_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/etcd"))
            });
        let p = cache.join("sid-version");
        let v = std::fs::read_to_string(&p)
            .with_context(|| format!("{}: run scripts/prepare", p.display()))?;
        Ok(v.trim().to_string())
    }

    /// etcd, etcdctl and (3.5+) etcdutl of a version.
    pub fn etcd_binaries(version: &str) -> Result<(PathBuf, PathBuf, Option<PathBuf>)> {
        if version == "3.4.23" {
            return Ok((
                PathBuf::from("/usr/bin/etcd"),
                PathBuf::from("/usr/bin/etcdctl"),
                None,
            ));
        }
        let cache = std::env::var_os("ETCDROLL_ETCD_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/etcd"))
            });
        let dir = cache.join(version);
        let etcd = dir.join("etcd");
        if !etcd.exists() {
            bail!("etcd {version} is not at {}: run scripts/prepare (or scripts/test), which installs it", etcd.display());
        }
        let utl = dir.join("etcdutl");
        Ok((etcd, dir.join("etcdctl"), utl.exists().then_some(utl)))
    }

    /// Create the hosts, start sshd everywhere and etcd on the members, and wait for
    /// a healthy cluster. On failure, tears down what it made.
    pub fn start(spec: &LabSpec) -> Result<Lab> {
        if spec.bastions > 2 {
            bail!("the lab supports at most 2 bastions");
        }
        if spec.members > 89 || spec.plain_hosts > 150 {
            bail!("too many hosts for one /24");
        }
        if let Some(layout) = spec.systemd {
            systemd::check_spec(spec, layout)?;
        }
        let (etcd, etcdctl, etcdutl) = Lab::etcd_binaries(&spec.version)?;
        reclaim_abandoned();
        guard_lab_range()?;
        let first = allocate_slot()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let id = format!("lab{first}-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(format!("etcdroll-{id}"));
        let mut lab = Lab {
            id: id.clone(),
            dir: dir.clone(),
            slots: vec![first],
            members: Vec::new(),
            plain_hosts: Vec::new(),
            bastions: Vec::new(),
            client_key: dir.join("id_ed25519"),
            known_hosts: dir.join("known_hosts"),
            version: spec.version.clone(),
            tls: None,
            namespaces: Vec::new(),
            ipv6: false,
            systemd: spec.systemd,
            etcd_events: spec.etcd_events,
            relayed: Vec::new(),
            link: spec.link,
            relays: None,
            keep: false,
            torn_down: false,
        };
        write_owner(first, &dir);
        match lab.build(spec, &etcd, &etcdctl, etcdutl.as_deref()) {
            Ok(()) => Ok(lab),
            Err(e) => {
                lab.teardown();
                Err(e)
            }
        }
    }

    fn build(
        &mut self,
        spec: &LabSpec,
        etcd: &Path,
        etcdctl: &Path,
        etcdutl: Option<&Path>,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        set_mode(&self.dir, 0o755)?;
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "etcdroll-lab", "-f"])
            .arg(&self.client_key))?;
        std::fs::copy(
            self.client_key.with_extension("pub"),
            self.dir.join("authorized_keys"),
        )?;
        std::fs::create_dir_all("/run/sshd")?;

        // The controller's bridge.
        let root_slot = self.slots[0];
        let br = format!("erbr{root_slot}");
        ip(&[
            "addr",
            "add",
            &format!("{}/24", addr(root_slot, 1)),
            "dev",
            &br,
        ])?;
        if spec.ipv6 && spec.bastions > 0 {
            bail!("the lab does not combine IPv6 and bastions");
        }
        self.ipv6 = spec.ipv6;
        if spec.ipv6 {
            let a6 = format!("{}/64", addr6(root_slot, 1));
            ip(&["-6", "addr", "add", &a6, "dev", &br, "nodad"])?;
        }
        ip(&["link", "set", &br, "up"])?;
        let mut net = Net {
            slot: root_slot,
            owner: None,
        };
        // Bastions: each on the current network at .2, hosting the next network.
        for b in 0..spec.bastions {
            let name = format!("bastion{}", b + 1);
            let ns = format!("er{root_slot}b{}", b + 1);
            let host = self.add_host(&name, &ns, &net, 2, false)?;
            let inner = allocate_slot()?;
            self.slots.push(inner);
            ip(&["-n", &ns, "link", "add", "br0", "type", "bridge"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", addr(inner, 1)),
                "dev",
                "br0",
            ])?;
            ip(&["-n", &ns, "link", "set", "br0", "up"])?;
            self.bastions.push(host);
            net = Net {
                slot: inner,
                owner: Some(ns),
            };
        }
        if let Some(layout) = spec.systemd {
            // Containers: booted together, sshd waited for below like any host's.
            systemd::add_hosts(self, spec, layout, &net, etcd, etcdctl, etcdutl)?;
        } else {
            for i in 0..spec.members {
                let ns = format!("er{root_slot}h{i}");
                let h = self.add_host(&format!("m{i}"), &ns, &net, 10 + i as u8, true)?;
                self.install_etcd(&h, etcd, etcdctl, etcdutl)?;
                self.members.push(h);
            }
            for j in 0..spec.plain_hosts {
                let ns = format!("er{root_slot}p{j}");
                let h = self.add_host(&format!("h{j}"), &ns, &net, 100 + j as u8, false)?;
                self.plain_hosts.push(h);
            }
        }
        if let Some(link) = spec.link {
            self.start_relays(link)?;
        }
        // known_hosts: every host's ed25519 and ecdsa keys under its address (and
        // under its relay's `[addr]:port`, which is what the controller dials).
        let mut kh = String::new();
        for h in self.all_hosts() {
            for t in ["ed25519", "ecdsa"] {
                let pubkey = std::fs::read_to_string(h.dir.join(format!("ssh_host_{t}_key.pub")))?;
                let mut parts = pubkey.split_whitespace();
                let (Some(a), Some(k)) = (parts.next(), parts.next()) else {
                    bail!("bad host key file for {}", h.name)
                };
                kh.push_str(&format!("{} {a} {k}\n", h.ip()));
                if let Some(relay) = self.relay_of(h) {
                    kh.push_str(&format!("[{}]:{} {a} {k}\n", relay.ip(), relay.port()));
                }
            }
        }
        std::fs::write(&self.known_hosts, kh)?;
        for h in self.all_hosts() {
            self.wait_sshd(h)?;
        }
        if spec.systemd.is_some() {
            // etcd.service is enabled (when start_etcd) and started by the boot itself.
            if spec.members > 0 && spec.start_etcd {
                self.wait_cluster_healthy(Duration::from_secs(60))?;
                if spec.etcd_events {
                    systemd::wait_events_healthy(self, Duration::from_secs(60))?;
                }
            }
            return Ok(());
        }
        if spec.members > 0 {
            self.write_etcd_flags(spec)?;
            if spec.start_etcd {
                for m in &self.members {
                    self.service(m, "start")?;
                }
                self.wait_cluster_healthy(Duration::from_secs(30))?;
            }
        }
        Ok(())
    }

    /// A relay on the controller's own lab address in front of every host the
    /// controller dials: each member and plain host, or only the first bastion
    /// (everything behind it is reached through it).
    fn start_relays(&mut self, link: LinkModel) -> Result<()> {
        let slot = self.slots[0];
        let listen = if self.ipv6 {
            IpAddr::V6(addr6(slot, 1))
        } else {
            IpAddr::V4(addr(slot, 1))
        };
        let mut relays = Relays::new(link)?;
        let fronted: Vec<&LabHost> = match self.bastions.first() {
            Some(b) => vec![b],
            None => self.members.iter().chain(&self.plain_hosts).collect(),
        };
        let mut relayed = Vec::new();
        for h in fronted {
            let at = relays.add(listen, std::net::SocketAddr::new(h.ip(), 22))?;
            relayed.push((h.name.clone(), at));
        }
        self.relayed = relayed;
        self.relays = Some(relays);
        Ok(())
    }

    /// The relay the controller dials for `h`'s sshd, on a lab with a link model.
    pub fn relay_of(&self, h: &LabHost) -> Option<std::net::SocketAddr> {
        self.relayed
            .iter()
            .find(|(n, _)| *n == h.name)
            .map(|(_, a)| *a)
    }

    /// The name of the relays' threads, on a lab with a link model (see
    /// `Relays::thread_name`).
    pub fn relay_thread_name(&self) -> Option<String> {
        self.relays.as_ref().map(Relays::thread_name)
    }

    /// `ansible_host` (and `ansible_port` through a relay) lines for a host entry.
    pub(crate) fn host_lines(&self, h: &LabHost) -> String {
        match self.relay_of(h) {
            Some(r) => format!(
                "          ansible_host: \"{}\"\n          ansible_port: {}\n",
                r.ip(),
                r.port()
            ),
            None => format!("          ansible_host: \"{}\"\n", h.ip()),
        }
    }

    /// `root@ADDR[:PORT]` of each bastion, as `etcdroll_jump` takes them.
    fn jump_hops(&self) -> Vec<String> {
        self.bastions
            .iter()
            .map(|b| match self.relay_of(b) {
                Some(r) => format!("root@{}:{}", r.ip(), r.port()),
                None => format!("root@{}", b.addr),
            })
            .collect()
    }

    fn all_hosts(&self) -> impl Iterator<Item = &LabHost> {
        self.bastions
            .iter()
            .chain(&self.members)
            .chain(&self.plain_hosts)
    }

    /// A namespace on `net` at `.last`, with sshd running.
    fn add_host(
        &mut self,
        name: &str,
        ns: &str,
        net: &Net,
        last: u8,
        is_member: bool,
    ) -> Result<LabHost> {
        let (a, a6) = self.add_netns(ns, net, last)?;
        self.add_sshd_host(name, ns, a, a6, is_member)
    }

    /// A network namespace on `net` at `.last` with its veth up; its addresses.
    fn add_netns(&mut self, ns: &str, net: &Net, last: u8) -> Result<(Ipv4Addr, Option<Ipv6Addr>)> {
        ip(&["netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        let veth = format!("{ns}v");
        // A veth of a lab whose namespace outlived it (a process still held it) would
        // block the name: remove it first.
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        match &net.owner {
            None => ip(&[
                "link",
                "set",
                &veth,
                "master",
                &format!("erbr{}", net.slot),
                "up",
            ])?,
            Some(owner) => {
                ip(&["link", "set", &veth, "netns", owner])?;
                ip(&["-n", owner, "link", "set", &veth, "master", "br0", "up"])?
            }
        };
        let a = addr(net.slot, last);
        let a6 = self.ipv6.then(|| addr6(net.slot, last));
        match a6 {
            Some(a6) => ip(&[
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                &format!("{a6}/64"),
                "dev",
                "eth0",
                "nodad",
            ])?,
            None => ip(&["-n", ns, "addr", "add", &format!("{a}/24"), "dev", "eth0"])?,
        };
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok((a, a6))
    }

    /// sshd straight in the namespace (a script host).
    fn add_sshd_host(
        &mut self,
        name: &str,
        ns: &str,
        a: Ipv4Addr,
        a6: Option<Ipv6Addr>,
        is_member: bool,
    ) -> Result<LabHost> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(dir.join("bin"))?;
        std::fs::create_dir_all(dir.join("backup"))?;
        set_mode(&dir, 0o755)?;
        for t in ["ed25519", "ecdsa"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", t, "-N", "", "-C", name, "-f"])
                .arg(dir.join(format!("ssh_host_{t}_key"))))?;
        }
        let listen = match a6 {
            Some(a6) => format!("[{a6}]:22"),
            None => format!("{a}:22"),
        };
        let config = format!(
            "ListenAddress {listen}\nListenAddress 127.0.0.1:22\nHostKey {d}/ssh_host_ed25519_key\nHostKey {d}/ssh_host_ecdsa_key\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nAuthorizedKeysFile {auth} .ssh/authorized_keys\nPidFile {d}/sshd.pid\nLogLevel ERROR\n\
             MaxStartups 200\nMaxSessions 100\nSubsystem sftp internal-sftp\nAllowTcpForwarding yes\nPermitTunnel no\n",
            d = dir.display(),
            auth = self.dir.join("authorized_keys").display()
        );
        std::fs::write(dir.join("sshd_config"), config)?;
        run(Command::new("ip")
            .args(["netns", "exec", ns, "/usr/sbin/sshd", "-f"])
            .arg(dir.join("sshd_config")))?;
        Ok(LabHost {
            name: name.to_string(),
            netns: ns.to_string(),
            addr: a,
            addr6: a6,
            etcd_binary: dir.join("bin/etcd"),
            etcdctl_binary: dir.join("bin/etcdctl"),
            data_dir: dir.join("data"),
            backup_dir: dir.join("backup"),
            service_script: dir.join("etcd-service"),
            dir,
            is_member,
            root: None,
            container: None,
        })
    }

    fn install_etcd(
        &self,
        h: &LabHost,
        etcd: &Path,
        etcdctl: &Path,
        etcdutl: Option<&Path>,
    ) -> Result<()> {
        std::fs::copy(etcd, &h.etcd_binary)?;
        std::fs::copy(etcdctl, &h.etcdctl_binary)?;
        if let Some(u) = etcdutl {
            std::fs::copy(u, h.dir.join("bin/etcdutl"))?;
        }
        for b in [&h.etcd_binary, &h.etcdctl_binary] {
            set_mode(b, 0o755)?;
        }
        std::fs::create_dir_all(&h.data_dir)?;
        set_mode(&h.data_dir, 0o700)?;
        std::fs::write(&h.service_script, SERVICE_SCRIPT)?;
        set_mode(&h.service_script, 0o755)?;
        Ok(())
    }

    fn write_etcd_flags(&mut self, spec: &LabSpec) -> Result<()> {
        if spec.tls {
            self.tls = Some(self.make_pki()?);
        }
        let client_scheme = if spec.tls { "https" } else { "http" };
        let local = if spec.ipv6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, url("http", m.ip(), 2380)))
            .collect();
        for m in &self.members {
            let mut flags = vec![
                "--name".to_string(),
                m.name.clone(),
                "--data-dir".into(),
                m.data_dir.display().to_string(),
                "--listen-client-urls".into(),
                format!(
                    "{},{}",
                    url(client_scheme, m.ip(), 2379),
                    url(client_scheme, local, 2379)
                ),
                "--advertise-client-urls".into(),
                url(client_scheme, m.ip(), 2379),
                "--listen-peer-urls".into(),
                url("http", m.ip(), 2380),
                "--initial-advertise-peer-urls".into(),
                url("http", m.ip(), 2380),
                "--initial-cluster".into(),
                cluster.join(","),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                self.id.clone(),
            ];
            // v2 through the environment, not a flag: 2.3–3.2 have no --enable-v2
            // (they serve v2 anyway) and only warn about the variable, while 3.4+
            // need it; so one setting survives a whole path of upgrades. It is
            // also what a member's environ shows the probe.
            let mut env = String::new();
            if spec.enable_v2 {
                env.push_str("ETCD_ENABLE_V2=true\n");
            }
            if let Some(n) = spec.snapshot_count {
                env.push_str(&format!("ETCD_SNAPSHOT_COUNT={n}\n"));
            }
            if let Some(n) = spec.quota_backend_bytes {
                env.push_str(&format!("ETCD_QUOTA_BACKEND_BYTES={n}\n"));
            }
            std::fs::write(m.dir.join("etcd.env"), env)?;
            if let Some(t) = &self.tls {
                let pki = self.dir.join("pki");
                flags.extend([
                    "--cert-file".to_string(),
                    pki.join(format!("{}.pem", m.name)).display().to_string(),
                    "--key-file".into(),
                    pki.join(format!("{}.key", m.name)).display().to_string(),
                    "--trusted-ca-file".into(),
                    t.ca.display().to_string(),
                    "--client-cert-auth".into(),
                ]);
            }
            let line: Vec<String> = flags
                .iter()
                .map(|f| {
                    shlex::try_quote(f)
                        .map(|q| q.into_owned())
                        .unwrap_or_default()
                })
                .collect();
            std::fs::write(m.dir.join("etcd.flags"), line.join(" ") + "\n")?;
        }
        Ok(())
    }

    /// A CA, a certificate per member (server and client use, for its IP and
    /// loopback) and a client certificate, made with openssl.
    fn make_pki(&self) -> Result<LabTls> {
        let pki = self.dir.join("pki");
        std::fs::create_dir_all(&pki)?;
        let ca = Pki {
            dir: &pki,
            key_args: EC_KEY,
            ca_key: "ca.key",
            ca_cert: "ca.pem",
            days: "3",
        };
        ca.make_ca("/CN=etcdroll-lab-ca")?;
        let sign = |name: &str, ext: &str| -> Result<()> {
            let extfile = format!("{name}.ext");
            std::fs::write(pki.join(&extfile), ext)?;
            ca.sign(&Cert {
                subj: &format!("/CN={name}"),
                key: &format!("{name}.key"),
                cert: &format!("{name}.pem"),
                ext_file: &extfile,
                ext_section: None,
            })
        };
        for m in &self.members {
            let local = if self.ipv6 { "::1" } else { "127.0.0.1" };
            sign(
                &m.name,
                &format!(
                    "subjectAltName=IP:{},IP:{local},DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
                    m.ip()
                ),
            )?;
        }
        sign("client", "extendedKeyUsage=clientAuth\n")?;
        Ok(LabTls {
            ca: pki.join("ca.pem"),
            client_cert: pki.join("client.pem"),
            client_key: pki.join("client.key"),
        })
    }

    /// etcdctl's TLS flags in a TLS lab.
    fn etcdctl_tls_args(&self) -> Vec<String> {
        match &self.tls {
            Some(t) => vec![
                "--cacert".into(),
                t.ca.display().to_string(),
                "--cert".into(),
                t.client_cert.display().to_string(),
                "--key".into(),
                t.client_key.display().to_string(),
            ],
            None => Vec::new(),
        }
    }

    /// The client URL of a member as seen from its own host.
    pub fn local_client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let local = if self.ipv6 {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        url(scheme, local, 2379)
    }

    fn wait_sshd(&self, h: &LabHost) -> Result<()> {
        // A container boots its systemd first (0.5–3 s here, more on a busy machine).
        let limit = if h.container.is_some() { 45 } else { 10 };
        let deadline = Instant::now() + Duration::from_secs(limit);
        let probe = format!("exec 3<>/dev/tcp/{}/22", h.ip());
        loop {
            let ok = Command::new("ip")
                .args(["netns", "exec", &h.netns, "bash", "-c", &probe])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if let Some(c) = &h.container {
                systemd::check_running(h, c)?;
            }
            if Instant::now() > deadline {
                bail!("sshd on {} ({}) did not start listening", h.name, h.ip());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until every member reports healthy (asked from the first member's namespace).
    pub fn wait_cluster_healthy(&self, limit: Duration) -> Result<()> {
        let Some(m0) = self.members.first() else {
            return Ok(());
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let eps: Vec<String> = self
            .members
            .iter()
            .map(|m| url(scheme, m.ip(), 2379))
            .collect();
        let tls = self.etcdctl_tls_args().join(" ");
        let deadline = Instant::now() + limit;
        if self.tls.is_none() {
            // Every version has /health (2.3's etcdctl has no `endpoint health`).
            loop {
                let sick: Vec<&LabHost> = self
                    .members
                    .iter()
                    .filter(|m| !http_health(m, if self.ipv6 { "::1" } else { "127.0.0.1" }))
                    .collect();
                if sick.is_empty() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!(
                        "the lab's etcd cluster did not become healthy: {} not healthy",
                        sick.iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        loop {
            let out = self.run_in(
                m0,
                &format!(
                    "ETCDCTL_API=3 {} --endpoints {} {tls} --dial-timeout 1s --command-timeout 2s endpoint health",
                    m0.etcdctl_binary.display(),
                    eps.join(",")
                ),
            )?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the lab's etcd cluster did not become healthy: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Run a shell script on a host as root: in its namespace on a script host, inside
    /// the container (all its namespaces, its root) on a systemd host.
    pub fn run_in(&self, host: &LabHost, script: &str) -> Result<Output> {
        if let Some(c) = &host.container {
            return systemd::run_in(host, c, script);
        }
        Command::new("ip")
            .args(["netns", "exec", &host.netns, "sh", "-c", script])
            .output()
            .with_context(|| format!("running in {}", host.name))
    }

    /// etcd's service: start|stop|status|logs, by the service script on a script
    /// host, `systemctl ACTION etcd` (`journalctl -u etcd` for logs) on a systemd host.
    pub fn service(&self, host: &LabHost, action: &str) -> Result<Output> {
        if host.container.is_some() {
            return self.run_in(host, &systemd::service_script(action));
        }
        let out = Command::new("ip")
            .args(["netns", "exec", &host.netns])
            .arg(&host.service_script)
            .arg(action)
            .output()?;
        Ok(out)
    }

    /// `etcdctl` (v3 API) on a member, with that member's current etcdctl.
    pub fn etcdctl(&self, host: &LabHost, args: &[&str]) -> Result<String> {
        if host.container.is_some() {
            let out = self.run_in(host, &systemd::etcdctl_script(self, host, args))?;
            if !out.status.success() {
                return Err(anyhow!(
                    "etcdctl {args:?} on {} failed: {}",
                    host.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let out = Command::new("ip")
            .args(["netns", "exec", &host.netns])
            .arg(&host.etcdctl_binary)
            .args(["--endpoints", &self.local_client_url()])
            .args(self.etcdctl_tls_args())
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()?;
        if !out.status.success() {
            return Err(anyhow!(
                "etcdctl {args:?} on {} failed: {}",
                host.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn member_client_url(&self, host: &LabHost) -> String {
        url(
            if self.tls.is_some() { "https" } else { "http" },
            host.ip(),
            2379,
        )
    }

    pub fn stop_sshd(&self, host: &LabHost) -> Result<()> {
        if host.container.is_some() {
            let out = self.run_in(host, "systemctl stop ssh.service")?;
            if !out.status.success() {
                bail!(
                    "stopping sshd on {}: {}",
                    host.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            return Ok(());
        }
        let pid = std::fs::read_to_string(host.dir.join("sshd.pid"))?;
        let pid: i32 = pid.trim().parse()?;
        // SAFETY: sending SIGTERM to a pid we started.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// The lab as an Ansible YAML inventory: members in group `etcd`, plain hosts in
    /// group `hosts`, jump hosts (if any) in `etcdroll_jump`.
    pub fn write_inventory(&self, path: &Path) -> Result<()> {
        let mut y = String::from("all:\n  vars:\n    ansible_user: root\n");
        y.push_str(&format!(
            "    ansible_ssh_private_key_file: {}\n",
            self.client_key.display()
        ));
        y.push_str(&format!(
            "    etcdroll_known_hosts: {}\n",
            self.known_hosts.display()
        ));
        if let Some(t) = &self.tls {
            y.push_str(&format!(
                "    etcd_cacert: {}\n    etcd_cert: {}\n    etcd_key: {}\n",
                t.ca.display(),
                t.client_cert.display(),
                t.client_key.display()
            ));
        }
        if !self.bastions.is_empty() {
            let hops = self.jump_hops();
            y.push_str(&format!("    etcdroll_jump: {}\n", hops.join(",")));
        }
        y.push_str("  children:\n");
        if !self.members.is_empty() {
            y.push_str("    etcd:\n      hosts:\n");
            y.push_str(&self.member_entries("", ""));
        }
        if !self.plain_hosts.is_empty() {
            y.push_str("    hosts:\n      hosts:\n");
            for h in &self.plain_hosts {
                y.push_str(&format!("        {}:\n{}", h.name, self.host_lines(h)));
            }
        }
        std::fs::write(path, y)?;
        Ok(())
    }

    /// The members as YAML host entries (8-space indent) for an `etcd` group's
    /// `hosts:`, each named `PREFIXmN` and carrying `extra` vars, so tests can merge
    /// several labs into one inventory.
    pub fn member_entries(&self, prefix: &str, extra: &str) -> String {
        let mut y = String::new();
        for m in &self.members {
            if m.container.is_some() {
                y.push_str(&systemd::member_entry(self, m, prefix));
                if !extra.is_empty() {
                    y.push_str(&format!(
                        "          ansible_ssh_private_key_file: {}\n          etcdroll_known_hosts: {}\n",
                        self.client_key.display(),
                        self.known_hosts.display()
                    ));
                    for line in extra.lines() {
                        y.push_str(&format!("          {line}\n"));
                    }
                }
                continue;
            }
            let d = m.dir.display();
            y.push_str(&format!(
                "        {prefix}{name}:\n{host}          etcd_binary: {d}/bin/etcd\n          \
                 etcdctl_binary: {d}/bin/etcdctl\n          etcd_data_dir: {d}/data\n          \
                 etcd_backup_dir: {d}/backup\n          etcd_client_url: {client}\n          \
                 etcd_service_manager: command\n          etcd_start_cmd: {d}/etcd-service start\n          \
                 etcd_stop_cmd: {d}/etcd-service stop\n          etcd_status_cmd: {d}/etcd-service status\n          \
                 etcd_logs_cmd: {d}/etcd-service logs\n          etcdroll_lock_dir: {d}/run\n",
                name = m.name,
                host = self.host_lines(m),
                client = self.local_client_url(),
            ));
            if !extra.is_empty() {
                y.push_str(&format!(
                    "          ansible_ssh_private_key_file: {}\n          etcdroll_known_hosts: {}\n",
                    self.client_key.display(),
                    self.known_hosts.display()
                ));
                for line in extra.lines() {
                    y.push_str(&format!("          {line}\n"));
                }
            }
        }
        y
    }

    /// An inventory that names only the hosts and how to reach them (`ansible_host`,
    /// `ansible_user`, `ansible_ssh_private_key_file`, `etcdroll_known_hosts`, and
    /// `etcdroll_jump` behind bastions): members in group `etcd`, plain hosts in
    /// `hosts`, nothing about etcd, so everything else is left to discovery.
    pub fn write_hosts_only_inventory(&self, path: &Path) -> Result<()> {
        let mut y = String::from("all:\n");
        if !self.bastions.is_empty() {
            let hops = self.jump_hops();
            y.push_str(&format!("  vars:\n    etcdroll_jump: {}\n", hops.join(",")));
        }
        y.push_str("  children:\n");
        for (group, hosts) in [("etcd", &self.members), ("hosts", &self.plain_hosts)] {
            if hosts.is_empty() {
                continue;
            }
            y.push_str(&format!("    {group}:\n      hosts:\n"));
            for h in hosts {
                y.push_str(&format!(
                    "        {}:\n{}          ansible_user: root\n          \
                     ansible_ssh_private_key_file: {}\n          etcdroll_known_hosts: {}\n",
                    h.name,
                    self.host_lines(h),
                    self.client_key.display(),
                    self.known_hosts.display()
                ));
            }
        }
        std::fs::write(path, y)?;
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Lab> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Keep the lab running after this value is dropped (the demo's `up`).
    pub fn persist(mut self) -> Lab {
        self.keep = true;
        // The owner record points at no live process now; mark it kept.
        for s in &self.slots {
            let _ = std::fs::write(
                Path::new(OWNERS_DIR).join(format!("slot-{s}.json")),
                format!(
                    "{{\"pid\":0,\"dir\":{:?},\"kept\":true}}",
                    self.dir.display().to_string()
                ),
            );
        }
        self
    }

    /// Remove every namespace, link, process and file the lab made. Idempotent.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        // The relays first: nothing may dial through them into hosts going away.
        if let Some(mut r) = self.relays.take() {
            r.stop();
        }
        // Containers first: etcd, then the container's systemd, its overlay and cgroups.
        systemd::teardown_hosts(&self.members, &self.plain_hosts);
        // Members first, bastions (which hold the inner bridges) last.
        for ns in self.namespaces.iter().rev() {
            kill_namespace(ns);
            let _ = Command::new("ip")
                .args(["link", "del", &format!("{ns}v")])
                .output();
        }
        for s in &self.slots {
            let _ = Command::new("ip")
                .args(["link", "del", &format!("erbr{s}")])
                .output();
            let _ = std::fs::remove_file(Path::new(OWNERS_DIR).join(format!("slot-{s}.json")));
        }
        if std::env::var_os("ETCDROLL_LAB_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            self.teardown();
        }
    }
}

/// `GET /health` on a member's client port, from inside its own namespace (a
/// member behind a bastion is not reachable from here), with bash's /dev/tcp.
fn http_health(m: &LabHost, local: &str) -> bool {
    let script = format!(
        "exec 3<>/dev/tcp/{local}/2379 && printf 'GET /health HTTP/1.0\\r\\nHost: lab\\r\\n\\r\\n' >&3 && timeout 2 cat <&3"
    );
    let Ok(out) = Command::new("ip")
        .args(["netns", "exec", &m.netns, "bash", "-c", &script])
        .output()
    else {
        return false;
    };
    let answer = String::from_utf8_lossy(&out.stdout);
    let body: String = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    answer.split_whitespace().nth(1) == Some("200") && body.contains("\"health\":\"true\"")
}

/// A P-256 key, unencrypted (`openssl req` arguments).
const EC_KEY: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A CA made and used with openssl in `dir` (file names relative to it).
struct Pki<'a> {
    dir: &'a Path,
    /// How `openssl req` makes a key: `EC_KEY`, or RSA as kubespray's script does.
    key_args: &'a [&'a str],
    ca_key: &'a str,
    ca_cert: &'a str,
    days: &'a str,
}

/// One certificate signed by a `Pki`.
struct Cert<'a> {
    subj: &'a str,
    key: &'a str,
    cert: &'a str,
    /// Extensions: a file in the PKI dir, all of it or one section (`-extensions`).
    ext_file: &'a str,
    ext_section: Option<&'a str>,
}

impl Pki<'_> {
    fn openssl(&self, args: &[&str]) -> Result<Output> {
        run(Command::new("openssl").args(args).current_dir(self.dir))
    }

    /// The self-signed CA.
    fn make_ca(&self, subj: &str) -> Result<()> {
        let mut a = vec![
            "req",
            "-x509",
            "-days",
            self.days,
            "-subj",
            subj,
            "-keyout",
            self.ca_key,
            "-out",
            self.ca_cert,
        ];
        a.extend(self.key_args);
        self.openssl(&a)?;
        Ok(())
    }

    /// A key, a request and the certificate the CA signs for it.
    fn sign(&self, c: &Cert) -> Result<()> {
        self.request(c)?;
        self.certify(c)
    }

    /// The key and its request (the slow part; these may run in parallel).
    fn request(&self, c: &Cert) -> Result<()> {
        let csr = format!("{}.csr", c.cert.trim_end_matches(".pem"));
        let mut req = vec!["req", "-subj", c.subj, "-keyout", c.key, "-out", &csr];
        req.extend(self.key_args);
        self.openssl(&req)?;
        Ok(())
    }

    /// The CA signs a request (one at a time: they share the CA's serial file).
    fn certify(&self, c: &Cert) -> Result<()> {
        let csr = format!("{}.csr", c.cert.trim_end_matches(".pem"));
        let mut x = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            self.ca_cert,
            "-CAkey",
            self.ca_key,
            "-CAcreateserial",
            "-days",
            self.days,
            "-out",
            c.cert,
            "-extfile",
            c.ext_file,
        ];
        if let Some(sec) = c.ext_section {
            x.extend(["-extensions", sec]);
        }
        self.openssl(&x)?;
        Ok(())
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn kill_namespace(ns: &str) {
    for _ in 0..3 {
        let pids = Command::new("ip").args(["netns", "pids", ns]).output();
        let Ok(out) = pids else { break };
        let list: Vec<i32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if list.is_empty() {
            break;
        }
        for pid in list {
            // SAFETY: killing processes that live in our own lab namespace.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

/// Lab addresses never leave the machine: in the root namespace, 198.18.0.0/15 is
/// unreachable except through a lab's own bridge (a more specific /24 route), so
/// a packet for a hidden or absent lab host fails here instead of taking the
/// default route out.
fn guard_lab_range() -> Result<()> {
    let out = Command::new("ip")
        .args(["route", "replace", "unreachable", "198.18.0.0/15"])
        .output()?;
    if !out.status.success() {
        bail!(
            "cannot install the unreachable route for 198.18.0.0/15: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Take the first free slot by creating its bridge.
fn allocate_slot() -> Result<u32> {
    for n in 0..MAX_SLOTS {
        let out = Command::new("ip")
            .args(["link", "add", &format!("erbr{n}"), "type", "bridge"])
            .output()?;
        if out.status.success() {
            return Ok(n);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.contains("File exists") {
            bail!("cannot create a bridge: {}", err.trim());
        }
    }
    bail!("no free lab slot (all {MAX_SLOTS} bridges erbrN exist)")
}

fn write_owner(slot: u32, dir: &Path) {
    let _ = std::fs::create_dir_all(OWNERS_DIR);
    let _ = std::fs::write(
        Path::new(OWNERS_DIR).join(format!("slot-{slot}.json")),
        format!(
            "{{\"pid\":{},\"dir\":{:?}}}",
            std::process::id(),
            dir.display().to_string()
        ),
    );
}

/// Tear down labs whose owning process died without cleaning up (a killed test run).
fn reclaim_abandoned() {
    let Ok(entries) = std::fs::read_dir(OWNERS_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(slot) = name
            .strip_prefix("slot-")
            .and_then(|s| s.strip_suffix(".json"))
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if v["kept"] == true {
            continue;
        }
        let pid = v["pid"].as_i64().unwrap_or(0) as i32;
        if pid_alive(pid) {
            continue;
        }
        // A systemd lab's containers, overlays and cgroups first, as its state file has them.
        if let Some(d) = v["dir"].as_str() {
            systemd::reclaim(Path::new(d));
        }
        // Its namespaces are named after the first slot: er{slot}...
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            let prefix = format!("er{slot}");
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let ns = line.split_whitespace().next().unwrap_or("");
                let rest = ns.strip_prefix(&prefix).unwrap_or("");
                if rest.starts_with(['h', 'b', 'p'])
                    && rest[1..].chars().all(|c| c.is_ascii_digit())
                {
                    kill_namespace(ns);
                }
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("erbr{slot}")])
            .output();
        if let Some(d) = v["dir"].as_str() {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::fs::remove_file(e.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lab test that cannot run must not pass: it fails with the reason.
    fn skip() -> bool {
        if let Err(why) = Lab::available() {
            panic!("\n!!!!! this lab test cannot run: {why}; run scripts/test as root !!!!!\n");
        }
        false
    }

    fn netns_list() -> String {
        String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned()
    }

    #[test]
    fn a_lab_starts_serves_ssh_and_etcd_and_tears_down() {
        if skip() {
            return;
        }
        let lab = Lab::start(&LabSpec::default()).unwrap();
        let m1 = &lab.members[1];
        let out = Command::new("ssh")
            .arg("-i")
            .arg(&lab.client_key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", lab.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-F",
                "/dev/null",
            ])
            .arg(format!("root@{}", m1.addr))
            .arg("ip -4 -o addr show dev eth0")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("inet {}/", m1.addr)),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(lab.etcdctl(m1, &["endpoint", "health"]).is_ok());

        // The service script: stop, status, start.
        let t0 = Instant::now();
        let st = lab.service(m1, "stop").unwrap();
        assert!(st.status.success());
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "a follower stops quickly"
        );
        let st = lab.service(m1, "status").unwrap();
        assert_eq!(st.status.code(), Some(3));
        assert!(lab
            .etcdctl(m1, &["endpoint", "health", "--dial-timeout", "500ms"])
            .is_err());
        lab.service(m1, "start").unwrap();
        lab.wait_cluster_healthy(Duration::from_secs(20)).unwrap();

        let names: Vec<String> = lab.members.iter().map(|m| m.netns.clone()).collect();
        let slot = lab.slots[0];
        drop(lab);
        let list = netns_list();
        for n in names {
            assert!(!list.contains(&n), "{n} still exists");
        }
        assert!(!Command::new("ip")
            .args(["link", "show", &format!("erbr{slot}")])
            .output()
            .unwrap()
            .status
            .success());
    }

    #[test]
    fn a_bastion_lab_hides_the_members_and_a_panic_still_tears_down() {
        if skip() {
            return;
        }
        let result = std::panic::catch_unwind(|| {
            let lab = Lab::start(&LabSpec {
                bastions: 1,
                members: 1,
                ..LabSpec::default()
            })
            .unwrap();
            let m = &lab.members[0];
            let direct = std::net::TcpStream::connect_timeout(
                &(m.addr, 22).into(),
                Duration::from_millis(500),
            );
            assert!(direct.is_err(), "a member must not be reachable directly");
            let b = &lab.bastions[0];
            let reach = lab
                .run_in(b, &format!("bash -c 'exec 3<>/dev/tcp/{}/22'", m.addr))
                .unwrap();
            assert!(reach.status.success(), "the bastion reaches the member");
            let ns = m.netns.clone();
            std::fs::write(std::env::temp_dir().join("etcdroll-lab-panic-ns"), &ns).unwrap();
            panic!("deliberate");
        });
        assert!(result.is_err());
        let ns =
            std::fs::read_to_string(std::env::temp_dir().join("etcdroll-lab-panic-ns")).unwrap();
        assert!(!netns_list().contains(&ns), "{ns} survived the panic");
    }
}
