//! `kept_shell.sh` run by real local shells (`sh` and `dash`), fed the very bytes
//! `KeptShell` sends; the lab tests run it over SSH.

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

const NONCE: &str = "0123abcd";

fn marker(kind: &str, count: u64) -> String {
    format!("etcdroll-{kind}-{NONCE}-{count}")
}

/// A kept shell started on `shell`, its functions and nonce already sent.
fn start(shell: &str) -> Child {
    let mut child = Command::new(shell)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(&opening(NONCE)).unwrap();
    child
}

/// Command `count`'s output on one stream, and its status (stdout only).
fn framed(stream: &[u8], count: u64) -> (Vec<u8>, Option<u32>, Vec<u8>) {
    let mut f = Framed::new(&marker("begin", count), &marker("end", count));
    f.feed(stream, &mut |_| {});
    assert!(f.done(), "command {count} ended: {stream:?}");
    (f.body, f.status, f.after)
}

#[test]
fn commands_run_framed_each_in_a_shell_of_its_own() {
    for shell in ["sh", "dash"] {
        let mut child = start(shell);
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(&invocation(
                "etcdroll_run",
                1,
                "echo out; echo 'it''s' err >&2; cd /; X=1; read -r line; echo \"${line:-no stdin}\"; exit 3",
            ))
            .unwrap();
        stdin
            .write_all(&invocation(
                "etcdroll_run",
                2,
                "pwd; echo \"${X:-unset}\"; echo $PPID",
            ))
            .unwrap();
        stdin
            .write_all(&invocation("etcdroll_run", 3, "echo 'unbalanced"))
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let (body, status, _) = framed(&out.stdout, 1);
        assert_eq!(body, b"out\nno stdin\n", "{shell}");
        assert_eq!(status, Some(3), "{shell}");
        assert_eq!(framed(&out.stderr, 1).0, b"its err\n", "{shell}");
        let here = std::env::current_dir().unwrap();
        let (body, status, _) = framed(&out.stdout, 2);
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("{}\nunset\n{pid}\n", here.display()),
            "{shell}: no state leaks from one command to the next"
        );
        assert_eq!(status, Some(0), "{shell}");
        let (_, status, _) = framed(&out.stdout, 3);
        assert!(status.is_some_and(|s| s != 0), "{shell}: {status:?}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("etcdroll_nonce"),
            "{shell}"
        );
    }
}

/// Feeds `payload` to command 1 (`command`) once it is ready, then the token,
/// then asks for command 2; returns the shell's exit status, stdout, stderr.
fn feed(shell: &str, command: &str, payload: &[u8]) -> (Option<i32>, Vec<u8>, Vec<u8>) {
    let mut child = start(shell);
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&invocation("etcdroll_fed", 1, command))
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "{shell}: no ready line"
        );
        seen.extend_from_slice(line.as_bytes());
        if line.trim_end() == marker("ready", 1) {
            break;
        }
    }
    stdin.write_all(payload).unwrap();
    stdin
        .write_all(format!("{}\n", marker("fed", 1)).as_bytes())
        .unwrap();
    stdin
        .write_all(&invocation("etcdroll_run", 2, "echo second"))
        .unwrap();
    drop(stdin);
    stdout.read_to_end(&mut seen).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), seen, out.stderr)
}

#[test]
fn a_fed_command_takes_the_bytes_and_the_shell_goes_on() {
    for shell in ["sh", "dash"] {
        let (code, stdout, _) = feed(shell, "head -c 6 | tr a-z A-Z", b"hello\n");
        assert_eq!(code, Some(0), "{shell}");
        let (body, status, after) = framed(&stdout, 1);
        let ready = marker("ready", 1);
        assert_eq!(body, format!("{ready}\nHELLO\n").as_bytes(), "{shell}");
        assert_eq!(status, Some(0), "{shell}");
        assert!(
            after.starts_with(format!("{}\n", marker("ack", 1)).as_bytes()),
            "{shell}: {after:?}"
        );
        assert_eq!(framed(&stdout, 2).0, b"second\n", "{shell}");
    }
}

/// A reader that leaves bytes behind: the shell reads them where the token
/// should be, and exits with 1 instead of running anything more.
#[test]
fn a_fed_command_that_leaves_bytes_makes_the_shell_exit() {
    for shell in ["sh", "dash"] {
        let (code, stdout, _) = feed(shell, "head -c 2 >/dev/null", b"xxecho ran\n");
        assert_eq!(code, Some(1), "{shell}");
        let (_, status, after) = framed(&stdout, 1);
        assert_eq!(status, Some(0), "{shell}");
        assert!(after.is_empty(), "{shell}: no ack, nothing run: {after:?}");
    }
}
