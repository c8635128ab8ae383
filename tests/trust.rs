//! Trust, checked against real OpenSSH: the same known_hosts file and the same
//! sshd, once with etcdroll and once with `ssh -o StrictHostKeyChecking=…`; both
//! must give the same verdict. Also: the sudo password never reaches the command.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A second sshd in a plain lab host's namespace, on `port`, offering only the
/// host keys named (an impostor that has not got the real host's other keys).
fn start_sshd(lab: &Lab, host: &LabHost, port: u16, key_types: &[&str]) -> std::path::PathBuf {
    start_sshd_with(lab, host, port, key_types, |_| String::new())
}

/// The same, with more sshd_config lines made once the host keys exist (a host
/// certificate, a trusted user CA).
fn start_sshd_with(
    lab: &Lab,
    host: &LabHost,
    port: u16,
    key_types: &[&str],
    extra: impl FnOnce(&Path) -> String,
) -> std::path::PathBuf {
    let dir = host.dir.join(format!("sshd-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = format!(
        "ListenAddress {}:{port}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAuthorizedKeysFile {}\n\
         PidFile {}/sshd.pid\nLogLevel ERROR\n",
        host.addr,
        lab.dir.join("authorized_keys").display(),
        dir.display()
    );
    for t in key_types {
        let key = dir.join(format!("ssh_host_{t}_key"));
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", t, "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(st.success());
        config.push_str(&format!("HostKey {}\n", key.display()));
    }
    config.push_str(&extra(&dir));
    std::fs::write(dir.join("sshd_config"), config).unwrap();
    let st = Command::new("ip")
        .args(["netns", "exec", &host.netns, "/usr/sbin/sshd", "-f"])
        .arg(dir.join("sshd_config"))
        .status()
        .unwrap();
    assert!(st.success());
    dir
}

/// A public key line's type and base64, of a fresh key of type `t`.
fn fresh_public_key(dir: &Path, name: &str, t: &str) -> String {
    let p = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", t, "-N", "", "-f"])
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(p.with_extension("pub"))
        .unwrap()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// OpenSSH's own verdict: does `ssh` log in with this known_hosts and policy?
fn openssh_logs_in(lab: &Lab, addr: &str, port: u16, known_hosts: &Path, policy: &str) -> bool {
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!("StrictHostKeyChecking={policy}"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
        ])
        .arg("-i")
        .arg(&lab.client_key)
        .arg("-p")
        .arg(port.to_string())
        .arg(format!("root@{addr}"))
        .arg("true")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
        .status
        .success()
}

/// known_hosts records only an ecdsa key for the host; an impostor presents only
/// ed25519. OpenSSH calls that a changed key and refuses, also with accept-new;
/// so must etcdroll, naming what is recorded and what was offered.
#[test]
fn a_host_known_only_by_another_key_type_is_changed_even_with_accept_new() {
    let Some(lab) = one_plain_host() else {
        return;
    };
    let host = &lab.plain_hosts[0];
    let s = Scratch::new();
    let port = 2222;
    start_sshd(&lab, host, port, &["ed25519"]);
    let kh = s.path("known_hosts");
    let recorded = fresh_public_key(s.dir.path(), "real-ecdsa", "ecdsa");
    let kh_text = format!("[{}]:{port} {recorded}\n", host.addr);
    std::fs::write(&kh, &kh_text).unwrap();
    let inv = one_host_inventory(
        &s,
        "inv.yml",
        &host.addr.to_string(),
        port,
        &lab.client_key,
        &kh,
    );
    let inv = inv.display().to_string();

    for policy in ["yes", "accept-new"] {
        assert!(
            !openssh_logs_in(&lab, &host.addr.to_string(), port, &kh, policy),
            "OpenSSH with StrictHostKeyChecking={policy} is the reference: it refuses"
        );
    }
    for extra in [&[][..], &["--accept-new-host-keys"][..]] {
        let mut args = vec!["exec", "-i", &inv, "--output", "plain"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "true"]);
        let out = etcdroll(s.dir.path(), &args);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(4), "{extra:?}: {t}");
        assert!(t.contains("HOST KEY CHANGED"), "{t}");
        assert!(
            t.contains("ecdsa-sha2-nistp256"),
            "names the recorded type: {t}"
        );
        assert!(t.contains("ssh-ed25519"), "names the offered type: {t}");
        assert_eq!(
            std::fs::read_to_string(&kh).unwrap(),
            kh_text,
            "the impostor's key is never recorded"
        );
    }
}

