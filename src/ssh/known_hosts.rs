//! known_hosts, with OpenSSH's rules: comma-separated patterns with `*`/`?` and
//! `!` negation, `[host]:port` names, hashed `|1|salt|hash` entries, `@revoked`
//! keys, `@cert-authority` lines (not plain keys). russh's own check misses most of
//! these, so etcdroll keeps its own, tested against `ssh-keygen -F`.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Clone, Debug)]
struct Entry {
    file: PathBuf,
    line: usize,
    marker: Marker,
    hosts: String,
    algorithm: String,
    key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyStatus {
    Known {
        file: PathBuf,
        line: usize,
    },
    /// No entry for this host at all.
    Unknown,
    /// The host is known, but only with keys of other types. OpenSSH treats this
    /// as a changed key (the server no longer presents what was recorded), and so
    /// does etcdroll, `--accept-new-host-keys` or not.
    OtherTypesKnown {
        /// Each recorded key: type, SHA256 fingerprint, file and line.
        recorded: Vec<RecordedKey>,
    },
    /// The host has a key of the same type that differs.
    Changed {
        file: PathBuf,
        line: usize,
        expected_fingerprint: String,
    },
    /// An `@revoked` line lists this exact key.
    Revoked {
        file: PathBuf,
        line: usize,
    },
}

/// A key known_hosts records for a host, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedKey {
    pub algorithm: String,
    pub fingerprint: String,
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for RecordedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}:{})",
            self.algorithm,
            self.fingerprint,
            self.file.display(),
            self.line
        )
    }
}

/// A certificate authority an `@cert-authority` line trusts for a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedCa {
    /// The CA's public key, base64 as in the file.
    pub key: String,
    pub file: PathBuf,
    pub line: usize,
}

#[derive(Clone, Debug, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

/// RSA signatures have several names; known_hosts records the key as `ssh-rsa`.
fn key_type(algorithm: &str) -> &str {
    match algorithm {
        "rsa-sha2-256" | "rsa-sha2-512" => "ssh-rsa",
        other => other,
    }
}

impl KnownHosts {
    /// Read the files that exist (a missing file is skipped, like OpenSSH does).
    pub fn load(paths: &[PathBuf]) -> Result<KnownHosts, KnownHostsError> {
        let mut kh = KnownHosts::default();
        for p in paths {
            match std::fs::read_to_string(p) {
                Ok(text) => kh.entries.extend(KnownHosts::parse(&text, p).entries),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(KnownHostsError::Read {
                        path: p.clone(),
                        source: e,
                    })
                }
            }
        }
        Ok(kh)
    }

    /// Parse one file's text; malformed lines are skipped.
    pub fn parse(text: &str, file: &Path) -> KnownHosts {
        let mut entries = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or("");
            let marker = match first {
                "@revoked" => Marker::Revoked,
                "@cert-authority" => Marker::CertAuthority,
                _ => Marker::None,
            };
            if marker != Marker::None {
                first = fields.next().unwrap_or("");
            }
            let (Some(algorithm), Some(key)) = (fields.next(), fields.next()) else {
                continue;
            };
            if first.is_empty() {
                continue;
            }
            entries.push(Entry {
                file: file.to_path_buf(),
                line: n + 1,
                marker,
                hosts: first.to_string(),
                algorithm: algorithm.to_string(),
                key: key.to_string(),
            });
        }
        KnownHosts { entries }
    }

    /// The verdict on `key` offered by `host:port`.
    /// The plain (not `@`-marked) entries for this host: those naming
    /// `[host]:port`, or, off port 22 when none does, those naming the host
    /// without its port, as OpenSSH does ("found matching key w/out port").
    fn entries_for(&self, host: &str, port: u16) -> Vec<&Entry> {
        let plain = |name: &str| -> Vec<&Entry> {
            self.entries
                .iter()
                .filter(|e| e.marker == Marker::None && hosts_match(&e.hosts, name))
                .collect()
        };
        let with_port = plain(&lookup_name(host, port));
        if with_port.is_empty() && port != 22 {
            plain(host)
        } else {
            with_port
        }
    }

    pub fn check(&self, host: &str, port: u16, algorithm: &str, key_b64: &str) -> HostKeyStatus {
        let wanted_type = key_type(algorithm);
        // A revoked key is refused whoever presents it.
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.marker == Marker::Revoked && e.key == key_b64)
        {
            return HostKeyStatus::Revoked {
                file: e.file.clone(),
                line: e.line,
            };
        }
        let matching = self.entries_for(host, port);
        if let Some(e) = matching
            .iter()
            .find(|e| key_type(&e.algorithm) == wanted_type && e.key == key_b64)
        {
            return HostKeyStatus::Known {
                file: e.file.clone(),
                line: e.line,
            };
        }
        if let Some(e) = matching
            .iter()
            .find(|e| key_type(&e.algorithm) == wanted_type)
        {
            return HostKeyStatus::Changed {
                file: e.file.clone(),
                line: e.line,
                expected_fingerprint: fingerprint_sha256(&e.key),
            };
        }
        if matching.is_empty() {
            HostKeyStatus::Unknown
        } else {
            HostKeyStatus::OtherTypesKnown {
                recorded: matching
                    .iter()
                    .map(|e| RecordedKey {
                        algorithm: e.algorithm.clone(),
                        fingerprint: fingerprint_sha256(&e.key),
                        file: e.file.clone(),
                        line: e.line,
                    })
                    .collect(),
            }
        }
    }

    /// Key types recorded (and not revoked) for this host, in file order.
    pub fn known_algorithms(&self, host: &str, port: u16) -> Vec<String> {
        let revoked: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| e.marker == Marker::Revoked)
            .map(|e| e.key.as_str())
            .collect();
        dedup(
            self.entries_for(host, port)
                .into_iter()
                .filter(|e| !revoked.contains(&e.key.as_str()))
                .map(|e| e.algorithm.clone()),
        )
    }

    /// The `@cert-authority` keys trusted for this host (with OpenSSH's port-less
    /// fallback).
    pub fn cert_authorities(&self, host: &str, port: u16) -> Vec<TrustedCa> {
        let cas = |name: &str| -> Vec<TrustedCa> {
            self.entries
                .iter()
                .filter(|e| e.marker == Marker::CertAuthority && hosts_match(&e.hosts, name))
                .map(|e| TrustedCa {
                    key: e.key.clone(),
                    file: e.file.clone(),
                    line: e.line,
                })
                .collect()
        };
        let with_port = cas(&lookup_name(host, port));
        if with_port.is_empty() && port != 22 {
            cas(host)
        } else {
            with_port
        }
    }

    /// Where an `@revoked` line lists this key, if one does.
    pub fn revoked(&self, key_b64: &str) -> Option<(PathBuf, usize)> {
        self.entries
            .iter()
            .find(|e| e.marker == Marker::Revoked && e.key == key_b64)
            .map(|e| (e.file.clone(), e.line))
    }

    /// True when any entry names this host (what `ssh-keygen -F` answers).
    pub fn has_host(&self, host: &str, port: u16) -> bool {
        let name = lookup_name(host, port);
        self.entries
            .iter()
            .any(|e| e.marker != Marker::Revoked && hosts_match(&e.hosts, &name))
    }
}

