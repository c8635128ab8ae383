//! The host key check: russh's client handler, which decides whether the server
//! is the host it claims to be. Plain keys are checked against known_hosts with
//! OpenSSH's rules (see `known_hosts`), host certificates against the
//! `@cert-authority` lines; which host key types to negotiate is chosen here too,
//! so the server is asked for a key type that known_hosts can vouch for.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys;

use super::known_hosts::{self, HostKeyStatus, KnownHosts};
use super::{Endpoint, SshError, SshOptions};

/// Why the handler refused the server's key, for the error message: set by the
/// handler, read by the connector once the handshake has failed.
pub(super) type Verdict = Arc<Mutex<Option<String>>>;

/// The host-key types whose certificates etcdroll asks for, most preferred first.
fn host_certificate_algorithms() -> Vec<keys::Algorithm> {
    use keys::{Algorithm, EcdsaCurve, HashAlg};
    vec![
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        },
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP521,
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
    ]
}

fn preferred_host_key_algorithms(recorded: &[String]) -> Vec<keys::Algorithm> {
    let mut out: Vec<keys::Algorithm> = Vec::new();
    for name in recorded {
        let names: &[&str] = if name == "ssh-rsa" {
            &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        } else {
            &[name.as_str()]
        };
        for n in names {
            if let Ok(a) = n.parse::<keys::Algorithm>() {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    for a in russh::Preferred::default().key.iter() {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

/// russh's client handler: checks the server's host key against known_hosts.
pub(super) struct HostKeyCheck {
    label: String,
    host: String,
    port: u16,
    known: KnownHosts,
    accept_new: bool,
    append_to: PathBuf,
    write_lock: Arc<Mutex<()>>,
    /// Why a key was refused, for the error message.
    verdict: Verdict,
}

impl HostKeyCheck {
    /// The check for `ep`: its own known_hosts file, then the run's, then the
    /// defaults. With `accept_new_host_keys`, an unknown key is recorded in the
    /// first of them (under `write_lock`, shared by every connection of the run).
    pub(super) fn for_endpoint(
        ep: &Endpoint,
        opts: &SshOptions,
        write_lock: Arc<Mutex<()>>,
    ) -> Result<HostKeyCheck, SshError> {
        let mut kh_paths: Vec<PathBuf> = ep.known_hosts_file.iter().cloned().collect();
        kh_paths.extend(opts.known_hosts_files.iter().cloned());
        kh_paths.extend(known_hosts::default_paths());
        let known = KnownHosts::load(&kh_paths).map_err(|e| SshError::HostKey {
            host: ep.label.clone(),
            reason: e.to_string(),
        })?;
        let append_to = kh_paths
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from("known_hosts"));
        Ok(HostKeyCheck {
            label: ep.label.clone(),
            host: ep.host.clone(),
            port: ep.port,
            known,
            accept_new: opts.accept_new_host_keys,
            append_to,
            write_lock,
            verdict: Arc::new(Mutex::new(None)),
        })
    }

    /// Where the reason for a refusal will be.
    pub(super) fn verdict(&self) -> Verdict {
        self.verdict.clone()
    }

    /// The host key types to ask the server for.
    pub(super) fn choose_algorithms(&self, config: &mut client::Config) {
        // Negotiate a host key type that known_hosts holds, or the check would see
        // an "unknown" ed25519 key when only an ecdsa one is recorded.
        let recorded = self.known.known_algorithms(&self.host, self.port);
        if !recorded.is_empty() {
            config.preferred.key = preferred_host_key_algorithms(&recorded).into();
        }
        // A CA trusted for this host: ask for its host certificate first, as
        // OpenSSH does (a server without one answers with a plain key).
        if !self
            .known
            .cert_authorities(&self.host, self.port)
            .is_empty()
        {
            config.preferred.host_key_certificates = host_certificate_algorithms().into();
        }
    }

    /// A host certificate, as OpenSSH checks one: signed by a CA that an
    /// `@cert-authority` line trusts for this name, neither CA nor key
    /// `@revoked`, a host (not a user) certificate, within its validity window,
    /// and naming this host among its principals (an empty list names any).
    /// A certificate never falls back to the plain key, and is never recorded.
    fn check_host_certificate(&self, cert: &keys::Certificate) -> Result<(), String> {
        let name = known_hosts::lookup_name(&self.host, self.port);
        let blob = |k: &keys::ssh_key::public::KeyData| -> String {
            keys::PublicKey::new(k.clone(), "")
                .to_openssh()
                .ok()
                .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
                .unwrap_or_default()
        };
        let ca = blob(cert.signature_key());
        let ca_fp = known_hosts::fingerprint_sha256(&ca);
        let subject = blob(cert.public_key());
        if let Some((file, line)) = self.known.revoked(&ca) {
            return Err(format!(
                "{name} offered a host certificate signed by CA {ca_fp}, which {}:{line} marks @revoked",
                file.display()
            ));
        }
        if let Some((file, line)) = self.known.revoked(&subject) {
            return Err(format!(
                "the host key {} in {name}'s certificate is marked @revoked in {}:{line}",
                known_hosts::fingerprint_sha256(&subject),
                file.display()
            ));
        }
        let trusted = self.known.cert_authorities(&self.host, self.port);
        if !trusted.iter().any(|t| t.key == ca) {
            return Err(format!(
                "{name} offered a host certificate signed by CA {ca_fp}, which no @cert-authority line trusts for it \
                 (trusted for it: {}). Verify the CA, then add a @cert-authority line",
                if trusted.is_empty() {
                    "none".to_string()
                } else {
                    trusted
                        .iter()
                        .map(|t| format!("{} ({}:{})", known_hosts::fingerprint_sha256(&t.key), t.file.display(), t.line))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        if cert.cert_type() != keys::ssh_key::certificate::CertType::Host {
            return Err(format!("{name} offered a user certificate as its host key"));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let fp = cert.signature_key().fingerprint(keys::HashAlg::Sha256);
        cert.validate_at(now, [&fp]).map_err(|e| {
            format!(
                "{name}'s host certificate (key id {:?}, signed by {ca_fp}) is not valid now: {e} \
                 (valid from {} to {})",
                cert.key_id(),
                cert.valid_after(),
                cert.valid_before()
            )
        })?;
        let principals = cert.valid_principals();
        if !principals.is_empty()
            && !principals
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&self.host))
        {
            return Err(format!(
                "{name}'s host certificate does not name {}: its principals are {}",
                self.host,
                principals.join(", ")
            ));
        }
        Ok(())
    }

    fn refuse(&self, reason: String) -> Result<bool, russh::Error> {
        if let Ok(mut v) = self.verdict.lock() {
            *v = Some(reason);
        }
        Ok(false)
    }
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    /// With -vvv: what was negotiated (never the shared secret).
    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(
            target: "etcdroll::ssh",
            "{}: negotiated kex {:?}, host key {}, cipher {:?}, mac {:?}",
            self.label,
            names.kex,
            names.key,
            names.cipher,
            names.client_mac
        );
        Ok(())
    }

    async fn check_server_key(
        &mut self,
        key: &keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            keys::PublicKeyOrCertificate::Certificate(cert) => {
                return match self.check_host_certificate(cert) {
                    Ok(()) => Ok(true),
                    Err(why) => self.refuse(why),
                };
            }
        };
        let openssh = key
            .to_openssh()
            .map_err(|e| russh::Error::from(keys::Error::from(e)))?;
        let mut parts = openssh.split_whitespace();
        let (algo, blob) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let fp = known_hosts::fingerprint_sha256(blob);
        let name = known_hosts::lookup_name(&self.host, self.port);
        tracing::info!(target: "etcdroll::ssh", "{}: host key {algo} {fp} offered by {name}", self.label);
        match self.known.check(&self.host, self.port, algo, blob) {
            HostKeyStatus::Known { .. } => Ok(true),
            HostKeyStatus::Revoked { file, line } => self.refuse(format!(
                "the {algo} key {fp} of {name} is marked @revoked in {}:{line}",
                file.display()
            )),
            HostKeyStatus::Changed {
                file,
                line,
                expected_fingerprint,
            } => self.refuse(format!(
                "HOST KEY CHANGED for {name}: it offered {algo} {fp}, but {}:{line} records {expected_fingerprint}. \
                 This may be an attack or a reinstalled host; verify it, then fix that line (ssh-keygen -R {name})",
                file.display()
            )),
            // Known only with other key types: the server no longer presents the
            // key that was recorded. OpenSSH calls this a changed key, and so it is
            // refused even with --accept-new-host-keys (a man in the middle need
            // only offer a type the real host was never recorded with).
            HostKeyStatus::OtherTypesKnown { recorded } => self.refuse(format!(
                "HOST KEY CHANGED for {name}: it offered {algo} {fp}, but known_hosts records only other keys for it: {}. \
                 The server no longer presents a recorded key; this may be an attack or a reinstalled host. \
                 Verify it, then fix those lines (ssh-keygen -R {name}); --accept-new-host-keys never overrides this",
                recorded
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            HostKeyStatus::Unknown if self.accept_new => {
                let _guard = self.write_lock.lock();
                known_hosts::append(&self.append_to, &self.host, self.port, algo, blob).map_err(|e| {
                    russh::Error::IO(std::io::Error::other(format!(
                        "cannot record host key in {}: {e}",
                        self.append_to.display()
                    )))
                })?;
                Ok(true)
            }
            HostKeyStatus::Unknown => self.refuse(format!(
                "{name} ({}) is not in known_hosts: it offered {algo} {fp}. \
                 Verify the fingerprint, then add it (ssh-keyscan) or pass --accept-new-host-keys",
                self.label
            )),
        }
    }
}
