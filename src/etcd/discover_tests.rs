use super::*;

/// What discover.sh prints on a kubespray member that runs (systemd 252's format).
const KUBESPRAY_RUNNING: &str = "\
unit.Id=etcd.service
unit.LoadState=loaded
unit.ActiveState=active
unit.SubState=running
unit.UnitFileState=enabled
unit.NeedDaemonReload=no
unit.Type=notify
unit.Restart=always
unit.MainPID=412
unit.ExecStart={ path=/usr/local/bin/etcd ; argv[]=/usr/local/bin/etcd ; ignore_errors=no ; start_time=[Tue 2026-12-01 10:00:00 UTC] ; stop_time=[n/a] ; pid=412 ; code=(null) ; status=0/0 }
unit.FragmentPath=/etc/systemd/system/etcd.service
unit.DropInPaths=
unit.EnvironmentFiles=/etc/etcd.env (ignore_errors=no)
unit.Environment=
unit.WorkingDirectory=
exe=/usr/local/bin/etcd
arg=/usr/local/bin/etcd
env=ETCD_DATA_DIR=/var/lib/etcd
env=ETCD_LISTEN_CLIENT_URLS=https://198.18.4.2:2379,https://127.0.0.1:2379
env=ETCD_ADVERTISE_CLIENT_URLS=https://198.18.4.2:2379
env=ETCD_TRUSTED_CA_FILE=/etc/ssl/etcd/ssl/ca.pem
env=ETCD_CERT_FILE=/etc/ssl/etcd/ssl/member-node1.pem
env=ETCD_KEY_FILE=/etc/ssl/etcd/ssl/member-node1-key.pem
env=ETCD_CLIENT_CERT_AUTH=true
env=ETCDCTL_ENDPOINTS=https://127.0.0.1:2379
env=ETCDCTL_CACERT=/etc/ssl/etcd/ssl/ca.pem
env=ETCDCTL_CERT=/etc/ssl/etcd/ssl/admin-node1.pem
env=ETCDCTL_KEY=/etc/ssl/etcd/ssl/admin-node1-key.pem
envfile=/etc/etcd.env	ETCD_DATA_DIR=/var/lib/etcd
envfile=/etc/etcd.env	ETCDCTL_ENDPOINTS=https://127.0.0.1:2379
";

/// Debian's package, stopped: only the unit and its files say anything.
const DEBIAN_STOPPED: &str = "\
unit.Id=etcd.service
unit.LoadState=loaded
unit.ActiveState=inactive
unit.SubState=dead
unit.UnitFileState=enabled
unit.NeedDaemonReload=no
unit.Type=notify
unit.Restart=on-abnormal
unit.MainPID=0
unit.ExecStart={ path=/usr/bin/etcd ; argv[]=/usr/bin/etcd $DAEMON_ARGS ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }
unit.FragmentPath=/lib/systemd/system/etcd.service
unit.EnvironmentFiles=/etc/default/etcd (ignore_errors=yes)
unit.Environment=ETCD_NAME=node2 ETCD_DATA_DIR=/var/lib/etcd/default
envfile=/etc/default/etcd	DAEMON_ARGS=\"--listen-client-urls http://0.0.0.0:2379 --advertise-client-urls=http://198.18.4.3:2379\"
owner=/usr/bin/etcd	etcd-server
";

fn vars() -> EtcdVars {
    EtcdVars::default()
}

fn found(list: &[Found], var: &str) -> (String, String) {
    let f = list
        .iter()
        .find(|f| f.var == var)
        .unwrap_or_else(|| panic!("{var} not discovered in {list:?}"));
    (f.value.clone(), f.source.clone())
}

