//! SSH, in one place: connecting (directly or through jump hosts), host key checks,
//! authentication, and the three things the rest of etcdroll does with a host:
//! run a command, upload a file, open a tunnel. Nothing outside this module touches russh.

pub mod command;
pub mod config;
pub mod known_hosts;
mod shell;
#[cfg(test)]
pub(crate) mod test_rng {
    //! A tiny deterministic generator (xorshift64) for the property tests.
    pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }
}
#[doc(hidden)]
pub use shell::parse_framed;

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::ChannelMsg;
use sha2::{Digest, Sha256};

pub use command::{quote, RemoteCommand};
use known_hosts::{HostKeyStatus, KnownHosts};

/// A bidirectional byte stream to `host:port` as seen from the remote host.
pub type TunnelStream = russh::ChannelStream<client::Msg>;

/// Limits and policies shared by every connection of a run.
#[derive(Clone, Debug)]
pub struct SshOptions {
    pub connect_timeout: Duration,
    pub auth_timeout: Duration,
    pub keepalive_interval: Duration,
    /// Files searched in addition to each host's own and the defaults.
    pub known_hosts_files: Vec<PathBuf>,
    /// Record unknown host keys instead of refusing them (changed keys are always refused).
    pub accept_new_host_keys: bool,
    /// Key files tried before the agent, for every host.
    pub identity_files: Vec<PathBuf>,
    pub use_agent: bool,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            connect_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(10),
            known_hosts_files: Vec::new(),
            accept_new_host_keys: false,
            identity_files: Vec::new(),
            use_agent: true,
        }
    }
}

/// One SSH server to reach: the host itself or a jump host on the way.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The name used in messages (the inventory name).
    pub label: String,
    /// Address or DNS name to connect to (and to look up in known_hosts).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    /// Jump hosts, outermost first (ProxyJump order).
    pub jumps: Vec<Endpoint>,
}

impl Endpoint {
    /// `user@host:port` as OpenSSH would print it.
    pub fn display_addr(&self) -> String {
        if self.host.contains(':') {
            format!("{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            format!("{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// Parse a ProxyJump value (`[user@]host[:port][,...]`) into jump endpoints.
/// Hops inherit the default user, key and known_hosts file given.
pub fn parse_jumps(
    spec: &str,
    default_user: &str,
    identity_file: Option<&Path>,
    known_hosts_file: Option<&Path>,
) -> Result<Vec<Endpoint>, String> {
    let mut hops = Vec::new();
    for hop in spec.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
        let (user, rest) = match hop.rsplit_once('@') {
            Some((u, r)) => (u.to_string(), r),
            None => (default_user.to_string(), hop),
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("jump host {hop:?}: unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p, hop)?,
                None => 22,
            };
            (h.to_string(), port)
        } else if rest.matches(':').count() == 1 {
            let (h, p) = rest.split_once(':').unwrap_or((rest, "22"));
            (h.to_string(), parse_port(p, hop)?)
        } else {
            (rest.to_string(), 22)
        };
        if host.is_empty() {
            return Err(format!("jump host {hop:?} has no host name"));
        }
        hops.push(Endpoint {
            label: host.clone(),
            host,
            port,
            user,
            identity_file: identity_file.map(Path::to_path_buf),
            known_hosts_file: known_hosts_file.map(Path::to_path_buf),
            jumps: Vec::new(),
        });
    }
    Ok(hops)
}

fn parse_port(p: &str, hop: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("jump host {hop:?}: port {p:?} is not a port number"))
}

/// Everything that can go wrong talking to a host, each naming the host.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SshError {
    #[error("{host}: cannot reach {addr}: {reason}")]
    Unreachable {
        host: String,
        addr: String,
        reason: String,
    },
    #[error("{host}: host key check failed: {reason}")]
    HostKey { host: String, reason: String },
    #[error("{host}: authentication as {user} failed: {reason}")]
    Auth {
        host: String,
        user: String,
        reason: String,
    },
    #[error("{host}: {step} timed out after {}", humantime::format_duration(*limit))]
    Timeout {
        host: String,
        step: String,
        limit: Duration,
    },
    #[error("{host}: {step}: {reason}")]
    Channel {
        host: String,
        step: String,
        reason: String,
    },
}

impl SshError {
    /// True when the host could not be logged into at all (Ansible's "unreachable").
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SshError::Unreachable { .. } | SshError::HostKey { .. } | SshError::Auth { .. }
        )
    }
}

