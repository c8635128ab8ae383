//! known_hosts against OpenSSH's own `ssh-keygen`, and the parser against junk.

use super::patterns::{glob, hosts_match};
use super::*;
use std::process::Command;

/// Mangled known_hosts files (fields cut, markers, wildcards, hashes, junk)
/// never make the parser or the matcher panic.
#[test]
fn mangled_files_never_panic() {
    let words = [
        "@revoked",
        "@cert-authority",
        "*",
        "!",
        "[",
        "]:",
        "2222",
        "|1|",
        "|1|abc|def",
        "ssh-ed25519",
        "AAAA",
        "ecdsa-sha2-nistp256",
        ",",
        " ",
        "\n",
        "#",
        "?",
        "h*st",
        "\u{0}",
    ];
    let mut next = crate::ssh::test_rng::xorshift(0x2545f4914f6cdd1d);
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..(next() % 20) {
            text.push_str(words[(next() % words.len() as u64) as usize]);
        }
        let kh = KnownHosts::parse(&text, Path::new("fuzz"));
        for (h, p) in [("host", 22), ("h1st", 2222), ("[x]", 1), ("", 0)] {
            let _ = kh.check(h, p, "ssh-ed25519", "AAAA");
            let _ = kh.known_algorithms(h, p);
            let _ = kh.cert_authorities(h, p);
            let _ = kh.has_host(h, p);
        }
    }
}

fn have_ssh_keygen() -> bool {
    let ok = Command::new("ssh-keygen").arg("-?").output().is_ok();
    if !ok {
        eprintln!("\n!!!!! SKIPPED: ssh-keygen is missing (scripts/prepare installs it) !!!!!\n");
    }
    ok
}

fn keygen(dir: &Path, name: &str, t: &str) -> (String, String) {
    let f = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", t, "-N", "", "-f"])
        .arg(&f)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = std::fs::read_to_string(f.with_extension("pub")).unwrap();
    let mut it = pubkey.split_whitespace();
    (
        it.next().unwrap().to_string(),
        it.next().unwrap().to_string(),
    )
}

fn ssh_keygen_finds(file: &Path, name: &str) -> bool {
    Command::new("ssh-keygen")
        .args(["-F", name, "-f"])
        .arg(file)
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn agrees_with_ssh_keygen_on_which_hosts_have_entries() {
    if !have_ssh_keygen() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, k) = keygen(dir.path(), "k1", "ed25519");
    let text = format!(
        "plain.example {a} {k}\n\
         [ported.example]:2222 {a} {k}\n\
         *.wild.example,!bad.wild.example {a} {k}\n\
         10.0.?.1 {a} {k}\n\
         # a comment\n\
         malformed-line\n\
         hashme.example {a} {k}\n\
         @cert-authority *.ca.example {a} {k}\n"
    );
    let plain = dir.path().join("kh");
    std::fs::write(&plain, &text).unwrap();
    // A hashed copy made by ssh-keygen itself.
    let hashed = dir.path().join("kh_hashed");
    std::fs::write(
        &hashed,
        format!("hashme.example {a} {k}\n[ported.example]:2222 {a} {k}\n"),
    )
    .unwrap();
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-H", "-f"])
        .arg(&hashed)
        .status()
        .unwrap()
        .success());
    assert!(std::fs::read_to_string(&hashed).unwrap().starts_with("|1|"));

    let cases: &[(&str, u16)] = &[
        ("plain.example", 22),
        ("PLAIN.example", 22),
        ("plain.example", 2222),
        ("ported.example", 2222),
        ("ported.example", 22),
        ("x.wild.example", 22),
        ("bad.wild.example", 22),
        ("10.0.5.1", 22),
        ("10.0.55.1", 22),
        ("hashme.example", 22),
        ("other.example", 22),
        ("y.ca.example", 22),
    ];
    for file in [&plain, &hashed] {
        let kh = KnownHosts::load(std::slice::from_ref(file)).unwrap();
        for (host, port) in cases {
            let name = lookup_name(host, *port);
            // ssh-keygen -F lowercases nothing for hashed entries; compare on lowercase names.
            if *host != host.to_ascii_lowercase() && file == &hashed {
                continue;
            }
            assert_eq!(
                kh.has_host(host, *port),
                ssh_keygen_finds(file, &name),
                "{name} in {}",
                file.display()
            );
        }
    }
}

