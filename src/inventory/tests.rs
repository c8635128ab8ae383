use super::host::from_ssh_args;
use super::*;

const YAML: &str = "\
all:
  vars:
    ansible_user: root
    etcd_backup_dir: /backups
  children:
    etcd:
      vars:
        ansible_port: 2200
        etcd_binary: /opt/etcd/bin/etcd
      children:
        etcd_east:
          vars:
            ansible_port: 2201
          hosts:
            e1:
              ansible_host: 10.0.0.1
            e2:
              ansible_host: 10.0.0.2
              ansible_port: 2222
      hosts:
        e3:
          ansible_host: 10.0.0.3
          ansible_become: true
          ansible_ssh_common_args: '-o ProxyJump=ops@bastion:2022 -o UserKnownHostsFile=/etc/kh'
";

const INI: &str = "\
[etcd_east]
e1 ansible_host=10.0.0.1
e2 ansible_host=10.0.0.2 ansible_port=2222

[etcd]
e3 ansible_host=10.0.0.3 ansible_become=true ansible_ssh_common_args='-o ProxyJump=ops@bastion:2022 -o UserKnownHostsFile=/etc/kh'

[etcd:children]
etcd_east

[etcd_east:vars]
ansible_port=2201

[etcd:vars]
ansible_port=2200
etcd_binary=/opt/etcd/bin/etcd

[all:vars]
ansible_user=root
etcd_backup_dir=/backups
";

fn opts(group: &str) -> LoadOptions<'_> {
    LoadOptions {
        group,
        limit: None,
        extra_vars: None,
        via_ansible: false,
    }
}

fn parse(text: &str, file: &str) -> Result<Inventory, InventoryError> {
    parse_str(text, Path::new(file), &opts("etcd"))
}

fn strip(mut hosts: Vec<Host>) -> Vec<Host> {
    for h in &mut hosts {
        h.location = Location::default();
        // Where a variable was written differs between the two files by design.
        h.etcd.origins.clear();
        h.origins.clear();
    }
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    hosts
}

#[test]
fn yaml_and_ini_forms_agree() {
    let y = parse(YAML, "inv.yml").unwrap();
    let i = parse(INI, "inv.ini").unwrap();
    assert_eq!(y.hosts.len(), 3);
    assert_eq!(strip(y.hosts), strip(i.hosts));
}

#[test]
fn precedence_host_over_child_over_parent_over_all() {
    let inv = parse(YAML, "inv.yml").unwrap();
    let get = |n: &str| inv.hosts.iter().find(|h| h.name == n).unwrap().clone();
    assert_eq!(get("e1").port, Some(2201), "child group beats parent");
    assert_eq!(get("e2").port, Some(2222), "host beats groups");
    assert_eq!(get("e3").port, Some(2200), "parent group");
    assert_eq!(get("e1").user.as_deref(), Some("root"), "all");
    assert_eq!(get("e1").etcd.binary, "/opt/etcd/bin/etcd");
    assert_eq!(
        get("e1").etcd.etcdctl_binary,
        "/opt/etcd/bin/etcdctl",
        "etcdctl beside etcd"
    );
    assert_eq!(get("e1").etcd.backup_dir, "/backups");
    assert_eq!(get("e1").cluster, "etcd");
    let e3 = get("e3");
    assert!(e3.become_);
    assert_eq!(e3.jump.as_deref(), Some("ops@bastion:2022"));
    assert_eq!(e3.known_hosts_file.as_deref(), Some(Path::new("/etc/kh")));
    assert_eq!(e3.location.line, 21);
}

fn err(text: &str, file: &str) -> String {
    parse(text, file).unwrap_err().to_string()
}

