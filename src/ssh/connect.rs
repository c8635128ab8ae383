//! Opening sessions: TCP (or a channel through the jump hosts before it), the SSH
//! handshake with its host key check, then authentication, each under its own
//! time limit. The connector lives for the whole run, so decrypted keys and the
//! connections to jump hosts are shared by every host that needs them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use russh::client;

use super::auth::{self, KeyCache};
use super::host_key::HostKeyCheck;
use super::{Endpoint, Session, SshError, SshOptions};

/// Opens sessions; shares decrypted keys and jump-host connections between them.
pub struct Connector {
    opts: SshOptions,
    keys: KeyCache,
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
                Some(s) if !s.is_closed() => s.clone(),
                _ => {
                    let s = Arc::new(
                        self.connect_one(hop, via.clone())
                            .await
                            .map_err(|e| e.behind_jump(&ep.label))?,
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
        let handler = HostKeyCheck::for_endpoint(ep, &self.opts, self.known_hosts_write.clone())?;
        let mut config = client::Config {
            // What the host may send us before we grant more: russh's default
            // 2 MiB caps a 100 ms path at ~20 MB/s for command output and
            // tunnels; 8 MiB lifts that to ~80 MB/s. It bounds only unread data,
            // which every reader here consumes as it comes, so it costs no memory
            // in a run. (Uploads are bounded by the host's window instead:
            // OpenSSH's sshd grants 2 MiB per session channel, which is why they
            // are gzipped off a LAN; see upload.rs.)
            window_size: 8 * 1024 * 1024,
            // Larger packets from the host mean fewer MACs and wakeups; OpenSSH
            // sends up to what we allow (its own limit is 256 KiB).
            maximum_packet_size: 64 * 1024,
            nodelay: true,
            keepalive_interval: Some(self.opts.keepalive_interval),
            keepalive_max: 3,
            ..Default::default()
        };
        handler.choose_algorithms(&mut config);
        let verdict = handler.verdict();
        let config = Arc::new(config);
        let addr = ep.display_addr();
        let unreachable = |reason: String| SshError::Unreachable {
            host: ep.label.clone(),
            addr: addr.clone(),
            reason,
        };
        let limit = self.opts.connect_timeout;
        let connecting = async {
            let _wait = crate::round_trips::wait_rounds(crate::round_trips::CONNECTION);
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
                        .handle()
                        .channel_open_direct_tcpip(ep.host.clone(), ep.port as u32, "127.0.0.1", 0)
                        .await
                        .map_err(|e| {
                            unreachable(format!(
                                "jump host {} could not connect: {e}",
                                jump.label()
                            ))
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
        tokio::time::timeout(
            auth_limit,
            auth::authenticate(&mut handle, ep, &self.opts, &self.keys),
        )
        .await
        .map_err(|_| SshError::Timeout {
            host: ep.label.clone(),
            step: format!("authentication as {}", ep.user),
            limit: auth_limit,
        })??;
        Ok(Session::new(ep.label.clone(), handle, via))
    }
}