#[test]
fn verdicts() {
    if !have_ssh_keygen() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a1, k1) = keygen(dir.path(), "k1", "ed25519");
    let (_, k2) = keygen(dir.path(), "k2", "ed25519");
    let (a3, k3) = keygen(dir.path(), "k3", "ecdsa");
    let (a4, k4) = keygen(dir.path(), "k4", "rsa");
    let text = format!("h1 {a1} {k1}\nh3 {a3} {k3}\nh4 {a4} {k4}\n@revoked * {a1} {k2}\n");
    let kh = KnownHosts::parse(&text, Path::new("kh"));
    assert!(matches!(
        kh.check("h1", 22, &a1, &k1),
        HostKeyStatus::Known { line: 1, .. }
    ));
    assert!(matches!(
        kh.check("h1", 22, &a1, &k2),
        HostKeyStatus::Revoked { line: 4, .. }
    ));
    let (_, k5) = keygen(dir.path(), "k5", "ed25519");
    match kh.check("h1", 22, &a1, &k5) {
        HostKeyStatus::Changed {
            line,
            expected_fingerprint,
            ..
        } => {
            assert_eq!(line, 1);
            assert_eq!(expected_fingerprint, fingerprint_sha256(&k1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        kh.check("h3", 22, &a1, &k1),
        HostKeyStatus::OtherTypesKnown {
            recorded: vec![RecordedKey {
                algorithm: a3.clone(),
                fingerprint: fingerprint_sha256(&k3),
                file: PathBuf::from("kh"),
                line: 2,
            }]
        }
    );
    assert_eq!(kh.check("nobody", 22, &a1, &k1), HostKeyStatus::Unknown);
    // RSA keys are recorded as ssh-rsa but negotiated as rsa-sha2-512.
    assert!(matches!(
        kh.check("h4", 22, "rsa-sha2-512", &k4),
        HostKeyStatus::Known { .. }
    ));
    assert_eq!(kh.known_algorithms("h3", 22), vec![a3]);
}

/// OpenSSH's rules where etcdroll used to differ: off port 22, an entry
/// without the port serves when none names `[host]:port` (so do patterns
/// and a negation of the ported name); hashed names match whatever the case
/// of the name used.
#[test]
fn portless_fallback_and_case_as_openssh() {
    if !have_ssh_keygen() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, k) = keygen(dir.path(), "k", "ed25519");
    for line in [
        format!("127.0.0.1 {a} {k}"),
        format!("127.0.0.* {a} {k}"),
        format!("![127.0.0.1]:2222,* {a} {k}"),
    ] {
        let kh = KnownHosts::parse(&line, Path::new("kh"));
        assert!(
            matches!(
                kh.check("127.0.0.1", 2222, &a, &k),
                HostKeyStatus::Known { .. }
            ),
            "{line}"
        );
        assert_eq!(
            kh.known_algorithms("127.0.0.1", 2222),
            vec![a.clone()],
            "{line}"
        );
    }
    // A ported entry, when there is one, is the one that counts.
    let (_, other) = keygen(dir.path(), "o", "ed25519");
    let kh = KnownHosts::parse(
        &format!("127.0.0.1 {a} {k}\n[127.0.0.1]:2222 {a} {other}\n"),
        Path::new("kh"),
    );
    assert!(matches!(
        kh.check("127.0.0.1", 2222, &a, &k),
        HostKeyStatus::Changed { line: 2, .. }
    ));
    // Hashed: written for "localhost", looked up as "LOCALHOST".
    let kh_file = dir.path().join("hashed");
    std::fs::write(&kh_file, format!("localhost {a} {k}\n")).unwrap();
    assert!(Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&kh_file)
        .output()
        .unwrap()
        .status
        .success());
    let kh = KnownHosts::load(&[kh_file]).unwrap();
    assert!(matches!(
        kh.check("LOCALHOST", 22, &a, &k),
        HostKeyStatus::Known { .. }
    ));
}

#[test]
fn fingerprints_match_ssh_keygen() {
    if !have_ssh_keygen() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, k) = keygen(dir.path(), "k", "ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-l", "-f"])
        .arg(dir.path().join("k.pub"))
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        line.split_whitespace().nth(1).unwrap(),
        fingerprint_sha256(&k)
    );
}

#[test]
fn append_creates_a_private_file_that_then_knows_the_host() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub/known_hosts");
    append(
        &p,
        "fd12::1",
        2222,
        "ssh-ed25519",
        "AAAAC3NzaC1lZDI1NTE5AAAAIA",
    )
    .unwrap();
    append(&p, "h", 22, "rsa-sha2-256", "AAAAB3").unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert_eq!(
        text,
        "[fd12::1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA\nh ssh-rsa AAAAB3\n"
    );
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let kh = KnownHosts::load(&[p]).unwrap();
    assert!(matches!(
        kh.check("fd12::1", 2222, "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIA"),
        HostKeyStatus::Known { .. }
    ));
}

#[test]
fn globs() {
    assert!(glob(b"*", b"anything"));
    assert!(glob(b"a*c", b"abbbc"));
    assert!(glob(b"a?c", b"abc"));
    assert!(!glob(b"a?c", b"abbc"));
    assert!(!glob(b"", b"x"));
    assert!(hosts_match("a,b,!c*", "b"));
    assert!(!hosts_match("*,!c*", "cat"));
}