/// The outcome of one remote command.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    pub exit_status: Option<u32>,
    pub exit_signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// "exit 3" / "killed by TERM" / "no exit status", for messages.
    pub fn describe_exit(&self) -> String {
        match (&self.exit_status, &self.exit_signal) {
            (Some(s), _) => format!("exit {s}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "no exit status".to_string(),
        }
    }
    /// The last non-empty line of stderr (or stdout), for one-line error messages.
    pub fn last_error_line(&self) -> String {
        let pick = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        };
        pick(&self.stderr)
            .or_else(|| pick(&self.stdout))
            .unwrap_or_default()
    }
}

/// A file to upload, read and hashed once however many hosts receive it.
#[derive(Clone)]
pub struct Payload {
    pub bytes: bytes::Bytes,
    pub sha256: String,
}

impl Payload {
    pub fn read(path: &Path) -> std::io::Result<Payload> {
        let bytes = std::fs::read(path)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(Payload {
            bytes: bytes.into(),
            sha256,
        })
    }
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Opens sessions; shares decrypted keys and jump-host connections between them.
pub struct Connector {
    opts: SshOptions,
    keys: tokio::sync::Mutex<HashMap<PathBuf, Arc<PrivateKey>>>,
    jump_sessions: tokio::sync::Mutex<HashMap<Endpoint, Arc<Session>>>,
    known_hosts_write: Arc<Mutex<()>>,
}

impl Connector {
    pub fn new(opts: SshOptions) -> Self {
        Connector {
            opts,
            keys: Default::default(),
            jump_sessions: Default::default(),
            known_hosts_write: Arc::new(Mutex::new(())),
        }
    }

    pub fn options(&self) -> &SshOptions {
        &self.opts
    }

    /// Connect and authenticate, through the endpoint's jump hosts if any. Jump
    /// connections are opened once and shared by every host behind them.
    pub async fn connect(&self, ep: &Endpoint) -> Result<Session, SshError> {
        let mut via: Option<Arc<Session>> = None;
        for (i, hop) in ep.jumps.iter().enumerate() {
            // A hop's identity is the chain that leads to it, so equal chains share.
            let mut key = hop.clone();
            key.jumps = ep.jumps[..i].to_vec();
            let mut cache = self.jump_sessions.lock().await;
            let session = match cache.get(&key) {
                Some(s) if !s.handle.is_closed() => s.clone(),
                _ => {
                    let s = Arc::new(
                        self.connect_one(hop, via.clone())
                            .await
                            .map_err(|e| in_jump(e, &ep.label))?,
                    );
                    cache.insert(key, s.clone());
                    s
                }
            };
            via = Some(session);
        }
        self.connect_one(ep, via).await
    }

    async fn connect_one(
        &self,
        ep: &Endpoint,
        via: Option<Arc<Session>>,
    ) -> Result<Session, SshError> {
        let mut kh_paths: Vec<PathBuf> = ep.known_hosts_file.iter().cloned().collect();
        kh_paths.extend(self.opts.known_hosts_files.iter().cloned());
        kh_paths.extend(known_hosts::default_paths());
        let known = KnownHosts::load(&kh_paths).map_err(|e| SshError::HostKey {
            host: ep.label.clone(),
            reason: e.to_string(),
        })?;
        let append_to = kh_paths
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from("known_hosts"));

