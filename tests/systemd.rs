//! etcdroll on real systemd hosts: each member a `systemd-nspawn --boot`
//! container (systemd 252 as PID 1) in its own network namespace, laid out as
//! kubespray, Debian's package, or a plain unit. The inventories name only the
//! hosts: every etcd setting is what the member says of itself.

mod common;

use std::path::Path;

use common::*;
use etcdroll_lab::Layout;

fn systemd_lab(layout: Layout) -> Lab {
    lab(LabSpec {
        systemd: Some(layout),
        ..Default::default()
    })
    .expect("lab")
}

fn hosts_only(lab: &Lab, s: &Scratch) -> String {
    let p = s.path("hosts.yml");
    lab.write_hosts_only_inventory(&p).expect("inventory");
    p.display().to_string()
}

/// `etcd --version` of the binary at `inside` on a member (run from outside).
fn version_at(host: &LabHost, inside: &str) -> String {
    let out = std::process::Command::new(host.outside(Path::new(inside)))
        .arg("--version")
        .output()
        .expect("runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("etcd Version: ")
        .to_string()
}

fn sh(lab: &Lab, host: &LabHost, script: &str) -> String {
    let out = lab.run_in(host, script).expect("runs in the host");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn put_keys(lab: &Lab) {
    // Under load a freshly booted cluster may not take writes yet.
    lab.wait_cluster_healthy(std::time::Duration::from_secs(60))
        .expect("healthy before the keys are written");
    for i in 0..20 {
        lab.etcdctl(
            &lab.members[0],
            &["put", &format!("key{i}"), &format!("value{i}")],
        )
        .expect("put");
    }
}

fn assert_keys(lab: &Lab) {
    for m in &lab.members {
        let got = lab
            .etcdctl(m, &["get", "key7", "--print-value-only"])
            .expect("get");
        assert_eq!(got.trim(), "value7", "{}", m.name);
    }
}

/// Every backup the run left restores: its snapshot with etcdutl, into a fresh dir.
fn assert_backups_restore(lab: &Lab, s: &Scratch) {
    let etcdutl = etcd_bin(&newest_debian_35(), "etcdutl");
    for m in &lab.members {
        let dir = m.outside(Path::new("/var/backups/etcdroll"));
        let backups: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("snapshot.db").exists())
            .collect();
        assert!(
            !backups.is_empty(),
            "{}: no backup in {}",
            m.name,
            dir.display()
        );
        for b in backups {
            assert!(
                b.join("data/member/snap/db").exists(),
                "{}: no data copy",
                b.display()
            );
            let to = s.path(&format!("restored-{}", m.name));
            let out = std::process::Command::new(&etcdutl)
                .args(["snapshot", "restore"])
                .arg(b.join("snapshot.db"))
                .arg("--data-dir")
                .arg(&to)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                b.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_dir_all(&to);
        }
    }
}

fn discovered<'a>(
    evs: &'a [serde_json::Value],
    host: &str,
    var: &str,
) -> Option<&'a serde_json::Value> {
    of_kind(evs, "discovered").into_iter().find_map(|e| {
        e["hosts"].as_array()?.iter().find(|h| h["host"] == host)?["settings"]
            .as_array()?
            .iter()
            .find(|f| f["var"] == var)
    })
}

