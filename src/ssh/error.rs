//! What can go wrong talking to a host. Every variant names the host, so a
//! message printed for one host of many says which one it was about, and callers
//! branch on the kind (unreachable or not) rather than on the text.

use std::time::Duration;

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
    /// The connection dropped during `step`: a step that is safe to repeat
    /// reconnects and goes on.
    #[error("{host}: {step}: the connection dropped ({reason})")]
    Disconnected {
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

    /// The connection dropped (rather than a command or a login failing).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SshError::Disconnected { .. })
    }

    /// The same failure, told as a dropped connection: for errors seen after
    /// the session's connection closed.
    pub(super) fn into_disconnected(self) -> SshError {
        match self {
            SshError::Channel { host, step, reason } => {
                SshError::Disconnected { host, step, reason }
            }
            SshError::Timeout { host, step, limit } => SshError::Disconnected {
                host,
                step,
                reason: format!("no answer for {}", humantime::format_duration(limit)),
            },
            other => other,
        }
    }

    /// The host it is about.
    pub fn host(&self) -> &str {
        match self {
            SshError::Unreachable { host, .. }
            | SshError::HostKey { host, .. }
            | SshError::Auth { host, .. }
            | SshError::Timeout { host, .. }
            | SshError::Channel { host, .. }
            | SshError::Disconnected { host, .. } => host,
        }
    }

    /// The message without the host's name, for a report that names the host
    /// once already (never "m0: m0: …").
    pub fn detail(&self) -> String {
        let full = self.to_string();
        match full
            .strip_prefix(self.host())
            .and_then(|r| r.strip_prefix(": "))
        {
            Some(rest) => rest.to_string(),
            None => full,
        }
    }

    /// A jump host's failure, told as the failure of the host `behind` it.
    pub(super) fn behind_jump(self, behind: &str) -> SshError {
        match self {
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
}

#[cfg(test)]
mod tests {
    use super::SshError;

    #[test]
    fn the_detail_leaves_the_host_out() {
        let e = SshError::Channel {
            host: "m0".into(),
            step: "exec".into(),
            reason: "closed".into(),
        };
        assert_eq!(e.to_string(), "m0: exec: closed");
        assert_eq!(e.detail(), "exec: closed");
        assert_eq!(e.host(), "m0");
        let dropped = e.into_disconnected();
        assert!(dropped.is_disconnected());
        assert_eq!(
            dropped.to_string(),
            "m0: exec: the connection dropped (closed)"
        );
    }
}