        let mut config = client::Config {
            nodelay: true,
            keepalive_interval: Some(self.opts.keepalive_interval),
            keepalive_max: 3,
            ..Default::default()
        };
        // Negotiate a host key type that known_hosts holds, or the check would see
        // an "unknown" ed25519 key when only an ecdsa one is recorded.
        let recorded = known.known_algorithms(&ep.host, ep.port);
        if !recorded.is_empty() {
            config.preferred.key = preferred_host_key_algorithms(&recorded).into();
        }
        // A CA trusted for this host: ask for its host certificate first, as
        // OpenSSH does (a server without one answers with a plain key).
        if !known.cert_authorities(&ep.host, ep.port).is_empty() {
            config.preferred.host_key_certificates = host_certificate_algorithms().into();
        }
        let verdict = Arc::new(Mutex::new(None));
        let handler = HostKeyCheck {
            label: ep.label.clone(),
            host: ep.host.clone(),
            port: ep.port,
            known,
            accept_new: self.opts.accept_new_host_keys,
            append_to,
            write_lock: self.known_hosts_write.clone(),
            verdict: verdict.clone(),
        };
        let config = Arc::new(config);
        let addr = ep.display_addr();
        let unreachable = |reason: String| SshError::Unreachable {
            host: ep.label.clone(),
            addr: addr.clone(),
            reason,
        };
        let limit = self.opts.connect_timeout;
        let connecting = async {
            match &via {
                None => {
                    let tcp = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
                        .await
                        .map_err(|e| unreachable(e.to_string()))?;
                    let _ = tcp.set_nodelay(true);
                    client::connect_stream(config, tcp, handler).await
                }
                Some(jump) => {
                    let stream = jump
                        .handle
                        .channel_open_direct_tcpip(ep.host.clone(), ep.port as u32, "127.0.0.1", 0)
                        .await
                        .map_err(|e| {
                            unreachable(format!("jump host {} could not connect: {e}", jump.label))
                        })?
                        .into_stream();
                    client::connect_stream(config, stream, handler).await
                }
            }
            .map_err(|e| {
                if let Some(reason) = verdict.lock().ok().and_then(|mut v| v.take()) {
                    SshError::HostKey {
                        host: ep.label.clone(),
                        reason,
                    }
                } else {
                    unreachable(format!("SSH handshake failed: {e}"))
                }
            })
        };
        let mut handle = tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "no SSH answer within {}",
                    humantime::format_duration(limit)
                ))
            })??;

        let auth_limit = self.opts.auth_timeout;
        tokio::time::timeout(auth_limit, self.authenticate(&mut handle, ep))
            .await
            .map_err(|_| SshError::Timeout {
                host: ep.label.clone(),
                step: format!("authentication as {}", ep.user),
                limit: auth_limit,
            })??;
        Ok(Session {
            label: ep.label.clone(),
            handle,
            _via: via,
            shell: tokio::sync::Mutex::new(None),
        })
    }

    /// Key files first (the host's, then the command line's, then the defaults),
    /// with the agent's keys tried before the defaults, as OpenSSH does.
    async fn authenticate(
        &self,
        handle: &mut Handle<HostKeyCheck>,
        ep: &Endpoint,
    ) -> Result<(), SshError> {
        let auth_err = |reason: String| SshError::Auth {
            host: ep.label.clone(),
            user: ep.user.clone(),
            reason,
        };
        let rsa_hash: Option<HashAlg> = handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| auth_err(e.to_string()))?
            .flatten();
        let mut tried: Vec<String> = Vec::new();

        let explicit: Vec<PathBuf> = ep
            .identity_file
            .iter()
            .chain(self.opts.identity_files.iter())
            .cloned()
            .collect();
        for path in &explicit {
            tracing::info!(target: "etcdroll::ssh", "{}: trying key file {}", ep.label, path.display());
            let key = self.load_key(path).await.map_err(&auth_err)?;
            // A user certificate beside the key (`KEY-cert.pub`), as OpenSSH
            // finds it, is offered first.
            if let Some(cert) = user_certificate(path) {
                let ok = handle
                    .authenticate_openssh_cert(&ep.user, key.clone(), cert)
                    .await
                    .map_err(|e| auth_err(e.to_string()))?
                    .success();
                if ok {
                    return Ok(());
                }
                tried.push(format!("{}-cert.pub", path.display()));
            }
            if try_key(handle, &ep.user, key, rsa_hash)
                .await
                .map_err(|e| auth_err(e.to_string()))?
            {
                return Ok(());
            }
            tried.push(path.display().to_string());
        }

        if self.opts.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
            match keys::agent::client::AgentClient::connect_env().await {
                Ok(mut agent) => {
                    let ids = agent.request_identities().await.unwrap_or_default();
                    tracing::info!(target: "etcdroll::ssh", "{}: trying the {} identities of ssh-agent", ep.label, ids.len());
                    for id in ids {
                        match id {
                            keys::agent::AgentIdentity::PublicKey { key, comment } => {
                                let hash = if key.algorithm().is_rsa() {
                                    rsa_hash
                                } else {
                                    None
                                };
                                match handle
                                    .authenticate_publickey_with(&ep.user, key, hash, &mut agent)
                                    .await
                                {
                                    Ok(r) if r.success() => return Ok(()),
                                    _ => tried.push(format!("agent key {comment}")),
                                }
                            }
                            // A user certificate held in the agent with its key.
                            keys::agent::AgentIdentity::Certificate {
                                certificate,
                                comment,
                            } => {
                                let hash = if certificate.algorithm().is_rsa() {
                                    rsa_hash
                                } else {
                                    None
                                };
                                match handle
                                    .authenticate_certificate_with(
                                        &ep.user,
                                        certificate,
                                        hash,
                                        &mut agent,
                                    )
                                    .await
                                {
                                    Ok(r) if r.success() => return Ok(()),
                                    _ => tried.push(format!("agent certificate {comment}")),
                                }
                            }
                        }
                    }
                }
                Err(e) => tried.push(format!("ssh-agent (unusable: {e})")),
            }
        }

        if explicit.is_empty() {
            if let Some(home) = std::env::var_os("HOME") {
                for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                    let path = Path::new(&home).join(".ssh").join(name);
                    if !path.exists() {
                        continue;
                    }
                    let key = match self.load_key(&path).await {
                        Ok(k) => k,
                        Err(e) => {
                            tried.push(format!("{} ({e})", path.display()));
                            continue;
                        }
                    };
                    if try_key(handle, &ep.user, key, rsa_hash)
                        .await
                        .map_err(|e| auth_err(e.to_string()))?
                    {
                        return Ok(());
                    }
                    tried.push(path.display().to_string());
                }
            }
        }
        Err(auth_err(if tried.is_empty() {
            "no key to try: give ansible_ssh_private_key_file, --private-key, or load a key into ssh-agent"
                .to_string()
        } else {
            format!("the server refused every key tried: {}", tried.join(", "))
        }))
    }

    /// Load (and decrypt once per run) a private key file.
    async fn load_key(&self, path: &Path) -> Result<Arc<PrivateKey>, String> {
        let mut cache = self.keys.lock().await;
        if let Some(k) = cache.get(path) {
            return Ok(k.clone());
        }
        let key = match keys::load_secret_key(path, None) {
            Ok(k) => k,
            Err(keys::Error::KeyIsEncrypted) => {
                let pass = passphrase_for(path)?;
                keys::load_secret_key(path, Some(&pass))
                    .map_err(|e| format!("cannot decrypt key {}: {e}", path.display()))?
            }
            Err(e) => return Err(format!("cannot read key {}: {e}", path.display())),
        };
        let key = Arc::new(key);
        cache.insert(path.to_path_buf(), key.clone());
        Ok(key)
    }
}

