//! The command line itself, no host needed: Ansible's short flags, completions,
//! the manual page, `--version`.

mod common;

use std::process::Command;

use common::*;

/// `-l`, `-b`, `-f` and `--check` parse as Ansible's hands expect: the run gets
/// as far as connecting (exit 4, a loopback port that refuses), not a usage error.
#[test]
fn ansible_short_flags_are_understood() {
    let s = Scratch::new();
    let inv = s.path("inv.ini");
    std::fs::write(
        &inv,
        "[etcd]\nm0 ansible_host=127.0.0.1 ansible_port=1\nm1 ansible_host=127.0.0.1 ansible_port=1\n",
    )
    .unwrap();
    let inv = inv.display().to_string();
    let out = etcdroll(
        s.dir.path(),
        &["check", "-i", &inv, "-l", "m0", "-b", "--output", "json"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    let checked: Vec<String> = of_kind(&events(&out), "check")
        .iter()
        .map(|e| e["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(checked, ["m0"], "-l limits to m0: {t}");
    let out = etcdroll(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv,
            "--check",
            "-f",
            "2",
            "--target-version",
            "3.5.30",
            "--binary",
            "/bin/true",
            "--output",
            "plain",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = etcdroll(s.dir.path(), &["upgrade", "-i", &inv, "-f", "0", "--check"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad -f is a usage error: {}",
        text(&out)
    );
}

/// `-e` is above the inventory's own variables (the port here: the run reaches
/// for 127.0.0.1:2, not :1), and a malformed one is a usage error, before any
/// host is contacted.
#[test]
fn extra_vars_override_the_inventory() {
    let s = Scratch::new();
    let inv = s.path("inv.ini");
    std::fs::write(&inv, "[etcd]\nm0 ansible_host=127.0.0.1 ansible_port=1\n").unwrap();
    let inv = inv.display().to_string();
    let out = etcdroll(
        s.dir.path(),
        &[
            "check",
            "-i",
            &inv,
            "-e",
            "ansible_port=2",
            "--output",
            "json",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    let evs = events(&out);
    let rows = of_kind(&evs, "check");
    let problems = rows[0]["problems"].to_string();
    assert!(problems.contains("127.0.0.1:2"), "{t}");
    let out = etcdroll(s.dir.path(), &["check", "-i", &inv, "-e", "ansible_port"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("\"ansible_port\" is not KEY=VALUE"), "{t}");
}

#[test]
fn completions_are_generated_for_bash_and_zsh() {
    let s = Scratch::new();
    let out = etcdroll(s.dir.path(), &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let script = s.path("etcdroll.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let bash = String::from_utf8_lossy(&out.stdout);
    assert!(
        bash.contains("upgrade") && bash.contains("--binary"),
        "{bash}"
    );
    let out = etcdroll(s.dir.path(), &["completions", "zsh"]);
    assert_eq!(out.status.code(), Some(0));
    let zsh = String::from_utf8_lossy(&out.stdout);
    assert!(zsh.starts_with("#compdef etcdroll"), "{zsh}");
    assert!(zsh.contains("--accept-new-host-keys"), "{zsh}");
}

/// The manual page renders with man-db (or groff), and names every command.
#[test]
fn the_manual_page_renders() {
    let s = Scratch::new();
    let out = etcdroll(s.dir.path(), &["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = s.path("etcdroll.1");
    std::fs::write(&page, &out.stdout).unwrap();
    let rendered = if std::path::Path::new("/usr/bin/man").exists() {
        Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
    } else {
        Command::new("groff")
            .args(["-man", "-Tutf8"])
            .arg(&page)
            .output()
    }
    .expect("man or groff is installed (scripts/prepare)");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let text = String::from_utf8_lossy(&rendered.stdout);
    for cmd in ["upgrade", "rollback", "check", "status", "backup", "exec"] {
        assert!(text.contains(cmd), "{cmd} in the manual: {text}");
    }
}

#[test]
fn version_names_the_commit() {
    let s = Scratch::new();
    let out = etcdroll(s.dir.path(), &["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.starts_with(&format!("etcdroll {} (", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let commit = v.trim().trim_end_matches(')').rsplit('(').next().unwrap();
    assert!(
        commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{v}"
    );
}

/// `etcdroll inventory` resolves kubespray's sample (group_vars included) with
/// no host contacted, every setting with its origin, a password never shown.
#[test]
fn inventory_shows_each_setting_with_its_origin() {
    let s = Scratch::new();
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kubespray-sample"
    );
    let inv = format!("{dir}/inventory.ini");
    let out = etcdroll(
        s.dir.path(),
        &[
            "inventory",
            "-i",
            &inv,
            "--output",
            "json",
            "-e",
            "ansible_port=2222",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let hosts = doc["clusters"][0]["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 3, "{t}");
    let setting = |h: &serde_json::Value, var: &str| -> (String, String) {
        let s = h["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["var"] == var)
            .unwrap_or_else(|| panic!("{var} missing"));
        (
            s["value"].as_str().unwrap().to_string(),
            s["origin"].as_str().unwrap().to_string(),
        )
    };
    let (port, origin) = setting(&hosts[0], "ansible_port");
    assert_eq!((port.as_str(), origin.as_str()), ("2222", "-e"));
    let (dd, origin) = setting(&hosts[0], "etcd_data_dir");
    assert_eq!(dd, "/var/lib/etcd");
    assert!(origin.contains("group_vars/all/etcd.yml:"), "{origin}");
    assert_eq!(setting(&hosts[0], "etcd_binary").1, "default");

    // The table, and a become password that never shows.
    let pass = s.path("pass.yml");
    std::fs::write(&pass, "ansible_become_pass: s3cret-pw\n").unwrap();
    let at = format!("@{}", pass.display());
    let out = etcdroll(
        s.dir.path(),
        &["inventory", "-i", &inv, "--output", "plain", "-e", &at],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("cluster etcd (3 hosts)") && t.contains("ansible_become_pass"),
        "{t}"
    );
    assert!(t.contains("***") && !t.contains("s3cret-pw"), "{t}");
}

/// `--list-hosts` on every command that connects: the hosts after `--group`
/// and `--limit`, as Ansible prints them (or one JSON document), exit 0, and
/// no host contacted (127.0.0.1 port 1 would refuse: exit 4). Even `upgrade`
/// needs no binary and asks nothing.
#[test]
fn list_hosts_connects_to_nothing() {
    let s = Scratch::new();
    let inv = s.path("inv.ini");
    std::fs::write(
        &inv,
        "[etcd_a]\nm0 ansible_host=127.0.0.1 ansible_port=1\nm1 ansible_host=127.0.0.1 ansible_port=1\n\
         [etcd:children]\netcd_a\n[etcd]\nm2 ansible_host=127.0.0.1 ansible_port=1\n",
    )
    .unwrap();
    let inv = inv.display().to_string();
    let runs: &[&[&str]] = &[
        &["status"],
        &["check"],
        &["upgrade"],
        &["rollback"],
        &["backup"],
        &["inventory"],
        &["exec"],
        &["exec", "--", "true"],
    ];
    for cmd in runs {
        let mut args = vec![cmd[0], "-i", &inv, "-l", "etcd_a:!m1", "--list-hosts"];
        args.extend(&cmd[1..]);
        let out = etcdroll(s.dir.path(), &args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{cmd:?}: {t}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "  hosts (1):\n    m0\n",
            "{cmd:?}: {t}"
        );
    }
    let out = etcdroll(
        s.dir.path(),
        &["status", "-i", &inv, "--list-hosts", "--output", "json"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v, serde_json::json!({"hosts": ["m2", "m0", "m1"]}), "{t}");
    // A limit that selects nothing is a usage error naming the groups.
    let out = etcdroll(
        s.dir.path(),
        &["status", "-i", &inv, "-l", "nosuch", "--list-hosts"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("selects no host") && t.contains("etcd, etcd_a"),
        "{t}"
    );
}
