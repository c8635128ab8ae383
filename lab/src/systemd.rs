//! systemd hosts: each lab host a `systemd-nspawn --boot` container, real systemd as
//! PID 1 with sshd and `etcd.service` under it, in the host's own network namespace,
//! on an overlayfs over one shared Debian bookworm rootfs (built by scripts/prepare,
//! cached in /var/cache/etcdroll-lab). Three layouts of etcd, each as the real thing
//! makes it: kubespray's, Debian's package, and a plain unit with flags.
//!
//! On these machines PID 1 is not systemd and the cgroups are hybrid (v1 hierarchies,
//! a named `systemd` one, cgroup2 at /sys/fs/cgroup/unified); what that takes is in
//! ../shared/reference/systemd-hosts.md. In short: `--register=no --keep-unit`, the
//! launcher moved into cgroups of the lab's own before it execs nspawn (or nspawn puts
//! `payload`/`supervisor` at the hierarchies' roots, shared by every container), and a
//! pure cgroup2 tree inside (`SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::{run, set_mode, url, Cert, Lab, LabHost, LabSpec, Net, Pki};

/// What the rootfs holds. Keep in step with `sd_packages` / `sd_recipe` in
/// scripts/prepare: the cache directory is named after their hash.
pub const ROOTFS_PACKAGES: &str =
    "systemd,systemd-sysv,openssh-server,dbus,iproute2,curl,procps,etcd-server,etcd-client";
pub const ROOTFS_RECIPE: u32 = 1;

/// The etcd of Debian bookworm's etcd-server, the only one the Debian layout has.
pub const DEBIAN_ETCD: &str = "3.4.23";

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const BACKUP_DIR: &str = "/var/backups/etcdroll";
const KUBESPRAY_CERTS: &str = "/etc/ssl/etcd/ssl";

/// How etcd is installed and run on a systemd host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// kubespray's `etcd` role: /usr/local/bin/etcd, `etcd.service` (`Type=notify`,
    /// `Restart=always`, `RestartSec=10s`) with `EnvironmentFile=/etc/etcd.env` holding
    /// every `ETCD_*` and `ETCDCTL_*` setting, TLS with client-cert auth (clients and
    /// peers) under /etc/ssl/etcd/ssl, data in /var/lib/etcd.
    Kubespray,
    /// Debian's etcd-server package: dpkg-owned /usr/bin/etcd (3.4.23), the package's
    /// own unit (user `etcd`, data in /var/lib/etcd/default, name = hostname), the
    /// cluster's settings in /etc/default/etcd; plain http.
    Debian,
    /// A hand-written /etc/systemd/system/etcd.service, every setting a flag on
    /// `ExecStart=`, /usr/local/bin/etcd, `Type=notify`; plain http.
    PlainUnit,
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "kubespray" => Ok(Layout::Kubespray),
            "debian" => Ok(Layout::Debian),
            "plain" | "plain-unit" => Ok(Layout::PlainUnit),
            _ => Err(format!(
                "unknown systemd layout {s:?} (kubespray, debian or plain)"
            )),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Kubespray => "kubespray",
            Layout::Debian => "debian",
            Layout::PlainUnit => "plain",
        })
    }
}

/// One host's container: what the lab started and made for it, for run_in and tear-down.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    /// nspawn's `--machine`: the lab's id and the host's name, unique across labs
    /// over time too (its cgroups are named after it, and a slot is soon reused).
    pub machine: String,
    /// The systemd-nspawn process (0 until it is started).
    pub nspawn_pid: i32,
    /// The container's systemd (PID 1 inside) as the machine sees it; 0 until found.
    pub init_pid: i32,
    /// The cgroup directories made for the launcher (nspawn puts its own below them).
    pub cgroups: Vec<PathBuf>,
    /// The merged overlay, while mounted.
    pub mounted: bool,
}

/// Where the rootfs is cached: `$ETCDROLL_ROOTFS_CACHE` or /var/cache/etcdroll-lab.
pub fn rootfs() -> PathBuf {
    use sha2::{Digest, Sha256};
    let cache = std::env::var_os("ETCDROLL_ROOTFS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/etcdroll-lab"));
    let h = Sha256::digest(format!(
        "bookworm {ROOTFS_PACKAGES} recipe {ROOTFS_RECIPE}\n"
    ));
    cache.join(format!("rootfs-bookworm-{}", &hex::encode(h)[..12]))
}

/// Why systemd hosts cannot run here, if they cannot (beyond `Lab::available`).
pub fn available() -> std::result::Result<(), String> {
    Lab::available()?;
    for tool in ["/usr/bin/systemd-nspawn", "/usr/bin/nsenter"] {
        if !Path::new(tool).exists() {
            return Err(format!("{tool} is missing (scripts/prepare installs it)"));
        }
    }
    let r = rootfs();
    if !r.join("lib/systemd/systemd").exists() {
        return Err(format!(
            "the systemd lab's rootfs {} is missing (scripts/prepare builds it)",
            r.display()
        ));
    }
    if cgroup_roots().is_empty() {
        return Err("no cgroup hierarchy for containers under /sys/fs/cgroup".into());
    }
    Ok(())
}

