//! Where to connect: one SSH server (a host or a jump host on the way) and the
//! ProxyJump syntax that names a chain of them. Pure data and parsing, no I/O.

use std::path::{Path, PathBuf};

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
