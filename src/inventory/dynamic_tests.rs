//! Inventory scripts written to a temp dir, and `ansible-inventory` stood in
//! for by a script (the real one is in tests/ansible_oracle.rs).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::{load, InventoryError, LoadOptions};
use super::*;

fn opts(via_ansible: bool) -> LoadOptions<'static> {
    LoadOptions {
        group: "etcd",
        limit: None,
        extra_vars: None,
        via_ansible,
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn script_at(path: &Path, body: &str) -> PathBuf {
    write(path, &format!("#!/bin/sh\n{body}"));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

const WITH_META: &str = r#"
[ "$1" = --list ] || { echo "called with $*" >&2; exit 3; }
cat <<'EOF'
{
  "all": {"vars": {"ansible_user": "core", "etcd_backup_dir": "/from-script-all"}},
  "etcd": {
    "hosts": ["etcd1"],
    "vars": {"ansible_port": 2200, "etcd_data_dir": "/from-script-etcd"},
    "children": ["etcd_east"]
  },
  "etcd_east": ["etcd2", "etcd3"],
  "other": {"hosts": ["web1"]},
  "_meta": {"hostvars": {
    "etcd1": {"ansible_host": "198.18.0.1"},
    "etcd2": {"ansible_host": "198.18.0.2", "ansible_port": 2222},
    "etcd3": {"ansible_host": "198.18.0.3", "etcd_data_dir": "/from-script-host"},
    "web1": {"ansible_host": "198.18.0.9"}
  }}
}
EOF
"#;

#[test]
fn a_script_with_meta_gives_groups_children_and_vars() {
    let dir = tempfile::tempdir().unwrap();
    let script = script_at(&dir.path().join("inv.sh"), WITH_META);
    // group_vars beside the script apply, as in Ansible: above the script's
    // group vars, below its host vars.
    write(
        &dir.path().join("group_vars/etcd.yml"),
        "etcd_data_dir: /from-group-vars\netcd_service: etcd-gv\n",
    );
    write(
        &dir.path().join("host_vars/etcd2.yml"),
        "ansible_port: 2300\n",
    );
    let inv = load(&script, &opts(false)).unwrap();
    let names: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["etcd1", "etcd2", "etcd3"]);
    let h = |n: &str| inv.hosts.iter().find(|h| h.name == n).unwrap();
    assert_eq!(h("etcd1").address, "198.18.0.1");
    assert_eq!(h("etcd1").port, Some(2200));
    assert_eq!(h("etcd1").user.as_deref(), Some("core"));
    assert_eq!(h("etcd1").etcd.data_dir, "/from-group-vars");
    assert_eq!(h("etcd1").etcd.backup_dir, "/from-script-all");
    assert_eq!(h("etcd1").etcd.service, "etcd-gv");
    assert_eq!(h("etcd2").port, Some(2300), "host_vars/ beat the script's");
    assert_eq!(h("etcd3").port, Some(2200), "through children");
    assert_eq!(h("etcd3").etcd.data_dir, "/from-script-host");
    // Where each value was set: the script's output, or the vars file.
    let list = format!("{} --list", script.display());
    assert_eq!(h("etcd1").origins["ansible_host"], list);
    assert_eq!(h("etcd1").location.to_string(), list);
    assert!(
        h("etcd1").etcd.origins["etcd_data_dir"].contains("group_vars/etcd.yml:1:"),
        "{:?}",
        h("etcd1").etcd.origins
    );
}

#[test]
fn a_script_without_meta_is_asked_for_each_host() {
    let dir = tempfile::tempdir().unwrap();
    let script = script_at(
        &dir.path().join("inv.sh"),
        r#"
case "$1" in
--list) echo '{"etcd": {"hosts": ["etcd1", "etcd2"], "vars": {"ansible_user": "ops"}}, "web": ["web1"]}' ;;
--host)
  # Relative to the script's directory: its cwd.
  [ -f ./marker ] || { echo "not run in its directory" >&2; exit 4; }
  case "$2" in
  etcd1) echo '{"ansible_host": "198.18.1.1", "ansible_user": "root"}' ;;
  etcd2) echo '{"ansible_host": "198.18.1.2"}' ;;
  *) echo '{}' ;;
  esac ;;
