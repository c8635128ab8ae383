//! etcd's HTTP API (the v3 JSON gateway, `/version`, `/health`, and v2 where the
//! v3 API is not there) over any byte stream — here, an SSH tunnel. One kept-alive
//! HTTP/1.1 connection per member; when it breaks, the next call dials a new stream.
//!
//! Which API a member is asked through depends on its version (design §7): 2.3
//! serves only v2; the v3 gateway lives under `/v3alpha` on 3.0–3.2, `/v3beta` on
//! 3.3 and `/v3` from 3.4; and while a cluster is still on version 2.3 (mixed,
//! during 2.3 → 3.0) every v3 call is refused, so v2 is used there too.
//!
//! Here: the client and the calls every version answers alike; `transport.rs`
//! the HTTP connection, `v3.rs` the calls that depend on the API, `v2.rs` their
//! v2 form, `answers.rs` what comes back.

mod answers;
mod transport;
mod url;
mod v2;
mod v3;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

pub use answers::{Api, Health, Member, MemberStatus, VersionInfo};
pub use url::url_host_port;

/// A stream an HTTP connection can run over.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}
pub type BoxStream = Box<dyn Stream>;
pub type DialFuture<'a> = Pin<Box<dyn Future<Output = Result<BoxStream, String>> + Send + 'a>>;

/// Opens a new byte stream to the member's client URL (the caller knows how: a tunnel).
pub trait Dial: Send + Sync {
    fn dial(&self) -> DialFuture<'_>;
}

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// Could not reach the member's client port (tunnel refused, connection reset).
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}{path}: no answer within {}", humantime::format_duration(*limit))]
    Timeout {
        url: String,
        path: String,
        limit: Duration,
    },
    #[error("{url}{path} answered {status}: {body}")]
    Status {
        url: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("{url}{path}: unexpected answer: {reason}")]
    Decode {
        url: String,
        path: String,
        reason: String,
    },
}

impl EtcdError {
    /// The member refused a v3 call for its cluster version ("etcdserver: not
    /// capable"): a member of a mixed 2.3/3.0 cluster, or a 3.5 member whose WAL
    /// began in the 2.3 era. v2 can still answer.
    pub fn is_not_capable(&self) -> bool {
        matches!(self, EtcdError::Status { body, .. } if body.contains("not capable"))
    }
}

/// A client for one member.
pub struct EtcdClient {
    url: String,
    host_header: String,
    dialer: std::sync::Arc<dyn Dial>,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
    /// Learnt from `/version`; forgotten when the member restarts.
    api: Option<Api>,
}

impl EtcdClient {
    /// `url` is the member's client URL as seen from its host (for messages and the
    /// Host header); `dialer` opens streams to it.
    pub fn new(url: &str, dialer: Box<dyn Dial>, timeout: Duration) -> Self {
        let host_header = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(url)
            .trim_end_matches('/')
            .to_string();
        EtcdClient {
            url: url.trim_end_matches('/').to_string(),
            host_header,
            dialer: dialer.into(),
            sender: None,
            timeout,
            api: None,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A second client to the same member over a connection of its own, so two
    /// questions can be asked at once (HTTP/1.1 asks one at a time per
    /// connection): one round trip instead of two on a far link.
    pub fn twin(&self) -> EtcdClient {
        EtcdClient {
            url: self.url.clone(),
            host_header: self.host_header.clone(),
            dialer: self.dialer.clone(),
            sender: None,
            timeout: self.timeout,
            api: self.api,
        }
    }

    /// Take what `other` (a client to the same member) learnt of its API, so
    /// this one need not ask `/version` first.
    pub fn adopt_api(&mut self, other: &EtcdClient) {
        self.api = other.api;
    }

    /// Drop the kept-alive connection (after the member restarted, say), and
    /// what was learnt of its version.
    pub fn reset(&mut self) {
        self.sender = None;
        self.api = None;
    }

    /// The API this member is asked through, from its `/version` (asked now if
    /// it was not yet).
    pub async fn api(&mut self) -> Result<Api, EtcdError> {
        match self.api {
            Some(a) => Ok(a),
            None => {
                self.version().await?;
                Ok(self.api.unwrap_or(Api::V2))
            }
        }
    }

    pub async fn version(&mut self) -> Result<VersionInfo, EtcdError> {
        let v = self.json("/version", None).await?;
        let info: VersionInfo =
            serde_json::from_value(v).map_err(|e| self.decode_err("/version", e.to_string()))?;
        if let Some(server) = super::Version::parse(&info.server) {
            self.api = Some(Api::for_versions(
                server,
                super::Version::parse(&info.cluster),
            ));
        }
        Ok(info)
    }

    /// `/health`. A 503 with a body is an answer (unhealthy), not an error.
    pub async fn health(&mut self) -> Result<Health, EtcdError> {
        let (status, bytes) = self.request("/health", None).await?;
        let answer = String::from_utf8_lossy(&bytes).trim().to_string();
        let parsed: Option<Value> = serde_json::from_str(&answer).ok();
        let healthy = status == 200
            && parsed
                .as_ref()
                .and_then(|v| v.get("health"))
                .is_some_and(|h| h == "true" || h == true);
        if parsed.is_none() && status == 200 {
            return Err(self.decode_err("/health", format!("not JSON: {answer:?}")));
        }
        Ok(Health { healthy, answer })
    }

    /// Is the v2 API served (`--enable-v2`, or any 2.x)? Then there may be v2 data
    /// to back up the guide's way.
    pub async fn v2_enabled(&mut self) -> Result<bool, EtcdError> {
        let (status, _) = self.request("/v2/keys/", None).await?;
        Ok(status == 200)
    }
}

#[cfg(test)]
mod tests;
