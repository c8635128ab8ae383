//! The HTTP/1.1 transport of a client: one kept-alive connection over a dialed
//! stream, redialed when it breaks, every request under the client's time limit
//! and logged with -v (method, path, time, status; never a body).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::{EtcdClient, EtcdError};

impl EtcdClient {
    pub(super) async fn connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, EtcdError> {
        let alive = self
            .sender
            .as_ref()
            .is_some_and(|s| !s.is_closed() && s.is_ready());
        if !alive {
            self.sender = None;
            let stream = self
                .dialer
                .dial()
                .await
                .map_err(|reason| EtcdError::Connect {
                    url: self.url.clone(),
                    reason,
                })?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| EtcdError::Connect {
                    url: self.url.clone(),
                    reason: e.to_string(),
                })?;
            tokio::spawn(async move {
                // Ends when the member closes the connection or the sender is dropped.
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| EtcdError::Connect {
            url: String::new(),
            reason: "no connection".into(),
        })
    }

    /// One request; `body` None means GET. Returns status and body.
    pub(super) async fn request(
        &mut self,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Bytes), EtcdError> {
        self.request_with_raft_index(path, body)
            .await
            .map(|(status, _, body)| (status, body))
    }

    /// The same, with the `X-Raft-Index` header where etcd sends one (v2 answers).
    pub(super) async fn request_with_raft_index(
        &mut self,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Option<u64>, Bytes), EtcdError> {
        let limit = self.timeout;
        let url = self.url.clone();
        let fut = async {
            let req = hyper::Request::builder()
                .method(if body.is_some() { "POST" } else { "GET" })
                .uri(path)
                .header("host", self.host_header.as_str())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
                .map_err(|e| EtcdError::Decode {
                    url: url.clone(),
                    path: path.to_string(),
                    reason: e.to_string(),
                })?;
            let sender = self.connection().await?;
            let _wait = crate::round_trips::wait();
            let resp = match sender.send_request(req).await {
                Ok(r) => r,
                Err(e) => {
                    self.sender = None;
                    return Err(EtcdError::Connect {
                        url: url.clone(),
                        reason: e.to_string(),
                    });
                }
            };
            let status = resp.status().as_u16();
            let raft_index = resp
                .headers()
                .get("x-raft-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| EtcdError::Connect {
                    url: url.clone(),
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok((status, raft_index, body))
        };
        let t0 = std::time::Instant::now();
        let result = tokio::time::timeout(limit, fut).await;
        tracing::info!(
            target: "etcdroll::http",
            "{} {} {path} | {} ms | {}",
            self.url,
            if body.is_some() { "POST" } else { "GET" },
            t0.elapsed().as_millis(),
            match &result {
                Ok(Ok((status, _, _))) => status.to_string(),
                Ok(Err(e)) => format!("error: {e}"),
                Err(_) => "timeout".into(),
            }
        );
        match result {
            Ok(r) => r,
            Err(_) => {
                self.sender = None;
                Err(EtcdError::Timeout {
                    url,
                    path: path.to_string(),
                    limit,
                })
            }
        }
    }

    pub(super) async fn json(
        &mut self,
        path: &str,
        body: Option<&str>,
    ) -> Result<Value, EtcdError> {
        let (status, bytes) = self.request(path, body).await?;
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        if status != 200 {
            return Err(EtcdError::Status {
                url: self.url.clone(),
                path: path.to_string(),
                status,
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| self.decode_err(path, format!("{e} in {text:?}")))
    }

    pub(super) fn decode_err(&self, path: &str, reason: String) -> EtcdError {
        EtcdError::Decode {
            url: self.url.clone(),
            path: path.to_string(),
            reason,
        }
    }
}