*) exit 2 ;;
esac
"#,
    );
    write(&dir.path().join("marker"), "");
    let inv = load(&script, &opts(false)).unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = inv
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.address.as_str(), h.user.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("etcd1", "198.18.1.1", Some("root")),
            ("etcd2", "198.18.1.2", Some("ops"))
        ]
    );
    assert_eq!(
        inv.hosts[0].origins["ansible_host"],
        format!("{} --host etcd1", script.display())
    );
}

fn load_err(path: &Path) -> String {
    match load(path, &opts(false)) {
        Ok(inv) => panic!("loaded {:?}", inv.hosts),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_failing_script_is_an_error_naming_it_and_what_it_said() {
    let dir = tempfile::tempdir().unwrap();
    let script = script_at(
        &dir.path().join("cloud.sh"),
        "echo 'partial' ; echo 'line one' >&2; echo 'credentials expired' >&2; exit 7\n",
    );
    let e = load_err(&script);
    assert!(e.contains(&format!("{} --list", script.display())), "{e}");
    assert!(e.contains("exit status: 7"), "{e}");
    assert!(e.contains("credentials expired"), "{e}");
    assert!(e.contains("line one"), "{e}");
}

#[test]
fn bad_json_is_an_error_naming_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let script = script_at(&dir.path().join("inv.py"), "echo 'etcd1 etcd2'\n");
    let e = load_err(&script);
    assert!(
        e.starts_with(&format!("{} --list: ", script.display())),
        "{e}"
    );
    assert!(e.contains("not the JSON of an Ansible inventory"), "{e}");
    assert!(e.contains("etcd1 etcd2"), "{e}");

    let script = script_at(
        &dir.path().join("hosts-not-list.sh"),
        r#"echo '{"etcd": {"hosts": "etcd1"}}'"#,
    );
    let e = load_err(&script);
    assert!(e.contains("group \"etcd\" hosts: expected a list"), "{e}");

    let script = script_at(
        &dir.path().join("bad-host.sh"),
        r#"[ "$1" = --list ] && echo '{"etcd": ["etcd1"]}' || echo 'oops'"#,
    );
    let e = load_err(&script);
    assert!(
        e.starts_with(&format!("{} --host etcd1: not JSON", script.display())),
        "{e}"
    );
}

#[test]
fn a_script_that_hangs_is_killed_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let slow = script_at(&dir.path().join("slow.sh"), "sleep 30\n");
    let started = std::time::Instant::now();
    let e = script(&slow, Duration::from_millis(300)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let e = e.to_string();
    assert!(e.contains("slow.sh --list: did not finish within"), "{e}");
}

#[test]
fn a_script_without_execute_bit_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inv.sh");
    write(&path, "#!/bin/sh\necho '{}'\n");
    let e = load_err(&path);
    assert!(e.contains("without an execute bit"), "{e}");
    // An executable YAML file (loose permissions) is read as YAML.
    let yml = dir.path().join("hosts.yml");
    write(
        &yml,
        "etcd:\n  hosts:\n    etcd1:\n      ansible_host: 198.18.2.1\n",
    );
    std::fs::set_permissions(&yml, std::fs::Permissions::from_mode(0o755)).unwrap();
    let inv = load(&yml, &opts(false)).unwrap();
    assert_eq!(inv.hosts[0].address, "198.18.2.1");
}

#[test]
fn plugin_configs_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("aws_ec2.yml");
    write(
        &p,
        "# cloud\nplugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n",
    );
    assert!(is_plugin_config(&p));
    let p = dir.path().join("static.yml");
    write(&p, "all:\n  vars:\n    plugin: not-a-key-at-the-top\n");
    assert!(!is_plugin_config(&p));
    let p = dir.path().join("constructed.ini");
    write(&p, "plugin: constructed\n");
    assert!(!is_plugin_config(&p));
}