fn dedup(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in it {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The name OpenSSH looks up: `host`, or `[host]:port` off port 22.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Does a comma-separated pattern list (or a hashed entry) match `name`?
/// A matching negated pattern makes the whole line not match.
fn hosts_match(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_match(hashed, name);
    }
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for pat in patterns.split(',') {
        let (neg, pat) = match pat.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pat),
        };
        if glob(pat.to_ascii_lowercase().as_bytes(), name.as_bytes()) {
            if neg {
                return false;
            }
            positive = true;
        }
    }
    positive
}

fn hashed_match(entry: &str, name: &str) -> bool {
    let Some((salt, hash)) = entry.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    // OpenSSH's client lowercases the host name before it looks it up, hashed
    // entries included (ssh-keygen -F does not, which is why it differs there).
    mac.update(name.to_ascii_lowercase().as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` and `?` wildcards, as OpenSSH's match_pattern.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// `SHA256:…` exactly as `ssh-keygen -l` prints it.
pub fn fingerprint_sha256(key_b64: &str) -> String {
    let blob = STANDARD.decode(key_b64).unwrap_or_default();
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob)))
}

/// Append a key, creating the file (0600) and its directory (0700) if needed.
pub fn append(
    path: &Path,
    host: &str,
    port: u16,
    algorithm: &str,
    key_b64: &str,
) -> Result<(), KnownHostsError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let werr = |source| KnownHostsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(werr)?;
    }
    let needs_newline = std::fs::read(path)
        .map(|b| !b.is_empty() && !b.ends_with(b"\n"))
        .unwrap_or(false);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(werr)?;
    let line = format!(
        "{}{} {} {key_b64}\n",
        if needs_newline { "\n" } else { "" },
        lookup_name(host, port),
        key_type(algorithm)
    );
    f.write_all(line.as_bytes()).map_err(werr)
}

/// Where OpenSSH looks by default.
pub fn default_paths() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let ssh = Path::new(&home).join(".ssh");
        v.push(ssh.join("known_hosts"));
        v.push(ssh.join("known_hosts2"));
    }
    v.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    v.push(PathBuf::from("/etc/ssh/ssh_known_hosts2"));
    v
}

#[cfg(test)]
mod tests {
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

    use super::*;
    use std::process::Command;

    fn have_ssh_keygen() -> bool {
        let ok = Command::new("ssh-keygen").arg("-?").output().is_ok();
        if !ok {
            eprintln!(
                "\n!!!!! SKIPPED: ssh-keygen is missing (scripts/prepare installs it) !!!!!\n"
            );
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
}
