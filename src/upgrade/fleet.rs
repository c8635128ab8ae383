//! The hosts of a run and their kept-open sessions; HTTP clients to their members
//! through tunnels. Everything the phases do to a host goes through here.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::etcd::client::{url_host_port, BoxStream, Dial, DialFuture};
use crate::etcd::{tls, EtcdClient};
use crate::inventory::{Host, Secret};
use crate::ssh::{
    config, parse_jumps, Connector, Endpoint, ExecOutput, RemoteCommand, Session, SshError,
};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// Settings for how hosts are reached, from the command line.
#[derive(Clone, Debug, Default)]
pub struct ReachOptions {
    /// `-J`: jump hosts for every host, overriding the inventory.
    pub jump: Option<String>,
    /// `-u`: login user overriding the inventory.
    pub user: Option<String>,
    /// `--become`: run privileged steps with sudo.
    pub become_: bool,
    /// The sudo password (`--ask-become-pass` or ETCDROLL_BECOME_PASS), for every
    /// host; `ansible_become_pass` in the inventory is used where this is unset.
    pub become_password: Option<Secret>,
    /// `-F`: the ssh_config file (else ~/.ssh/config if it exists).
    pub ssh_config: Option<std::path::PathBuf>,
}

/// One host of the run and, if it could be logged into, its session.
pub struct HostLink {
    pub host: Host,
    slot: Arc<SessionSlot>,
    pub become_: bool,
    /// Fed to `sudo -S` on stdin: never on a command line, never in output.
    become_password: Option<Secret>,
}

/// A host's session, replaced by a new one when the connection drops: a step that
/// is safe to repeat (pre-flight, staging, health polling) reconnects and goes on.
struct SessionSlot {
    current: std::sync::Mutex<Result<Arc<Session>, SshError>>,
    endpoint: Option<Endpoint>,
    connector: Arc<Connector>,
}