#[test]
fn kubespray_member_describes_itself() {
    let d = parse(KUBESPRAY_RUNNING);
    let u = d.unit.as_ref().unwrap();
    assert_eq!(u.service_type, "notify");
    assert_eq!(u.restart, "always");
    assert_eq!(u.main_pid, Some(412));
    assert_eq!(u.exec_path.as_deref(), Some("/usr/local/bin/etcd"));
    let mut v = vars();
    let list = apply(&d, &mut v);
    assert_eq!(v.binary, "/usr/local/bin/etcd");
    assert_eq!(v.etcdctl_binary, "/usr/local/bin/etcdctl");
    assert_eq!(v.data_dir, "/var/lib/etcd");
    // etcdctl's own endpoint is the one known to work from the host.
    assert_eq!(v.client_url, "https://127.0.0.1:2379");
    assert_eq!(v.cacert.as_deref(), Some("/etc/ssl/etcd/ssl/ca.pem"));
    assert_eq!(v.cert.as_deref(), Some("/etc/ssl/etcd/ssl/admin-node1.pem"));
    assert_eq!(
        v.key.as_deref(),
        Some("/etc/ssl/etcd/ssl/admin-node1-key.pem")
    );
    assert_eq!(
        found(&list, "etcd_binary").1,
        "/proc/412/exe of etcd.service"
    );
    assert_eq!(
        found(&list, "etcd_data_dir").1,
        "ETCD_DATA_DIR in /proc/412/environ"
    );
    assert_eq!(
        v.origins.get("etcd_data_dir").map(String::as_str),
        Some("discovered: ETCD_DATA_DIR in /proc/412/environ")
    );
    assert!(unit_problems(u, &v.binary, &v.service, false).is_empty());
}

#[test]
fn what_the_user_set_wins() {
    let d = parse(KUBESPRAY_RUNNING);
    let mut v = vars();
    v.data_dir = "/srv/etcd".into();
    v.origins
        .insert("etcd_data_dir".into(), "hosts.ini:3:10".into());
    let list = apply(&d, &mut v);
    assert_eq!(v.data_dir, "/srv/etcd");
    assert!(list.iter().all(|f| f.var != "etcd_data_dir"));
    assert_eq!(v.origins["etcd_data_dir"], "hosts.ini:3:10");
}

#[test]
fn a_stopped_debian_member_is_read_from_its_unit_and_files() {
    let d = parse(DEBIAN_STOPPED);
    let mut v = vars();
    let list = apply(&d, &mut v);
    assert_eq!(v.binary, "/usr/bin/etcd");
    assert_eq!(v.etcdctl_binary, "/usr/bin/etcdctl");
    assert_eq!(found(&list, "etcd_binary").1, "ExecStart of etcd.service");
    assert_eq!(v.data_dir, "/var/lib/etcd/default");
    assert_eq!(
        found(&list, "etcd_data_dir").1,
        "ETCD_DATA_DIR in Environment= of etcd.service"
    );
    // $DAEMON_ARGS is expanded from /etc/default/etcd; a wildcard listener is
    // reached on loopback.
    assert_eq!(v.client_url, "http://127.0.0.1:2379");
    assert!(found(&list, "etcd_client_url").1.contains("ExecStart"));
    assert_eq!(v.cacert, None);
    let u = d.unit.as_ref().unwrap();
    let refused = unit_problems(u, &v.binary, &v.service, false);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("Debian package etcd-server"),
        "{}",
        refused[0]
    );
    assert!(refused[0].contains("etcdroll_replace_packaged_binary=true"));
    assert!(unit_problems(u, &v.binary, &v.service, true).is_empty());
}

#[test]
fn unit_states_that_refuse() {
    let base = parse(KUBESPRAY_RUNNING).unit.unwrap();
    type Case = (&'static str, fn(&mut UnitFacts), &'static str);
    let cases: &[Case] = &[
        (
            "masked",
            |u| u.load_state = "masked".into(),
            "systemctl unmask etcd",
        ),
        (
            "not found",
            |u| u.load_state = "not-found".into(),
            "set etcd_service",
        ),
        (
            "crash loop",
            |u| {
                u.active_state = "activating".into();
                u.sub_state = "auto-restart".into();
            },
            "activating (auto-restart)",
        ),
        ("failed", |u| u.active_state = "failed".into(), "has failed"),
        (
            "edited unit",
            |u| u.need_daemon_reload = true,
            "/etc/systemd/system/etcd.service changed on disk",
        ),
        (
            "wrapper",
            |u| u.exec_path = Some("/bin/sh".into()),
            "starts /bin/sh (ExecStart), not etcd_binary /usr/local/bin/etcd",
        ),
        (
            "shared binary",
            |u| u.sharing.push((77, "etcd-events.service".into())),
            "etcd-events.service (pid 77) runs the same binary",
        ),
    ];
    for (what, change, expected) in cases {
        let mut u = base.clone();
        change(&mut u);
        let problems = unit_problems(&u, "/usr/local/bin/etcd", "etcd", false);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what}: {problems:?}"
        );
    }
    // Disabled (not started at boot) is the operator's choice, not a refusal.
    let mut u = base.clone();
    u.unit_file_state = "disabled".into();
    assert!(unit_problems(&u, "/usr/local/bin/etcd", "etcd", false).is_empty());
}

