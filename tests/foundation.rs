//! The foundation against the lab: real OpenSSH sshd and real etcd 3.4.23 members
//! in network namespaces. `exec`, `status`, host key checks, unreachable hosts,
//! inventory errors, quoting.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn exec_runs_on_every_host_and_reports_a_recap() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Each host's block holds its own address, and only its own.
    for h in &lab.members {
        let block: String = stdout
            .split(&format!("{} | ", h.name))
            .nth(1)
            .unwrap_or_else(|| panic!("no block for {}: {t}", h.name))
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            block.contains(&format!("inet {}/", h.addr)),
            "{} block: {block}\n{t}",
            h.name
        );
    }
    assert!(stdout.contains("RECAP"), "{t}");
    assert!(stdout.contains("ok=3 failed=0 unreachable=0"), "{t}");

    // A command that fails on one host only: non-zero exit naming it.
    let bad = &lab.members[1];
    let script = format!(
        "ip -4 -o addr show dev eth0 | grep -q 'inet {}/' && exit 7 || true",
        bad.addr
    );
    let out = etcdroll(
        s.dir.path(),
        &["exec", "-i", &inv, "--output", "plain", "--", &script],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{} | FAILED | rc=7", bad.name)),
        "{t}"
    );
    assert!(stdout.contains("ok=2 failed=1 unreachable=0"), "{t}");
}

#[test]
fn exec_passes_hostile_arguments_through_unchanged() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let marker = format!("/tmp/etcdroll-injected-{}", std::process::id());
    let hostile = [
        "with space".to_string(),
        "it's \"quoted\"".to_string(),
        format!("$(touch {marker})"),
        format!("`touch {marker}`"),
        format!("x; touch {marker}"),
        "$HOME".to_string(),
    ];
    let mut args = vec![
        "exec",
        "-i",
        inv.as_str(),
        "--output",
        "json",
        "--limit",
        "m0",
        "--",
        "printf",
        "[%s]\\n",
    ];
    args.extend(hostile.iter().map(String::as_str));
    let out = etcdroll(s.dir.path(), &args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    let res = of_kind(&evs, "exec_result");
    assert_eq!(res.len(), 1, "{t}");
    let want: String = hostile.iter().map(|h| format!("[{h}]\n")).collect();
    assert_eq!(res[0]["stdout"].as_str().unwrap(), want, "{t}");
    assert!(!Path::new(&marker).exists(), "injection ran");
}

use std::path::Path;

