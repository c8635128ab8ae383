//! The hosts of a run and their kept-open sessions; HTTP clients to their members
//! through tunnels. Everything the phases do to a host goes through here.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::etcd::client::{url_host_port, BoxStream, Dial, DialFuture};
use crate::etcd::discover::{self, Found, UnitFacts};
use crate::etcd::{tls, EtcdClient, ServiceManager};
use crate::inventory::{Host, Secret};
use crate::reach::{endpoint_for, ReachOptions};
use crate::ssh::{sudo, Connector, Endpoint, ExecOutput, RemoteCommand, Session, SshError};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// One host of the run and, if it could be logged into, its session.
pub struct HostLink {
    pub host: Host,
    slot: Arc<SessionSlot>,
    pub become_: bool,
    /// Fed to `sudo -S` on stdin: never on a command line, never in output.
    become_password: Option<Secret>,
    /// What systemd said of the etcd unit (`discover_all`), for the pre-flight.
    pub unit: Option<UnitFacts>,
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

    /// The command as it must be sent, and what to feed its stdin: under sudo
    /// (`ssh::sudo`) when the host asks for `become`.
    pub fn privileged(&self, cmd: &RemoteCommand) -> (RemoteCommand, Option<Vec<u8>>) {
        if !self.become_ {
            return (cmd.clone(), None);
        }
        let user = self.host.become_user.as_deref().unwrap_or("root");
        sudo::wrap(cmd, user, self.become_password.as_ref().map(|p| p.expose()))
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
                Some((connector, name)) => {
                    // TLS 1.3 with a client certificate: one round (1.2: two).
                    let _wait = crate::round_trips::wait();
                    connector.connect(name.clone(), stream).await
                }
                .map(|s| Box::new(s) as BoxStream)
                .map_err(|e| format!("TLS handshake with {}:{} failed: {e}", self.host, self.port)),
            }
        })
    }
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
                unit: None,
            }
        }
    });
    join_all(tasks).await
}

/// Ask every systemd host at once what its etcd unit and process say
/// (`etcd::discover`), and fill in what the inventory left to the default.
/// Returns, per host, what was filled and from where. A host that cannot be
/// asked keeps the inventory's values; the pre-flight then says what is wrong.
pub async fn discover_all(links: &mut [HostLink], limit: Duration) -> Vec<(String, Vec<Found>)> {
    let answers = join_all(links.iter().map(|l| async move {
        if l.session().is_err() || l.host.etcd.service_manager != ServiceManager::Systemd {
            return None;
        }
        match l
            .run_privileged(&discover::command(&l.host.etcd), limit)
            .await
        {
            Ok(out) if out.success() => Some(discover::parse(&out.stdout_text())),
            _ => None,
        }
    }))
    .await;
    let mut report = Vec::new();
    for (link, answer) in links.iter_mut().zip(answers) {
        let Some(d) = answer else { continue };
        let found = discover::apply(&d, &mut link.host.etcd);
        link.unit = d.unit;
        if !found.is_empty() {
            report.push((link.host.name.clone(), found));
        }
    }
    report
}