#[test]
fn no_systemctl_means_nothing_discovered() {
    let d = parse("no_systemctl=1\n");
    assert!(d.unit.is_none());
    let mut v = vars();
    assert!(apply(&d, &mut v).is_empty());
    assert_eq!(v, vars());
}

#[test]
fn flags_in_both_forms_and_env_file_quoting() {
    let args: Vec<String> = ["etcd", "--data-dir", "/a", "-name=n1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(flag(&args, "data-dir").as_deref(), Some("/a"));
    assert_eq!(flag(&args, "name").as_deref(), Some("n1"));
    assert_eq!(flag(&args, "data"), None);
    assert_eq!(
        env_line("export ETCD_NAME='x y'"),
        Some(("ETCD_NAME".into(), "x y".into()))
    );
    let env = vec![("A".to_string(), "--x 1 --y".to_string())];
    assert_eq!(
        expand(&["e".into(), "$A".into(), "--z=${A}".into()], &env),
        vec!["e", "--x", "1", "--y", "--z=--x 1 --y"]
    );
}

/// discover.sh itself, against a stand-in `systemctl` and `dpkg-query` on PATH
/// and a real process: what it prints parses, the environment file is read, and
/// a password in the process's environment is never printed.
#[test]
fn the_script_reads_the_process_and_never_prints_a_password() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("etcd.env");
    std::fs::write(
        &env_file,
        "# kubespray\nETCD_DATA_DIR=/var/lib/etcd\nETCDCTL_PASSWORD=hunter2\nOTHER=x\nexport ETCD_NAME=\"n1\"\n",
    )
    .unwrap();
    let mut member = std::process::Command::new("sleep")
        .arg("30")
        .env("ETCD_DATA_DIR", "/from/environ")
        .env("ETCDCTL_PASSWORD", "hunter2")
        .env("ETCDCTL_USER", "root:hunter2")
        .spawn()
        .unwrap();
    let pid = member.id();
    let systemctl = format!(
        "#!/bin/sh\n\
         case \"$*\" in\n\
         *'-p MainPID --value'*) echo {pid} ;;\n\
         *'-p EnvironmentFiles --value'*) echo '{env} (ignore_errors=no)' ;;\n\
         *'-p ExecStart --value'*) echo '{{ path=/usr/bin/sleep ; argv[]=/usr/bin/sleep 30 ; ignore_errors=no }}' ;;\n\
         show*) printf 'Id=etcd.service\\nLoadState=loaded\\nActiveState=active\\nMainPID={pid}\\n' ;;\n\
         esac\n",
        env = env_file.display()
    );
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for (name, text) in [
        ("systemctl", systemctl.as_str()),
        (
            "dpkg-query",
            "#!/bin/sh\n[ \"$2\" = /usr/bin/sleep ] && echo 'coreutils: /usr/bin/sleep'\n",
        ),
    ] {
        let p = bin.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(DISCOVER_SH)
        .arg("etcdroll-discover")
        .arg("etcd")
        .arg("")
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .output()
        .unwrap();
    let _ = member.kill();
    let _ = member.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("hunter2"), "a secret was printed:\n{text}");
    let d = parse(&text);
    let u = d.unit.as_ref().unwrap();
    assert_eq!(u.main_pid, Some(pid));
    assert_eq!(u.exe.as_deref(), Some("/usr/bin/sleep"));
    assert_eq!(
        u.packaged.get("/usr/bin/sleep").map(String::as_str),
        Some("coreutils")
    );
    assert_eq!(d.cmdline, vec!["sleep", "30"]);
    assert!(d
        .environ
        .contains(&("ETCD_DATA_DIR".into(), "/from/environ".into())));
    let file = env_file.display().to_string();
    assert!(d
        .env_files
        .contains(&(file.clone(), "ETCD_DATA_DIR".into(), "/var/lib/etcd".into())));
    assert!(d
        .env_files
        .contains(&(file, "ETCD_NAME".into(), "n1".into())));
    assert!(d.env_files.iter().all(|(_, k, _)| k != "OTHER"));
    let mut v = EtcdVars::default();
    apply(&d, &mut v);
    assert_eq!(v.data_dir, "/from/environ");
}
