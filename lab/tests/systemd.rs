//! systemd hosts: for each layout, three members booted as systemd-nspawn containers
//! form a healthy cluster that answers over ssh and etcdctl, the unit is what the
//! layout makes it, and tear-down leaves no process, mount, cgroup or namespace.
//! Needs root; the rootfs comes from scripts/prepare. With ETCDROLL_REQUIRE_LAB=1
//! (scripts/test) a missing prerequisite fails; otherwise it is a loud skip.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Instant;

use etcdroll_lab::{systemd, Lab, LabHost, LabSpec, Layout};

fn systemd_lab(spec: LabSpec) -> Option<Lab> {
    if let Err(why) = Lab::available() {
        panic!("\n!!!!! this lab test cannot run: {why}. Run scripts/test as root !!!!!\n");
    }
    if let Err(why) = systemd::available() {
        if std::env::var_os("ETCDROLL_REQUIRE_LAB").is_some() {
            panic!("systemd hosts cannot run here: {why}");
        }
        eprintln!("\n!!!!! SKIPPED: systemd hosts cannot run here: {why} !!!!!\n");
        return None;
    }
    let t0 = Instant::now();
    let lab = Lab::start(&spec).expect("systemd lab starts");
    eprintln!(
        "{:?}: {} hosts booted, etcd healthy after {:.2} s",
        spec.systemd,
        lab.members.len() + lab.plain_hosts.len(),
        t0.elapsed().as_secs_f64()
    );
    Some(lab)
}