#[test]
fn status_shows_three_healthy_members_and_one_leader() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let out = etcdroll(s.dir.path(), &["status", "-i", &inv, "--output", "json"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let evs = events(&out);
    let rows = of_kind(&evs, "member_status");
    assert_eq!(rows.len(), 3, "{t}");
    for r in &rows {
        assert_eq!(r["healthy"], true, "{t}");
        assert_eq!(r["server_version"], "3.4.23", "{t}");
        assert_eq!(r["cluster_version"], "3.4.0", "{t}");
        assert!(r["raft_index"].as_u64().unwrap() > 0, "{t}");
        assert!(r["db_size"].as_u64().unwrap() > 0, "{t}");
        assert_eq!(
            r["name"], r["host"],
            "member names are the inventory names in the lab: {t}"
        );
    }
    assert_eq!(
        rows.iter().filter(|r| r["leader"] == true).count(),
        1,
        "{t}"
    );

    // The table on plain output.
    let out = etcdroll(s.dir.path(), &["status", "-i", &inv, "--output", "plain"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("HOST") && stdout.contains("RAFT INDEX"),
        "{}",
        text(&out)
    );
    let rows = stdout
        .lines()
        .filter(|l| l.starts_with('m') && l.contains(" healthy "))
        .count();
    assert_eq!(rows, 3, "{}", text(&out));
}

#[test]
fn unknown_host_keys_are_refused_unless_accepted_and_changed_keys_always() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    // The lab's inventory, but pointing at an empty known_hosts file.
    let kh = s.path("empty_known_hosts");
    std::fs::write(&kh, "").unwrap();
    let inv = inventory(&lab, &s);
    let text_inv = std::fs::read_to_string(&inv).unwrap().replace(
        &lab.known_hosts.display().to_string(),
        &kh.display().to_string(),
    );
    std::fs::write(&inv, text_inv).unwrap();

    let out = etcdroll(
        s.dir.path(),
        &["exec", "-i", &inv, "--output", "plain", "--", "true"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("not in known_hosts"), "{t}");
    assert!(t.contains("SHA256:"), "fingerprint shown: {t}");
    assert!(t.contains("m0") && t.contains("ssh-"), "{t}");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        "",
        "nothing recorded without the flag"
    );

    let out = etcdroll(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--accept-new-host-keys",
            "--output",
            "plain",
            "--",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let recorded = std::fs::read_to_string(&kh).unwrap();
    for h in &lab.members {
        assert!(recorded.contains(&h.addr.to_string()), "{recorded}");
    }
    // Recorded keys now pass without the flag.
    let out = etcdroll(
        s.dir.path(),
        &["exec", "-i", &inv, "--output", "plain", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Replace every recorded key by a different one: a changed key, refused even
    // with --accept-new-host-keys.
    let other = s.path("otherkey");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let fake: String = lab
        .members
        .iter()
        .map(|h| {
            format!(
                "{} {}",
                h.addr,
                pubkey
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            ) + "\n"
        })
        .collect();
    std::fs::write(&kh, &fake).unwrap();
    let out = etcdroll(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--accept-new-host-keys",
            "--output",
            "plain",
            "--",
            "true",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(t.contains("HOST KEY CHANGED"), "{t}");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        fake,
        "a changed key is never recorded"
    );
}

#[test]
fn unreachable_hosts_fail_within_the_connect_timeout_and_others_are_served() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    // m2 loses its sshd; "ghost" is an address in the lab's subnet nobody answers on.
    lab.stop_sshd(&lab.members[2]).unwrap();
    let ghost = {
        let o = lab.members[0].addr.octets();
        format!("{}.{}.{}.250", o[0], o[1], o[2])
    };
    let text_inv = std::fs::read_to_string(&inv).unwrap().replace(
        "      hosts:\n        m0:",
        &format!("      hosts:\n        ghost:\n          ansible_host: {ghost}\n        m0:"),
    );
    std::fs::write(&inv, &text_inv).unwrap();
    let t0 = Instant::now();
    let out = etcdroll(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--connect-timeout",
            "2s",
            "--output",
            "plain",
            "--",
            "echo alive",
        ],
    );
    let took = t0.elapsed();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(took < Duration::from_secs(2 + 8), "took {took:?}: {t}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ghost | UNREACHABLE!"), "{t}");
    assert!(stdout.contains("m2 | UNREACHABLE!"), "{t}");
    assert!(
        stdout.contains("m0 | CHANGED") && stdout.contains("m1 | CHANGED"),
        "{t}"
    );
    assert!(stdout.contains("ok=2 failed=0 unreachable=2"), "{t}");
}

#[test]
fn inventory_errors_name_file_line_and_column() {
    // No lab needed: the inventory is read before anything is contacted.
    let s = Scratch::new();
    let p = s.path("bad.yml");
    std::fs::write(
        &p,
        "all:\n  children:\n    etcd:\n      hosts:\n        m0:\n          ansible_host: 198.18.0.10\n          etcd_binry: /usr/bin/etcd\n",
    )
    .unwrap();
    let out = etcdroll(
        s.dir.path(),
        &["status", "-i", p.to_str().unwrap(), "--output", "plain"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&format!("{}:7:", p.display())), "{t}");
    assert!(t.contains("etcd_binary"), "suggests the right name: {t}");
}

/// Key files of every type the issue names, an encrypted one with its passphrase
/// from the environment, and ssh-agent: each logs in.
#[test]
fn ecdsa_rsa_encrypted_keys_and_the_agent_all_log_in() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    // The inventory without its key, so only the key under test can log in.
    let keyless = std::fs::read_to_string(&inv)
        .unwrap()
        .replace("    ansible_ssh_private_key_file:", "    unused_key:");
    std::fs::write(&inv, keyless).unwrap();
    let keygen = |name: &str, args: &[&str]| {
        let p = s.path(name);
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q"])
            .args(args)
            .arg("-f")
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success());
        let public = std::fs::read_to_string(p.with_extension("pub")).unwrap();
        let mut auth = std::fs::OpenOptions::new()
            .append(true)
            .open(lab.dir.join("authorized_keys"))
            .unwrap();
        use std::io::Write;
        auth.write_all(public.as_bytes()).unwrap();
        p.display().to_string()
    };
    let ecdsa = keygen("k_ecdsa", &["-t", "ecdsa", "-N", ""]);
    let rsa = keygen("k_rsa", &["-t", "rsa", "-b", "2048", "-N", ""]);
    let enc = keygen("k_enc", &["-t", "ed25519", "-N", "correct horse"]);

    for key in [&ecdsa, &rsa] {
        let out = etcdroll(
            s.dir.path(),
            &[
                "exec",
                "-i",
                &inv,
                "--private-key",
                key,
                "--output",
                "plain",
                "--",
                "true",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{key}: {}", text(&out));
    }
    // Encrypted: refused without the passphrase (no terminal here), accepted with it.
    let out = etcdroll(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--private-key",
            &enc,
            "--output",
            "plain",
            "--",
            "true",
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(4), "{t}");
    assert!(
        t.contains("is encrypted") && t.contains("ETCDROLL_KEY_PASSPHRASE"),
        "{t}"
    );
    let mut c = etcdroll_cmd(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--private-key",
            &enc,
            "--output",
            "plain",
            "--",
            "true",
        ],
    );
    c.env("ETCDROLL_KEY_PASSPHRASE", "correct horse");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        !text(&out).contains("correct horse"),
        "the passphrase is shown"
    );

    // ssh-agent holding the RSA key.
    let sock = s.path("agent.sock");
    let agent = std::process::Command::new("ssh-agent")
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
    let add = std::process::Command::new("ssh-add")
        .arg(&rsa)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let mut c = etcdroll_cmd(
        s.dir.path(),
        &["exec", "-i", &inv, "--output", "plain", "--", "true"],
    );
    c.env("SSH_AUTH_SOCK", &sock);
    let out = c.output().unwrap();
    let _ = std::process::Command::new("kill").arg(&pid).status();
    assert_eq!(out.status.code(), Some(0), "agent: {}", text(&out));
}

