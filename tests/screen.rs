//! The terminal screen as an operator watches it: a real upgrade on the lab,
//! run under a pseudo-terminal (`script`), its output replayed through a
//! terminal emulator (vt100), and the last screen read back.

mod common;

use common::*;

/// The last screen of `etcdroll ARGS` on a 140×60 terminal.
fn final_screen(s: &Scratch, args: &[&str]) -> (Option<i32>, String) {
    let mut cmdline = format!(
        "stty cols 140 rows 60; exec {}",
        env!("CARGO_BIN_EXE_etcdroll")
    );
    for a in args {
        cmdline.push(' ');
        cmdline.push_str(&shlex::try_quote(a).unwrap());
    }
    let out = std::process::Command::new("script")
        .args(["-qefc", &cmdline, "/dev/null"])
        .env("HOME", s.dir.path())
        .env_remove("SSH_AUTH_SOCK")
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script runs");
    let (rows, cols) = (
        std::num::NonZeroU16::new(60).unwrap(),
        std::num::NonZeroU16::new(140).unwrap(),
    );
    let mut parser = vt100::Parser::new(rows, cols, 0);
    parser.process(&out.stdout);
    // Row by row: a line as wide as the terminal would run into the next in
    // `contents()`.
    let screen: Vec<String> = parser.screen().rows(0, 140).collect();
    (out.status.code(), screen.join("\n"))
}

#[test]
fn the_final_screen_holds_each_host_once_then_the_summary() {
    let Some(lab) = lab_default() else { return };
    let s = Scratch::new();
    let inv = inventory(&lab, &s);
    let bin = etcd_bin("3.5.1", "etcd");
    let (code, screen) = final_screen(
        &s,
        &[
            "upgrade", "-i", &inv, "--binary", &bin, "--yes", "--settle", "1s",
        ],
    );
    assert_eq!(code, Some(0), "{screen}");
    let lines: Vec<&str> = screen.lines().collect();
    let mut last_bar = 0;
    for m in &lab.members {
        let bars: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with(&m.name) && lines[i].contains("done 3.4.23 → 3.5.1"))
            .collect();
        assert_eq!(
            bars.len(),
            1,
            "{}'s bar should show once:\n{screen}",
            m.name
        );
        last_bar = last_bar.max(bars[0]);
        // The settle pause is the run's, never a host's.
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with(&m.name) && l.contains("settl")),
            "{screen}"
        );
    }
    let summary = lines
        .iter()
        .position(|l| l.contains("HOST") && l.contains("CATCH-UP"))
        .unwrap_or_else(|| panic!("no summary table:\n{screen}"));
    assert!(
        summary > last_bar,
        "the summary must follow the bars:\n{screen}"
    );
    // The run line: which member of how many, and the time taken.
    let run = lines
        .iter()
        .find(|l| l.starts_with("upgrade · member"))
        .unwrap_or_else(|| panic!("no run line:\n{screen}"));
    assert!(run.contains("member 3 of 3"), "{run}");
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("upgrade · member"))
            .count()
            == 1,
        "{screen}"
    );

    // `status -o wide`, like kubectl's: where each member was reached, and its term.
    let out = etcdroll(s.dir.path(), &["status", "-i", &inv, "-o", "wide"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let head = t
        .lines()
        .find(|l| l.starts_with("HOST"))
        .unwrap_or_else(|| panic!("{t}"));
    for col in ["ADDRESS", "CLIENT URL", "TERM", "RAFT INDEX"] {
        assert!(head.contains(col), "{head}");
    }
    for m in &lab.members {
        assert!(t.contains(&format!("{}:22", m.ip())), "{t}");
    }
    let narrow = text(&etcdroll(s.dir.path(), &["status", "-i", &inv]));
    assert!(!narrow.contains("CLIENT URL"), "{narrow}");
}