fn in_jump(e: SshError, behind: &str) -> SshError {
    match e {
        SshError::Unreachable { host, addr, reason } => SshError::Unreachable {
            host: behind.to_string(),
            addr,
            reason: format!("jump host {host}: {reason}"),
        },
        SshError::HostKey { host, reason } => SshError::HostKey {
            host: behind.to_string(),
            reason: format!("jump host {host}: {reason}"),
        },
        SshError::Auth { host, user, reason } => SshError::Auth {
            host: behind.to_string(),
            user,
            reason: format!("jump host {host}: {reason}"),
        },
        other => other,
    }
}

/// `KEY-cert.pub` beside a key file, if it is there and reads as a certificate.
fn user_certificate(key: &Path) -> Option<keys::Certificate> {
    let mut name = key.as_os_str().to_owned();
    name.push("-cert.pub");
    let text = std::fs::read_to_string(Path::new(&name)).ok()?;
    keys::Certificate::from_openssh(text.trim()).ok()
}

async fn try_key(
    handle: &mut Handle<HostKeyCheck>,
    user: &str,
    key: Arc<PrivateKey>,
    rsa_hash: Option<HashAlg>,
) -> Result<bool, russh::Error> {
    let r = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, rsa_hash))
        .await?;
    Ok(r.success())
}