/// Commands without stdin run one after another in one kept `/bin/sh` per session
/// (so the login shell and its rc files run once per host): each command keeps its
/// own exit status, stdout and stderr, an `exit` or a syntax error does not end the
/// shell, a busy shell sends the next command to a channel of its own, and a
/// command that times out is not waited for by the next one.
#[test]
fn commands_share_one_kept_shell_and_stay_separate() {
    use etcdroll::ssh::RemoteCommand;
    let Some(lab) = one_plain_host() else {
        return;
    };
    let host = &lab.plain_hosts[0];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let session = std::sync::Arc::new(session_as_root(&lab, host).await);
        let limit = Duration::from_secs(10);
        let run = |script: &str| {
            let session = session.clone();
            let cmd = RemoteCommand::script(script);
            async move { session.exec(&cmd, None, limit).await.expect("exec") }
        };
        // The parent of each command's `sh -c` is the kept shell.
        let shell_of = |out: &etcdroll::ssh::ExecOutput| out.stdout_text().trim().to_string();
        let first = run("echo $PPID").await;
        assert!(first.success());
        let kept = shell_of(&first);
        assert!(kept.parse::<u32>().is_ok(), "{kept:?}");

        let out = run("printf 'no newline'; echo oops >&2; exit 7").await;
        assert_eq!(out.exit_status, Some(7));
        assert_eq!(out.stdout_text(), "no newline");
        assert_eq!(out.stderr_text(), "oops\n");

        let out = run("echo 'unbalanced").await;
        assert_ne!(out.exit_status, Some(0), "a syntax error fails the command");
        let out = run("cd /; X=1; printf '%s\\n\\n' \"$X\" two; echo $PPID").await;
        assert_eq!(out.stdout_text(), format!("1\n\ntwo\n\n{kept}\n"));
        let out = run("pwd; echo \"${X:-unset}\"; echo $PPID").await;
        assert_eq!(
            out.stdout_text(),
            format!("{}\nunset\n{kept}\n", first_line(&run("echo $HOME").await)),
            "no state leaks from one command to the next"
        );

        // While the shell is busy, a second command gets a channel of its own.
        let (slow, other) = tokio::join!(run("sleep 1; echo $PPID"), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            run("echo $PPID").await
        });
        assert_eq!(shell_of(&slow), kept);
        assert_ne!(shell_of(&other), kept);

        // A timed-out command is abandoned with its shell; the next gets a new one.
        let timed_out = session
            .exec(
                &RemoteCommand::script("sleep 3"),
                None,
                Duration::from_millis(300),
            )
            .await;
        assert!(timed_out.is_err());
        let t0 = Instant::now();
        let after = run("echo $PPID").await;
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "did not wait for the sleep"
        );
        assert!(after.success());
        assert_ne!(shell_of(&after), kept);

        // Streaming reports each line of the command, and only those.
        let mut lines = Vec::new();
        let out = session
            .exec_streaming(
                &RemoteCommand::script("echo a; sleep 0.1; echo b"),
                None,
                limit,
                &mut |l| lines.push(l.to_string()),
            )
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(lines, ["a", "b"]);
    });
}

