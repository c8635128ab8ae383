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

    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &etcd_bin("3.5.1", "etcd"),
            "--yes",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for m in &lab.members {
        assert_eq!(installed_version(m), "3.5.1");
    }
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