/// The passphrase of an encrypted key: from `ETCDROLL_KEY_PASSPHRASE` for automation,
/// else asked on the terminal.
fn passphrase_for(path: &Path) -> Result<String, String> {
    if let Some(p) = crate::secret_env::get(crate::secret_env::KEY_PASSPHRASE) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "key {} is encrypted: set ETCDROLL_KEY_PASSPHRASE, load it into ssh-agent, or run on a terminal",
            path.display()
        ));
    }
    rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
        .map_err(|e| format!("cannot read passphrase: {e}"))
}

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
struct HostKeyCheck {
    label: String,
    host: String,
    port: u16,
    known: KnownHosts,
    accept_new: bool,
    append_to: PathBuf,
    write_lock: Arc<Mutex<()>>,
    /// Why a key was refused, for the error message.
    verdict: Arc<Mutex<Option<String>>>,
}

impl HostKeyCheck {
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

/// Drops the kept shell; the next command starts a fresh one.
fn discard_shell(kept: &mut Option<shell::KeptShell>) {
    if let Some(sh) = kept.take() {
        tokio::spawn(sh.close());
    }
}

/// A logged-in connection to one host, kept open for the whole run.
pub struct Session {
    label: String,
    handle: Handle<HostKeyCheck>,
    /// Keeps the jump host's connection alive as long as this one.
    _via: Option<Arc<Session>>,
    /// Runs the commands that need no stdin (see `shell.rs`); opened on first use.
    shell: tokio::sync::Mutex<Option<shell::KeptShell>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.label)
            .finish()
    }
}

impl Session {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    fn channel_err(&self, step: &str, e: impl fmt::Display) -> SshError {
        SshError::Channel {
            host: self.label.clone(),
            step: step.to_string(),
            reason: e.to_string(),
        }
    }