/// A lock path that is a symlink (here to /dev/null, where `set -C` would "create"
/// it for every run) is refused, and so is the turn file's: nothing is written
/// through a link.
#[test]
fn a_lock_that_is_a_symlink_is_refused() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let lock_dir = lab.members[1].dir.join("run");
    std::fs::create_dir_all(&lock_dir).unwrap();
    std::os::unix::fs::symlink("/dev/null", lock_dir.join("etcdroll.lock")).unwrap();
    let out = etcdroll(s.dir.path(), &["backup", "-i", &inv, "--output", "plain"]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("not a regular file"), "{t}");
    assert!(t.contains(&lab.members[1].name), "names the host: {t}");
    // The other members' locks were released again.
    for m in [&lab.members[0], &lab.members[2]] {
        assert!(!m.dir.join("run/etcdroll.lock").exists(), "{}", m.name);
    }
    assert!(std::fs::symlink_metadata(lock_dir.join("etcdroll.lock"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// Secrets given in the environment are not inherited by local children: the new
/// binary's `--version`, run on the controller, sees neither.
#[test]
fn local_children_never_inherit_the_secrets() {
    let s = Scratch::new();
    let dump = s.path("child-env");
    let fake = s.path("etcd");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nenv > '{}'\necho 'etcd Version: 3.5.99'\n",
            dump.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &fake,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let inv = s.path("inv.ini");
    // Loopback port 1: refused at once, nothing else is contacted.
    std::fs::write(&inv, "[etcd]\nm0 ansible_host=127.0.0.1 ansible_port=1\n").unwrap();
    let mut cmd = etcdroll_cmd(
        s.dir.path(),
        &[
            "upgrade",
            "-i",
            &inv.display().to_string(),
            "--binary",
            &fake.display().to_string(),
            "--dry-run",
            "--output",
            "plain",
        ],
    );
    cmd.env("ETCDROLL_BECOME_PASS", "become-Secret-123")
        .env("ETCDROLL_KEY_PASSPHRASE", "passphrase-Secret-456");
    let out = cmd.output().unwrap();
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    let env = std::fs::read_to_string(&dump).expect("the binary's --version ran");
    assert!(env.contains("HOME="), "{env}");
    assert!(
        !env.contains("Secret-123") && !env.contains("ETCDROLL_BECOME_PASS"),
        "{env}"
    );
    assert!(
        !env.contains("Secret-456") && !env.contains("ETCDROLL_KEY_PASSPHRASE"),
        "{env}"
    );
    assert!(
        !t.contains("Secret-123") && !t.contains("Secret-456"),
        "{t}"
    );
}

/// The same known_hosts cases against the same sshd, once with OpenSSH's own
/// `ssh -o StrictHostKeyChecking=…` and once with etcdroll: the same verdict.
#[test]
fn known_hosts_verdicts_match_openssh() {
    let Some(lab) = one_plain_host() else {
        return;
    };
    let host = &lab.plain_hosts[0];
    let s = Scratch::new();
    let port = 2222;
    let dir = start_sshd(&lab, host, port, &["ed25519"]);
    let key = std::fs::read_to_string(dir.join("ssh_host_ed25519_key.pub"))
        .unwrap()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let other = fresh_public_key(s.dir.path(), "other", "ed25519");
    let addr = host.addr.to_string();
    let hashed = {
        let f = s.path("to-hash");
        std::fs::write(&f, format!("[{addr}]:{port} {key}\n")).unwrap();
        assert!(Command::new("ssh-keygen")
            .arg("-q")
            .arg("-H")
            .arg("-f")
            .arg(&f)
            .status()
            .unwrap()
            .success());
        std::fs::read_to_string(&f).unwrap()
    };
    let cases: Vec<(&str, String, &str, bool)> = vec![
        (
            "[host]:port",
            format!("[{addr}]:{port} {key}\n"),
            "yes",
            true,
        ),
        ("port-less", format!("{addr} {key}\n"), "yes", true),
        (
            "port-less wildcard",
            "198.18.*.* KEY\n".replace("KEY", &key),
            "yes",
            true,
        ),
        (
            "negated port, then *",
            format!("![{addr}]:{port},* {key}\n"),
            "yes",
            true,
        ),
        ("hashed", hashed, "yes", true),
        (
            "changed",
            format!("[{addr}]:{port} {other}\n"),
            "accept-new",
            false,
        ),
        (
            "revoked",
            format!("@revoked [{addr}]:{port} {key}\n[{addr}]:{port} {key}\n"),
            "yes",
            false,
        ),
        ("unknown", String::new(), "yes", false),
        ("unknown, accept-new", String::new(), "accept-new", true),
    ];
    for (name, content, policy, expected) in cases {
        let ours = s.path(&format!(
            "kh-ours-{}",
            name.replace([' ', ',', '[', ']'], "_")
        ));
        let theirs = s.path(&format!(
            "kh-openssh-{}",
            name.replace([' ', ',', '[', ']'], "_")
        ));
        std::fs::write(&ours, &content).unwrap();
        std::fs::write(&theirs, &content).unwrap();
        let openssh = openssh_logs_in(&lab, &addr, port, &theirs, policy);
        assert_eq!(openssh, expected, "{name}: OpenSSH is the reference");
        let inv = one_host_inventory(&s, "inv.yml", &addr, port, &lab.client_key, &ours);
        let mut args = vec!["exec", "-i", inv.to_str().unwrap(), "--output", "plain"];
        if policy == "accept-new" {
            args.push("--accept-new-host-keys");
        }
        args.extend_from_slice(&["--", "true"]);
        let out = etcdroll(s.dir.path(), &args);
        let ok = out.status.code() == Some(0);
        assert_eq!(
            ok,
            expected,
            "{name}: etcdroll differs from OpenSSH: {}",
            text(&out)
        );
    }
}

fn keygen(dir: &Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&p)
        .status()
        .unwrap()
        .success());
    p
}

/// `ssh-keygen -s CA -I id [-h] -n PRINCIPALS -V VALIDITY KEY.pub`: KEY-cert.pub.
fn sign(ca: &Path, key_pub: &Path, host_cert: bool, principals: &str, validity: &str) {
    let mut c = Command::new("ssh-keygen");
    c.arg("-q").arg("-s").arg(ca).args(["-I", "etcdroll-test"]);
    if host_cert {
        c.arg("-h");
    }
    c.args(["-n", principals, "-V", validity]).arg(key_pub);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pubkey_line(p: &Path) -> String {
    std::fs::read_to_string(p.with_extension("pub"))
        .unwrap()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Host certificates: an sshd presenting a certificate signed by a host CA, and
/// known_hosts trusting that CA with `@cert-authority`. OpenSSH and etcdroll
/// agree on every case: a valid certificate, the wrong principal, an expired
/// one, a revoked CA, and a CA that is not the trusted one; and nothing is ever
/// recorded, with --accept-new-host-keys too.
#[test]
fn host_certificates_are_checked_as_openssh_does() {
    let Some(lab) = one_plain_host() else {
        return;
    };
    let host = &lab.plain_hosts[0];
    let s = Scratch::new();
    let addr = host.addr.to_string();
    let ca = keygen(s.dir.path(), "host-ca");
    let other_ca = keygen(s.dir.path(), "other-ca");
    let cases: Vec<(&str, u16, &str, &str, &Path, String, bool)> = vec![
        // name, port, principals, validity, signing CA, extra known_hosts lines, accepted
        ("valid", 2301, &addr, "-1h:+1h", &ca, String::new(), true),
        (
            "wrong principal",
            2302,
            "elsewhere.example",
            "-1h:+1h",
            &ca,
            String::new(),
            false,
        ),
        ("expired", 2303, &addr, "-2d:-1d", &ca, String::new(), false),
        (
            "revoked CA",
            2304,
            &addr,
            "-1h:+1h",
            &ca,
            format!("@revoked * {}\n", pubkey_line(&ca)),
            false,
        ),
        (
            "untrusted CA",
            2305,
            &addr,
            "-1h:+1h",
            &other_ca,
            String::new(),
            false,
        ),
    ];
    for (name, port, principals, validity, signer, extra, expected) in cases {
        let signer = signer.to_path_buf();
        let principals = principals.to_string();
        let validity = validity.to_string();
        start_sshd_with(&lab, host, port, &["ed25519"], move |dir| {
            let key = dir.join("ssh_host_ed25519_key.pub");
            sign(&signer, &key, true, &principals, &validity);
            format!(
                "HostCertificate {}\n",
                dir.join("ssh_host_ed25519_key-cert.pub").display()
            )
        });
        let kh_text = format!("@cert-authority 198.18.* {}\n{extra}", pubkey_line(&ca));
        let (ours, theirs) = (
            s.path(&format!("kh-ours-{port}")),
            s.path(&format!("kh-theirs-{port}")),
        );
        std::fs::write(&ours, &kh_text).unwrap();
        std::fs::write(&theirs, &kh_text).unwrap();
        assert_eq!(
            openssh_logs_in(&lab, &addr, port, &theirs, "yes"),
            expected,
            "{name}: OpenSSH is the reference"
        );
        let inv = one_host_inventory(
            &s,
            &format!("inv-{port}.yml"),
            &addr,
            port,
            &lab.client_key,
            &ours,
        );
        for accept_new in [false, true] {
            let mut args = vec!["exec", "-i", inv.to_str().unwrap(), "--output", "plain"];
            if accept_new {
                args.push("--accept-new-host-keys");
            }
            args.extend_from_slice(&["--", "true"]);
            let out = etcdroll(s.dir.path(), &args);
            let t = text(&out);
            assert_eq!(
                out.status.code() == Some(0),
                expected,
                "{name} (accept-new {accept_new}): {t}"
            );
            if !expected {
                assert_eq!(out.status.code(), Some(4), "{name}: {t}");
                assert!(
                    t.contains("certificate"),
                    "{name}: the reason names the certificate: {t}"
                );
            }
            assert_eq!(
                std::fs::read_to_string(&ours).unwrap(),
                kh_text,
                "{name}: nothing recorded"
            );
        }
    }
}

/// User certificates: a key that is not in authorized_keys logs in with a
/// certificate from a user CA the sshd trusts (`KEY-cert.pub` beside the key,
/// as OpenSSH finds it), and not without it.
#[test]
fn a_user_certificate_beside_the_key_logs_in() {
    let Some(lab) = one_plain_host() else {
        return;
    };
    let host = &lab.plain_hosts[0];
    let s = Scratch::new();
    let addr = host.addr.to_string();
    let user_ca = keygen(s.dir.path(), "user-ca");
    let port = 2310;
    let ca_pub = user_ca.with_extension("pub");
    let dir = start_sshd_with(&lab, host, port, &["ed25519"], move |_| {
        format!("TrustedUserCAKeys {}\n", ca_pub.display())
    });
    let kh = s.path("known_hosts");
    std::fs::write(
        &kh,
        format!(
            "[{addr}]:{port} {}\n",
            pubkey_line(&dir.join("ssh_host_ed25519_key"))
        ),
    )
    .unwrap();
    let key = keygen(s.dir.path(), "operator");
    let inv = one_host_inventory(&s, "inv.yml", &addr, port, &key, &kh);
    let run = || {
        etcdroll(
            s.dir.path(),
            &[
                "exec",
                "-i",
                inv.to_str().unwrap(),
                "--output",
                "plain",
                "--",
                "id -un",
            ],
        )
    };
    let out = run();
    assert_eq!(
        out.status.code(),
        Some(4),
        "no certificate, not authorized: {}",
        text(&out)
    );
    sign(
        &user_ca,
        &key.with_extension("pub"),
        false,
        "root",
        "-1h:+1h",
    );
    assert!(s.path("operator-cert.pub").exists());
    let out = run();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("root"), "{t}");

    // The same certificate held in ssh-agent (ssh-add loads KEY-cert.pub with
    // the key), with no key file in the inventory.
    let sock = s.path("agent.sock");
    let agent = Command::new("ssh-agent")
        .arg("-a")
        .arg(&sock)
        .output()
        .unwrap();
    assert!(agent.status.success());
    let pid: String = String::from_utf8_lossy(&agent.stdout)
        .split("SSH_AGENT_PID=")
        .nth(1)
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let add = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let listed = Command::new("ssh-add")
        .arg("-l")
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let inv_text = std::fs::read_to_string(&inv).unwrap();
    let no_key: String = inv_text
        .lines()
        .filter(|l| !l.contains("ansible_ssh_private_key_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let inv_agent = s.path("inv-agent.yml");
    std::fs::write(&inv_agent, no_key).unwrap();
    let mut c = etcdroll_cmd(
        s.dir.path(),
        &[
            "exec",
            "-i",
            inv_agent.to_str().unwrap(),
            "--output",
            "plain",
            "--",
            "id -un",
        ],
    );
    c.env("SSH_AUTH_SOCK", &sock);
    let out = c.output().unwrap();
    let _ = Command::new("kill").arg(&pid).status();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("CERT"),
        "the agent holds the certificate: {}",
        String::from_utf8_lossy(&listed.stdout)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "agent certificate: {}",
        text(&out)
    );
}

/// `-v` to `-vvv` go to stderr, never into the JSON stream, and never carry a
/// secret: -v the commands with duration and exit status, -vv the HTTP requests
/// through the tunnels, -vvv the SSH layer (negotiated algorithms, the host key
/// and its fingerprint, the keys tried, channels).
#[test]
fn verbosity_shows_commands_http_and_ssh_on_stderr_and_no_secret() {
    let Some(lab) = lab(LabSpec {
        members: 1,
        ..Default::default()
    }) else {
        return;
    };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let password = "verbose-Secret-789";
    let run = |args: &[&str]| {
        let mut c = etcdroll_cmd(s.dir.path(), args);
        c.env("ETCDROLL_BECOME_PASS", password);
        c.output().unwrap()
    };
    let out = run(&[
        "exec",
        "-i",
        &inv,
        "-b",
        "--privileged",
        "-v",
        "--output",
        "json",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    events(&out); // every stdout line is a JSON event
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("m0 |") && err.contains("ms | exit 0 |"),
        "{err}"
    );
    assert!(!err.contains("host key"), "-v has no SSH layer: {err}");

    let out = run(&["status", "-i", &inv, "-vv", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    events(&out);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("GET /version") && err.contains("| 200"),
        "{err}"
    );

    let out = run(&[
        "exec",
        "-i",
        &inv,
        "-b",
        "--privileged",
        "-vvv",
        "--output",
        "json",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    events(&out);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("negotiated kex") && err.contains("host key ssh-ed25519"),
        "{err}"
    );
    assert!(err.contains("SHA256:"), "{err}");
    assert!(err.contains("trying key file"), "{err}");
    assert!(err.contains("channel opened"), "{err}");
    for o in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(o).contains(password),
            "a secret in the output"
        );
    }
}
