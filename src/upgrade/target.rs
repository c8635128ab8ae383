//! What a run aims at and how patient it is: the target binaries (and, for a
//! path, the later hops), every limit of the roll, and the Ctrl-C counter. Read by
//! every phase, changed by none.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::etcd::commands;
use crate::etcd::Version;
use crate::ssh::Payload;

/// The binaries to install and the version they must report.
#[derive(Clone)]
pub struct Target {
    pub version: Version,
    pub etcd: Payload,
    pub etcdctl: Option<Payload>,
    /// Where they are staged on the hosts.
    pub stage: Stage,
    /// The later hops of a path (one binary per minor), in order.
    pub then: Vec<Target>,
}

/// Where a target's binaries are staged on the hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stage {
    /// Uploaded as `NAME.new`, for this run's roll.
    #[default]
    Next,
    /// Uploaded up front as `NAME.new-X.Y.Z`, for a later hop of a path.
    Later,
    /// Uploaded earlier as `NAME.new-X.Y.Z`: renamed to `NAME.new` and verified.
    Prestaged,
}

impl Target {
    pub fn new(version: Version, etcd: Payload, etcdctl: Option<Payload>) -> Target {
        Target {
            version,
            etcd,
            etcdctl,
            stage: Stage::Next,
            then: Vec::new(),
        }
    }

    /// A target with no binaries: what a member is rolled back or restarted to.
    pub fn in_place(version: Version) -> Target {
        Target::new(version, Payload::empty(), None)
    }

    /// The staged name of `binary` for this target.
    pub fn staged(&self, binary: &str) -> String {
        match self.stage {
            Stage::Next | Stage::Prestaged => commands::staged_path(binary),
            Stage::Later => commands::staged_path_for(binary, self.version),
        }
    }
}

/// Every limit and pause of the roll, from the command line.
#[derive(Clone, Debug)]
pub struct RollOptions {
    pub run_id: String,
    pub command_timeout: Duration,
    pub upload_stall_timeout: Duration,
    pub health_timeout: Duration,
    pub catch_up_timeout: Duration,
    pub cluster_version_timeout: Duration,
    pub poll_interval: Duration,
    pub settle: Duration,
}

/// Ctrl-C: once asks to stop after the current member; the count is read between members.
#[derive(Default)]
pub struct Interrupt {
    count: AtomicU32,
}

impl Interrupt {
    pub fn press(&self) -> u32 {
        self.count.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn requested(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }
}
