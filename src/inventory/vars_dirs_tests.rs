//! group_vars/ and host_vars/: Ansible's precedence (checked against
//! ansible-inventory by tests/ansible_oracle.rs), the file forms, Vault,
//! templates, broken files, kubespray's sample inventory.

use std::path::{Path, PathBuf};

use super::*;

/// A directory with these files (parents created).
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn load_with(path: &Path, extra: &[&str]) -> Result<Inventory, InventoryError> {
    let extra = ExtraVars::parse(&extra.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    load(
        path,
        &LoadOptions {
            group: "etcd",
            limit: None,
            extra_vars: Some(&extra),
            via_ansible: false,
        },
    )
}

fn host<'a>(inv: &'a Inventory, name: &str) -> &'a Host {
    inv.hosts
        .iter()
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("no host {name} in {:?}", inv.hosts))
}

/// The value etcdroll took for one variable, as text.
fn value_of(h: &Host, key: &str) -> Option<String> {
    match key {
        "ansible_host" => Some(h.address.clone()),
        "ansible_port" => h.port.map(|p| p.to_string()),
        "ansible_user" => h.user.clone(),
        "ansible_become" => Some(h.become_.to_string()),
        "etcd_binary" => Some(h.etcd.binary.clone()),
        "etcd_data_dir" => Some(h.etcd.data_dir.clone()),
        "etcd_service" => Some(h.etcd.service.clone()),
        "etcd_backup_dir" => Some(h.etcd.backup_dir.clone()),
        "etcd_member_name" => h.etcd.member_name.clone(),
        "etcd_cluster" => Some(h.cluster.clone()),
        "etcdroll_lock_dir" => Some(h.lock_dir.clone()),
        other => panic!("value_of: add {other}"),
    }
}

fn origin_of(h: &Host, key: &str) -> Option<String> {
    h.origins
        .get(key)
        .or_else(|| h.etcd.origins.get(key))
        .cloned()
}

