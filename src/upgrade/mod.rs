//! The engine: it drives a fleet of hosts (`fleet`) through the procedures
//! (`procedures`, each a list of `phase`s) and reports through events; it
//! never prints.

pub mod adhoc;
pub mod clusters;
#[cfg(test)]
mod fake_host;
pub mod fleet;
pub mod lock;
mod path;
pub mod phase;
pub mod preflight;
pub mod procedures;
pub mod record;
pub mod remote_host;
pub mod target;

pub use fleet::{connect_all, discover_all, HostLink};
