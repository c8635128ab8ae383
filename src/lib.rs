//! etcdroll: rolling upgrades of etcd clusters over SSH.
//!
//! The engine (`upgrade`) works on hosts through `ssh` and on etcd through `etcd`,
//! and reports what it does as `events`; `ui` renders them. `inventory` reads
//! Ansible inventories. The lab the tests run on is its own crate, `lab/`.

pub mod cli;
pub mod etcd;
pub mod events;
pub mod exit;
pub mod inventory;
pub mod journal;
pub mod reach;
pub mod round_trips;
pub mod secret_env;
pub mod ssh;
pub mod ui;
pub mod upgrade;