pub(crate) fn check_spec(spec: &LabSpec, layout: Layout) -> Result<()> {
    if let Err(why) = available() {
        bail!("systemd hosts cannot run here: {why}");
    }
    if spec.ipv6 {
        bail!("systemd hosts are IPv4 only");
    }
    if spec.tls {
        bail!(
            "with systemd hosts TLS comes with the layout (kubespray's); `tls` is for script hosts"
        );
    }
    if spec.etcd_events && layout != Layout::Kubespray {
        bail!("etcd-events is kubespray's second cluster: it needs the kubespray layout");
    }
    if layout == Layout::Debian && spec.version != DEBIAN_ETCD {
        bail!(
            "the Debian layout runs the packaged etcd of bookworm, {DEBIAN_ETCD}; it cannot be {} \
             (use the kubespray or plain layout for other versions)",
            spec.version
        );
    }
    Ok(())
}

/// The hierarchies a launcher joins, as (root dir, the caller's own path in it):
/// the named `systemd` v1 one, cgroup2 (hybrid at `unified`, or the whole tree),
/// and v1 memory under the caller's own memory cgroup (its accounting stays ours).
fn cgroup_roots() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut v = Vec::new();
    if base.join("systemd/cgroup.procs").exists() {
        v.push(base.join("systemd"));
    }
    if base.join("unified/cgroup.procs").exists() {
        v.push(base.join("unified"));
    } else if base.join("cgroup.controllers").exists() {
        v.push(base.to_path_buf());
    }
    if base.join("memory/cgroup.procs").exists() {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let mut p = l.splitn(3, ':');
                let (_, ctl, path) = (p.next()?, p.next()?, p.next()?);
                ctl.split(',')
                    .any(|c| c == "memory")
                    .then(|| path.to_string())
            });
        if let Some(own) = own {
            v.push(base.join("memory").join(own.trim_start_matches('/')));
        }
    }
    v
}