struct Case {
    what: &'static str,
    files: &'static [(&'static str, &'static str)],
    extra: &'static [&'static str],
    host: &'static str,
    key: &'static str,
    want: &'static str,
    /// The end of the origin: `FILE:LINE` under the temp dir, or `-e`.
    from: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "group_vars/all over the inventory's [all:vars]",
        files: &[
            ("hosts.ini", "[all:vars]\nansible_port=2201\n[etcd]\nh1\n"),
            ("group_vars/all.yml", "ansible_port: 2202\n"),
        ],
        extra: &[],
        host: "h1",
        key: "ansible_port",
        want: "2202",
        from: "group_vars/all.yml:1",
    },
    Case {
        what: "group_vars/all over the inventory's [etcd:vars] too (Ansible's VARIABLE_PRECEDENCE)",
        files: &[
            ("hosts.ini", "[etcd]\nh1\n[etcd:vars]\netcd_service=ini\n"),
            ("group_vars/all.yml", "---\netcd_service: gv-all\n"),
        ],
        extra: &[],
        host: "h1",
        key: "etcd_service",
        want: "gv-all",
        from: "group_vars/all.yml:2",
    },
    Case {
        what: "the inventory's [all:vars] alone",
        files: &[
            ("hosts.ini", "[all:vars]\nansible_user=ops\n[etcd]\nh1\n"),
            ("group_vars/etcd.yml", "etcd_service: x\n"),
        ],
        extra: &[],
        host: "h1",
        key: "ansible_user",
        want: "ops",
        from: "hosts.ini:2",
    },
    Case {
        what: "group_vars/etcd over [etcd:vars]",
        files: &[
            ("hosts.ini", "[etcd]\nh1\n[etcd:vars]\netcd_binary=/ini/etcd\n"),
            ("group_vars/etcd.yml", "etcd_binary: /gv/etcd\n"),
        ],
        extra: &[],
        host: "h1",
        key: "etcd_binary",
        want: "/gv/etcd",
        from: "group_vars/etcd.yml:1",
    },
    Case {
        what: "child group's group_vars over the parent's",
        files: &[
            ("hosts.ini", "[etcd:children]\neast\n[east]\nh1\n"),
            ("group_vars/etcd.yml", "etcd_data_dir: /parent\n"),
            ("group_vars/east.yml", "\netcd_data_dir: /child\n"),
        ],
        extra: &[],
        host: "h1",
        key: "etcd_data_dir",
        want: "/child",
        from: "group_vars/east.yml:2",
    },
    Case {
        what: "the parent's group_vars over the child's inventory vars",
        files: &[
            ("hosts.ini", "[etcd:children]\neast\n[east]\nh1\n[east:vars]\netcd_data_dir=/ini-child\n"),
            ("group_vars/etcd.yml", "etcd_data_dir: /gv-parent\n"),
        ],
        extra: &[],
        host: "h1",
        key: "etcd_data_dir",
        want: "/gv-parent",
        from: "group_vars/etcd.yml:1",
    },
    Case {
        what: "the inventory's host vars over group_vars",
        files: &[
            ("hosts.ini", "[etcd]\nh1 etcd_data_dir=/ini-host\n"),
            ("group_vars/etcd.yml", "etcd_data_dir: /gv\n"),
            ("group_vars/all.yml", "etcd_data_dir: /gv-all\n"),
        ],
        extra: &[],
        host: "h1",
        key: "etcd_data_dir",
        want: "/ini-host",
        from: "hosts.ini:2",
    },
    Case {
        what: "host_vars over the inventory's host vars",
        files: &[
            ("hosts.ini", "[etcd]\nh1 ansible_port=2210\n"),
            ("host_vars/h1.yml", "ansible_port: 2211\n"),
        ],
        extra: &[],
        host: "h1",
        key: "ansible_port",
        want: "2211",
        from: "host_vars/h1.yml:1",
    },
    Case {
        what: "-e over everything",
        files: &[
            ("hosts.ini", "[etcd]\nh1 ansible_port=2210\n"),
            ("host_vars/h1.yml", "ansible_port: 2211\n"),
            ("group_vars/etcd.yml", "ansible_port: 2212\n"),
        ],
        extra: &["ansible_port=2300"],
        host: "h1",
        key: "ansible_port",
        want: "2300",
        from: "-e",
    },
    Case {
        what: "a directory group_vars/etcd/: its files in sorted order, the later wins",
        files: &[
            ("hosts.ini", "[etcd]\nh1\n"),
            ("group_vars/etcd/20-b.json", "{\n  \"etcd_binary\": \"/b/etcd\"\n}\n"),
            ("group_vars/etcd/10-a.yml", "etcd_binary: /a/etcd\n"),
        ],
        extra: &[],
        host: "h1",
        key: "etcd_binary",
        want: "/b/etcd",
        from: "group_vars/etcd/20-b.json:2",
    },
    Case {
        what: "a directory is read recursively; hidden files, ~ backups and other extensions are not",
        files: &[
            ("hosts.ini", "[etcd]\nh1\n"),
            ("group_vars/etcd/10-a.yml", "etcd_binary: /a/etcd\n"),
            ("group_vars/etcd/20-sub/x.yaml", "etcd_binary: /sub/etcd\n"),
            ("group_vars/etcd/30-notes.md", "etcd_binary: /md/etcd\n"),
            ("group_vars/etcd/40-old.yml~", "etcd_binary: /backup/etcd\n"),
            ("group_vars/etcd/.50-hidden.yml", "etcd_binary: /hidden/etcd\n"),
        ],
        extra: &[],
        host: "h1",
        key: "etcd_binary",
        want: "/sub/etcd",
        from: "group_vars/etcd/20-sub/x.yaml:1",
    },
    Case {
        what: "a directory group_vars/etcd/ is read instead of group_vars/etcd.yml",
        files: &[
            ("hosts.ini", "[etcd]\nh1\n"),
            ("group_vars/etcd/main", "etcd_binary: /dir/etcd\n"),
            ("group_vars/etcd.yml", "etcd_binary: /file/etcd\n"),
        ],
        extra: &[],
        host: "h1",
        key: "etcd_binary",
        want: "/dir/etcd",
        from: "group_vars/etcd/main:1",
    },
    Case {
        what: "G.yml is read, not G.json beside it (Ansible takes the first it finds)",
        files: &[
            ("hosts.ini", "[etcd]\nh1\n"),
            ("group_vars/etcd.yml", "etcd_binary: /yml/etcd\n"),
            ("group_vars/etcd.json", "{\"etcd_binary\": \"/json/etcd\"}\n"),
        ],
        extra: &[],
        host: "h1",
        key: "etcd_binary",
        want: "/yml/etcd",
        from: "group_vars/etcd.yml:1",
    },
    Case {
        what: "host_vars/HOST with no extension, and a YAML inventory",
        files: &[
            ("inv.yml", "all:\n  children:\n    etcd:\n      hosts:\n        h1:\n          etcd_member_name: inv\n"),
            ("host_vars/h1", "# comment\netcd_member_name: m1\n"),
        ],
        extra: &[],
        host: "h1",
        key: "etcd_member_name",
        want: "m1",
        from: "host_vars/h1:2",
    },
    Case {
        what: "group_vars/G.json",
        files: &[
            ("hosts.ini", "[etcd]\nh1\n"),
            ("group_vars/etcd.json", "{\"etcdroll_lock_dir\": \"/run/j\"}"),
        ],
        extra: &[],
        host: "h1",
        key: "etcdroll_lock_dir",
        want: "/run/j",
        from: "group_vars/etcd.json:1",
    },
];

