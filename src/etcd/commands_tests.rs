//! The command builders' tests: outputs parsed, scripts run under real shells.

use super::*;

#[test]
fn probe_output_parses() {
    let out = "user=root\nbinary_version=3.4.23\nbinary_stat=755 0:0\nnew_binary_present=1\n\
               etcdctl_version=3.4.23\nservice_active=1\ndata_dir_exists=1\ndata_kib=124\n\
               has_v3_data=1\nbackup_free_kib=99999\n";
    let f = parse_probe(out);
    assert_eq!(f.binary_version.as_deref(), Some("3.4.23"));
    assert_eq!(f.binary_mode.as_deref(), Some("755"));
    assert_eq!(f.binary_owner.as_deref(), Some("0:0"));
    assert!(f.new_binary_present && f.service_active && f.has_v3_data && f.data_dir_exists);
    assert_eq!(f.data_kib, 124);
    assert_eq!(f.backup_free_kib, Some(99999));
    assert_eq!(f.old_binary_version, None);
}

#[test]
fn final_health_reads_both_etcdctl_outputs() {
    let v2 = "member 8e9e05c52164694d is healthy: got healthy result from http://127.0.0.1:2379\n\
              member 91bc3c398fb3c146 is healthy: got healthy result from http://10.0.1.2:2379\n\
              cluster is healthy\n";
    assert!(cluster_health_v2_ok(v2));
    let one_down = "member 8e9e05c52164694d is healthy: got healthy result from http://127.0.0.1:2379\n\
                    member 91bc3c398fb3c146 is unreachable: [http://10.0.1.2:2379] are all unreachable\n\
                    cluster is healthy\n";
    assert!(
        !cluster_health_v2_ok(one_down),
        "exit 0 and 'cluster is healthy' do not count"
    );
    assert!(!cluster_health_v2_ok(
        "Error: client: etcd cluster is unavailable\n"
    ));
    assert!(endpoint_health_ok(
        "http://127.0.0.1:2379 is healthy: successfully committed proposal: took = 1.2ms\n"
    ));
    assert!(!endpoint_health_ok(
        "http://127.0.0.1:2379 is unhealthy: failed to commit proposal: context deadline exceeded\n"
    ));
    let plain = EtcdVars::default();
    let v = |s| Version::parse(s).unwrap();
    assert_eq!(
        final_health(&plain, v("2.3.7"), v("3.0.0")).what,
        "etcdctl cluster-health (v2)"
    );
    assert_eq!(
        final_health(&plain, v("3.0.16"), v("2.3.0")).what,
        "etcdctl cluster-health (v2)"
    );
    assert_eq!(
        final_health(&plain, v("3.0.16"), v("3.0.0")).what,
        "etcdctl endpoint health"
    );
    let tls = EtcdVars {
        client_url: "https://127.0.0.1:2379".into(),
        ..EtcdVars::default()
    };
    assert_eq!(
        final_health(&tls, v("3.0.16"), v("3.0.0")).what,
        "etcdctl cluster-health (v2)"
    );
    assert_eq!(
        final_health(&tls, v("3.1.20"), v("3.1.0")).what,
        "etcdctl endpoint health"
    );
}

/// `ctl_version` reads every etcdctl's version, each its own way (2.3:
/// `--version`; 3.0–3.3: `version` only with ETCDCTL_API=3). Real binaries
/// from scripts/prepare; a version not installed is skipped loudly.
#[test]
fn etcdctl_versions_are_read_from_every_release() {
    let cache = concat!(env!("CARGO_MANIFEST_DIR"), "/target/etcd");
    let mut seen = 0;
    for v in ["2.3.7", "3.0.16", "3.3.27", "3.5.0"] {
        let ctl = format!("{cache}/{v}/etcdctl");
        if !std::path::Path::new(&ctl).exists() {
            eprintln!("!!!!! etcdctl {v} not installed (scripts/prepare): SKIPPED !!!!!");
            continue;
        }
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(etcdctl_version(&ctl).as_str())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), v);
        seen += 1;
    }
    if std::path::Path::new("/usr/bin/etcdctl").exists() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(etcdctl_version("/usr/bin/etcdctl").as_str())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3.4.23");
        seen += 1;
    }
    let builds = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/etcd-builds");
    if std::env::var_os("ETCDROLL_REQUIRE_LAB").is_some() && std::path::Path::new(builds).is_dir() {
        assert_eq!(seen, 5, "scripts/test installs every one of them");
    }
}

/// The probe script is plain sh: run it locally against a fake layout.
#[test]
fn probe_runs_in_sh_and_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("etcdroll-probe-{}", std::process::id()));
    let bin = dir.join("bin dir");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(dir.join("data/member/snap")).unwrap();
    std::fs::write(dir.join("data/member/snap/db"), b"x").unwrap();
    let etcd = bin.join("etcd");
    std::fs::write(&etcd, "#!/bin/sh\necho 'etcd Version: 3.4.23'\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&etcd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let vars = EtcdVars {
        binary: etcd.display().to_string(),
        etcdctl_binary: bin.join("etcdctl").display().to_string(),
        data_dir: dir.join("data").display().to_string(),
        backup_dir: dir.join("backups/not/yet").display().to_string(),
        service_manager: ServiceManager::Command,
        status_cmd: Some("true".into()),
        ..crate::etcd::EtcdVars::default()
    };
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::write(
        dir.join("run/etcdroll.turn"),
        "run abc (upgrade to 3.5.0)\n",
    )
    .unwrap();
    let line = probe(&vars, &dir.join("run/etcdroll.turn").display().to_string()).to_string();
    // Sent as `sh -c SCRIPT NAME ARGS…`: run the same words under each shell.
    let words = line.strip_prefix("sh ").unwrap();
    for shell in ["sh", "dash", "bash"] {
        let out = std::process::Command::new(shell)
            .arg("-c")
            .arg(format!("exec {shell} {words}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let f = parse_probe(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(f.binary_version.as_deref(), Some("3.4.23"), "{shell}");
        assert!(
            f.has_v3_data && f.service_active && f.data_dir_exists,
            "{shell}"
        );
        assert!(f.backup_free_kib.unwrap_or(0) > 0, "{shell}");
        assert_eq!(
            f.unfinished_turn.as_deref(),
            Some("run abc (upgrade to 3.5.0)"),
            "{shell}"
        );
        assert!(!dir.join("backups").exists(), "{shell}: changes nothing");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_final_check_names_what_the_guide_and_the_lab_know() {
    let v = |s| Version::parse(s).unwrap();
    let tls = EtcdVars {
        client_url: "https://127.0.0.1:2379".into(),
        ..EtcdVars::default()
    };
    assert!(final_health_hints(&tls, v("3.0.0"), "").contains("known issue"));
    assert_eq!(final_health_hints(&tls, v("3.1.0"), ""), "");
    let plain = EtcdVars::default();
    assert!(
        final_health_hints(&plain, v("3.5.0"), "Error: etcdserver: not capable")
            .contains("--snapshot-count")
    );
    assert_eq!(final_health_hints(&plain, v("3.5.0"), "unhealthy"), "");
}
