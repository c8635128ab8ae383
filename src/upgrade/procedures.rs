//! The commands that change (or could change) a cluster, each a list of phases
//! (`phase/`): `upgrade`, `rollback`, `backup`; and `check`, the pre-flight alone.
//! Each runs the pre-flight first and changes nothing when it refuses.

use std::sync::Arc;
use std::time::Instant;

use crate::etcd::Version;
use crate::events::{Emitter, Event};
use crate::exit::Ending;

use super::fleet::HostLink;
use super::phase::backup::SnapshotAll;
use super::phase::choose::ChooseMembers;
use super::phase::finish::Finish;
use super::phase::lock::TakeLock;
use super::phase::preflight::{emit_cluster_line, Preflight, Purpose};
use super::phase::recover::Recover;
use super::phase::roll::RollMembers;
use super::phase::rollback::{ChooseReturns, ReturnMembers};
use super::phase::stage::StageBinaries;
use super::phase::{any_unreachable, run_phases, Outcome, Phase, Run};
use super::preflight::{survey, SurveyLimits};
use super::record::Records;
use super::target::{Interrupt, RollOptions, Target};

pub use super::phase::lock::LockRequest;
pub use super::phase::Confirm;

/// `check`: the pre-flight alone, as a table and a verdict.
pub async fn check(
    links: &[HostLink],
    target: Option<Version>,
    opts: &RollOptions,
    emit: &Emitter,
) -> Outcome {
    let limits = SurveyLimits {
        command: opts.command_timeout,
    };
    let view = survey(links, target, limits).await;
    for row in view.check_rows(target) {
        emit(Event::Check(row));
    }
    for p in &view.problems {
        emit(Event::Warning {
            host: None,
            message: p.clone(),
        });
    }
    for i in view.left_stopped() {
        let m = &view.members[i];
        emit(Event::Warning {
            host: Some(m.host.clone()),
            message: format!(
                "stopped: left so by an interrupted etcdroll {}; `upgrade` and `rollback` start it again first",
                m.left_stopped.as_deref().unwrap_or("run")
            ),
        });
    }
    emit_cluster_line(&view, emit);
    if view.refused() {
        let n = view.all_problems().len();
        Outcome::new(
            any_unreachable(links).unwrap_or(Ending::Refused),
            format!("REFUSED: {n} problem(s) above; nothing was changed"),
        )
    } else {
        Outcome::ok(match target {
            Some(t) => format!("ok: the cluster can be upgraded to {t}"),
            None => "ok: every member is healthy".to_string(),
        })
    }
}

pub struct UpgradeRequest<'a> {
    pub links: &'a [HostLink],
    pub target: Target,
    pub opts: RollOptions,
    pub dry_run: bool,
    /// Asks the operator; false stops before any change.
    pub confirm: Confirm<'a>,
    pub interrupt: Arc<Interrupt>,
    pub records: Records,
    pub lock: LockRequest,
    /// The inventory path, for the commands the report tells the operator to run.
    pub inventory: String,
}

/// `upgrade`: to one binary, or along a path of several (see `path.rs`).
pub async fn upgrade(req: UpgradeRequest<'_>, emit: &Emitter) -> Outcome {
    if req.target.then.is_empty() {
        upgrade_one(req, emit, true).await
    } else {
        super::path::upgrade_path(req, emit).await
    }
}

/// One rolling upgrade to one binary. A path's hops run it without the lock
/// phase: the path holds the lock for all of them.
pub(super) async fn upgrade_one(req: UpgradeRequest<'_>, emit: &Emitter, lock: bool) -> Outcome {
    let take_lock = TakeLock { request: &req.lock };
    let mut phases: Vec<&dyn Phase> = Vec::new();
    if lock {
        phases.push(&take_lock);
    }
    phases.extend([
        &Preflight {
            purpose: Purpose::Upgrade,
        } as &dyn Phase,
        &Recover,
        &ChooseMembers,
        &StageBinaries,
        &RollMembers,
        &Finish,
    ]);
    let mut run = Run {
        links: req.links,
        opts: &req.opts,
        emit,
        interrupt: &req.interrupt,
        records: req.records.clone(),
        started: Instant::now(),
        dry_run: req.dry_run,
        confirm: &req.confirm,
        survey_target: Some(req.target.version),
        target: req.target.clone(),
        view: None,
        todo: Vec::new(),
        roll_end: None,
        seen: Default::default(),
        inventory: req.inventory.clone(),
    };
    run_phases(&phases, &mut run).await
}

/// `rollback`: return every member running a new binary to its `etcd.old`, one at a
/// time, while the cluster version has not moved (the guide: no downgrade after).
pub async fn rollback(
    links: &[HostLink],
    opts: &RollOptions,
    emit: &Emitter,
    interrupt: Arc<Interrupt>,
    lock: &LockRequest,
) -> Outcome {
    // The operator confirmed before the hosts were reached.
    let confirm: Confirm = Box::new(|_: &[String]| true);
    let phases: [&dyn Phase; 5] = [
        &TakeLock { request: lock },
        &Preflight {
            purpose: Purpose::Rollback,
        },
        &Recover,
        &ChooseReturns,
        &ReturnMembers,
    ];
    let mut run = Run::unattended(links, opts, emit, &interrupt, &confirm);
    run_phases(&phases, &mut run).await
}

/// `backup`: the online snapshot of every member, without upgrading.
pub async fn backup(
    links: &[HostLink],
    opts: &RollOptions,
    emit: &Emitter,
    lock: &LockRequest,
) -> Outcome {
    let confirm: Confirm = Box::new(|_: &[String]| true);
    let interrupt = Interrupt::default();
    let phases: [&dyn Phase; 2] = [&TakeLock { request: lock }, &SnapshotAll];
    let mut run = Run::unattended(links, opts, emit, &interrupt, &confirm);
    run_phases(&phases, &mut run).await
}