#[test]
fn errors_name_file_line_and_column() {
    let e = err(
        "all:\n  children:\n    etcd:\n      hosts:\n        m0:\n          ansible_port: abc\n",
        "i.yml",
    );
    assert_eq!(
        e,
        "i.yml:6:25: ansible_port must be a port number (1-65535), found \"abc\""
    );

    let e = err(
        "all:\n  children:\n    etcd:\n      hosts:\n        m0:\n          etcd_binry: /x\n",
        "i.yml",
    );
    assert!(
        e.starts_with("i.yml:6:23: unknown variable etcd_binry. Did you mean etcd_binary?"),
        "{e}"
    );

    let e = err("[etcd]\nm0 ansible_become=maybe\n", "i.ini");
    assert!(e.starts_with("i.ini:2:"), "{e}");
    assert!(e.contains("ansible_become must be a boolean"), "{e}");

    let e = err("[etcd]\nm0\nm1\nm0\n", "i.ini");
    assert_eq!(e, "i.ini:4:1: host m0 is listed twice in [etcd]");

    let e = err(
        "all:\n  children:\n    etcd:\n      hosts:\n        m0:\n        m0:\n",
        "i.yml",
    );
    assert!(e.starts_with("i.yml:6:"), "duplicate YAML key: {e}");

    let e = err(
        "all:\n  children:\n    etcd:\n      hosts: [oops\n",
        "i.yml",
    );
    assert!(e.starts_with("i.yml:"), "syntax: {e}");

    let e = err(
        "all:\n  children:\n    etcd:\n      hostz:\n        m0:\n",
        "i.yml",
    );
    assert!(e.starts_with("i.yml:4:"), "unknown key: {e}");

    let e = err("[etcd]\n[other]\nx\n", "i.ini");
    assert_eq!(e, "i.ini:1:2: group \"etcd\" has no hosts");

    let e = err("[other]\nx\n", "i.ini");
    assert!(
        e.contains("group \"etcd\" not found; groups are: other"),
        "{e}"
    );

    let e = err("[etcd]\nm0 etcd_client_url=127.0.0.1:2379\n", "i.ini");
    assert!(e.contains("etcd_client_url must start with http://"), "{e}");

    let e = err(
        "[etcd]\nm0 etcd_service_manager=command etcd_start_cmd=x\n",
        "i.ini",
    );
    assert!(e.contains("etcd_stop_cmd is not set"), "{e}");

    let e = err("[etcd:children]\na\n[a:children]\netcd\n[a]\nh\n", "i.ini");
    assert!(e.contains("its own descendant"), "{e}");
}

#[test]
fn limits() {
    let inv = |limit: &str| {
        parse_str(
            INI,
            Path::new("i.ini"),
            &LoadOptions {
                group: "etcd",
                limit: Some(limit),
                extra_vars: None,
                via_ansible: false,
            },
        )
    };
    let names = |r: Result<Inventory, InventoryError>| {
        r.unwrap()
            .hosts
            .into_iter()
            .map(|h| h.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(inv("e1,e3")),
        vec!["e3".to_string(), "e1".to_string()]
    );
    assert_eq!(names(inv("e*,!e2")).len(), 2);
    assert!(inv("nope*")
        .unwrap_err()
        .to_string()
        .contains("selects no host"));
}

#[test]
fn kubespray_ini_works_as_is() {
    let text = "\
[all]
node1 ansible_host=95.54.0.12 ip=10.3.0.1 etcd_member_name=etcd1
node2 ansible_host=95.54.0.13 ip=10.3.0.2 etcd_member_name=etcd2
node3 ansible_host=95.54.0.14 ip=10.3.0.3 etcd_member_name=etcd3

[kube_control_plane]
node1
node2

[etcd]
node1
node2
node3

[etcd:vars]
etcd_deployment_type=host
etcd_data_dir=/var/lib/etcd

[k8s_cluster:children]
kube_control_plane
";
    let inv = parse(text, "hosts.ini").unwrap();
    assert_eq!(inv.hosts.len(), 3);
    assert_eq!(inv.hosts[0].address, "95.54.0.12");
    assert_eq!(inv.hosts[2].etcd.member_name.as_deref(), Some("etcd3"));
}

#[test]
fn secrets_do_not_show_in_debug() {
    let inv = parse("[etcd]\nm0 ansible_become_pass=hunter2\n", "i.ini").unwrap();
    let dbg = format!("{:?}", inv.hosts);
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert_eq!(
        inv.hosts[0].become_password,
        Some(Secret::new("hunter2".into()))
    );
}

#[test]
fn ssh_args() {
    assert_eq!(
        from_ssh_args("-o ProxyJump=a@b"),
        (Some("a@b".into()), None)
    );
    assert_eq!(from_ssh_args("-J a@b,c"), (Some("a@b,c".into()), None));
    assert_eq!(
        from_ssh_args("-oProxyJump=x -o 'UserKnownHostsFile /k'"),
        (Some("x".into()), Some("/k".into()))
    );
}

/// Property: any mutation of a valid inventory parses or fails with a message;
/// nothing panics (the cargo-fuzz targets in fuzz/ go further, see scripts/fuzz).
#[test]
fn mutated_inventories_never_panic() {
    let mut state = 0x2545f4914f6cdd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pieces = [
        "[", "]", ":", "=", "'", "\"", "\n", "  ", "- ", "{", "}", "&a", "*a", "!!", "#", "etcd_x",
        "[1:3]", "\t", "\u{0}", "é",
    ];
    for (base, file) in [(YAML, "m.yml"), (INI, "m.ini")] {
        for _ in 0..3000 {
            let mut text: Vec<char> = base.chars().collect();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % (text.len() + 1);
                match next() % 3 {
                    0 if at < text.len() => {
                        text.remove(at);
                    }
                    1 => {
                        let p = pieces[(next() as usize) % pieces.len()];
                        for (k, c) in p.chars().enumerate() {
                            text.insert(at + k, c);
                        }
                    }
                    _ => {
                        let end = (at + (next() as usize) % 20).min(text.len());
                        let chunk: Vec<char> = text[at..end].to_vec();
                        for (k, c) in chunk.into_iter().enumerate() {
                            text.insert(at + k, c);
                        }
                    }
                }
            }
            let text: String = text.into_iter().collect();
            let _ = parse(&text, file);
        }
    }
}

