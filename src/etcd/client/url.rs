//! Where a client URL points: the host and port the tunnel is opened to.

/// Host and port of a client URL such as `http://127.0.0.1:2379` or `https://[fd12::1]:2379`.
pub fn url_host_port(url: &str) -> Result<(String, u16), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL (expected http://HOST:PORT)"))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(format!("{url:?}: scheme must be http or https")),
    };
    let authority = rest.split('/').next().unwrap_or("");
    if let Some(r) = authority.strip_prefix('[') {
        let (h, after) = r
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
            None => default_port,
        };
        return Ok((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
        )),
        None => Ok((authority.to_string(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_urls() {
        assert_eq!(
            url_host_port("http://127.0.0.1:2379").unwrap(),
            ("127.0.0.1".into(), 2379)
        );
        assert_eq!(
            url_host_port("https://[fd12::1]:2379/").unwrap(),
            ("fd12::1".into(), 2379)
        );
        assert_eq!(
            url_host_port("https://etcd.local").unwrap(),
            ("etcd.local".into(), 443)
        );
        assert!(url_host_port("tcp://x:1").is_err());
        assert!(url_host_port("127.0.0.1:2379").is_err());
    }
}
