//! known_hosts, with OpenSSH's rules: comma-separated patterns with `*`/`?` and
//! `!` negation, `[host]:port` names, hashed `|1|salt|hash` entries, `@revoked`
//! keys, `@cert-authority` lines (not plain keys). russh's own check misses most of
//! these, so etcdroll keeps its own, tested against `ssh-keygen -F`.

mod files;
mod patterns;

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

pub use files::{append, default_paths};
use patterns::hosts_match;

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

/// `SHA256:…` exactly as `ssh-keygen -l` prints it.
pub fn fingerprint_sha256(key_b64: &str) -> String {
    let blob = STANDARD.decode(key_b64).unwrap_or_default();
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob)))
}

#[cfg(test)]
mod tests;