fn inventory_file(dir: &Path) -> PathBuf {
    ["hosts.ini", "inv.yml"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .unwrap()
}

#[test]
fn precedence_cases() {
    for c in CASES {
        let dir = tree(c.files);
        let inv = load_with(&inventory_file(dir.path()), c.extra)
            .unwrap_or_else(|e| panic!("{}: {e}", c.what));
        let h = host(&inv, c.host);
        assert_eq!(value_of(h, c.key).as_deref(), Some(c.want), "{}", c.what);
        let from = origin_of(h, c.key).unwrap_or_default();
        let want_from = if c.from == "-e" {
            "-e".to_string()
        } else {
            format!("{}:", dir.path().join(c.from).display())
        };
        assert!(
            from == want_from || from.starts_with(&want_from),
            "{}: origin {from:?}, expected {want_from:?}",
            c.what
        );
    }
}

#[test]
fn extra_vars_from_a_file_name_the_file() {
    let dir = tree(&[
        ("hosts.ini", "[etcd]\nh1\n"),
        ("group_vars/all.yml", "etcd_data_dir: /gv\n"),
        ("extra.yml", "etcd_data_dir: /extra\n"),
    ]);
    let arg = format!("@{}", dir.path().join("extra.yml").display());
    let inv = load_with(&dir.path().join("hosts.ini"), &[&arg]).unwrap();
    let h = &inv.hosts[0];
    assert_eq!(h.etcd.data_dir, "/extra");
    assert_eq!(
        h.etcd.origins["etcd_data_dir"],
        format!("-e {arg}"),
        "origin of an -e @FILE value"
    );
}

#[test]
fn inventory_directory() {
    let dir = tree(&[
        ("10-hosts.ini", "[etcd]\nh1 ansible_host=198.18.3.1\n"),
        (
            "20-more.yml",
            "etcd:\n  hosts:\n    h2:\n      ansible_host: 198.18.3.2\n",
        ),
        ("sub/30-vars.ini", "[etcd:vars]\netcd_service=from-sub\n"),
        ("README.md", "not an inventory\n"),
        ("notes.txt", "nor this\n"),
        ("ansible.cfg", "[defaults]\n"),
        (".hidden", "[etcd]\nnope\n"),
        ("group_vars/etcd.yml", "ansible_port: 2222\n"),
        ("host_vars/h2.yml", "ansible_port: 2223\n"),
    ]);
    let inv = load_with(dir.path(), &[]).unwrap();
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["h1", "h2"]);
    assert_eq!(host(&inv, "h1").port, Some(2222));
    assert_eq!(host(&inv, "h2").port, Some(2223));
    assert_eq!(host(&inv, "h2").address, "198.18.3.2");
    assert!(inv.hosts.iter().all(|h| h.etcd.service == "from-sub"));
    assert_eq!(inv.path, dir.path());

    // A file in it that is no inventory is an error naming it (Ansible warns and skips it).
    std::fs::write(dir.path().join("notes"), "just some words\n").unwrap();
    let e = load_with(dir.path(), &[]).unwrap_err().to_string();
    assert!(
        e.contains(&dir.path().join("notes").display().to_string()),
        "{e}"
    );

    let empty = tree(&[("README.md", "x\n"), ("group_vars/all.yml", "a: 1\n")]);
    let e = load_with(empty.path(), &[]).unwrap_err().to_string();
    assert!(e.contains("no inventory file"), "{e}");
}

