//! Shared helpers for the lab tests: start a lab (or skip loudly), run the real
//! etcdroll binary against it with a private HOME, parse its JSON events.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use etcdroll_lab::{Lab, LabHost, LabSpec};
use serde_json::Value;

/// Start a lab. A lab test that cannot run must not pass: without root and
/// network namespaces it fails with the reason (run scripts/test as root).
pub fn lab(spec: LabSpec) -> Option<Lab> {
    if let Err(why) = Lab::available() {
        panic!("\n!!!!! this lab test cannot run: {why}. Run scripts/test as root !!!!!\n");
    }
    Some(Lab::start(&spec).expect("lab starts"))
}

/// A binary of an old etcd (2.3–3.3, from ../shared/etcd-builds via
/// scripts/prepare), or None with a loud message where that folder was missing.
pub fn old_etcd(version: &str, name: &str) -> Option<String> {
    match Lab::etcd_binaries(version) {
        Ok(_) => Some(etcd_bin(version, name)),
        Err(e) => {
            if std::env::var_os("ETCDROLL_REQUIRE_LAB").is_some()
                && std::path::Path::new(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../shared/etcd-builds"
                ))
                .is_dir()
            {
                panic!("etcd {version} should have been installed from ../shared/etcd-builds: {e}");
            }
            eprintln!(
                "\n!!!!! SKIPPED: etcd {version} is not installed ({e}). It comes from ../shared/etcd-builds \
                 (see README, Versions) !!!!!\n"
            );
            None
        }
    }
}

/// A lab of an old etcd, or None (loudly) where its binaries are missing.
pub fn old_lab(version: &str, spec: LabSpec) -> Option<Lab> {
    old_etcd(version, "etcd")?;
    lab(LabSpec {
        version: version.into(),
        ..spec
    })
}

/// The newest etcd 3.5 of Debian sid, as scripts/prepare found it.
pub fn newest_debian_35() -> String {
    debian_version("sid")
}

/// The etcd of a Debian suite, as scripts/prepare found it (target/etcd/SUITE-version).
pub fn debian_version(suite: &str) -> String {
    let p = format!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/etcd/{}-version"),
        suite
    );
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{p}: {e}: run scripts/prepare"))
        .trim()
        .to_string()
}

/// A lab of one host with sshd and no etcd.
pub fn one_plain_host() -> Option<Lab> {
    lab(LabSpec {
        members: 0,
        plain_hosts: 1,
        ..Default::default()
    })
}

pub fn lab_default() -> Option<Lab> {
    lab(LabSpec::default())
}

/// A scratch directory that also serves as HOME for etcdroll, so the operator's own
/// ~/.ssh never leaks into a test.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn etcdroll_cmd(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_etcdroll"));
    c.args(args)
        .env("HOME", home)
        .env_remove("SSH_AUTH_SOCK")
        .env("NO_COLOR", "1")
        .env("CLICOLOR", "0");
    c
}

/// Run etcdroll to completion.
pub fn etcdroll(home: &Path, args: &[&str]) -> Output {
    etcdroll_cmd(home, args).output().expect("etcdroll runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "--- exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The JSON events of a `--output json` run (every stdout line must parse).
pub fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn of_kind<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["event"] == kind).collect()
}

/// The lab's inventory, written into the scratch dir.
pub fn inventory(lab: &Lab, scratch: &Scratch) -> String {
    let p = scratch.path("inventory.yml");
    lab.write_inventory(&p).expect("inventory written");
    p.display().to_string()
}

/// Path of a cached etcd binary of a version (see scripts/prepare).
pub fn etcd_bin(version: &str, name: &str) -> String {
    let (etcd, etcdctl, etcdutl) = Lab::etcd_binaries(version).expect("binaries present");
    match name {
        "etcd" => etcd,
        "etcdctl" => etcdctl,
        _ => etcdutl.expect("etcdutl"),
    }
    .display()
    .to_string()
}

/// The pid of a member's etcd, read from its service's pid file.
pub fn etcd_pid(host: &LabHost) -> String {
    std::fs::read_to_string(host.dir.join("etcd.pid"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// `etcd --version` of the binary currently installed on a member.
pub fn installed_version(host: &LabHost) -> String {
    let out = Command::new(&host.etcd_binary)
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

/// `etcdroll upgrade -i INV --binary <etcd 3.5.1> --yes --output json`, to completion.
pub fn upgrade_351(s: &Scratch, inv: &str) -> Output {
    with_upgrade_351_args(inv, |args| etcdroll(s.dir.path(), args))
}

/// The same upgrade, started with its JSON events on a pipe.
pub fn spawn_upgrade_351(s: &Scratch, inv: &str) -> std::process::Child {
    with_upgrade_351_args(inv, |args| {
        etcdroll_cmd(s.dir.path(), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdroll starts")
    })
}

fn with_upgrade_351_args<R>(inv: &str, f: impl FnOnce(&[&str]) -> R) -> R {
    let bin = etcd_bin("3.5.1", "etcd");
    f(&[
        "upgrade", "-i", inv, "--binary", &bin, "--yes", "--output", "json",
    ])
}

/// Every member's installed binary is `version`.
pub fn assert_all_on(lab: &Lab, version: &str) {
    for m in &lab.members {
        assert_eq!(installed_version(m), version, "{}", m.name);
    }
}

/// A fake etcd that prints a valid version but never serves.
pub fn never_healthy_binary(s: &Scratch, version: &str) -> String {
    let p = s.path("etcd-never-healthy");
    std::fs::write(
        &p,
        format!("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'etcd Version: {version}'; exit 0; fi\nexec sleep 100000\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        &p,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    p.display().to_string()
}

/// `upgrade --binary BIN`, killed (SIGKILL) as soon as the first member is done:
/// the cluster is left mixed. Returns that member's host.
pub fn killed_after_first_member(s: &Scratch, inv: &str, bin: &str) -> String {
    let mut child = etcdroll_cmd(
        s.dir.path(),
        &[
            "upgrade", "-i", inv, "--binary", bin, "--yes", "--output", "json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "host_done" {
            first = v["host"].as_str().unwrap().to_string();
            child.kill().unwrap();
            break;
        }
    }
    let _ = child.wait();
    assert!(!first.is_empty(), "no member finished before the kill");
    first
}

/// A one-host inventory (group `etcd`) for a host at `addr:port`, logging in as
/// root with `key` and checking its host key against `known_hosts`.
pub fn one_host_inventory(
    s: &Scratch,
    file: &str,
    addr: &str,
    port: u16,
    key: &Path,
    known_hosts: &Path,
) -> PathBuf {
    let inv = s.path(file);
    std::fs::write(
        &inv,
        format!(
            "all:\n  children:\n    etcd:\n      hosts:\n        h:\n          ansible_host: \"{addr}\"\n          \
             ansible_port: {port}\n          ansible_user: root\n          ansible_ssh_private_key_file: {}\n          \
             etcdroll_known_hosts: {}\n",
            key.display(),
            known_hosts.display()
        ),
    )
    .unwrap();
    inv
}
