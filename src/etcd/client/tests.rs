//! The client against a fake member served over in-memory streams; the real
//! etcd versions are exercised by the lab tests.

use super::*;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A dialer handing out in-memory streams to a tiny fake HTTP server task;
/// the real etcd is exercised by the lab tests.
struct FakeDial {
    answers: Arc<Vec<(&'static str, &'static str)>>,
}
impl Dial for FakeDial {
    fn dial(&self) -> DialFuture<'_> {
        let answers = self.answers.clone();
        Box::pin(async move {
            let (client, mut server) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = match server.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (code, body) = answers
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map(|(_, b)| ("200 OK", *b))
                        .unwrap_or(("404 Not Found", "404 page not found"));
                    let resp = format!(
                        "HTTP/1.1 {code}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if server.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Box::new(client) as BoxStream)
        })
    }
}

/// The gateway prefixes seen in the lab (design §7), and v2 while mixed.
#[test]
fn the_api_follows_the_versions() {
    let v = |s| crate::etcd::Version::parse(s).unwrap();
    assert_eq!(Api::for_versions(v("2.3.7"), Some(v("2.3.0"))), Api::V2);
    assert_eq!(
        Api::for_versions(v("3.0.16"), Some(v("2.3.0"))),
        Api::V2,
        "mixed"
    );
    assert_eq!(
        Api::for_versions(v("3.0.16"), Some(v("3.0.0"))),
        Api::V3("/v3alpha")
    );
    assert_eq!(
        Api::for_versions(v("3.2.32"), Some(v("3.2.0"))),
        Api::V3("/v3alpha")
    );
    assert_eq!(
        Api::for_versions(v("3.3.27"), Some(v("3.3.0"))),
        Api::V3("/v3beta")
    );
    assert_eq!(
        Api::for_versions(v("3.4.23"), Some(v("3.4.0"))),
        Api::V3("/v3")
    );
    assert_eq!(Api::for_versions(v("3.5.30"), None), Api::V3("/v3"));
}

#[tokio::test]
async fn parses_answers_of_old_and_new_etcd() {
    let answers = Arc::new(vec![
        (
            "/version",
            r#"{"etcdserver":"3.0.17","etcdcluster":"2.3.0"}"#,
        ),
        ("/health", r#"{"health": "true"}"#),
        (
            "/v2/members",
            r#"{"members":[{"id":"6e3bd23ae5f1eae0","name":"infra1","peerURLs":["http://localhost:12380"],"clientURLs":["http://localhost:12379"]}]}"#,
        ),
    ]);
    let mut c = EtcdClient::new(
        "http://127.0.0.1:2379",
        Box::new(FakeDial { answers }),
        Duration::from_secs(5),
    );
    let v = c.version().await.unwrap();
    assert_eq!(v.server, "3.0.17");
    assert_eq!(v.cluster, "2.3.0");
    assert!(c.health().await.unwrap().healthy);
    let ms = c.members().await.unwrap();
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].id, 0x6e3bd23ae5f1eae0);
    assert_eq!(ms[0].name, "infra1");
}
