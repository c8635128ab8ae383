//! etcdroll: rolling upgrades of etcd clusters over SSH.
//!
//! The engine (`upgrade`) works on hosts through `ssh` and on etcd through `etcd`,
//! and reports what it does as `events`; `ui` renders them. `inventory` reads
//! Ansible inventories; `lab` builds real test hosts in network namespaces.

pub mod cli;
pub mod etcd;
pub mod events;
pub mod exit;
pub mod inventory;
pub mod journal;
pub mod lab;
pub mod secret_env;
pub mod ssh;
pub mod ui;
pub mod upgrade;