/// Create the namespaces, overlays and containers of every member and plain host and
/// boot them all at once; sshd is waited for by the caller.
pub(crate) fn add_hosts(
    lab: &mut Lab,
    spec: &LabSpec,
    layout: Layout,
    net: &Net,
    etcd: &Path,
    etcdctl: &Path,
    etcdutl: Option<&Path>,
) -> Result<()> {
    let lower = rootfs();
    let slot = lab.slots[0];
    let plan: Vec<(String, String, u8, bool)> = (0..spec.members)
        .map(|i| (format!("m{i}"), format!("er{slot}h{i}"), 10 + i as u8, true))
        .chain((0..spec.plain_hosts).map(|j| {
            (
                format!("h{j}"),
                format!("er{slot}p{j}"),
                100 + j as u8,
                false,
            )
        }))
        .collect();
    for (name, ns, last, is_member) in plan {
        let (a, _) = lab.add_netns(&ns, net, last)?;
        let dir = lab.dir.join(&name);
        let root = dir.join("root");
        for d in ["upper", "work", "root"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        set_mode(&dir, 0o755)?;
        let (etcd_binary, etcdctl_binary, data_dir) = match layout {
            Layout::Debian => ("/usr/bin/etcd", "/usr/bin/etcdctl", "/var/lib/etcd/default"),
            _ => (
                "/usr/local/bin/etcd",
                "/usr/local/bin/etcdctl",
                "/var/lib/etcd",
            ),
        };
        let host = LabHost {
            name: name.clone(),
            netns: ns,
            addr: a,
            addr6: None,
            dir: dir.clone(),
            etcd_binary: etcd_binary.into(),
            etcdctl_binary: etcdctl_binary.into(),
            data_dir: data_dir.into(),
            backup_dir: BACKUP_DIR.into(),
            service_script: PathBuf::new(),
            is_member,
            root: Some(root.clone()),
            container: Some(Container {
                machine: format!("{}-{name}", lab.id),
                nspawn_pid: 0,
                init_pid: 0,
                cgroups: Vec::new(),
                mounted: false,
            }),
        };
        if is_member {
            lab.members.push(host);
        } else {
            lab.plain_hosts.push(host);
        }
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                dir.join("upper").display(),
                dir.join("work").display()
            ))
            .arg(&root))?;
        container_mut(lab, &name).mounted = true;
    }
    save_state(lab)?;

    if layout == Layout::Kubespray && spec.members > 0 {
        make_kubespray_pki(lab)?;
    }
    // Per host, in its upper layer: identity, keys, and the layout's etcd. In
    // parallel: ssh-keygen -A makes an RSA key per host.
    let lab_ref: &Lab = lab;
    std::thread::scope(|s| -> Result<()> {
        let jobs: Vec<_> = lab_ref
            .members
            .iter()
            .enumerate()
            .map(|(i, h)| (Some(i), h))
            .chain(lab_ref.plain_hosts.iter().map(|h| (None, h)))
            .map(|(i, h)| {
                s.spawn(move || -> Result<()> {
                    prepare_root(lab_ref, h)?;
                    if let Some(i) = i {
                        let root = h.root.as_deref().expect("container root");
                        match layout {
                            Layout::Kubespray => {
                                install_binaries(root, etcd, etcdctl, etcdutl)?;
                                write_kubespray(lab_ref, spec, i, h)?;
                                if spec.etcd_events {
                                    write_kubespray_events(lab_ref, spec, i, h)?;
                                }
                            }
                            Layout::Debian => write_debian(lab_ref, spec, h)?,
                            Layout::PlainUnit => {
                                install_binaries(root, etcd, etcdctl, etcdutl)?;
                                write_plain_unit(lab_ref, spec, h)?;
                            }
                        }
                        if spec.start_etcd {
                            enable_etcd(root, layout)?;
                            if spec.etcd_events {
                                enable_unit(root, "/etc/systemd/system/etcd-events.service")?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for j in jobs {
            j.join()
                .map_err(|_| anyhow::anyhow!("preparing a container panicked"))??;
        }
        Ok(())
    })?;
    if layout == Layout::Kubespray && spec.members > 0 {
        let m0 = &lab.members[0].name;
        lab.tls = Some(crate::LabTls {
            ca: format!("{KUBESPRAY_CERTS}/ca.pem").into(),
            client_cert: format!("{KUBESPRAY_CERTS}/admin-{m0}.pem").into(),
            client_key: format!("{KUBESPRAY_CERTS}/admin-{m0}-key.pem").into(),
        });
    }

    // Boot them all, then find each container's systemd.
    let names: Vec<String> = lab
        .members
        .iter()
        .chain(&lab.plain_hosts)
        .map(|h| h.name.clone())
        .collect();
    for name in &names {
        let h = find_host(lab, name).clone();
        let (pid, cgroups) = launch(&h)?;
        let c = container_mut(lab, name);
        c.nspawn_pid = pid;
        c.cgroups = cgroups;
        save_state(lab)?;
    }
    for name in &names {
        let h = find_host(lab, name).clone();
        let c = h.container.as_ref().expect("container");
        let deadline = Instant::now() + Duration::from_secs(20);
        let init = loop {
            if let Some(p) = child_named(c.nspawn_pid, "systemd") {
                break p;
            }
            check_running(&h, c)?;
            if Instant::now() > deadline {
                bail!("{}: no systemd under nspawn {}", h.name, c.nspawn_pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        container_mut(lab, name).init_pid = init;
    }
    save_state(lab)?;
    Ok(())
}

fn find_host<'a>(lab: &'a Lab, name: &str) -> &'a LabHost {
    lab.members
        .iter()
        .chain(&lab.plain_hosts)
        .find(|h| h.name == name)
        .expect("host of this lab")
}

fn container_mut<'a>(lab: &'a mut Lab, name: &str) -> &'a mut Container {
    lab.members
        .iter_mut()
        .chain(lab.plain_hosts.iter_mut())
        .find(|h| h.name == name)
        .and_then(|h| h.container.as_mut())
        .expect("container host of this lab")
}

/// The lab as it stands, for `reclaim` after a crash.
fn save_state(lab: &Lab) -> Result<()> {
    lab.save(&lab.dir.join("lab-state.json"))
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex::encode(b))
}

/// The host's identity in its upper layer: hostname, /etc/hosts, a fresh machine-id,
/// its own host keys (copied out for known_hosts), root's authorized_keys.
fn prepare_root(lab: &Lab, h: &LabHost) -> Result<()> {
    let root = h.root.as_deref().expect("container root");
    let etc = root.join("etc");
    std::fs::write(etc.join("hostname"), format!("{}\n", h.name))?;
    let mut hosts = format!("127.0.0.1\tlocalhost\n127.0.1.1\t{}\n", h.name);
    for o in lab.members.iter().chain(&lab.plain_hosts) {
        hosts.push_str(&format!("{}\t{}\n", o.addr, o.name));
    }
    hosts.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    std::fs::write(etc.join("hosts"), hosts)?;
    std::fs::write(etc.join("machine-id"), random_hex(16)? + "\n")?;
    run(Command::new("ssh-keygen").arg("-A").arg("-f").arg(root))?;
    for t in ["ed25519", "ecdsa"] {
        let f = format!("ssh_host_{t}_key.pub");
        std::fs::copy(etc.join("ssh").join(&f), h.dir.join(&f))?;
    }
    let ssh = root.join("root/.ssh");
    std::fs::create_dir_all(&ssh)?;
    set_mode(&ssh, 0o700)?;
    std::fs::copy(
        lab.client_key.with_extension("pub"),
        ssh.join("authorized_keys"),
    )?;
    set_mode(&ssh.join("authorized_keys"), 0o600)?;
    let backup = root.join(BACKUP_DIR.trim_start_matches('/'));
    std::fs::create_dir_all(&backup)?;
    set_mode(&backup, 0o700)?;
    Ok(())
}

fn install_binaries(
    root: &Path,
    etcd: &Path,
    etcdctl: &Path,
    etcdutl: Option<&Path>,
) -> Result<()> {
    let bin = root.join("usr/local/bin");
    std::fs::create_dir_all(&bin)?;
    let mut all = vec![(etcd, "etcd"), (etcdctl, "etcdctl")];
    if let Some(u) = etcdutl {
        all.push((u, "etcdutl"));
    }
    for (from, name) in all {
        std::fs::copy(from, bin.join(name))
            .with_context(|| format!("copying {}", from.display()))?;
        set_mode(&bin.join(name), 0o755)?;
    }
    Ok(())
}

/// `systemctl enable etcd`, done in the upper layer before boot (so it starts with it).
fn enable_etcd(root: &Path, layout: Layout) -> Result<()> {
    use std::os::unix::fs::symlink;
    let sys = root.join("etc/systemd/system");
    let wants = sys.join("multi-user.target.wants");
    std::fs::create_dir_all(&wants)?;
    let unit = match layout {
        Layout::Debian => {
            // The package's unit has Alias=etcd2.service; enable makes that link too.
            let _ = std::fs::remove_file(sys.join("etcd2.service"));
            symlink(
                "/lib/systemd/system/etcd.service",
                sys.join("etcd2.service"),
            )?;
            "/lib/systemd/system/etcd.service"
        }
        _ => "/etc/systemd/system/etcd.service",
    };
    let _ = std::fs::remove_file(wants.join("etcd.service"));
    symlink(unit, wants.join("etcd.service"))?;
    Ok(())
}

/// `systemctl enable` of a unit with `WantedBy=multi-user.target`, before boot.
fn enable_unit(root: &Path, unit: &str) -> Result<()> {
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants)?;
    let name = Path::new(unit).file_name().expect("unit name");
    let _ = std::fs::remove_file(wants.join(name));
    std::os::unix::fs::symlink(unit, wants.join(name))?;
    Ok(())
}

/// kubespray's roles/etcd/templates/etcd-events-host.service.j2.
pub const KUBESPRAY_EVENTS_UNIT: &str = "[Unit]
Description=etcd
After=network.target

[Service]
Type=notify
User=root
EnvironmentFile=/etc/etcd-events.env
ExecStart=/usr/local/bin/etcd
NotifyAccess=all
Restart=always
RestartSec=10s
LimitNOFILE=40000

[Install]
WantedBy=multi-user.target
";

/// Wait until every member of kubespray's etcd-events cluster is healthy.
pub(crate) fn wait_events_healthy(lab: &Lab, limit: Duration) -> Result<()> {
    let Some(m0) = lab.members.first() else {
        return Ok(());
    };
    let eps: Vec<String> = lab
        .members
        .iter()
        .map(|m| url("https", IpAddr::V4(m.addr), 2383))
        .collect();
    let script = format!(
        "set -a; eval \"$(grep '^ETCDCTL_' /etc/etcd.env)\"; set +a; ETCDCTL_ENDPOINTS={} ETCDCTL_API=3 \
         {} --dial-timeout 1s --command-timeout 2s endpoint health",
        eps.join(","),
        m0.etcdctl_binary.display()
    );
    let deadline = Instant::now() + limit;
    loop {
        let out = lab.run_in(m0, &script)?;
        if out.status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "kubespray's etcd-events cluster did not become healthy: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// kubespray's etcd-events.env.j2 on member `i` (same certificates as etcd's).
fn write_kubespray_events(lab: &Lab, spec: &LabSpec, i: usize, m: &LabHost) -> Result<()> {
    let root = m.root.as_deref().expect("container root");
    let ip = IpAddr::V4(m.addr);
    let peers: Vec<String> = lab
        .members
        .iter()
        .enumerate()
        .map(|(k, o)| {
            format!(
                "etcd{}-events={}",
                k + 1,
                url("https", IpAddr::V4(o.addr), 2382)
            )
        })
        .collect();
    let c = KUBESPRAY_CERTS;
    let name = &m.name;
    let env = format!(
        "ETCD_DATA_DIR=/var/lib/etcd-events
ETCD_ADVERTISE_CLIENT_URLS={client}
ETCD_INITIAL_ADVERTISE_PEER_URLS={peer}
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_METRICS=basic
ETCD_LISTEN_CLIENT_URLS={client},https://127.0.0.1:2383
ETCD_ELECTION_TIMEOUT=5000
ETCD_HEARTBEAT_INTERVAL=250
ETCD_INITIAL_CLUSTER_TOKEN=k8s_events_etcd
ETCD_LISTEN_PEER_URLS={peer}
ETCD_NAME=etcd{n}-events
ETCD_PROXY=off
ETCD_INITIAL_CLUSTER={cluster}
ETCD_AUTO_COMPACTION_RETENTION=8
ETCD_SNAPSHOT_COUNT={snap}
ETCD_QUOTA_BACKEND_BYTES=2147483648
ETCD_MAX_REQUEST_BYTES=1572864

# TLS settings
ETCD_TRUSTED_CA_FILE={c}/ca.pem
ETCD_CERT_FILE={c}/member-{name}.pem
ETCD_KEY_FILE={c}/member-{name}-key.pem
ETCD_CLIENT_CERT_AUTH=true

ETCD_PEER_TRUSTED_CA_FILE={c}/ca.pem
ETCD_PEER_CERT_FILE={c}/member-{name}.pem
ETCD_PEER_KEY_FILE={c}/member-{name}-key.pem
ETCD_PEER_CLIENT_CERT_AUTH=True

",
        client = url("https", ip, 2383),
        peer = url("https", ip, 2382),
        n = i + 1,
        cluster = peers.join(","),
        snap = spec.snapshot_count.unwrap_or(100000),
    );
    std::fs::write(root.join("etc/etcd-events.env"), env)?;
    set_mode(&root.join("etc/etcd-events.env"), 0o640)?;
    std::fs::write(
        root.join("etc/systemd/system/etcd-events.service"),
        KUBESPRAY_EVENTS_UNIT,
    )?;
    let data = root.join("var/lib/etcd-events");
    std::fs::create_dir_all(&data)?;
    set_mode(&data, 0o700)?;
    chown(&data, user_ids(root, "etcd")?)?;
    Ok(())
}

/// uid and gid of a user in the container's /etc/passwd.
fn user_ids(root: &Path, user: &str) -> Result<(u32, u32)> {
    let pw = std::fs::read_to_string(root.join("etc/passwd"))?;
    for l in pw.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() > 3 && f[0] == user {
            return Ok((f[2].parse()?, f[3].parse()?));
        }
    }
    bail!("no user {user} in {}/etc/passwd", root.display())
}

fn chown(p: &Path, (uid, gid): (u32, u32)) -> Result<()> {
    std::os::unix::fs::chown(p, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", p.display()))
}

/// kubespray's make-ssl-etcd.sh, with its openssl.conf: an RSA CA `etcd-ca`, and per
/// member `member-NODE` and `admin-NODE` certificates (extensions `ssl_client`:
/// clientAuth and serverAuth, every member's name and address in the SAN).
fn make_kubespray_pki(lab: &Lab) -> Result<()> {
    let dir = lab.dir.join("kubespray-ssl");
    std::fs::create_dir_all(&dir)?;
    let mut conf = String::from(
        "[req]\nreq_extensions = v3_req\ndistinguished_name = req_distinguished_name\n\n\
         [req_distinguished_name]\n\n[ v3_req ]\nbasicConstraints = CA:FALSE\n\
         keyUsage = nonRepudiation, digitalSignature, keyEncipherment\nsubjectAltName = @alt_names\n\n\
         [ ssl_client ]\nextendedKeyUsage = clientAuth, serverAuth\nbasicConstraints = CA:FALSE\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\nsubjectAltName = @alt_names\n\n\
         [ v3_ca ]\nbasicConstraints = CA:TRUE\nkeyUsage = nonRepudiation, digitalSignature, keyEncipherment\n\
         subjectAltName = @alt_names\nauthorityKeyIdentifier=keyid:always,issuer\n\n[alt_names]\nDNS.1 = localhost\n",
    );
    for (i, m) in lab.members.iter().enumerate() {
        conf.push_str(&format!("DNS.{} = {}\n", i + 2, m.name));
    }
    let mut n = 1;
    for m in &lab.members {
        conf.push_str(&format!("IP.{n} = {}\n", m.addr));
        n += 1;
    }
    conf.push_str(&format!("IP.{n} = 127.0.0.1\nIP.{} = ::1\n", n + 1));
    std::fs::write(dir.join("openssl.conf"), conf)?;
    let pki = Pki {
        dir: &dir,
        key_args: &["-newkey", "rsa:2048", "-nodes"],
        ca_key: "ca-key.pem",
        ca_cert: "ca.pem",
        days: "36500",
    };
    pki.make_ca("/CN=etcd-ca")?;
    // RSA keys take a while on a busy machine: one thread per key, then the CA
    // signs them one by one.
    let names: Vec<(String, String, String)> = lab
        .members
        .iter()
        .flat_map(|m| {
            ["member", "admin"].map(|kind| {
                (
                    format!("/CN=etcd-{kind}-{}", m.name),
                    format!("{kind}-{}-key.pem", m.name),
                    format!("{kind}-{}.pem", m.name),
                )
            })
        })
        .collect();
    let certs: Vec<Cert> = names
        .iter()
        .map(|(subj, key, cert)| Cert {
            subj,
            key,
            cert,
            ext_file: "openssl.conf",
            ext_section: Some("ssl_client"),
        })
        .collect();
    std::thread::scope(|s| -> Result<()> {
        let jobs: Vec<_> = certs
            .iter()
            .map(|c| {
                let pki = &pki;
                s.spawn(move || pki.request(c))
            })
            .collect();
        for j in jobs {
            j.join()
                .map_err(|_| anyhow::anyhow!("making a key panicked"))??;
        }
        Ok(())
    })?;
    for c in &certs {
        pki.certify(c)?;
    }
    Ok(())
}

/// kubespray's roles/etcd/templates/etcd-host.service.j2 (bin_dir /usr/local/bin).
pub const KUBESPRAY_UNIT: &str = "[Unit]
Description=etcd
After=network.target

[Service]
Type=notify
User=root
EnvironmentFile=/etc/etcd.env
ExecStart=/usr/local/bin/etcd
NotifyAccess=all
Restart=always
RestartSec=10s
LimitNOFILE=40000

[Install]
WantedBy=multi-user.target
";

/// kubespray's etcd role on member `i`: binaries, etcd.env (etcd.env.j2 with
/// kubespray's defaults), the unit, the certificates (as gen_certs_script.yml
/// syncs them: every member's, 0640, dir 0700, owner etcd).
fn write_kubespray(lab: &Lab, spec: &LabSpec, i: usize, m: &LabHost) -> Result<()> {
    let root = m.root.as_deref().expect("container root");
    let etcd_ids = user_ids(root, "etcd")?;
    let certs = root.join(KUBESPRAY_CERTS.trim_start_matches('/'));
    std::fs::create_dir_all(&certs)?;
    set_mode(&certs, 0o700)?;
    chown(&certs, etcd_ids)?;
    let src = lab.dir.join("kubespray-ssl");
    let mut files = vec!["ca.pem".to_string(), "ca-key.pem".to_string()];
    for o in &lab.members {
        for kind in ["admin", "member"] {
            files.push(format!("{kind}-{}.pem", o.name));
            files.push(format!("{kind}-{}-key.pem", o.name));
        }
    }
    for f in files {
        std::fs::copy(src.join(&f), certs.join(&f))?;
        set_mode(&certs.join(&f), 0o640)?;
        chown(&certs.join(&f), etcd_ids)?;
    }
    if i == 0 {
        std::fs::copy(
            src.join("openssl.conf"),
            root.join("etc/ssl/etcd/openssl.conf"),
        )?;
        set_mode(&root.join("etc/ssl/etcd/openssl.conf"), 0o640)?;
    }
    let ip = IpAddr::V4(m.addr);
    let peers: Vec<String> = lab
        .members
        .iter()
        .enumerate()
        .map(|(k, o)| format!("etcd{}={}", k + 1, url("https", IpAddr::V4(o.addr), 2380)))
        .collect();
    let c = KUBESPRAY_CERTS;
    let name = &m.name;
    let mut extra = String::new();
    if spec.enable_v2 {
        extra.push_str("ETCD_ENABLE_V2=true\n");
    }
    let env = format!(
        "# Environment file for etcd {version}
ETCD_DATA_DIR=/var/lib/etcd
ETCD_ADVERTISE_CLIENT_URLS={client}
ETCD_INITIAL_ADVERTISE_PEER_URLS={peer}
ETCD_INITIAL_CLUSTER_STATE=new
ETCD_METRICS=basic
ETCD_LISTEN_CLIENT_URLS={client},https://127.0.0.1:2379
ETCD_ELECTION_TIMEOUT=5000
ETCD_HEARTBEAT_INTERVAL=250
ETCD_INITIAL_CLUSTER_TOKEN=k8s_etcd
ETCD_LISTEN_PEER_URLS={peer}
ETCD_NAME=etcd{n}
ETCD_PROXY=off
ETCD_INITIAL_CLUSTER={cluster}
ETCD_AUTO_COMPACTION_RETENTION=8
ETCD_SNAPSHOT_COUNT={snap}
ETCD_QUOTA_BACKEND_BYTES=2147483648
ETCD_MAX_REQUEST_BYTES=1572864
ETCD_LOG_LEVEL=info
ETCD_MAX_SNAPSHOTS=5
ETCD_MAX_WALS=5

# TLS settings
ETCD_TRUSTED_CA_FILE={c}/ca.pem
ETCD_CERT_FILE={c}/member-{name}.pem
ETCD_KEY_FILE={c}/member-{name}-key.pem
ETCD_CLIENT_CERT_AUTH=true

ETCD_PEER_TRUSTED_CA_FILE={c}/ca.pem
ETCD_PEER_CERT_FILE={c}/member-{name}.pem
ETCD_PEER_KEY_FILE={c}/member-{name}-key.pem
ETCD_PEER_CLIENT_CERT_AUTH=True

{extra}
# CLI settings
ETCDCTL_ENDPOINTS=https://127.0.0.1:2379
ETCDCTL_CACERT={c}/ca.pem
ETCDCTL_KEY={c}/admin-{name}-key.pem
ETCDCTL_CERT={c}/admin-{name}.pem

# ETCD 3.5.x issue
# https://groups.google.com/a/kubernetes.io/g/dev/c/B7gJs88XtQc/m/rSgNOzV2BwAJ?utm_medium=email&utm_source=footer
ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK=True

ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL=5s
",
        version = spec.version,
        client = url("https", ip, 2379),
        peer = url("https", ip, 2380),
        n = i + 1,
        cluster = peers.join(","),
        snap = spec.snapshot_count.unwrap_or(100000),
    );
    std::fs::write(root.join("etc/etcd.env"), env)?;
    set_mode(&root.join("etc/etcd.env"), 0o640)?;
    std::fs::write(root.join("etc/systemd/system/etcd.service"), KUBESPRAY_UNIT)?;
    let data = root.join("var/lib/etcd");
    std::fs::create_dir_all(&data)?;
    set_mode(&data, 0o700)?;
    chown(&data, etcd_ids)?;
    Ok(())
}

fn http_cluster(lab: &Lab) -> String {
    lab.members
        .iter()
        .map(|o| format!("{}={}", o.name, url("http", IpAddr::V4(o.addr), 2380)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Debian's package as installed: its unit reads ETCD_NAME (default: the hostname),
/// ETCD_DATA_DIR (default /var/lib/etcd/default) and DAEMON_ARGS from the unit and
/// then /etc/default/etcd, where the cluster's settings go.
fn write_debian(lab: &Lab, spec: &LabSpec, m: &LabHost) -> Result<()> {
    let root = m.root.as_deref().expect("container root");
    let ip = IpAddr::V4(m.addr);
    let mut env = format!(
        "## etcd(1) daemon options, read by etcd.service (EnvironmentFile=-/etc/default/%p).
## Written by etcdroll-lab; the name (the hostname, %H) and the data dir
## (/var/lib/etcd/default) are the unit's defaults.
ETCD_LISTEN_PEER_URLS=\"{peer}\"
ETCD_LISTEN_CLIENT_URLS=\"{client},http://127.0.0.1:2379\"
ETCD_INITIAL_ADVERTISE_PEER_URLS=\"{peer}\"
ETCD_INITIAL_CLUSTER=\"{cluster}\"
ETCD_INITIAL_CLUSTER_STATE=\"new\"
ETCD_INITIAL_CLUSTER_TOKEN=\"{token}\"
ETCD_ADVERTISE_CLIENT_URLS=\"{client}\"
",
        peer = url("http", ip, 2380),
        client = url("http", ip, 2379),
        cluster = http_cluster(lab),
        token = lab.id,
    );
    if spec.enable_v2 {
        env.push_str("ETCD_ENABLE_V2=\"true\"\n");
    }
    if let Some(n) = spec.snapshot_count {
        env.push_str(&format!("ETCD_SNAPSHOT_COUNT=\"{n}\"\n"));
    }
    std::fs::write(root.join("etc/default/etcd"), env)?;
    Ok(())
}

/// A plain unit: every setting a flag on ExecStart.
pub fn plain_unit(flags: &str) -> String {
    format!(
        "[Unit]
Description=etcd key-value store
Documentation=https://etcd.io/docs
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart=/usr/local/bin/etcd {flags}
Restart=on-failure
RestartSec=5s
LimitNOFILE=40000

[Install]
WantedBy=multi-user.target
"
    )
}

fn write_plain_unit(lab: &Lab, spec: &LabSpec, m: &LabHost) -> Result<()> {
    let root = m.root.as_deref().expect("container root");
    let ip = IpAddr::V4(m.addr);
    let mut flags = format!(
        "--name {name} --data-dir /var/lib/etcd \\\n  --listen-client-urls {client},http://127.0.0.1:2379 \\\n  \
         --advertise-client-urls {client} \\\n  --listen-peer-urls {peer} \\\n  --initial-advertise-peer-urls {peer} \\\n  \
         --initial-cluster {cluster} \\\n  --initial-cluster-state new --initial-cluster-token {token}",
        name = m.name,
        client = url("http", ip, 2379),
        peer = url("http", ip, 2380),
        cluster = http_cluster(lab),
        token = lab.id,
    );
    if spec.enable_v2 {
        flags.push_str(" --enable-v2=true");
    }
    if let Some(n) = spec.snapshot_count {
        flags.push_str(&format!(" --snapshot-count {n}"));
    }
    std::fs::write(
        root.join("etc/systemd/system/etcd.service"),
        plain_unit(&flags),
    )?;
    let data = root.join("var/lib/etcd");
    std::fs::create_dir_all(&data)?;
    set_mode(&data, 0o700)?;
    Ok(())
}

/// Start the host's container: a launcher that joins cgroups of its own and execs
/// systemd-nspawn (so the PID is nspawn's). Returns the PID and the cgroups made.
fn launch(h: &LabHost) -> Result<(i32, Vec<PathBuf>)> {
    use std::os::unix::process::CommandExt;
    let c = h.container.as_ref().expect("container");
    let root = h.root.as_deref().expect("container root");
    let mut cgroups = Vec::new();
    for r in cgroup_roots() {
        let d = r.join(format!("etcdroll-{}", c.machine));
        std::fs::create_dir_all(&d).with_context(|| format!("creating cgroup {}", d.display()))?;
        cgroups.push(d);
    }
    let log = std::fs::File::create(h.dir.join("console.log"))?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(
            "n=$1; shift; while [ \"$n\" -gt 0 ]; do echo $$ > \"$1\" || exit 1; shift; n=$((n - 1)); done; exec \"$@\"",
        )
        .arg("launcher")
        .arg(cgroups.len().to_string())
        .args(cgroups.iter().map(|d| d.join("cgroup.procs")))
        .arg("/usr/bin/systemd-nspawn")
        .arg("--boot")
        .arg(format!("--directory={}", root.display()))
        .arg(format!("--machine={}", c.machine))
        .args(["--register=no", "--keep-unit"])
        .arg(format!("--network-namespace-path=/run/netns/{}", h.netns))
        .args([
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
            "--console=read-only",
        ])
        .env_clear()
        .env("PATH", PATH)
        .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            for d in &cgroups {
                remove_cgroup(d);
            }
            return Err(e).context("starting systemd-nspawn");
        }
    };
    // Not waited for here: tear-down reaps it (see `gone`).
    Ok((child.id() as i32, cgroups))
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A child of `parent` whose comm is `name`.
fn child_named(parent: i32, name: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid: i32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == parent && head.split_once(" (").map(|x| x.1) == Some(name) {
            return Some(pid);
        }
    }
    None
}

/// True once `pid` has exited: reaped here if it is our child, a zombie or absent if not.
fn gone(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on a pid we started, WNOHANG; ECHILD when it is not our child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if r == pid {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('Z'))
            .unwrap_or(true),
    }
}

/// An error (with the end of its console) if the host's nspawn has exited.
pub(crate) fn check_running(h: &LabHost, c: &Container) -> Result<()> {
    if c.nspawn_pid > 0 && gone(c.nspawn_pid) {
        let log = std::fs::read_to_string(h.dir.join("console.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the container of {} (systemd-nspawn {}) exited:\n{}",
            h.name,
            c.nspawn_pid,
            tail.join("\n")
        );
    }
    Ok(())
}

pub(crate) fn run_in(h: &LabHost, c: &Container, script: &str) -> Result<Output> {
    if c.init_pid <= 0 {
        bail!("{} has no running container", h.name);
    }
    Command::new("nsenter")
        .args(["-t", &c.init_pid.to_string()])
        .args(["-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "--"])
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running in the container of {}", h.name))
}

pub(crate) fn service_script(action: &str) -> String {
    match action {
        "logs" => "journalctl -u etcd -n 50 --no-pager".into(),
        a => format!("systemctl {} etcd", shlex::try_quote(a).unwrap_or_default()),
    }
}

/// etcdctl inside: kubespray's hosts take everything from etcd.env's ETCDCTL_* (as
/// an operator there does), the others the local http URL.
pub(crate) fn etcdctl_script(lab: &Lab, h: &LabHost, args: &[&str]) -> String {
    let q = |s: &str| {
        shlex::try_quote(s)
            .map(|c| c.into_owned())
            .unwrap_or_default()
    };
    let args: Vec<String> = args.iter().map(|a| q(a)).collect();
    let bin = q(&h.etcdctl_binary.display().to_string());
    match lab.systemd {
        Some(Layout::Kubespray) => format!(
            "set -a; eval \"$(grep '^ETCDCTL_' /etc/etcd.env)\"; set +a; ETCDCTL_API=3 exec {bin} {}",
            args.join(" ")
        ),
        _ => format!(
            "ETCDCTL_API=3 exec {bin} --endpoints {} {}",
            lab.local_client_url(),
            args.join(" ")
        ),
    }
}

/// A member's inventory entry (8-space indent): etcd as seen inside the container.
pub(crate) fn member_entry(lab: &Lab, m: &LabHost, prefix: &str) -> String {
    let mut y = format!(
        "        {prefix}{name}:\n{host}          etcd_binary: {bin}\n          \
         etcdctl_binary: {ctl}\n          etcd_data_dir: {data}\n          etcd_backup_dir: {backup}\n          \
         etcd_client_url: {client}\n          etcd_service_manager: systemd\n          etcd_service: etcd\n",
        name = m.name,
        host = lab.host_lines(m),
        bin = m.etcd_binary.display(),
        ctl = m.etcdctl_binary.display(),
        data = m.data_dir.display(),
        backup = m.backup_dir.display(),
        client = lab.local_client_url(),
    );
    if let Some(root) = &m.root {
        if root.join("usr/local/bin/etcdutl").exists() {
            y.push_str("          etcdutl_binary: /usr/local/bin/etcdutl\n");
        }
    }
    if lab.etcd_events {
        y.push_str("          etcd_events_cluster_setup: true\n");
    }
    if lab.systemd == Some(Layout::Kubespray) {
        if let Some(i) = lab.members.iter().position(|o| o.name == m.name) {
            y.push_str(&format!("          etcd_member_name: etcd{}\n", i + 1));
        }
    }
    y
}

/// Stop every container and remove what the lab made for it: etcd killed first (a
/// member stopping while the others stop waits out its leadership transfer), then
/// SIGTERM to each recorded nspawn (it halts the container's systemd), bounded, then
/// SIGKILL; then the overlays and cgroups. The namespaces go with the lab's own.
pub(crate) fn teardown_hosts(members: &[LabHost], plain: &[LabHost]) {
    let hosts: Vec<(&LabHost, &Container)> = members
        .iter()
        .chain(plain)
        .filter_map(|h| h.container.as_ref().map(|c| (h, c)))
        .collect();
    if hosts.is_empty() {
        return;
    }
    let t0 = Instant::now();
    let live: Vec<i32> = hosts
        .iter()
        .map(|(_, c)| c.nspawn_pid)
        .filter(|&p| p > 0 && !gone(p) && comm(p) == "systemd-nspawn")
        .collect();
    for (_, c) in &hosts {
        if live.contains(&c.nspawn_pid) {
            kill_units(c, &["etcd.service", "etcd-events.service"]);
        }
    }
    for &p in &live {
        // SAFETY: SIGTERM to the nspawn this lab started (checked by comm above).
        unsafe {
            libc::kill(p, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut left: Vec<i32> = live.clone();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left.retain(|&p| !gone(p));
    }
    if !left.is_empty() {
        for (h, c) in &hosts {
            if left.contains(&c.nspawn_pid) {
                eprintln!(
                    "etcdroll-lab: {}'s container did not stop in 15 s; killing it",
                    h.name
                );
                if c.init_pid > 0 && comm(c.init_pid) == "systemd" {
                    // SAFETY: the container's PID 1; killing it ends its PID namespace.
                    unsafe {
                        libc::kill(c.init_pid, libc::SIGKILL);
                    }
                }
                // SAFETY: the nspawn this lab started.
                unsafe {
                    libc::kill(c.nspawn_pid, libc::SIGKILL);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            left.retain(|&p| !gone(p));
        }
    }
    let stopped = t0.elapsed();
    for (h, c) in &hosts {
        if let Some(root) = &h.root {
            unmount(root);
        }
        for d in &c.cgroups {
            remove_cgroup(d);
        }
        // nspawn leaves its propagation dir where /run is not tmpfs.
        let prop = Path::new("/run/systemd/nspawn/propagate").join(&c.machine);
        if prop.is_dir() {
            let _ = std::fs::remove_dir_all(&prop);
        }
    }
    if t0.elapsed() > Duration::from_secs(5) {
        eprintln!(
            "etcdroll-lab: stopping {} containers took {:.1} s, removing their mounts and cgroups {:.1} s",
            hosts.len(),
            stopped.as_secs_f64(),
            (t0.elapsed() - stopped).as_secs_f64()
        );
    }
}

/// SIGKILL to every process of the container's units, found in its cgroup2 tree.
fn kill_units(c: &Container, units: &[&str]) {
    for d in &c.cgroups {
        for u in units {
            let procs = d.join("payload/system.slice").join(u).join("cgroup.procs");
            let Ok(list) = std::fs::read_to_string(&procs) else {
                continue;
            };
            for pid in list.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                // SAFETY: a process of etcd's unit inside our own container.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

fn is_mounted(p: &Path) -> bool {
    let want = p.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(want.as_str()))
}

fn unmount(root: &Path) {
    for _ in 0..20 {
        if !is_mounted(root) {
            return;
        }
        let _ = Command::new("umount").arg(root).output();
        if !is_mounted(root) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("umount").arg("-l").arg(root).output();
    if is_mounted(root) {
        eprintln!("etcdroll-lab: cannot unmount {}", root.display());
    }
}

/// rmdir a cgroup and everything below it, deepest first (retrying briefly: a cgroup
/// is busy until its last process is reaped).
fn remove_cgroup(d: &Path) {
    fn dirs(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    dirs(&e.path(), out);
                }
            }
        }
        out.push(d.to_path_buf());
    }
    for _ in 0..50 {
        if !d.exists() {
            return;
        }
        let mut all = Vec::new();
        dirs(d, &mut all);
        for x in all {
            let _ = std::fs::remove_dir(&x);
        }
        if !d.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    eprintln!("etcdroll-lab: cannot remove cgroup {}", d.display());
}

/// Tear down the containers of an abandoned lab (its owner died), from its state file.
pub(crate) fn reclaim(dir: &Path) {
    let Ok(mut lab) = Lab::load(&dir.join("lab-state.json")) else {
        return;
    };
    // Only the containers here; the caller removes the namespaces, bridge and dir.
    lab.torn_down = true;
    teardown_hosts(&lab.members, &lab.plain_hosts);
}