#[test]
fn kubespray_hosts_only_inventory_upgrades_to_the_newest_debian_35() {
    let lab = systemd_lab(Layout::Kubespray);
    let s = Scratch::new();
    let inv = hosts_only(&lab, &s);
    put_keys(&lab);
    let target = newest_debian_35();
    let bin = etcd_bin(&target, "etcd");

    // check: changes nothing, and shows what each member said of itself.
    let out = etcdroll(
        s.dir.path(),
        &["check", "-i", &inv, "--binary", &bin, "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let evs = events(&out);
    let host = &lab.members[0].name;
    let url = discovered(&evs, host, "etcd_client_url").expect("client url discovered");
    assert_eq!(url["value"], "https://127.0.0.1:2379");
    assert!(url["source"]
        .as_str()
        .unwrap()
        .contains("ETCDCTL_ENDPOINTS"));
    let cert = discovered(&evs, host, "etcd_cert").expect("cert discovered");
    assert_eq!(cert["value"], format!("/etc/ssl/etcd/ssl/admin-{host}.pem"));
    let dd = discovered(&evs, host, "etcd_data_dir").expect("data dir discovered");
    assert_eq!(dd["value"], "/var/lib/etcd");
    assert!(discovered(&evs, host, "etcd_binary").unwrap()["source"]
        .as_str()
        .unwrap()
        .contains("/exe of etcd.service"));
    // The human view names the sources too.
    let human = etcdroll(s.dir.path(), &["check", "-i", &inv, "--binary", &bin]);
    let h = text(&human);
    assert!(
        h.contains("found on the hosts") && h.contains("ETCD_DATA_DIR in /proc/"),
        "{h}"
    );
    for m in &lab.members {
        assert!(
            !m.outside(Path::new("/usr/local/bin/etcd.new")).exists(),
            "check staged on {}",
            m.name
        );
    }

    // The upgrade itself.
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--yes", "--output", "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for m in &lab.members {
        assert_eq!(version_at(m, "/usr/local/bin/etcd"), target, "{}", m.name);
        assert_eq!(
            sh(&lab, m, "systemctl is-active etcd"),
            "active",
            "{}",
            m.name
        );
        let ver = lab
            .etcdctl(m, &["endpoint", "status", "--write-out", "json"])
            .expect("status");
        assert!(
            ver.contains(&format!("\"version\":\"{target}\"")),
            "{}: {ver}",
            m.name
        );
    }
    assert_keys(&lab);
    assert_backups_restore(&lab, &s);

    // status and backup on systemd hosts.
    let out = etcdroll(s.dir.path(), &["status", "-i", &inv, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = of_kind(&events(&out), "member_status").len();
    assert_eq!(rows, 3, "{}", text(&out));
    let out = etcdroll(s.dir.path(), &["backup", "-i", &inv, "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // kubespray's own sample inventory, as it is, with only its hosts pointed at
    // the lab and the lab's key in a group_vars file of its own.
    let sample = kubespray_sample_for(&lab, &s);
    let out = etcdroll(s.dir.path(), &["status", "-i", &sample, "--output", "json"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let rows = of_kind(&events(&out), "member_status")
        .iter()
        .filter(|r| r["server_version"] == target.as_str() && r["healthy"] == true)
        .count();
    assert_eq!(rows, 3, "{t}");
}

/// tests/fixtures/kubespray-sample copied, node1–3 at the lab's members, and
/// `group_vars/all/lab.yml` with the lab's user, key and known_hosts.
fn kubespray_sample_for(lab: &Lab, s: &Scratch) -> String {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let dest = to.join(e.file_name());
            if e.path().is_dir() {
                copy(&e.path(), &dest);
            } else {
                std::fs::copy(e.path(), &dest).unwrap();
            }
        }
    }
    let dir = s.path("kubespray-sample");
    copy(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kubespray-sample"
        )),
        &dir,
    );
    let ini = dir.join("inventory.ini");
    let mut text = std::fs::read_to_string(&ini).unwrap();
    for (i, m) in lab.members.iter().enumerate() {
        text = text.replace(&format!("198.18.0.1{}", i + 1), &m.ip().to_string());
    }
    std::fs::write(&ini, text).unwrap();
    std::fs::write(
        dir.join("group_vars/all/lab.yml"),
        format!(
            "ansible_user: root\nansible_ssh_private_key_file: {}\netcdroll_known_hosts: {}\n",
            lab.client_key.display(),
            lab.known_hosts.display()
        ),
    )
    .unwrap();
    ini.display().to_string()
}

#[test]
fn debian_package_layout_needs_consent_and_then_holds_the_package() {
    let lab = systemd_lab(Layout::Debian);
    let s = Scratch::new();
    let inv = hosts_only(&lab, &s);
    put_keys(&lab);
    let target = newest_debian_35();
    let bin = etcd_bin(&target, "etcd");
    let m0 = &lab.members[0];
    assert!(sh(&lab, m0, "dpkg-query -S /usr/bin/etcd").starts_with("etcd-server"));

    let out = etcdroll(
        s.dir.path(),
        &["upgrade", "-i", &inv, "--binary", &bin, "--yes"],
    );
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("/usr/bin/etcd belongs to the Debian package etcd-server"),
        "{t}"
    );
    assert!(t.contains("etcdroll_replace_packaged_binary=true"), "{t}");
    for m in &lab.members {
        assert_eq!(version_at(m, "/usr/bin/etcd"), "3.4.23", "{}", m.name);
    }

    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &bin,
            "--yes",
            "--output",
            "json",
            "-e",
            "etcdroll_replace_packaged_binary=true",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let evs = events(&out);
    assert!(
        of_kind(&evs, "warning").iter().any(|w| w["message"]
            .as_str()
            .unwrap()
            .contains("apt-mark hold etcd-server")),
        "{}",
        text(&out)
    );
    let dd = discovered(&evs, &m0.name, "etcd_data_dir").expect("data dir discovered");
    assert_eq!(dd["value"], "/var/lib/etcd/default");
    for m in &lab.members {
        assert_eq!(version_at(m, "/usr/bin/etcd"), target, "{}", m.name);
        assert!(
            sh(&lab, m, "apt-mark showhold").contains("etcd-server"),
            "{}",
            m.name
        );
        assert_eq!(sh(&lab, m, "systemctl is-active etcd"), "active");
    }
    assert_keys(&lab);
    assert_backups_restore(&lab, &s);
}

#[test]
fn plain_unit_upgrade_interrupted_then_rolled_back() {
    let lab = systemd_lab(Layout::PlainUnit);
    let s = Scratch::new();
    let inv = hosts_only(&lab, &s);
    put_keys(&lab);
    let bin = etcd_bin(&newest_debian_35(), "etcd");
    // Stopped hard after its first member: the cluster is mixed, which is when
    // etcd allows going back.
    let first = killed_after_first_member(&s, &inv, &bin);
    let m = lab.members.iter().find(|m| m.name == first).unwrap();
    assert_eq!(version_at(m, "/usr/local/bin/etcd"), newest_debian_35());
    let out = etcdroll(
        s.dir.path(),
        &["rollback", "-i", &inv, "--yes", "--output", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for m in &lab.members {
        assert_eq!(version_at(m, "/usr/local/bin/etcd"), "3.4.23", "{}", m.name);
        assert_eq!(sh(&lab, m, "systemctl is-active etcd"), "active");
    }
    lab.wait_cluster_healthy(std::time::Duration::from_secs(20))
        .expect("healthy after the rollback");
    assert_keys(&lab);
    // And the whole upgrade, once more, goes through.
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--yes", "--output", "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_keys(&lab);
}

/// A fake etcd that passes staging (`--version`) and exits at once when started,
/// so `Restart=always` keeps restarting it.
fn crashing_binary(s: &Scratch, version: &str) -> String {
    let p = s.path("etcd-crashes");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'etcd Version: {version}'; exit 0; fi\n\
             echo 'etcdroll-test: this etcd crashes at start' >&2\nexit 3\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &p,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn a_binary_that_crash_loops_under_restart_always_is_rolled_back_with_its_journal() {
    let lab = systemd_lab(Layout::Kubespray);
    let s = Scratch::new();
    let inv = hosts_only(&lab, &s);
    put_keys(&lab);
    assert_eq!(
        sh(
            &lab,
            &lab.members[0],
            "systemctl show -p Restart --value etcd"
        ),
        "always"
    );
    let bin = crashing_binary(&s, &newest_debian_35());
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &bin,
            "--yes",
            "--output",
            "json",
            "--health-timeout",
            "15s",
        ],
    );
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    // One member failed (and was rolled back); the others were never touched.
    let failed = of_kind(&evs, "host_failed");
    assert!(!failed.is_empty(), "{t}");
    assert!(failed.iter().all(|f| f["host"] == failed[0]["host"]), "{t}");
    // The report carries the unit's journal: etcd's own last words.
    assert!(t.contains("this etcd crashes at start"), "{t}");
    for m in &lab.members {
        assert_eq!(version_at(m, "/usr/local/bin/etcd"), "3.4.23", "{}", m.name);
    }
    lab.wait_cluster_healthy(std::time::Duration::from_secs(30))
        .expect("healthy on the old version");
    for m in &lab.members {
        assert_eq!(
            sh(&lab, m, "systemctl is-active etcd"),
            "active",
            "{}",
            m.name
        );
    }
    assert_keys(&lab);
}

#[test]
fn units_that_would_not_run_the_swapped_binary_are_refused_before_any_change() {
    let lab = systemd_lab(Layout::PlainUnit);
    let s = Scratch::new();
    let inv = hosts_only(&lab, &s);
    let bin = etcd_bin(&newest_debian_35(), "etcd");
    let m0 = &lab.members[0];
    // etcd_binary names a copy the unit does not run.
    sh(
        &lab,
        m0,
        "cp -a /usr/local/bin/etcd /usr/local/bin/etcd-copy",
    );
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &bin,
            "--yes",
            "-l",
            &m0.name,
            "-e",
            "etcd_binary=/usr/local/bin/etcd-copy",
        ],
    );
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(
            "starts /usr/local/bin/etcd (ExecStart), not etcd_binary /usr/local/bin/etcd-copy"
        ),
        "{t}"
    );
    // A unit edited since the last daemon-reload.
    sh(&lab, m0, "touch /etc/systemd/system/etcd.service");
    assert_eq!(
        sh(&lab, m0, "systemctl show -p NeedDaemonReload --value etcd"),
        "yes"
    );
    let out = etcdroll(s.dir.path(), &["check", "-i", &inv, "--binary", &bin]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("changed on disk since systemd last loaded it"),
        "{t}"
    );
    sh(&lab, m0, "systemctl daemon-reload");
    // A masked unit.
    // (A unit in /etc cannot be masked over; the package's place in /lib can.)
    sh(
        &lab,
        &lab.members[1],
        "mv /etc/systemd/system/etcd.service /lib/systemd/system/etcd.service && systemctl daemon-reload && systemctl mask --runtime etcd",
    );
    assert_eq!(
        sh(
            &lab,
            &lab.members[1],
            "systemctl show -p LoadState --value etcd"
        ),
        "masked"
    );
    let out = etcdroll(s.dir.path(), &["check", "-i", &inv, "--binary", &bin]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("is masked"), "{t}");
    // Nothing was changed anywhere.
    for m in &lab.members {
        assert!(
            !m.outside(Path::new("/usr/local/bin/etcd.new")).exists(),
            "{}",
            m.name
        );
        assert_eq!(version_at(m, "/usr/local/bin/etcd"), "3.4.23");
        assert_eq!(sh(&lab, m, "systemctl is-active etcd"), "active");
    }
}

#[test]
fn a_binary_that_never_says_ready_is_bounded_by_the_health_timeout_and_rolled_back() {
    let lab = systemd_lab(Layout::PlainUnit);
    let s = Scratch::new();
    let inv = hosts_only(&lab, &s);
    put_keys(&lab);
    assert_eq!(
        sh(&lab, &lab.members[0], "systemctl show -p Type --value etcd"),
        "notify"
    );
    // It runs but never sends READY=1: `systemctl start` would wait for
    // TimeoutStartSec (90 s) without etcdroll's bound.
    let bin = never_healthy_binary(&s, &newest_debian_35());
    let started = std::time::Instant::now();
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--binary",
            &bin,
            "--yes",
            "--output",
            "json",
            "--health-timeout",
            "5s",
        ],
    );
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}: {t}",
        started.elapsed()
    );
    let evs = events(&out);
    assert!(
        of_kind(&evs, "upgrade_summary")[0]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["state"] == "rolled_back"),
        "{t}"
    );
    for m in &lab.members {
        assert_eq!(version_at(m, "/usr/local/bin/etcd"), "3.4.23", "{}", m.name);
        assert_eq!(
            sh(&lab, m, "systemctl is-active etcd"),
            "active",
            "{}",
            m.name
        );
    }
    lab.wait_cluster_healthy(std::time::Duration::from_secs(30))
        .expect("healthy on the old version");
    assert_keys(&lab);
}

#[test]
fn kubespray_etcd_events_sharing_the_binary_is_refused_by_name() {
    let lab = lab(LabSpec {
        systemd: Some(Layout::Kubespray),
        etcd_events: true,
        ..Default::default()
    })
    .expect("lab");
    let s = Scratch::new();
    let inv = hosts_only(&lab, &s);
    let bin = etcd_bin(&newest_debian_35(), "etcd");
    let out = etcdroll(s.dir.path(), &["check", "-i", &inv, "--binary", &bin]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("etcd-events.service (pid")
            && t.contains("runs the same binary /usr/local/bin/etcd"),
        "{t}"
    );
    for m in &lab.members {
        assert!(
            !m.outside(Path::new("/usr/local/bin/etcd.new")).exists(),
            "{}",
            m.name
        );
    }
}