    /// The kept shell, started on first use.
    async fn kept_shell<'a>(
        &self,
        kept: &'a mut Option<shell::KeptShell>,
    ) -> Result<&'a mut shell::KeptShell, SshError> {
        if kept.is_none() {
            let channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.channel_err("open session", e))?;
            tracing::info!(target: "etcdroll::ssh", "{}: channel opened for the kept shell", self.label);
            let opened = shell::KeptShell::open(channel)
                .await
                .map_err(|e| self.channel_err("start the shell", e))?;
            *kept = Some(opened);
        }
        kept.as_mut()
            .ok_or_else(|| self.channel_err("exec", "no shell"))
    }

    fn shell_err(&self, step: &str, e: shell::ShellError, limit: Duration) -> SshError {
        match e {
            shell::ShellError::Channel(e) => self.channel_err(step, e),
            shell::ShellError::Ended => {
                self.channel_err(step, "the remote shell ended before the command did")
            }
            shell::ShellError::Stalled(doing) => SshError::Timeout {
                host: self.label.clone(),
                step: format!("{step} (no progress while {doing})"),
                limit,
            },
        }
    }

    /// Run a command; collect its exit status and output. `input` is written to its
    /// stdin first (then EOF), which is how secrets reach sudo without a command line.
    pub async fn exec(
        &self,
        cmd: &RemoteCommand,
        input: Option<&[u8]>,
        limit: Duration,
    ) -> Result<ExecOutput, SshError> {
        self.exec_streaming(cmd, input, limit, &mut |_| {}).await
    }

    /// Like `exec`, and calls `on_line` with each complete stdout line as it arrives,
    /// so one remote script can report its steps live. With `-v`, each command is
    /// logged with its duration and exit status (never its stdin: a password).
    pub async fn exec_streaming(
        &self,
        cmd: &RemoteCommand,
        input: Option<&[u8]>,
        limit: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ExecOutput, SshError> {
        let t0 = std::time::Instant::now();
        let result = self.exec_streaming_inner(cmd, input, limit, on_line).await;
        if tracing::enabled!(target: "etcdroll::remote", tracing::Level::INFO) {
            let line: String = cmd
                .as_str()
                .replace('\n', " ⏎ ")
                .chars()
                .take(240)
                .collect();
            let outcome = match &result {
                Ok(o) => o.describe_exit(),
                Err(e) => format!("error: {e}"),
            };
            tracing::info!(
                target: "etcdroll::remote",
                "{} | {} ms | {outcome} | {line}",
                self.label,
                t0.elapsed().as_millis()
            );
        }
        result
    }

    async fn exec_streaming_inner(
        &self,
        cmd: &RemoteCommand,
        input: Option<&[u8]>,
        limit: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ExecOutput, SshError> {
        // The kept shell runs one command at a time; a command that needs stdin, or
        // one issued while the shell is busy, gets a channel of its own.
        if input.is_none() {
            if let Ok(mut kept) = self.shell.try_lock() {
                let run = async {
                    let sh = self.kept_shell(&mut kept).await?;
                    sh.run(cmd.as_str(), on_line)
                        .await
                        .map_err(|e| self.shell_err("exec", e, limit))
                };
                let result = tokio::time::timeout(limit, run).await;
                if !matches!(result, Ok(Ok(_))) {
                    // Its state is unknown now: the next command starts a fresh one.
                    discard_shell(&mut kept);
                }
                return result.map_err(|_| SshError::Timeout {
                    host: self.label.clone(),
                    step: format!("command `{}`", truncate(cmd.as_str(), 80)),
                    limit,
                })?;
            }
        }
        let run = async {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.channel_err("open session", e))?;
            tracing::info!(target: "etcdroll::ssh", "{}: channel opened for a command with stdin, or while the kept shell is busy", self.label);
            channel
                .exec(true, cmd.as_str().as_bytes())
                .await
                .map_err(|e| self.channel_err("exec", e))?;
            if let Some(data) = input {
                channel
                    .data_bytes(bytes::Bytes::copy_from_slice(data))
                    .await
                    .map_err(|e| self.channel_err("write stdin", e))?;
            }
            channel
                .eof()
                .await
                .map_err(|e| self.channel_err("exec", e))?;
            let mut out = ExecOutput::default();
            let mut seen = 0usize;
            // Data may still arrive after ExitStatus: read until the channel closes.
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        out.stdout.extend_from_slice(&data);
                        while let Some(nl) = out.stdout[seen..].iter().position(|b| *b == b'\n') {
                            on_line(&String::from_utf8_lossy(&out.stdout[seen..seen + nl]));
                            seen += nl + 1;
                        }
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.exit_signal = Some(format!("{signal_name:?}"))
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            if seen < out.stdout.len() {
                on_line(&String::from_utf8_lossy(&out.stdout[seen..]));
            }
            Ok(out)
        };
        tokio::time::timeout(limit, run)
            .await
            .map_err(|_| SshError::Timeout {
                host: self.label.clone(),
                step: format!("command `{}`", truncate(cmd.as_str(), 80)),
                limit,
            })?
    }

    /// Stream `payload` into `remote_path` (created with mode 0600 by `umask`) and
    /// check its SHA-256 on the host. `progress` is called with the bytes sent so far.
    /// Uses `tee` and a hash tool, so it needs no sftp-server: the hash is taken as
    /// the bytes arrive (no second read of the file), with `openssl` where the host
    /// has it (it uses the CPU's SHA instructions; `sha256sum` is twice as slow here),
    /// and the file's size is checked after, which catches a write that failed
    /// half-way (a full disk) even though `tee` kept feeding the hash. The bytes go
    /// through the kept shell (no login shell per upload).
    pub async fn upload(
        &self,
        payload: &Payload,
        remote_path: &str,
        stall_limit: Duration,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), SshError> {
        let step = format!("upload to {remote_path}");
        // `head -c` takes exactly the payload from the kept shell's stdin.
        let cmd = format!(
            "F={f}; umask 077 && if command -v openssl >/dev/null 2>&1; \
             then H='openssl dgst -sha256 -r'; else H=sha256sum; fi && \
             head -c {n} | tee -- \"$F\" | $H && s=$(wc -c < \"$F\") && \
             {{ [ \"$s\" -eq {n} ] || {{ echo \"$F has $s bytes, expected {n}\" >&2; exit 1; }}; }}",
            f = quote(remote_path),
            n = payload.len(),
        );
        let (out, sent) = self
            .run_fed(&step, &cmd, &payload.bytes, stall_limit, progress)
            .await?;
        if sent < payload.len() && out.success() {
            return Err(self.channel_err(
                &step,
                format!(
                    "the remote command ended after {sent} of {} bytes",
                    payload.len()
                ),
            ));
        }
        if !out.success() {
            let said: Vec<String> = out
                .stderr_text()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            return Err(self.channel_err(
                &step,
                format!("{}: {}", out.describe_exit(), said.join("; ")),
            ));
        }
        let remote_sum = out
            .stdout_text()
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        if remote_sum != payload.sha256 {
            return Err(self.channel_err(
                &step,
                format!(
                    "checksum mismatch: sent {}, host has {remote_sum}",
                    payload.sha256
                ),
            ));
        }
        Ok(())
    }

    /// Runs `cmd` in the kept shell with `payload` on its stdin, as `upload` does;
    /// the shell is replaced if the command took more or fewer bytes than sent.
    /// Public for the tests of that guard.
    #[doc(hidden)]
    pub async fn feed(
        &self,
        cmd: &str,
        payload: &bytes::Bytes,
        stall_limit: Duration,
    ) -> Result<ExecOutput, SshError> {
        let (out, _) = self
            .run_fed("feed", cmd, payload, stall_limit, &|_| {})
            .await?;
        Ok(out)
    }

    /// `cmd` in the kept shell (waited for if busy) with `payload` on its stdin;
    /// the output and how many bytes were sent.
    async fn run_fed(
        &self,
        step: &str,
        cmd: &str,
        payload: &bytes::Bytes,
        stall_limit: Duration,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(ExecOutput, u64), SshError> {
        let mut kept = self.shell.lock().await;
        let sh = self.kept_shell(&mut kept).await?;
        match sh.run_fed(cmd, payload, stall_limit, progress).await {
            Ok(fed) => {
                if !fed.shell_usable {
                    discard_shell(&mut kept);
                }
                Ok((fed.output, fed.sent))
            }
            Err(e) => {
                discard_shell(&mut kept);
                Err(self.shell_err(step, e, stall_limit))
            }
        }
    }

    /// A TCP connection to `host:port` opened by the remote sshd (direct-tcpip).
    pub async fn tunnel(&self, host: &str, port: u16) -> Result<TunnelStream, SshError> {
        let ch = self
            .handle
            .channel_open_direct_tcpip(host.to_string(), port as u32, "127.0.0.1", 0)
            .await
            .map_err(|e| self.channel_err(&format!("tunnel to {host}:{port}"), e))?;
        Ok(ch.into_stream())
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_specs() {
        let hops = parse_jumps(
            "alice@b1:2222,b2,[fd12::1]:22,bob@[fd12::2]",
            "root",
            None,
            None,
        )
        .unwrap();
        let got: Vec<_> = hops
            .iter()
            .map(|h| (h.user.as_str(), h.host.as_str(), h.port))
            .collect();
        assert_eq!(
            got,
            vec![
                ("alice", "b1", 2222),
                ("root", "b2", 22),
                ("root", "fd12::1", 22),
                ("bob", "fd12::2", 22)
            ]
        );
        assert!(parse_jumps("b1:notaport", "root", None, None).is_err());
    }
}
