//! Logging in as an ordinary user and upgrading with sudo: passwordless, and with a
//! password that must appear in no output.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use common::*;

/// A throwaway login user with a sudoers rule; removed on drop.
struct TestUser {
    name: String,
}

impl TestUser {
    fn create(password: Option<&str>) -> TestUser {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "erop{}x{}",
            std::process::id() % 100000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        let st = Command::new("useradd")
            .args(["-m", "-s", "/bin/bash", &name])
            .status()
            .unwrap();
        assert!(st.success(), "useradd");
        match password {
            Some(p) => {
                let mut c = Command::new("chpasswd")
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{name}:{p}\n").as_bytes())
                    .unwrap();
                assert!(c.wait().unwrap().success());
            }
            // Unlocked, without a password: sshd refuses locked accounts.
            None => assert!(Command::new("usermod")
                .args(["-p", "*", &name])
                .status()
                .unwrap()
                .success()),
        }
        let rule = match password {
            Some(_) => format!("{name} ALL=(ALL) ALL\n"),
            None => format!("{name} ALL=(ALL) NOPASSWD: ALL\n"),
        };
        std::fs::write(format!("/etc/sudoers.d/{name}"), rule).unwrap();
        TestUser { name }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/etc/sudoers.d/{}", self.name));
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

fn sudo_available() -> bool {
    let ok = std::path::Path::new("/usr/bin/sudo").exists();
    if !ok {
        // A test that could not run must not pass where scripts/test runs it.
        assert!(
            std::env::var_os("ETCDROLL_REQUIRE_LAB").is_none(),
            "sudo is missing, but scripts/prepare installs it"
        );
        eprintln!("\n!!!!! SKIPPED: sudo is missing (scripts/prepare installs it) !!!!!\n");
    }
    ok
}

fn as_user(lab: &Lab, s: &Scratch, user: &str) -> String {
    let inv = inventory(lab, s);
    let text = std::fs::read_to_string(&inv).unwrap().replace(
        "    ansible_user: root\n",
        &format!("    ansible_user: {user}\n    ansible_become: true\n"),
    );
    std::fs::write(&inv, text).unwrap();
    inv
}

#[test]
fn a_user_with_passwordless_sudo_upgrades_the_cluster() {
    if !sudo_available() {
        return;
    }
    let Some(lab) = lab_default() else { return };
    let user = TestUser::create(None);
    let s = Scratch::new();
    let inv = as_user(&lab, &s, &user.name);
    let out = etcdroll(
        s.dir.path(),
        &["exec", "-i", &inv, "--output", "json", "--", "id -un"],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        of_kind(&events(&out), "exec_result")
            .iter()
            .all(|e| e["stdout"].as_str().unwrap().trim() == user.name),
        "{t}"
    );
    let out = etcdroll(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--privileged",
            "--output",
            "json",
            "--",
            "id -un",
        ],
    );
    assert!(
        of_kind(&events(&out), "exec_result")
            .iter()
            .all(|e| e["stdout"].as_str().unwrap().trim() == "root"),
        "{}",
        text(&out)
    );

    let out = upgrade_351(&s, &inv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for m in &lab.members {
        assert_eq!(installed_version(m), "3.5.1");
        let meta = std::fs::metadata(&m.etcd_binary).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.uid(), 0, "installed with the old binary's owner");
    }
}

#[test]
fn a_sudo_password_is_used_and_never_shown() {
    if !sudo_available() {
        return;
    }
    let Some(lab) = lab_default() else { return };
    let password = "s3cr3t-Pa55-do-not-print";
    let user = TestUser::create(Some(password));
    let s = Scratch::new();
    let inv = as_user(&lab, &s, &user.name);
    // Without the password, sudo refuses (it never waits for one).
    let out = etcdroll(
        s.dir.path(),
        &[
            "check",
            "-i",
            &inv,
            "--binary",
            &etcd_bin("3.5.1", "etcd"),
            "--output",
            "plain",
        ],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));

    for format in ["json", "plain"] {
        let mut cmd = etcdroll_cmd(
            s.dir.path(),
            &[
                "upgrade",
                "-i",
                &inv,
                "--binary",
                &etcd_bin("3.5.1", "etcd"),
                "--yes",
                "--output",
                format,
            ],
        );
        cmd.env("ETCDROLL_BECOME_PASS", password);
        let out = cmd.output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        assert!(!t.contains(password), "the password leaked:\n{t}");
    }
    // Nor on any command line while a privileged command runs (sudo -S reads it
    // from stdin): the lab's hosts share this machine's process table.
    let mut cmd = etcdroll_cmd(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--privileged",
            "--output",
            "json",
            "--",
            "sleep 2",
        ],
    );
    cmd.env("ETCDROLL_BECOME_PASS", password);
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut saw_sleep = false;
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        let ps = String::from_utf8_lossy(&ps.stdout).to_string();
        assert!(
            !ps.contains(password),
            "the password is on a command line:\n{ps}"
        );
        saw_sleep |= ps.contains("sleep 2");
    }
    assert!(child.wait().unwrap().success());
    assert!(saw_sleep, "the privileged command was seen running");
    // Nor in the local journal of the runs.
    let journal = std::fs::read_to_string(s.path(".local/state/etcdroll/journal.jsonl")).unwrap();
    assert!(journal.contains("run_finished"), "the journal was written");
    assert!(
        !journal.contains(password),
        "the password is in the journal"
    );
    // A wrong password fails cleanly, and is not shown either.
    let mut cmd = etcdroll_cmd(
        s.dir.path(),
        &[
            "exec",
            "-i",
            &inv,
            "--privileged",
            "--output",
            "json",
            "--",
            "true",
        ],
    );
    cmd.env("ETCDROLL_BECOME_PASS", "wrong-password-xyz");
    let out = cmd.output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(!t.contains("wrong-password-xyz"), "{t}");
    assert_all_on(&lab, "3.5.1");
}

/// When sudo does not ask for the password (NOPASSWD here), it stays unread on
/// stdin: the command must not get it. `cat` under --privileged prints nothing.
#[test]
fn a_sudo_password_sudo_does_not_ask_for_never_reaches_the_command() {
    if !sudo_available() {
        return;
    }
    let Some(lab) = one_plain_host() else {
        return;
    };
    let password = "unasked-Pa55-must-stay-unread";
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    for (who, user) in [("root", None), ("NOPASSWD", Some(TestUser::create(None)))] {
        let text_inv = std::fs::read_to_string(&inv).unwrap();
        let inv_u = s.path(&format!("inv-{who}.yml"));
        let login = user.as_ref().map(|u| u.name.as_str()).unwrap_or("root");
        std::fs::write(
            &inv_u,
            text_inv.replace(
                "    ansible_user: root\n",
                &format!("    ansible_user: {login}\n    ansible_become: true\n"),
            ),
        )
        .unwrap();
        for format in ["json", "plain"] {
            let mut cmd = etcdroll_cmd(
                s.dir.path(),
                &[
                    "exec",
                    "-i",
                    &inv_u.display().to_string(),
                    "--group",
                    "hosts",
                    "--privileged",
                    "--output",
                    format,
                    "--",
                    "cat; id -un",
                ],
            );
            cmd.env("ETCDROLL_BECOME_PASS", password);
            let out = cmd.output().unwrap();
            let t = text(&out);
            assert_eq!(out.status.code(), Some(0), "{who} {format}: {t}");
            assert!(t.contains("root"), "ran as root: {t}");
            assert!(
                !t.contains(password),
                "{who} {format}: the password reached the command:\n{t}"
            );
        }
    }
}