#[test]
fn parse_str_reads_no_vars_dirs() {
    let dir = tree(&[("group_vars/etcd.yml", "ansible_port: 2222\n")]);
    let inv = parse_str(
        "[etcd]\nh1\n",
        &dir.path().join("hosts.ini"),
        &LoadOptions {
            group: "etcd",
            limit: None,
            extra_vars: None,
            via_ansible: false,
        },
    )
    .unwrap();
    assert_eq!(inv.hosts[0].port, None);
}

const VAULT_VALUE: &str = "!vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  62313365396662343061393464336163383764373764613633653634306231386433626436623361\n  6134333665353966363534333632666535333761666131620a663537646436643839616531643561\n";

#[test]
fn vault_values() {
    // In a variable etcdroll ignores: ignored.
    let text = format!("etcd_data_dir: /d\nkube_token: {VAULT_VALUE}etcd_version: x\n");
    let dir = tree(&[
        ("hosts.ini", "[etcd]\nh1\n"),
        ("group_vars/all/vault.yml", &text),
    ]);
    let inv = load_with(&dir.path().join("hosts.ini"), &[]).unwrap();
    assert_eq!(inv.hosts[0].etcd.data_dir, "/d");
    assert!(inv.notes.is_empty(), "{:?}", inv.notes);

    // In one it reads: an error naming file:line and the variable, saying what to do.
    let file = dir.path().join("group_vars/all/vault.yml");
    std::fs::write(
        &file,
        format!("etcd_version: x\netcd_data_dir: {VAULT_VALUE}"),
    )
    .unwrap();
    let e = load_with(&dir.path().join("hosts.ini"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("{}:2:", file.display())), "{e}");
    assert!(e.contains("etcd_data_dir is an Ansible Vault value"), "{e}");
    assert!(e.contains("-e @FILE"), "{e}");
    assert!(
        !e.contains("ANSIBLE_VAULT;1.1") && !e.contains("6231"),
        "{e}"
    );
    // ... unless something above it sets the variable.
    let inv = load_with(&dir.path().join("hosts.ini"), &["etcd_data_dir=/e"]).unwrap();
    assert_eq!(inv.hosts[0].etcd.data_dir, "/e");

    // The become password: not used, and a note says to give it with -K.
    std::fs::write(
        &file,
        format!("ansible_become: true\nansible_become_pass: {VAULT_VALUE}"),
    )
    .unwrap();
    let inv = load_with(&dir.path().join("hosts.ini"), &[]).unwrap();
    assert_eq!(inv.hosts[0].become_password, None);
    assert!(inv.hosts[0].become_);
    assert_eq!(inv.notes.len(), 1, "{:?}", inv.notes);
    assert!(
        inv.notes[0].starts_with(&format!("{}:2:", file.display())),
        "{:?}",
        inv.notes
    );
    assert!(inv.notes[0].contains("-K"), "{:?}", inv.notes);
}