/// The upload's bytes go through the kept shell's stdin; they must never be read by
/// the shell as commands, whatever the reading command does with them, and the
/// shell is kept only when the command took exactly what was sent.
#[test]
fn bytes_fed_through_the_kept_shell_are_never_run_as_commands() {
    use etcdroll::ssh::{Payload, RemoteCommand};
    let Some(lab) = one_plain_host() else {
        return;
    };
    let host = &lab.plain_hosts[0];
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("ran");
    // Lines a shell would run, were it to read them.
    let line = format!("\ntouch {}\n", mark.display());
    let hostile: Vec<u8> = line.as_bytes().repeat(40_000);
    let local = dir.path().join("payload");
    std::fs::write(&local, &hostile).unwrap();
    let remote = dir.path().join("uploaded");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let session = session_as_root(&lab, host).await;
        let limit = Duration::from_secs(10);
        let shell_pid = || async {
            let out = session
                .exec(&RemoteCommand::script("echo $PPID"), None, limit)
                .await
                .expect("exec after a fed command");
            assert!(out.success());
            out.stdout_text().trim().to_string()
        };
        let kept = shell_pid().await;

        // An upload takes exactly its bytes: the file is whole, the shell is kept.
        let payload = Payload::read(&local).unwrap();
        let bytes = bytes::Bytes::from(hostile.clone());
        session
            .upload(&payload, &remote.to_string_lossy(), limit, &|_| {})
            .await
            .expect("upload");
        assert_eq!(std::fs::read(&remote).unwrap(), hostile);
        assert_eq!(shell_pid().await, kept, "the shell outlives an upload");

        // A command that takes fewer bytes than sent: the rest is not run, and
        // the shell is replaced.
        let out = session
            .feed("head -c 5 >/dev/null", &bytes, limit)
            .await
            .expect("a short reader is not an error of the shell");
        assert!(out.success());
        let replaced = shell_pid().await;
        assert_ne!(replaced, kept);

        // The shell's nonce never shows in an argv (`ps` on the host).
        let out = session
            .feed(
                "ps -eo args; head -c 10 >/dev/null",
                &bytes::Bytes::from_static(b"0123456789"),
                limit,
            )
            .await
            .unwrap();
        assert!(out.success());
        assert!(
            out.stdout_text().contains("ps -eo args"),
            "{}",
            out.stdout_text()
        );
        assert!(
            !out.stdout_text().contains("etcdroll-ready-"),
            "the nonce is visible in ps: {}",
            out.stdout_text()
        );

        // One that ends without reading at all.
        let out = session.feed("exit 3", &bytes, limit).await.unwrap();
        assert_eq!(out.exit_status, Some(3));
        assert_ne!(shell_pid().await, replaced);

        // One that wants more than is sent stalls, and is abandoned.
        let t0 = Instant::now();
        let stalled = session
            .feed(
                "head -c 100000 | wc -c",
                &bytes::Bytes::from_static(b"0123456789"),
                Duration::from_millis(500),
            )
            .await;
        assert!(
            matches!(stalled, Err(etcdroll::ssh::SshError::Timeout { .. })),
            "{stalled:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(5));
        shell_pid().await;
    });
    assert!(
        !mark.exists(),
        "bytes fed to a command were run as shell commands"
    );
}