/// `ansible-inventory` itself stood in for by a script: what it is given, and
/// what comes of its output; then not installed at all. One test, as they
/// share the environment variable.
#[test]
fn plugin_configs_and_the_flag_go_through_ansible_inventory() {
    let dir = tempfile::tempdir().unwrap();
    let args = dir.path().join("args");
    let fake = script_at(
        &dir.path().join("bin/ansible-inventory"),
        &format!(
            r#"echo "$@" > {}
echo '{{"all": {{"children": ["ungrouped", "etcd"], "vars": {{"ansible_user": "u"}}}}, "ungrouped": {{}},
 "etcd": {{"hosts": ["etcd1"], "vars": {{"etcd_data_dir": "/from-plugin"}}}},
 "_meta": {{"hostvars": {{"etcd1": {{"ansible_host": "198.18.3.1"}}}}}}}}'
"#,
            args.display()
        ),
    );
    let inv_dir = dir.path().join("inv");
    let config = inv_dir.join("gen.yml");
    write(&config, "plugin: ansible.builtin.generator\n");
    write(&inv_dir.join("group_vars/all.yml"), "ansible_user: gv\n");
    std::env::set_var(ANSIBLE_INVENTORY_ENV, &fake);
    let inv = load(&config, &opts(false));
    let called = std::fs::read_to_string(&args).unwrap_or_default();
    let inv = inv.unwrap();
    assert_eq!(
        called.trim(),
        format!("-i {} --list --export", config.display())
    );
    let h = &inv.hosts[0];
    assert_eq!(
        (h.name.as_str(), h.address.as_str(), h.user.as_deref()),
        ("etcd1", "198.18.3.1", Some("gv"))
    );
    assert_eq!(h.etcd.data_dir, "/from-plugin");
    assert_eq!(
        h.origins["ansible_host"],
        format!("{} (ansible-inventory)", config.display())
    );

    // --inventory-via-ansible: a static file too; a directory with a plugin
    // config in it goes whole.
    let ini = inv_dir.join("hosts.ini");
    write(&ini, "[etcd]\netcd9\n");
    load(&ini, &opts(true)).unwrap();
    let called = std::fs::read_to_string(&args).unwrap();
    assert!(
        called.starts_with(&format!("-i {} ", ini.display())),
        "{called}"
    );
    load(&inv_dir, &opts(false)).unwrap();
    let called = std::fs::read_to_string(&args).unwrap();
    assert!(
        called.starts_with(&format!("-i {} ", inv_dir.display())),
        "{called}"
    );

    // It fails: its stderr.
    let failing = script_at(
        &dir.path().join("bin/failing"),
        "echo '[ERROR]: plugin needs boto3' >&2; exit 1\n",
    );
    std::env::set_var(ANSIBLE_INVENTORY_ENV, &failing);
    let e = load(&config, &opts(false)).unwrap_err().to_string();
    assert!(e.contains("plugin needs boto3"), "{e}");
    assert!(e.contains(&config.display().to_string()), "{e}");

    // Not installed.
    std::env::set_var(ANSIBLE_INVENTORY_ENV, dir.path().join("bin/nothing-here"));
    let e = load(&config, &opts(false)).unwrap_err();
    std::env::remove_var(ANSIBLE_INVENTORY_ENV);
    let InventoryError::File { path, message } = e else {
        panic!("{e:?}")
    };
    assert_eq!(path, config);
    assert!(message.contains("is not installed"), "{message}");
    assert!(message.contains("pipx install ansible-core"), "{message}");
    assert!(message.contains("pip install ansible-core"), "{message}");
    assert!(
        message.contains("static INI or YAML inventory needs no Ansible"),
        "{message}"
    );
}
