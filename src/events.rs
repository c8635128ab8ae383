//! What the engine reports while it works. The engine emits these and never prints;
//! each UI renders them (bars on a terminal, plain lines, or JSON lines). The JSON
//! form (`--output json`) is a stable, documented interface: add fields, never rename.

use std::sync::Arc;

use serde::Serialize;

/// The steps a member goes through; the bars show them, the JSON names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Connecting,
    Checking,
    Uploading,
    Verifying,
    Staged,
    Waiting,
    BackingUp,
    MovingLeader,
    Stopping,
    Swapping,
    Starting,
    WaitingHealthy,
    CatchingUp,
    ClusterHealth,
    RollingBack,
    Done,
    Skipped,
    Failed,
}

impl Step {
    pub fn label(self) -> &'static str {
        match self {
            Step::Connecting => "connecting",
            Step::Checking => "checking",
            Step::Uploading => "uploading",
            Step::Verifying => "verifying staged binary",
            Step::Staged => "staged",
            Step::Waiting => "waiting",
            Step::BackingUp => "backing up",
            Step::MovingLeader => "moving leadership away",
            Step::Stopping => "stopping",
            Step::Swapping => "swapping binary",
            Step::Starting => "starting",
            Step::WaitingHealthy => "waiting for health",
            Step::CatchingUp => "catching up",
            Step::ClusterHealth => "checking cluster health",
            Step::RollingBack => "rolling back",
            Step::Done => "done",
            Step::Skipped => "skipped",
            Step::Failed => "failed",
        }
    }
}

/// The state a member is left in, for failure reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Never touched by this run.
    Untouched,
    /// Running the new version, healthy.
    Upgraded,
    /// Running the old version again after a failed attempt.
    RolledBack,
    /// Not running: needs the operator.
    Stopped,
    /// Running, but its health was not confirmed.
    Unknown,
}

#[derive(Clone, Debug, Serialize)]
pub struct HostRecap {
    pub host: String,
    pub ok: bool,
    pub unreachable: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemberRow {
    pub host: String,
    pub name: String,
    pub id: String,
    pub server_version: String,
    pub cluster_version: String,
    pub healthy: bool,
    pub leader: bool,
    pub raft_index: u64,
    pub db_size: u64,
    /// Where etcdroll reached it: the SSH address and port, and the client URL
    /// on the host (`--output wide`).
    pub address: String,
    pub client_url: String,
    pub raft_term: u64,
    /// Why the fields are empty, when the member could not be asked.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckRow {
    pub host: String,
    pub version: Option<String>,
    pub target: Option<String>,
    pub healthy: bool,
    pub leader: bool,
    pub plan: String,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SummaryRow {
    pub host: String,
    pub from: String,
    pub to: String,
    pub state: MemberState,
    pub backup: Option<String>,
    pub down_ms: Option<u64>,
    pub catch_up_ms: Option<u64>,
    /// Offsets from the run's start, for the timeline.
    pub down_at_ms: Option<u64>,
    pub up_at_ms: Option<u64>,
}

/// One thing that happened. Serialized with an `event` tag in snake_case.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        command: String,
        hosts: Vec<String>,
    },
    HostUnreachable {
        host: String,
        error: String,
    },
    /// `exec`: one host's command finished.
    ExecResult {
        host: String,
        exit_status: Option<u32>,
        stdout: String,
        stderr: String,
        ok: bool,
    },
    /// `status`: one row per member.
    MemberStatus(MemberRow),
    /// `check`/pre-flight: one row per member.
    Check(CheckRow),
    /// A member started a step.
    Step {
        host: String,
        step: Step,
        detail: Option<String>,
    },
    /// Upload progress, bytes sent of total.
    Upload {
        host: String,
        sent: u64,
        total: u64,
    },
    /// Catching up: how far the member's raft index is behind the leader's.
    CatchUp {
        host: String,
        gap: u64,
    },
    /// A member finished its upgrade (or rollback).
    HostDone {
        host: String,
        from: String,
        to: String,
        down_ms: Option<u64>,
        catch_up_ms: Option<u64>,
        backup: Option<String>,
    },
    HostFailed {
        host: String,
        step: Step,
        error: String,
    },
    /// The cluster as last seen. `name` is set when the inventory holds several.
    Cluster {
        name: Option<String>,
        cluster_version: String,
        leader: Option<String>,
        healthy: usize,
        members: usize,
    },
    Warning {
        host: Option<String>,
        message: String,
    },
    /// What the members said of themselves (`etcd::discover`): the settings the
    /// inventory left to the default, per host, each with where it was read.
    Discovered {
        hosts: Vec<HostDiscovered>,
    },
    /// A phase of the procedure began (`preflight`, `stage`, `roll`, `finish`, …),
    /// or a pause between members (`settle 5s`).
    Phase {
        phase: String,
        /// With several clusters in the run, whose phase it is.
        #[serde(skip_serializing_if = "Option::is_none")]
        cluster: Option<String>,
    },
    /// A phase ended: its wall time and its sequential round trips to the hosts
    /// (waits that overlap count once; see `round_trips`), what a far link
    /// multiplies by its RTT.
    PhaseFinished {
        phase: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cluster: Option<String>,
        round_trips: u64,
        seconds: f64,
    },
    /// The plan of an upgrade (printed alone by `--dry-run`).
    Plan {
        steps: Vec<String>,
    },
    Summary {
        rows: Vec<MemberRow>,
    },
    UpgradeSummary {
        rows: Vec<SummaryRow>,
    },
    /// The exec recap line, Ansible style.
    Recap {
        hosts: Vec<HostRecap>,
    },
    /// With several clusters in one run: one of them ended.
    ClusterFinished {
        cluster: String,
        ok: bool,
        exit_code: i32,
        message: Option<String>,
        next: Vec<NextStep>,
    },
    /// A path of several binaries: hop `index` (1-based) of `of` starts.
    Hop {
        index: usize,
        of: usize,
        from: String,
        to: String,
    },
    /// That hop ended (its own outcome; `run_finished` still ends the run).
    HopFinished {
        index: usize,
        of: usize,
        from: String,
        to: String,
        ok: bool,
        exit_code: i32,
        message: Option<String>,
    },
    RunFinished {
        ok: bool,
        exit_code: i32,
        message: Option<String>,
        /// What the operator can run now (continue, go back, check), as data:
        /// the same commands the message names.
        next: Vec<NextStep>,
        /// The run's sequential round trips to the hosts, connections included.
        round_trips: u64,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct HostDiscovered {
    pub host: String,
    pub settings: Vec<crate::etcd::discover::Found>,
}

/// A command the report suggests, and what it is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NextStep {
    /// `continue`, `retry`, `rollback` or `check`.
    pub what: String,
    pub command: String,
}

impl NextStep {
    pub fn new(what: &str, command: impl Into<String>) -> NextStep {
        NextStep {
            what: what.to_string(),
            command: command.into(),
        }
    }
}

/// Where the engine sends events.
pub type Emitter = Arc<dyn Fn(Event) + Send + Sync>;
