//! Real fleets in the lab: members reachable only through one or two bastions,
//! the jump given by the inventory or by an ssh_config file.

mod common;

use common::*;

#[test]
fn members_behind_a_bastion_are_served_and_upgraded_through_it() {
    let Some(lab) = lab(LabSpec {
        bastions: 1,
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    // Without the jump, nothing reaches the members.
    let direct = std::fs::read_to_string(&inv)
        .unwrap()
        .replace("    etcdroll_jump:", "    unused_jump:");
    let direct_inv = s.path("direct.yml");
    std::fs::write(&direct_inv, direct).unwrap();
    let out = etcdroll(
        s.dir.path(),
        &[
            "exec",
            "-i",
            direct_inv.to_str().unwrap(),
            "--connect-timeout",
            "2s",
            "--output",
            "plain",
            "--",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));

    let out = etcdroll(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--output",
            "plain",
            "--",
            "ip -4 -o addr show dev eth0",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for m in &lab.members {
        assert!(t.contains(&format!("inet {}/", m.addr)), "{t}");
    }
    let out = etcdroll(s.dir.path(), &["status", "-i", &inv, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(of_kind(&events(&out), "member_status").len(), 3);

    let out = upgrade_351(&s, &inv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_all_on(&lab, "3.5.1");
}

#[test]
fn two_hops_and_a_changed_bastion_key_is_refused() {
    let Some(lab) = lab(LabSpec {
        bastions: 2,
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let out = etcdroll(s.dir.path(), &["status", "-i", &inv, "--output", "json"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let rows = of_kind(&events(&out), "member_status").len();
    assert_eq!(rows, 3, "{t}");

    // Replace the first bastion's keys in known_hosts by another key.
    let other = s.path("other");
    assert!(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap()
        .success());
    let fake = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let fake: Vec<&str> = fake.split_whitespace().take(2).collect();
    let b1 = lab.bastions[0].addr.to_string();
    let kh: String = std::fs::read_to_string(&lab.known_hosts)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with(&format!("{b1} ")))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + &format!("{b1} {} {}\n", fake[0], fake[1]);
    let kh_path = s.path("known_hosts");
    std::fs::write(&kh_path, kh).unwrap();
    let changed = std::fs::read_to_string(&inv).unwrap().replace(
        &lab.known_hosts.display().to_string(),
        &kh_path.display().to_string(),
    );
    std::fs::write(&inv, changed).unwrap();
    let out = etcdroll(
        s.dir.path(),
        &[
            "status",
            "-i",
            &inv,
            "--accept-new-host-keys",
            "--output",
            "plain",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("HOST KEY CHANGED") && t.contains(&b1), "{t}");
}

#[test]
fn the_jump_can_come_from_an_ssh_config_file() {
    let Some(lab) = lab(LabSpec {
        bastions: 1,
        members: 3,
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    // The inventory without its jump; an ssh_config gives it instead.
    let no_jump = std::fs::read_to_string(&inv)
        .unwrap()
        .replace("    etcdroll_jump:", "    unused_jump:");
    std::fs::write(&inv, no_jump).unwrap();
    let b = &lab.bastions[0];
    let octets = lab.members[0].addr.octets();
    let config = s.path("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host {}.{}.{}.*\n  ProxyJump root@{}\n  UserKnownHostsFile {}\n\nHost *\n  IdentityFile {}\n",
            octets[0],
            octets[1],
            octets[2],
            b.addr,
            lab.known_hosts.display(),
            lab.client_key.display()
        ),
    )
    .unwrap();
    let out = etcdroll(
        s.dir.path(),
        &[
            "status",
            "-i",
            &inv,
            "-F",
            config.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(of_kind(&events(&out), "member_status").len(), 3, "{t}");
}

#[test]
fn a_tls_cluster_with_client_certificates_is_served_and_upgraded() {
    let Some(lab) = lab(LabSpec {
        tls: true,
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let out = etcdroll(s.dir.path(), &["status", "-i", &inv, "--output", "json"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let rows = of_kind(&events(&out), "member_status").len();
    assert_eq!(rows, 3, "{t}");
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &etcd_bin("3.5.1", "etcd"),
            "--etcdctl",
            &etcd_bin("3.5.1", "etcdctl"),
            "--yes",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_all_on(&lab, "3.5.1");

    // Another CA: the member's certificate no longer verifies.
    let other = s.path("other-ca");
    std::fs::create_dir_all(&other).unwrap();
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-days",
            "1",
            "-subj",
            "/CN=not-the-lab",
            "-newkey",
            "ec",
        ])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
        ])
        .arg(other.join("ca.key"))
        .arg("-out")
        .arg(other.join("ca.pem"))
        .output()
        .unwrap();
    assert!(st.status.success());
    let tls = lab.tls.as_ref().unwrap();
    let wrong = std::fs::read_to_string(&inv).unwrap().replace(
        &tls.ca.display().to_string(),
        &other.join("ca.pem").display().to_string(),
    );
    std::fs::write(&inv, wrong).unwrap();
    let out = etcdroll(s.dir.path(), &["status", "-i", &inv, "--output", "plain"]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("m0") && t.contains("TLS handshake") && t.contains("UnknownIssuer"),
        "{t}"
    );
}

#[test]
fn an_ipv6_only_lab_runs_status_and_exec() {
    let Some(lab) = lab(LabSpec {
        ipv6: true,
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let out = etcdroll(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--output",
            "json",
            "--",
            "ip -6 -o addr show dev eth0 scope global",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for m in &lab.members {
        assert!(t.contains(&m.addr6.unwrap().to_string()), "{t}");
    }
    // Under CI load the lab's members may hold an election right after the
    // start, which /health reports truthfully as unhealthy for a moment: asked
    // again a few times, the cluster must be seen whole and healthy.
    let mut seen = String::new();
    for _ in 0..10 {
        let out = etcdroll(s.dir.path(), &["status", "-i", &inv, "--output", "json"]);
        seen = text(&out);
        assert_eq!(out.status.code(), Some(0), "{seen}");
        let evs = events(&out);
        let rows = of_kind(&evs, "member_status");
        assert_eq!(rows.len(), 3, "{seen}");
        if rows.iter().all(|r| r["healthy"] == true) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    panic!("status over IPv6 never saw every member healthy: {seen}");
}

#[test]
fn a_kubespray_style_ini_with_a_bastion_drives_an_upgrade() {
    let Some(lab) = lab(LabSpec {
        bastions: 1,
        ..LabSpec::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let mut ini = String::from("[all]\n");
    for m in &lab.members {
        let d = m.dir.display();
        ini.push_str(&format!(
            "node{n} ansible_host={a} etcd_member_name={name} etcd_binary={d}/bin/etcd etcd_data_dir={d}/data \
             etcd_backup_dir={d}/backup etcd_start_cmd='{d}/etcd-service start' etcd_stop_cmd='{d}/etcd-service stop' \
             etcd_status_cmd='{d}/etcd-service status' etcd_logs_cmd='{d}/etcd-service logs' etcdroll_lock_dir={d}/run\n",
            n = &m.name[1..],
            a = m.addr,
            name = m.name,
        ));
    }
    ini.push_str("\n[kube_control_plane]\nnode0\nnode1\nnode2\n\n[etcd]\nnode0\nnode1\nnode2\n\n");
    ini.push_str("[etcd:vars]\netcd_deployment_type=host\netcd_service_manager=command\n\n");
    ini.push_str("[k8s_cluster:children]\nkube_control_plane\n\n");
    ini.push_str(&format!(
        "[all:vars]\nansible_user=root\nansible_ssh_private_key_file={}\nansible_ssh_common_args='-o ProxyJump=root@{} -o UserKnownHostsFile={}'\n",
        lab.client_key.display(),
        lab.bastions[0].addr,
        lab.known_hosts.display()
    ));
    let inv = s.path("hosts.ini");
    std::fs::write(&inv, ini).unwrap();
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            inv.to_str().unwrap(),
            "--binary",
            &etcd_bin("3.5.1", "etcd"),
            "--yes",
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    let done: Vec<&str> = of_kind(&evs, "host_done")
        .iter()
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert_eq!(done.len(), 3, "{t}");
    assert!(done.iter().all(|h| h.starts_with("node")), "{t}");
    assert_all_on(&lab, "3.5.1");
}