impl SessionSlot {
    fn get(&self) -> Result<Arc<Session>, SshError> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The session, reconnected (bounded backoff: 3 tries over ~2 s) if its
    /// connection has dropped. A host that was never reachable is not retried.
    async fn live(&self) -> Result<Arc<Session>, SshError> {
        let s = self.get()?;
        if !s.is_closed() {
            return Ok(s);
        }
        let Some(ep) = &self.endpoint else {
            return Ok(s);
        };
        let mut last = None;
        for delay in [200u64, 600, 1200] {
            match self.connector.connect(ep).await {
                Ok(new) => {
                    let new = Arc::new(new);
                    *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Ok(new.clone());
                    return Ok(new);
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        Err(last.unwrap_or_else(|| SshError::Channel {
            host: ep.label.clone(),
            step: "reconnect".into(),
            reason: "gave up".into(),
        }))
    }
}

impl HostLink {
    pub fn name(&self) -> &str {
        &self.host.name
    }

    /// The session as connected at the start (an Err means unreachable).
    pub fn session(&self) -> Result<Arc<Session>, SshError> {
        self.slot.get()
    }

    /// The session, reconnected first if the connection dropped.
    pub async fn live_session(&self) -> Result<Arc<Session>, SshError> {
        self.slot.live().await
    }

    /// Run a command as the login user.
    pub async fn run(&self, cmd: &RemoteCommand, limit: Duration) -> Result<ExecOutput, SshError> {
        let s = self.live_session().await?;
        s.exec(cmd, None, limit).await
    }

    /// The command as it must be sent, and what to feed its stdin: under sudo when
    /// the host asks for `become`: `sudo -n` (never waits for a password on a
    /// terminal that is not there), or `sudo -S` with the password on stdin.
    pub fn privileged(&self, cmd: &RemoteCommand) -> (RemoteCommand, Option<Vec<u8>>) {
        if !self.become_ {
            return (cmd.clone(), None);
        }
        let user = self.host.become_user.as_deref().unwrap_or("root");
        let (flags, input): (&[&str], _) = match &self.become_password {
            Some(p) => (
                &["-S", "-k", "-p", ""],
                Some(format!("{}\n", p.expose()).into_bytes()),
            ),
            None => (&["-n"], None),
        };
        // With a password on stdin, the command itself must never read it: sudo
        // leaves it unread when it does not ask (root, NOPASSWD, a cached ticket),
        // so the command's stdin is closed before it runs.
        let inner = match input {
            Some(_) => RemoteCommand::script("exec </dev/null;").raw(cmd.as_str()),
            None => cmd.clone(),
        };
        let wrapped = RemoteCommand::new("sudo")
            .args(flags)
            .arg("-u")
            .arg(user)
            .arg("--")
            .raw(inner.in_sh().as_str());
        (wrapped, input)
    }

    /// Run a command with privilege when the host asks for `become`.
    pub async fn run_privileged(
        &self,
        cmd: &RemoteCommand,
        limit: Duration,
    ) -> Result<ExecOutput, SshError> {
        let (cmd, input) = self.privileged(cmd);
        self.live_session()
            .await?
            .exec(&cmd, input.as_deref(), limit)
            .await
    }

    /// Like `run_privileged`, reporting each stdout line as it arrives.
    pub async fn run_privileged_streaming(
        &self,
        cmd: &RemoteCommand,
        limit: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ExecOutput, SshError> {
        let (cmd, input) = self.privileged(cmd);
        self.live_session()
            .await?
            .exec_streaming(&cmd, input.as_deref(), limit, on_line)
            .await
    }

    /// An HTTP client for this host's etcd member, through a tunnel on its session.
    /// For an https client URL, the CA, certificate and key named by the inventory
    /// are read from the host into memory and TLS runs inside the tunnel.
    pub async fn etcd_client(&self, timeout: Duration) -> Result<EtcdClient, String> {
        self.session().map_err(|e| e.detail())?;
        let url = &self.host.etcd.client_url;
        let (host, port) = url_host_port(url)?;
        let tls = if url.starts_with("https://") {
            let vars = &self.host.etcd;
            let ca = vars
                .cacert
                .as_deref()
                .ok_or_else(|| format!("{url} is https but etcd_cacert is not set"))?;
            let ca = self.read_file(ca, timeout).await?;
            let client = match (&vars.cert, &vars.key) {
                (Some(c), Some(k)) => Some((
                    self.read_file(c, timeout).await?,
                    self.read_file(k, timeout).await?,
                )),
                _ => None,
            };
            let connector = tls::connector(
                &ca,
                client.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
            )
            .map_err(|e| e.to_string())?;
            Some((connector, tls::server_name(&host)?))
        } else {
            None
        };
        Ok(EtcdClient::new(
            url,
            Box::new(TunnelDial {
                slot: self.slot.clone(),
                host,
                port,
                tls,
            }),
            timeout,
        ))
    }

    /// A file's bytes, read on the host (with privilege when asked: keys are often
    /// root-only). Kept in memory only.
    async fn read_file(&self, path: &str, limit: Duration) -> Result<Vec<u8>, String> {
        let out = self
            .run_privileged(&RemoteCommand::new("cat").arg("--").arg(path), limit)
            .await
            .map_err(|e| e.detail())?;
        if !out.success() {
            return Err(format!("cannot read {path}: {}", out.last_error_line()));
        }
        Ok(out.stdout)
    }
}

struct TunnelDial {
    slot: Arc<SessionSlot>,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Dial for TunnelDial {
    fn dial(&self) -> DialFuture<'_> {
        Box::pin(async move {
            let session = self.slot.live().await.map_err(|e| e.detail())?;
            let stream = session
                .tunnel(&self.host, self.port)
                .await
                .map_err(|e| e.detail())?;
            match &self.tls {
                None => Ok(Box::new(stream) as BoxStream),
                Some((connector, name)) => connector
                    .connect(name.clone(), stream)
                    .await
                    .map(|s| Box::new(s) as BoxStream)
                    .map_err(|e| {
                        format!("TLS handshake with {}:{} failed: {e}", self.host, self.port)
                    }),
            }
        })
    }
}

/// The SSH endpoint of an inventory host. Precedence: command line, then
/// inventory, then ssh_config (resolved by OpenSSH's `ssh -G`), then defaults.
pub async fn endpoint_for(host: &Host, reach: &ReachOptions) -> Result<Endpoint, String> {
    let cfg = match config::config_file(reach.ssh_config.as_deref()) {
        Some(file) => Some(config::resolve(&host.address, &file).await?),
        None => None,
    };
    let cfg = cfg.unwrap_or_default();
    let user = reach
        .user
        .clone()
        .or_else(|| host.user.clone())
        .or_else(|| cfg.user.clone())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".to_string());
    let address = cfg
        .hostname
        .clone()
        .filter(|h| h != &host.address)
        .unwrap_or_else(|| host.address.clone());
    let identity_file = host
        .private_key_file
        .clone()
        .or_else(|| cfg.identity_files.iter().find(|p| p.exists()).cloned());
    let known_hosts_file = host
        .known_hosts_file
        .clone()
        .or_else(|| cfg.known_hosts_files.iter().find(|p| p.exists()).cloned());
    let jump_spec = reach
        .jump
        .clone()
        .or_else(|| host.jump.clone())
        .or(cfg.proxy_jump.clone());
    let jumps = match jump_spec.as_deref() {
        Some(spec) if !spec.trim().is_empty() && spec.trim() != "none" => parse_jumps(
            spec,
            &user,
            identity_file.as_deref(),
            known_hosts_file.as_deref(),
        )
        .map_err(|e| format!("{}: {e}", host.name))?,
        _ => Vec::new(),
    };
    Ok(Endpoint {
        label: host.name.clone(),
        host: address,
        port: host.port.or(cfg.port).unwrap_or(22),
        user,
        identity_file,
        known_hosts_file,
        jumps,
    })
}

/// Connect to every host at once. Hosts that fail are kept with their error, so
/// the caller can report them and still serve the others.
pub async fn connect_all(
    connector: Arc<Connector>,
    hosts: &[Host],
    reach: &ReachOptions,
) -> Vec<HostLink> {
    let tasks = hosts.iter().map(|h| {
        let connector = connector.clone();
        async move {
            let (endpoint, session) = match endpoint_for(h, reach).await {
                Ok(ep) => {
                    let s = connector.connect(&ep).await.map(Arc::new);
                    (Some(ep), s)
                }
                Err(e) => (
                    None,
                    Err(SshError::Unreachable {
                        host: h.name.clone(),
                        addr: h.address.clone(),
                        reason: e,
                    }),
                ),
            };
            HostLink {
                host: h.clone(),
                slot: Arc::new(SessionSlot {
                    current: std::sync::Mutex::new(session),
                    endpoint,
                    connector,
                }),
                become_: reach.become_ || h.become_,
                become_password: reach
                    .become_password
                    .clone()
                    .or_else(|| h.become_password.clone()),
            }
        }
    });
    join_all(tasks).await
}
