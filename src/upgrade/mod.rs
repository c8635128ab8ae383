//! The engine: the procedures of design §1 as phases, each reporting through
//! events and never printing.

pub mod adhoc;
pub mod clusters;
pub mod fleet;
pub mod lock;
mod path;

pub use fleet::{connect_all, endpoint_for, HostLink, ReachOptions};
pub mod preflight;
pub mod procedures;
pub mod roll;