#[test]
fn vault_encrypted_files_are_not_read_and_say_so() {
    let dir = tree(&[
        ("hosts.ini", "[etcd]\nh1\n"),
        ("group_vars/all/main.yml", "etcd_data_dir: /plain\n"),
        (
            "group_vars/all/vault.yml",
            "$ANSIBLE_VAULT;1.1;AES256\n6231336539666234306139346433616338376437376461363365363430623138\n",
        ),
    ]);
    let inv = load_with(&dir.path().join("hosts.ini"), &[]).unwrap();
    assert_eq!(inv.hosts[0].etcd.data_dir, "/plain");
    let vault = dir.path().join("group_vars/all/vault.yml");
    assert_eq!(
        inv.notes,
        [format!(
            "{}: not read: Ansible Vault-encrypted; if it sets variables etcdroll uses, pass them with -e @FILE",
            vault.display()
        )]
    );

    // An -e @FILE that is encrypted: refused, saying what to do.
    let arg = format!("@{}", vault.display());
    let e = load_with(&dir.path().join("hosts.ini"), &[&arg])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Vault-encrypted") && e.contains("ansible-vault view"),
        "{e}"
    );
}

#[test]
fn templates_in_variables_etcdroll_reads_are_errors() {
    let dir = tree(&[
        ("hosts.ini", "[etcd]\nh1\n"),
        (
            "group_vars/etcd.yml",
            "kube_dir: \"{{ bin_dir }}/k\"\netcd_version: \"{{ v }}\"\nlist: [\"{{ a }}\"]\netcd_binary: \"{{ bin_dir }}/etcd\"\n",
        ),
    ]);
    let file = dir.path().join("group_vars/etcd.yml");
    let e = load_with(&dir.path().join("hosts.ini"), &[])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("{}:4:", file.display())), "{e}");
    assert!(e.contains("etcd_binary is a Jinja template"), "{e}");
    assert!(e.contains("-e etcd_binary=VALUE"), "{e}");
    // Templates in the variables it ignores are fine.
    std::fs::write(
        &file,
        "kube_dir: \"{{ bin_dir }}/k\"\netcd_version: \"{% if x %}1{% endif %}\"\n",
    )
    .unwrap();
    assert!(load_with(&dir.path().join("hosts.ini"), &[]).is_ok());
    // The same rule for the inventory file itself.
    let e = parse_str(
        "[etcd]\nh1 ansible_host='{{ ip }}'\n",
        Path::new("i.ini"),
        &LoadOptions {
            group: "etcd",
            limit: None,
            extra_vars: None,
            via_ansible: false,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("i.ini:2:") && e.contains("ansible_host is a Jinja template"),
        "{e}"
    );
    // A templated become password is a note, not used.
    std::fs::write(&file, "ansible_become_password: \"{{ vault_sudo }}\"\n").unwrap();
    let inv = load_with(&dir.path().join("hosts.ini"), &[]).unwrap();
    assert_eq!(inv.hosts[0].become_password, None);
    assert!(
        inv.notes[0].contains("ansible_become_password is a Jinja template"),
        "{:?}",
        inv.notes
    );
    assert!(!inv.notes[0].contains("vault_sudo"), "{:?}", inv.notes);
}