/// ssh to the host as root with the lab's key, checking its host key.
fn ssh(lab: &Lab, h: &LabHost, cmd: &str) -> Output {
    Command::new("ssh")
        .arg("-i")
        .arg(&lab.client_key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", lab.known_hosts.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-F",
            "/dev/null",
        ])
        .arg(format!("root@{}", h.addr))
        .arg(cmd)
        .output()
        .expect("ssh runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Everything the lab made for its containers, to check after tear-down.
struct Made {
    pids: Vec<i32>,
    roots: Vec<PathBuf>,
    cgroups: Vec<PathBuf>,
    /// Each namespace with the inode it had: a parallel test may take the freed slot
    /// and make a namespace of the same name (its slot's owner record then names
    /// that lab's dir, not this one's).
    netns: Vec<(String, u64)>,
    slot: u32,
    dir: PathBuf,
}

fn made(lab: &Lab) -> Made {
    let hosts: Vec<&LabHost> = lab.members.iter().chain(&lab.plain_hosts).collect();
    let mut m = Made {
        pids: Vec::new(),
        roots: Vec::new(),
        cgroups: Vec::new(),
        netns: Vec::new(),
        slot: lab.slots[0],
        dir: lab.dir.clone(),
    };
    for h in hosts {
        let c = h
            .container
            .as_ref()
            .expect("a systemd host has a container");
        assert!(c.nspawn_pid > 0 && c.init_pid > 0, "{c:?}");
        m.pids.extend([c.nspawn_pid, c.init_pid]);
        m.roots
            .push(h.root.clone().expect("a systemd host has a root"));
        assert!(!c.cgroups.is_empty());
        m.cgroups.extend(c.cgroups.iter().cloned());
        let ino = std::fs::metadata(format!("/run/netns/{}", h.netns))
            .map(|md| std::os::unix::fs::MetadataExt::ino(&md))
            .expect("the host's netns exists");
        m.netns.push((h.netns.clone(), ino));
    }
    m
}

fn assert_nothing_left(m: &Made) {
    for p in &m.pids {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        // The pid may be reused by an unrelated process, never by a container's.
        assert!(
            stat.is_empty() || !(comm.trim() == "systemd-nspawn" || comm.trim() == "systemd"),
            "process {p} ({}) survived tear-down",
            comm.trim()
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for r in &m.roots {
        assert!(
            !mounts.contains(&r.display().to_string()),
            "{} is still mounted",
            r.display()
        );
    }
    for c in &m.cgroups {
        assert!(!c.exists(), "cgroup {} survived", c.display());
    }
    let owner = std::fs::read_to_string(format!("/run/etcdroll-lab/slot-{}.json", m.slot))
        .unwrap_or_default();
    let reused =
        !owner.is_empty() && !owner.contains(&format!("{:?}", m.dir.display().to_string()));
    for (n, ino) in &m.netns {
        if reused {
            eprintln!("slot {} is another lab's now: {n} not checked", m.slot);
            continue;
        }
        let now = std::fs::metadata(format!("/run/netns/{n}"))
            .map(|md| std::os::unix::fs::MetadataExt::ino(&md))
            .ok();
        assert_ne!(now, Some(*ino), "netns {n} survived");
    }
}

/// Boot 3 members of a layout, check what every layout must have, then `extra`,
/// then tear down and check nothing is left.
fn layout_test(spec: LabSpec, type_restart: &str, extra: impl Fn(&Lab)) {
    let layout = spec.systemd.expect("a systemd lab");
    let Some(lab) = systemd_lab(spec) else {
        return;
    };
    for m in &lab.members {
        let o = ssh(&lab, m, "systemctl is-active etcd");
        assert_eq!(stdout(&o), "active", "{}: {o:?}", m.name);
        let o = ssh(&lab, m, "systemctl show -p Type,Restart etcd");
        let mut got: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
        got.sort();
        assert_eq!(got.join(" "), type_restart, "{}", m.name);
        let o = ssh(&lab, m, "systemctl is-system-running");
        assert_eq!(stdout(&o), "running", "{}: {o:?}", m.name);
    }
    let (m0, m2) = (&lab.members[0], &lab.members[2]);
    lab.etcdctl(m0, &["put", "lab-key", "lab-value"]).unwrap();
    let got = lab
        .etcdctl(m2, &["get", "--print-value-only", "lab-key"])
        .unwrap();
    assert_eq!(got.trim(), "lab-value");
    let list = lab.etcdctl(m0, &["member", "list"]).unwrap();
    assert_eq!(list.lines().count(), 3, "{list}");
    // run_in, service and the inventories.
    let o = lab.run_in(m2, "cat /etc/hostname").unwrap();
    assert_eq!(stdout(&o), m2.name);
    let o = lab.service(m2, "status").unwrap();
    assert!(o.status.success(), "{o:?}");
    let dir = tempfile_dir();
    lab.write_inventory(&dir.join("inv.yml")).unwrap();
    let inv = std::fs::read_to_string(dir.join("inv.yml")).unwrap();
    assert!(inv.contains("etcd_service_manager: systemd"), "{inv}");
    assert!(
        inv.contains(&format!("etcd_data_dir: {}", m0.data_dir.display())),
        "{inv}"
    );
    lab.write_hosts_only_inventory(&dir.join("hosts.yml"))
        .unwrap();
    let hosts = std::fs::read_to_string(dir.join("hosts.yml")).unwrap();
    assert!(!hosts.contains("etcd_"), "{hosts}");
    assert!(hosts.contains("etcdroll_known_hosts"), "{hosts}");
    assert!(
        hosts.contains(&format!("ansible_host: \"{}\"", m2.addr)),
        "{hosts}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    extra(&lab);

    let m = made(&lab);
    let t0 = Instant::now();
    drop(lab);
    eprintln!("{layout}: torn down in {:.2} s", t0.elapsed().as_secs_f64());
    assert_nothing_left(&m);
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "etcdroll-systemd-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn kubespray_hosts_run_etcd_as_kubespray_does() {
    let spec = LabSpec {
        systemd: Some(Layout::Kubespray),
        etcd_events: true,
        ..LabSpec::default()
    };
    layout_test(spec, "Restart=always Type=notify", |lab| {
        let m = &lab.members[1];
        let o = ssh(
            lab,
            m,
            "systemctl show -p RestartUSec,EnvironmentFiles etcd",
        );
        let s = stdout(&o);
        assert!(s.contains("RestartUSec=10s"), "{s}");
        assert!(s.contains("/etc/etcd.env"), "{s}");
        let env = std::fs::read_to_string(m.outside("/etc/etcd.env".as_ref())).unwrap();
        for want in [
            "ETCD_CLIENT_CERT_AUTH=true",
            "ETCD_PEER_CLIENT_CERT_AUTH=True",
            "ETCD_NAME=etcd2",
            "ETCDCTL_CERT=/etc/ssl/etcd/ssl/admin-m1.pem",
        ] {
            assert!(env.contains(want), "{want} not in etcd.env:\n{env}");
        }
        assert!(m
            .outside("/etc/ssl/etcd/ssl/member-m1-key.pem".as_ref())
            .exists());
        // Clients need a certificate: without one the TLS handshake is refused.
        let o = lab
            .run_in(
                m,
                "curl -sS --cacert /etc/ssl/etcd/ssl/ca.pem https://127.0.0.1:2379/health",
            )
            .unwrap();
        assert!(!o.status.success() || !stdout(&o).contains("true"), "{o:?}");
        let o = lab
            .run_in(
                m,
                "curl -sS --cacert /etc/ssl/etcd/ssl/ca.pem --cert /etc/ssl/etcd/ssl/admin-m1.pem \
                 --key /etc/ssl/etcd/ssl/admin-m1-key.pem https://127.0.0.1:2379/health",
            )
            .unwrap();
        assert!(stdout(&o).contains("\"health\":\"true\""), "{o:?}");
        assert!(lab.member_client_url(m).starts_with("https://"));
        // kubespray's second cluster, etcd-events, on the same hosts.
        let o = ssh(lab, m, "systemctl is-active etcd-events");
        assert_eq!(stdout(&o), "active", "{o:?}");
        let o = lab
            .run_in(
                m,
                "set -a; . /etc/etcd.env; set +a; ETCDCTL_ENDPOINTS=https://127.0.0.1:2383 \
                 etcdctl put ev 1 >/dev/null && ETCDCTL_ENDPOINTS=https://127.0.0.1:2383 etcdctl member list \
                 && ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl get --print-value-only ev",
            )
            .unwrap();
        let s = stdout(&o);
        assert!(
            s.contains("etcd2-events") && !s.contains("lab-value"),
            "{o:?}"
        );
        assert_eq!(
            s.lines().count(),
            3,
            "the events cluster has 3 members and its own keys: {s}"
        );
    });
}

#[test]
fn debian_hosts_run_the_packaged_etcd() {
    let spec = LabSpec {
        systemd: Some(Layout::Debian),
        ..LabSpec::default()
    };
    layout_test(spec, "Restart=on-abnormal Type=notify", |lab| {
        let m = &lab.members[0];
        let o = ssh(lab, m, "dpkg -S /usr/bin/etcd");
        assert_eq!(stdout(&o), "etcd-server: /usr/bin/etcd", "{o:?}");
        let o = ssh(lab, m, "ps -o user= -C etcd");
        assert_eq!(stdout(&o), "etcd", "{o:?}");
        assert!(m.outside("/var/lib/etcd/default/member".as_ref()).is_dir());
    });
}

#[test]
fn plain_unit_hosts_carry_every_setting_on_execstart() {
    let spec = LabSpec {
        systemd: Some(Layout::PlainUnit),
        ..LabSpec::default()
    };
    layout_test(spec, "Restart=on-failure Type=notify", |lab| {
        let m = &lab.members[2];
        let o = ssh(lab, m, "systemctl cat etcd");
        let s = stdout(&o);
        assert!(s.contains("ExecStart=/usr/local/bin/etcd --name m2"), "{s}");
        assert!(!s.contains("EnvironmentFile"), "{s}");
        let o = ssh(
            lab,
            m,
            "readlink /proc/$(systemctl show -p MainPID --value etcd)/exe",
        );
        assert_eq!(stdout(&o), "/usr/local/bin/etcd", "{o:?}");
    });
}

#[test]
fn the_debian_layout_refuses_other_versions() {
    let err = match Lab::start(&LabSpec {
        systemd: Some(Layout::Debian),
        version: "3.5.1".into(),
        ..LabSpec::default()
    }) {
        Ok(_) => panic!("a Debian lab of 3.5.1 must not start"),
        Err(e) => format!("{e:#}"),
    };
    if systemd::available().is_ok() {
        assert!(err.contains("3.4.23") && err.contains("3.5.1"), "{err}");
    }
}

#[test]
fn a_panic_still_tears_the_containers_down() {
    let spec = LabSpec {
        systemd: Some(Layout::PlainUnit),
        members: 1,
        ..LabSpec::default()
    };
    let Some(lab) = systemd_lab(spec) else {
        return;
    };
    let m = made(&lab);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _lab = lab;
        panic!("deliberate");
    }));
    assert!(result.is_err());
    assert_nothing_left(&m);
}
