//! Everything etcdroll knows about etcd: versions and upgrade paths, its HTTP API,
//! and the commands that probe, stop, start, back up and swap a member.

pub mod client;
pub mod commands;
pub mod discover;
pub mod rules;
pub mod tls;
mod vars;
mod version;

pub use client::{EtcdClient, EtcdError, Health, Member, MemberStatus, VersionInfo};
pub use rules::{MIN_3_5_FOR_3_6, MIN_3_6_FOR_3_7};
pub use vars::{EtcdVars, ServiceManager};
pub use version::{upgrade_step, UpgradeStep, Version};