#[test]
fn host_names_that_would_step_out_of_a_path_are_refused() {
    for bad in ["../up", "a/b", "x..y"] {
        let e = parse(&format!("[etcd]\n{bad} ansible_host=198.18.0.1\n"), "i.ini").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("i.ini:2"), "{msg}");
        assert!(msg.contains("no '/' and no '..'"), "{msg}");
    }
    assert!(parse("[etcd]\nnode-1.example ansible_host=198.18.0.1\n", "i.ini").is_ok());
}

fn with_extra(args: &[&str]) -> Result<Vec<Host>, InventoryError> {
    let extra = ExtraVars::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    let opts = LoadOptions {
        group: "etcd",
        limit: None,
        extra_vars: Some(&extra),
        via_ansible: false,
    };
    Ok(strip(parse_str(INI, Path::new("inv.ini"), &opts)?.hosts))
}

/// `-e` is above host and group vars, for every host; a later one wins.
#[test]
fn extra_vars_win_over_every_host_and_group_variable() {
    let hosts = with_extra(&[
        "ansible_port=2300 etcd_binary='/usr/bin/etcd x'",
        "ansible_port=2400",
    ])
    .unwrap();
    assert!(hosts.iter().all(|h| h.port == Some(2400)), "{hosts:#?}");
    assert!(hosts.iter().all(|h| h.etcd.binary == "/usr/bin/etcd x"));
    // e2's own ansible_port=2222 loses too, as in Ansible.
    assert_eq!(
        hosts.iter().find(|h| h.name == "e2").unwrap().port,
        Some(2400)
    );
    let json = with_extra(&[r#"{"ansible_user": "ops", "ansible_become": true}"#]).unwrap();
    assert!(json
        .iter()
        .all(|h| h.user.as_deref() == Some("ops") && h.become_));
}

#[test]
fn extra_vars_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("extra.yml");
    std::fs::write(&yml, "ansible_user: deploy\netcd_data_dir: /srv/etcd\n").unwrap();
    let json = dir.path().join("extra.json");
    std::fs::write(&json, r#"{"etcd_data_dir": "/data"}"#).unwrap();
    let at = |p: &std::path::Path| format!("@{}", p.display());
    let hosts = with_extra(&[&at(&yml)]).unwrap();
    assert!(hosts
        .iter()
        .all(|h| h.user.as_deref() == Some("deploy") && h.etcd.data_dir == "/srv/etcd"));
    let hosts = with_extra(&[&at(&yml), &at(&json)]).unwrap();
    assert!(hosts.iter().all(|h| h.etcd.data_dir == "/data"));
}

#[test]
fn a_bad_extra_var_says_what_it_takes() {
    let e = with_extra(&["etcd_binary"]).unwrap_err().to_string();
    assert!(e.contains("\"etcd_binary\" is not KEY=VALUE"), "{e}");
    let e = with_extra(&["@/nonexistent/extra.yml"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/extra.yml"), "{e}");
    let e = with_extra(&["{not json"]).unwrap_err().to_string();
    assert!(e.contains("not a JSON mapping"), "{e}");
    // A password on the command line is refused, its value never repeated.
    for arg in [
        "ansible_become_pass=s3cret",
        r#"{"ansible_password": "s3cret"}"#,
    ] {
        let e = with_extra(&[arg]).unwrap_err().to_string();
        assert!(e.contains("-e @FILE") && !e.contains("s3cret"), "{e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vault.yml");
    std::fs::write(&file, "ansible_become_pass: s3cret\n").unwrap();
    let hosts = with_extra(&[&format!("@{}", file.display())]).unwrap();
    assert!(hosts.iter().all(|h| h
        .become_password
        .as_ref()
        .is_some_and(|p| p.expose() == "s3cret")));
}
