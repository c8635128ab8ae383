//! SSH, in one place: connecting (directly or through jump hosts), host key checks,
//! authentication, and the three things the rest of etcdroll does with a host:
//! run a command, upload a file, open a tunnel. Nothing outside this module touches russh.

mod auth;
pub mod command;
pub mod config;
mod connect;
mod endpoint;
mod error;
mod host_key;
pub mod known_hosts;
mod output;
mod session;
mod shell;
pub mod sudo;
mod upload;
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

use std::path::PathBuf;
use std::time::Duration;

pub use command::{quote, RemoteCommand};
pub use connect::Connector;
pub use endpoint::{parse_jumps, Endpoint};
pub use error::SshError;
pub use output::{Compress, ExecOutput, Payload};
pub use session::Session;
pub use upload::{choose_wire, pays, receive_command, Wire, FAR_ANSWER};

/// A bidirectional byte stream to `host:port` as seen from the remote host.
pub type TunnelStream = russh::ChannelStream<russh::client::Msg>;

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