/// A session to a lab host as root, with the lab's key and known_hosts.
async fn session_as_root(
    lab: &etcdroll_lab::Lab,
    host: &etcdroll_lab::LabHost,
) -> etcdroll::ssh::Session {
    use etcdroll::ssh::{Connector, Endpoint, SshOptions};
    let connector = Connector::new(SshOptions {
        known_hosts_files: vec![lab.known_hosts.clone()],
        identity_files: vec![lab.client_key.clone()],
        use_agent: false,
        ..Default::default()
    });
    let ep = Endpoint {
        label: host.name.clone(),
        host: host.ip().to_string(),
        port: 22,
        user: "root".into(),
        identity_file: None,
        known_hosts_file: None,
        jumps: Vec::new(),
    };
    connector.connect(&ep).await.expect("connect")
}

fn first_line(out: &etcdroll::ssh::ExecOutput) -> String {
    out.stdout_text().lines().next().unwrap_or("").to_string()
}

/// Compressed uploads on a real host: a gzip upload arrives byte for byte (the
/// host's own sha256sum says so); a host without gzip takes the file as it is;
/// a gzip stream cut short or corrupted is refused, naming the file; and a disk
/// that fills during a gzip upload is caught by the size check.
#[test]
fn compressed_uploads_arrive_whole_and_bad_streams_are_refused() {
    use etcdroll::ssh::{receive_command, Compress, Payload, RemoteCommand, Wire};
    use std::io::Write;
    let Some(lab) = one_plain_host() else {
        return;
    };
    let host = &lab.plain_hosts[0];
    let sshd_pid = std::fs::read_to_string(host.dir.join("sshd.pid"))
        .unwrap()
        .trim()
        .to_string();
    // Runs a shell line in the host's mount namespace (its own: `ip netns exec`).
    let in_host_mounts = |line: &str| {
        let st = std::process::Command::new("nsenter")
            .args(["-t", &sshd_pid, "-m", "--", "sh", "-c", line])
            .status()
            .unwrap();
        assert!(st.success(), "{line}");
    };
    let dir = tempfile::tempdir().unwrap();
    // 4 MiB that gzip shrinks, with some bytes that do not shrink.
    let mut data = b"etcd binary-ish text, compressible\n".repeat(100_000);
    let mut x = 99u64;
    data.extend((0..500_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    let local = dir.path().join("etcd");
    std::fs::write(&local, &data).unwrap();
    let want = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&data))
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let session = session_as_root(&lab, host).await;
        let limit = Duration::from_secs(20);
        let host_sum = |path: String| {
            let session = &session;
            async move {
                let out = session
                    .exec(&RemoteCommand::new("sha256sum").arg(path), None, limit)
                    .await
                    .unwrap();
                assert!(out.success(), "{out:?}");
                out.stdout_text()
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string()
            }
        };
        let gz = Payload::read(&local).unwrap().with_compress(Compress::Gzip);
        let remote = dir.path().join("gz upload").display().to_string();
        let seen = std::sync::Mutex::new(Vec::new());
        let wire = session
            .upload_told(&gz, &remote, limit, &|n| seen.lock().unwrap().push(n))
            .await
            .expect("gzip upload");
        assert_eq!(wire, Wire::Gzip);
        assert_eq!(host_sum(remote.clone()).await, want);
        // Progress is told in the file's bytes, up to the whole file.
        assert_eq!(
            seen.lock().unwrap().last().copied(),
            Some(data.len() as u64)
        );
        // The same payload again reuses its gzip copy; `none` sends it as it is.
        let again = dir.path().join("again").display().to_string();
        assert_eq!(
            session
                .upload_told(&gz, &again, limit, &|_| {})
                .await
                .unwrap(),
            Wire::Gzip
        );
        assert_eq!(host_sum(again).await, want);
        let none = Payload::read(&local).unwrap().with_compress(Compress::None);
        let plain = dir.path().join("plain").display().to_string();
        assert_eq!(
            session
                .upload_told(&none, &plain, limit, &|_| {})
                .await
                .unwrap(),
            Wire::Plain
        );
        assert_eq!(host_sum(plain).await, want);

        // A gzip stream cut short, or with a flipped byte, is refused with a clear
        // message naming the file, and the shell is replaced, not confused.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        let stream = enc.finish().unwrap();
        let mut flipped = stream.clone();
        let at = flipped.len() - 8;
        flipped[at] ^= 0x40;
        for (what, s) in [
            ("cut", &stream[..stream.len() / 2]),
            ("flipped", &flipped[..]),
        ] {
            let path = dir.path().join(format!("bad {what}")).display().to_string();
            let cmd = receive_command(&path, data.len() as u64);
            let fed = [format!("gzip {}\n", s.len()).as_bytes(), s].concat();
            let out = session
                .feed(cmd.as_str(), &bytes::Bytes::from(fed), limit)
                .await
                .unwrap();
            assert_eq!(out.exit_status, Some(3), "{what}: {out:?}");
            assert!(
                out.stderr_text().contains(&format!(
                    "gzip -dc refused the stream for {path} (corrupt or cut short)"
                )),
                "{what}: {}",
                out.stderr_text()
            );
        }

        // A disk that fills mid-upload: caught, with the host's own words.
        let small = dir.path().join("small");
        std::fs::create_dir(&small).unwrap();
        in_host_mounts(&format!(
            "mount -t tmpfs -o size=1m tmpfs '{}'",
            small.display()
        ));
        let full = small.join("etcd").display().to_string();
        let err = session
            .upload_told(&gz, &full, limit, &|_| {})
            .await
            .expect_err("a full disk");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}: upload to {full}: exit 1", host.name)),
            "{msg}"
        );
        assert!(msg.contains("No space left on device"), "{msg}");
        assert!(msg.contains(&format!("{full} has ")), "{msg}");
        assert!(
            msg.contains(&format!(" bytes, expected {}", data.len())),
            "{msg}"
        );

        // A host without gzip (here: not runnable on PATH) takes the file plain.
        let nogz = dir.path().join("not-gzip");
        std::fs::write(&nogz, b"").unwrap();
        in_host_mounts(&format!("mount --bind '{}' /usr/bin/gzip", nogz.display()));
        let plain = dir.path().join("no gzip here").display().to_string();
        assert_eq!(
            session
                .upload_told(&gz, &plain, limit, &|_| {})
                .await
                .unwrap(),
            Wire::Plain
        );
        assert_eq!(host_sum(plain).await, want);
        in_host_mounts("umount /usr/bin/gzip");
        in_host_mounts(&format!("umount '{}'", small.display()));
    });
}