#[test]
fn broken_vars_files_name_the_file() {
    for (name, text, what) in [
        ("group_vars/etcd.yml", "etcd_data_dir: [oops\n", "syntax"),
        ("group_vars/etcd.yml", "- a\n- b\n", "a list, not a mapping"),
        ("host_vars/h1.json", "{\"ansible_port\": }", "bad JSON"),
        ("group_vars/all/x.yml", "a: 1\na: 2\n", "a key twice"),
    ] {
        let dir = tree(&[("hosts.ini", "[etcd]\nh1\n"), (name, text)]);
        let e = load_with(&dir.path().join("hosts.ini"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}:", dir.path().join(name).display())),
            "{what}: {e}"
        );
    }
    let dir = tree(&[
        ("hosts.ini", "[etcd]\nh1\n"),
        ("group_vars/all.yml", "\u{0}\u{ff}"),
    ]);
    std::fs::write(dir.path().join("group_vars/all.yml"), [0xff, 0xfe, 0]).unwrap();
    let e = load_with(&dir.path().join("hosts.ini"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("group_vars/all.yml") && e.contains("not UTF-8"),
        "{e}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn kubespray_sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubespray-sample")
}

#[test]
fn kubespray_sample_works_as_it_is() {
    for path in [kubespray_sample(), kubespray_sample().join("inventory.ini")] {
        let inv = load_with(&path, &[]).unwrap();
        let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["node1", "node2", "node3"],
            "etcd through [etcd:children]"
        );
        assert!(inv.notes.is_empty(), "{:?}", inv.notes);
        let etcd_yml = kubespray_sample().join("group_vars/all/etcd.yml");
        for h in &inv.hosts {
            assert_eq!(h.port, None);
            assert_eq!(h.cluster, "etcd");
            assert_eq!(h.etcd.data_dir, "/var/lib/etcd");
            assert_eq!(
                h.etcd.origins["etcd_data_dir"],
                format!("{}:3:16", etcd_yml.display())
            );
            // etcd_deployment_type: host is kubespray's and ignored.
            assert!(!h.etcd.origins.contains_key("etcd_deployment_type"));
            assert!(h.address.starts_with("198.18.0."));
        }
        assert_eq!(
            host(&inv, "node1").etcd.member_name.as_deref(),
            Some("etcd1")
        );
        assert_eq!(
            host(&inv, "node3").etcd.member_name,
            None,
            "an inline comment"
        );
    }
}

#[test]
fn kubespray_sample_with_a_port_in_group_vars_all() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&kubespray_sample(), dir.path());
    let all = dir.path().join("group_vars/all/all.yml");
    let mut text = std::fs::read_to_string(&all).unwrap();
    let line = text.lines().count() + 1;
    text.push_str("ansible_port: 2222\n");
    std::fs::write(&all, text).unwrap();
    let inv = load_with(&dir.path().join("inventory.ini"), &[]).unwrap();
    for h in &inv.hosts {
        assert_eq!(h.port, Some(2222), "{}", h.name);
        assert_eq!(
            h.origins["ansible_port"],
            format!("{}:{line}:15", all.display())
        );
        let line = 9 + h.name[4..].parse::<usize>().unwrap();
        let ini = dir.path().join("inventory.ini");
        assert!(
            h.origins["ansible_host"].starts_with(&format!("{}:{line}:", ini.display())),
            "{:?}",
            h.origins
        );
    }
}

/// Property: a mangled vars file is read or refused with a message naming it;
/// nothing panics.
#[test]
fn mangled_vars_files_never_panic() {
    let base = "---\nansible_port: 2222\netcd_data_dir: \"/var/lib/etcd\"\nlist:\n  - a\n  - {b: 1}\nx: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6231\n";
    let pieces = [
        "{{",
        "}}",
        "!vault",
        "$ANSIBLE_VAULT;",
        ":",
        "-",
        "\n",
        "  ",
        "'",
        "\"",
        "&a",
        "*a",
        "<<: *a",
        "\t",
        "\u{0}",
    ];
    let dir = tree(&[("hosts.ini", "[etcd]\nh1\n")]);
    let file = dir.path().join("group_vars/etcd.yml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..400 {
        let mut text: Vec<char> = base.chars().collect();
        for _ in 0..(1 + next() % 3) {
            let at = (next() as usize) % (text.len() + 1);
            if next() % 2 == 0 && at < text.len() {
                text.remove(at);
            } else {
                let p = pieces[(next() as usize) % pieces.len()];
                for (k, c) in p.chars().enumerate() {
                    text.insert(at + k, c);
                }
            }
        }
        std::fs::write(&file, text.into_iter().collect::<String>()).unwrap();
        if let Err(e) = load_with(&dir.path().join("hosts.ini"), &[]) {
            let e = e.to_string();
            assert!(e.contains("group_vars/etcd.yml"), "{e}");
        }
    }
}
