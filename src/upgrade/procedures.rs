//! The commands that change (or could change) a cluster: `check`, `upgrade`,
//! `rollback`, `backup`. Each runs the pre-flight first and changes nothing when it refuses.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use futures::future::join_all;

use crate::etcd::commands;
use crate::etcd::{UpgradeStep, Version};
use crate::events::{Emitter, Event, MemberState, Step};
use crate::exit;
use crate::ssh::RemoteCommand;

use super::fleet::HostLink;
use super::lock::LockInfo;
use super::preflight::{survey, ClusterView, SurveyLimits};
use super::roll::{
    summary_rows, Interrupt, MemberRecord, Records, Roll, RollEnd, RollOptions, Target,
};

fn limits(opts: &RollOptions) -> SurveyLimits {
    SurveyLimits {
        command: opts.command_timeout,
    }
}

pub(super) fn finish(emit: &Emitter, code: i32, message: String) -> i32 {
    emit(Event::RunFinished {
        ok: code == exit::OK,
        exit_code: code,
        message: Some(message),
    });
    code
}

/// Take the run lock on every member (after `--break-lock` removed stale ones).
/// Returns the exit code to stop with when the lock cannot be had.
pub(super) async fn take_lock(
    links: &[HostLink],
    lock: &LockRequest,
    opts: &RollOptions,
    emit: &Emitter,
) -> Result<(), i32> {
    if lock.break_lock {
        for message in super::lock::break_all(links, opts.command_timeout).await {
            emit(Event::Warning {
                host: None,
                message,
            });
        }
    }
    match super::lock::acquire_all(links, &lock.info, opts.command_timeout).await {
        Ok(warnings) => {
            for message in warnings {
                emit(Event::Warning {
                    host: None,
                    message,
                });
            }
            Ok(())
        }
        Err(why) => Err(finish(
            emit,
            exit::REFUSED,
            format!("REFUSED, nothing was changed:\n  {why}"),
        )),
    }
}

/// The run lock to take before changing anything.
pub struct LockRequest {
    pub info: LockInfo,
    pub break_lock: bool,
}

fn unreachable_code(links: &[HostLink]) -> Option<i32> {
    links
        .iter()
        .any(|l| l.session().is_err())
        .then_some(exit::UNREACHABLE)
}

/// `check`: the pre-flight alone, as a table and a verdict.
pub async fn check(
    links: &[HostLink],
    target: Option<Version>,
    opts: &RollOptions,
    emit: &Emitter,
) -> i32 {
    let view = survey(links, target, limits(opts)).await;
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
        let code = unreachable_code(links).unwrap_or(exit::REFUSED);
        let n = view.all_problems().len();
        return finish(
            emit,
            code,
            format!("REFUSED: {n} problem(s) above; nothing was changed"),
        );
    }
    let msg = match target {
        Some(t) => format!("ok: the cluster can be upgraded to {t}"),
        None => "ok: every member is healthy".to_string(),
    };
    finish(emit, exit::OK, msg)
}

fn emit_cluster_line(view: &ClusterView, emit: &Emitter) {
    emit(Event::Cluster {
        name: None,
        cluster_version: view
            .cluster_version
            .map(|v| format!("{}.{}", v.major, v.minor))
            .unwrap_or_default(),
        leader: view.leader_host().map(str::to_string),
        healthy: view.members.iter().filter(|m| m.healthy).count(),
        members: view.members.len(),
    });
}

/// Describe the plan, for `--dry-run` and the confirmation prompt.
fn plan(view: &ClusterView, todo: &[usize], target: &Target, links: &[HostLink]) -> Vec<String> {
    let mut steps = Vec::new();
    let hosts: Vec<&str> = todo.iter().map(|&i| links[i].name()).collect();
    let skipped: Vec<&str> = view
        .members
        .iter()
        .filter(|m| m.step == Some(UpgradeStep::AlreadyThere))
        .map(|m| m.host.as_str())
        .collect();
    if !skipped.is_empty() {
        steps.push(format!(
            "skip {} (already on {})",
            skipped.join(", "),
            target.version
        ));
    }
    steps.push(format!(
        "{} etcd {} ({} bytes, sha256 {}) as etcd.new on {}",
        if target.stage == super::roll::Stage::Prestaged {
            "put in place the staged"
        } else {
            "stage"
        },
        target.version,
        target.etcd.len(),
        &target.etcd.sha256[..12.min(target.etcd.sha256.len())],
        hosts.join(", ")
    ));
    let leader = view.leader_host();
    let mut order: Vec<&str> = hosts
        .iter()
        .copied()
        .filter(|h| Some(*h) != leader)
        .collect();
    if let Some(l) = leader.filter(|l| hosts.contains(l)) {
        order.push(l);
    }
    for h in order {
        let lead = if Some(h) == leader {
            " (leader: leadership moved away first)"
        } else {
            ""
        };
        steps.push(format!(
            "{h}{lead}: snapshot backup, stop, copy data dir, swap in etcd.new (keeping etcd.old), start, \
             wait until healthy on {} and caught up, then every member healthy",
            target.version
        ));
    }
    steps.push(format!(
        "wait for the cluster version to reach {}.{}, then etcdctl endpoint health on every member",
        target.version.major, target.version.minor
    ));
    steps
}

/// What to do about members an interrupted run left stopped, as plan lines.
fn recovery_plan(view: &ClusterView) -> Vec<String> {
    view.left_stopped()
        .into_iter()
        .map(|i| {
            let m = &view.members[i];
            let installed = m
                .facts
                .as_ref()
                .and_then(|f| f.binary_version.clone())
                .unwrap_or_else(|| "?".into());
            format!(
                "{}: start it again on the etcd {installed} in place (it was left stopped by {}), \
                 wait until healthy; then run the pre-flight again",
                m.host,
                m.left_stopped.as_deref().unwrap_or("an interrupted run")
            )
        })
        .collect()
}

/// Start again the members an interrupted run left stopped, one at a time, then
/// look at the cluster again. Returns the exit code to stop with on failure.
#[allow(clippy::too_many_arguments)]
async fn recover_left_stopped(
    links: &[HostLink],
    view: &mut ClusterView,
    target: &Target,
    survey_target: Option<Version>,
    opts: &RollOptions,
    emit: &Emitter,
    interrupt: &Interrupt,
    started: Instant,
) -> Result<(), i32> {
    let records: Records = Arc::new(Mutex::new(
        view.members
            .iter()
            .map(|m| MemberRecord {
                host: m.host.clone(),
                from: m.running.map(|v| v.to_string()).unwrap_or_default(),
                to: String::new(),
                state: MemberState::Untouched,
                step: None,
                backup: None,
                down_ms: None,
                catch_up_ms: None,
                down_at_ms: None,
                up_at_ms: None,
            })
            .collect(),
    ));
    for i in view.left_stopped() {
        let mut roll = Roll {
            links,
            view: &mut *view,
            target,
            opts,
            emit,
            interrupt,
            records: records.clone(),
            started,
            swap_etcdctl: false,
        };
        let end = match roll.recover_member(i).await {
            Ok(()) => continue,
            Err(end) => end,
        };
        let (code, msg) = match end {
            RollEnd::NeedsAttention(m) => (exit::NEEDS_ATTENTION, format!("ACTION NEEDED: {m}")),
            RollEnd::Failed(m) => (
                exit::FAILED,
                format!("a member left stopped by an interrupted run could not be brought back on its new binary: {m}"),
            ),
            RollEnd::Interrupted | RollEnd::Completed => (exit::FAILED, "stopped".into()),
        };
        return Err(finish(emit, code, msg));
    }
    *view = survey(links, survey_target, limits(opts)).await;
    emit_cluster_line(view, emit);
    if view.refused() {
        for p in view.all_problems() {
            emit(Event::Warning {
                host: None,
                message: p,
            });
        }
        return Err(finish(
            emit,
            unreachable_code(links).unwrap_or(exit::REFUSED),
            "REFUSED by the pre-flight after starting the members left stopped (reasons above)"
                .into(),
        ));
    }
    Ok(())
}

/// Shows the plan to the operator and returns whether to go ahead.
pub type Confirm<'a> = Box<dyn Fn(&[String]) -> bool + Send + Sync + 'a>;

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
pub async fn upgrade(req: UpgradeRequest<'_>, emit: &Emitter) -> i32 {
    if req.target.then.is_empty() {
        upgrade_one(req, emit).await
    } else {
        super::path::upgrade_path(req, emit).await
    }
}

/// One rolling upgrade to one binary: pre-flight, stage, roll, finish.
pub(super) async fn upgrade_one(req: UpgradeRequest<'_>, emit: &Emitter) -> i32 {
    let UpgradeRequest {
        links,
        target,
        opts,
        dry_run,
        confirm,
        interrupt,
        records,
        lock,
        inventory,
    } = req;
    let resume = std::env::args()
        .map(|a| crate::ssh::quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let rollback_cmd = format!("etcdroll rollback -i {}", crate::ssh::quote(&inventory));
    let started = Instant::now();
    // The lock comes first, so a second operator learns at once who is running.
    if !dry_run && unreachable_code(links).is_none() {
        if let Err(code) = take_lock(links, &lock, &opts, emit).await {
            return code;
        }
    }
    let mut view = survey(links, Some(target.version), limits(&opts)).await;
    for row in view.check_rows(Some(target.version)) {
        emit(Event::Check(row));
    }
    for p in &view.problems {
        emit(Event::Warning {
            host: None,
            message: p.clone(),
        });
    }
    emit_cluster_line(&view, emit);
    if view.refused() {
        let code = unreachable_code(links).unwrap_or(exit::REFUSED);
        return finish(
            emit,
            code,
            "REFUSED by the pre-flight (reasons above); nothing was changed".to_string(),
        );
    }
    let recovery = recovery_plan(&view);
    if !recovery.is_empty() {
        if dry_run {
            let mut steps = recovery;
            steps.push("then plan the upgrade from what the pre-flight sees".into());
            emit(Event::Plan { steps });
            return finish(
                emit,
                exit::OK,
                "dry run: the pre-flight passed; nothing was changed".into(),
            );
        }
        if !confirm(&recovery) {
            return finish(
                emit,
                exit::REFUSED,
                "not confirmed; nothing was changed".into(),
            );
        }
        emit(Event::Plan { steps: recovery });
        if let Err(code) = recover_left_stopped(
            links,
            &mut view,
            &target,
            Some(target.version),
            &opts,
            emit,
            &interrupt,
            started,
        )
        .await
        {
            return code;
        }
    }
    let todo: Vec<usize> = view
        .members
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m.step, Some(UpgradeStep::Patch | UpgradeStep::NextMinor)))
        .map(|(i, _)| i)
        .collect();
    {
        let mut recs = records.lock().unwrap_or_else(|p| p.into_inner());
        *recs = view
            .members
            .iter()
            .map(|m| MemberRecord {
                host: m.host.clone(),
                from: m.running.map(|v| v.to_string()).unwrap_or_default(),
                to: target.version.to_string(),
                state: if m.step == Some(UpgradeStep::AlreadyThere) {
                    MemberState::Upgraded
                } else {
                    MemberState::Untouched
                },
                step: None,
                backup: None,
                down_ms: None,
                catch_up_ms: None,
                down_at_ms: None,
                up_at_ms: None,
            })
            .collect();
    }
    if todo.is_empty() {
        for m in &view.members {
            emit(Event::Step {
                host: m.host.clone(),
                step: Step::Skipped,
                detail: Some(format!("already on {}", target.version)),
            });
        }
        emit(Event::UpgradeSummary {
            rows: summary_rows(&records),
        });
        return finish(
            emit,
            exit::OK,
            format!(
                "nothing to do: every member already runs {} and is healthy",
                target.version
            ),
        );
    }
    let steps = plan(&view, &todo, &target, links);
    if dry_run {
        emit(Event::Plan { steps });
        return finish(
            emit,
            exit::OK,
            "dry run: the pre-flight passed; nothing was changed".into(),
        );
    }
    if !confirm(&steps) {
        return finish(
            emit,
            exit::REFUSED,
            "not confirmed; nothing was changed".into(),
        );
    }
    emit(Event::Plan { steps });

    let problems = super::roll::stage(links, &todo, &target, &opts, emit).await;
    if !problems.is_empty() {
        // Staged files elsewhere are left as etcd.new: harmless, and reused next run.
        return finish(
            emit,
            exit::REFUSED,
            format!(
                "staging failed, no member was stopped:\n  {}",
                problems.join("\n  ")
            ),
        );
    }
    for m in &view.members {
        if m.step == Some(UpgradeStep::AlreadyThere) {
            emit(Event::Step {
                host: m.host.clone(),
                step: Step::Skipped,
                detail: Some(format!("already on {}", target.version)),
            });
        }
    }
    let mut roll = Roll {
        links,
        view: &mut view,
        target: &target,
        opts: &opts,
        emit,
        interrupt: &interrupt,
        records: records.clone(),
        started,
        swap_etcdctl: target.etcdctl.is_some(),
    };
    let end = roll.run(todo).await;
    let outcome = match end {
        RollEnd::Completed => match roll.wait_cluster_version().await {
            Ok(cv) => {
                roll.emit_cluster().await;
                let cluster = Version::parse(&cv).unwrap_or(target.version.minor_floor());
                match roll.endpoint_health(cluster).await {
                    Ok(()) => (exit::OK, format!("upgraded to {}: cluster version {cv}, every member healthy", target.version)),
                    Err(e) => (exit::FAILED, format!("every member runs {} but {e}", target.version)),
                }
            }
            Err(e) => (exit::FAILED, e),
        },
        RollEnd::Interrupted => (
            exit::INTERRUPTED,
            format!(
                "interrupted: stopped after the current member; every member is running (states and \
                 backups in the summary). To continue: {resume}\n  To go back while the cluster version \
                 is still {}: {rollback_cmd}",
                view_cluster_version(&records)
            ),
        ),
        RollEnd::Failed(msg) => (
            exit::FAILED,
            format!(
                "upgrade stopped: {msg}\n  The state of every member and its backup are in the summary. \
                 Members already upgraded stay on {}.\n  To retry once the cause is fixed: {resume}\n  \
                 To return the upgraded members (while the cluster version has not moved): {rollback_cmd}",
                target.version
            ),
        ),
        RollEnd::NeedsAttention(msg) => (
            exit::NEEDS_ATTENTION,
            format!(
                "upgrade stopped, ACTION NEEDED: {msg}\n  Then check with: etcdroll status -i {}\n  \
                 and resume with: {resume}",
                crate::ssh::quote(&inventory)
            ),
        ),
    };
    emit(Event::UpgradeSummary {
        rows: summary_rows(&records),
    });
    finish(emit, outcome.0, outcome.1)
}

fn view_cluster_version(records: &Records) -> String {
    let recs = records.lock().unwrap_or_else(|p| p.into_inner());
    recs.iter()
        .map(|r| r.from.clone())
        .filter(|v| !v.is_empty())
        .min()
        .unwrap_or_else(|| "the old one".into())
}

/// `rollback`: return every member running a new binary to its `etcd.old`, one at a
/// time, while the cluster version has not moved (the guide: no downgrade after).
pub async fn rollback(
    links: &[HostLink],
    opts: &RollOptions,
    emit: &Emitter,
    interrupt: Arc<Interrupt>,
    lock: &LockRequest,
) -> i32 {
    let started = Instant::now();
    if unreachable_code(links).is_none() {
        if let Err(code) = take_lock(links, lock, opts, emit).await {
            return code;
        }
    }
    let mut view = survey(links, None, limits(opts)).await;
    emit_cluster_line(&view, emit);
    if view.refused() {
        for p in view.all_problems() {
            emit(Event::Warning {
                host: None,
                message: p,
            });
        }
        return finish(
            emit,
            unreachable_code(links).unwrap_or(exit::REFUSED),
            "REFUSED: every member must be reachable and healthy to roll back; nothing was changed"
                .into(),
        );
    }
    let recovery = recovery_plan(&view);
    if !recovery.is_empty() {
        emit(Event::Plan { steps: recovery });
        let in_place = view
            .left_stopped()
            .into_iter()
            .filter_map(|i| view.members[i].facts.as_ref()?.binary_version.as_deref())
            .find_map(Version::parse)
            .unwrap_or(Version::new(0, 0, 0));
        let target = Target::in_place(in_place);
        if let Err(code) = recover_left_stopped(
            links, &mut view, &target, None, opts, emit, &interrupt, started,
        )
        .await
        {
            return code;
        }
    }
    // Which members run something other than their saved old binary? Only an
    // etcd.old the cluster version still allows counts: after a completed hop of
    // a path (2.3 → 3.0, then 3.0 → 3.1 interrupted), the members not yet on 3.1
    // still keep 2.3 as etcd.old, and that hop can no longer be undone.
    let mut candidates = Vec::new();
    for (i, m) in view.members.iter().enumerate() {
        let facts = m.facts.clone().unwrap_or_default();
        let old = facts.old_binary_version.as_deref().and_then(Version::parse);
        if let (Some(o), Some(r)) = (old, m.running) {
            if o != r {
                candidates.push((i, o, r));
            }
        }
    }
    let allowed = |old: &Version| {
        view.cluster_version
            .is_none_or(|cv| old.minor_floor() >= cv.minor_floor())
    };
    let mut todo: Vec<(usize, Version, Version)> = candidates
        .iter()
        .filter(|(_, o, _)| allowed(o))
        .cloned()
        .collect();
    if todo.is_empty() {
        // Nothing the cluster version allows: say why, with the newest old one.
        todo = candidates
            .iter()
            .max_by_key(|(_, o, _)| *o)
            .cloned()
            .into_iter()
            .collect();
    }
    let Some(old_version) = todo.iter().map(|(_, o, _)| *o).min() else {
        return finish(
            emit,
            exit::OK,
            "nothing to roll back: no member runs a binary other than its saved etcd.old".into(),
        );
    };
    if let Some(cv) = view.cluster_version {
        if cv.minor_floor() > old_version.minor_floor() {
            return finish(
                emit,
                exit::REFUSED,
                format!(
                    "REFUSED: the cluster version has moved to {}.{}: once all members run the new version, \
                     the cluster is upgraded and a downgrade to {old_version} is not possible (etcd upgrade guide, \
                     \"Downgrade\"). Restore from the backups instead.",
                    cv.major, cv.minor
                ),
            );
        }
    }
    // 3.x → 2.x: seen in the lab with these builds, and reported for the official
    // ones (kubernetes#32253): etcd 2.3 cannot read the write-ahead log etcd 3.0
    // has written (it panics in wal.decode), and a data dir from before 3.0 is
    // behind the leader's record of the member (raft panics "tocommit out of
    // range"). So although the upgrade guide allows it while mixed, swapping the
    // binary back would leave the member down: refuse, changing nothing.
    let to_2x: Vec<String> = todo
        .iter()
        .filter(|(_, old, new)| old.major < 3 && new.major >= 3)
        .map(|(i, old, new)| format!("{} ({new} → {old})", view.members[*i].host))
        .collect();
    if !to_2x.is_empty() {
        return finish(
            emit,
            exit::REFUSED,
            format!(
                "REFUSED, nothing was changed: {} ran etcd 3.x, whose write-ahead log etcd 2.x cannot read \
                 (2.3 panics in wal.decode; kubernetes#32253), so swapping the binary back would leave it down, \
                 although the upgrade guide allows a rollback while the cluster version is still 2.3. \
                 The cluster is serving, mixed: finish the upgrade (run `upgrade` again), or, to return to 2.3, \
                 restore the cluster from the v2 backups (`etcdctl backup`, in each member's backup dir) with \
                 etcd 2.3's --force-new-cluster.",
                to_2x.join(", ")
            ),
        );
    }
    let records: Records = Arc::new(Mutex::new(
        view.members
            .iter()
            .map(|m| MemberRecord {
                host: m.host.clone(),
                from: m.running.map(|v| v.to_string()).unwrap_or_default(),
                to: m
                    .facts
                    .as_ref()
                    .and_then(|f| f.old_binary_version.clone())
                    .unwrap_or_default(),
                state: MemberState::Untouched,
                step: None,
                backup: None,
                down_ms: None,
                catch_up_ms: None,
                down_at_ms: None,
                up_at_ms: None,
            })
            .collect(),
    ));
    // Followers first, the leader last.
    todo.sort_by_key(|(i, _, _)| view.members[*i].is_leader());
    let mut code = exit::OK;
    let mut message = format!("rolled back to {old_version}");
    for (i, old, new) in todo {
        if interrupt.requested() {
            code = exit::INTERRUPTED;
            message =
                "interrupted: stopped after the current member; every member is running".into();
            break;
        }
        let link = &links[i];
        let host = link.name().to_string();
        emit(Event::Step {
            host: host.clone(),
            step: Step::RollingBack,
            detail: Some(format!("{new} → {old}")),
        });
        let vars = &link.host.etcd;
        let mut swaps = vec![commands::swap_back(&vars.binary)];
        let ctl_old = commands::saved_path(&vars.etcdctl_binary);
        let has_ctl_old = link
            .run(
                &RemoteCommand::new("test").arg("-e").arg(&ctl_old),
                opts.command_timeout,
            )
            .await
            .is_ok_and(|o| o.success());
        if has_ctl_old {
            swaps.push(commands::swap_back(&vars.etcdctl_binary));
        }
        let turn_file = super::lock::turn_file(link);
        let line = format!("run {} (rollback to {old})", opts.run_id);
        let turn = commands::Turn {
            file: &turn_file,
            line: &line,
        };
        let script = commands::restart_with_swap(vars, &swaps, None, None, &turn);
        let t0 = Instant::now();
        let res = link.run_privileged(&script, opts.command_timeout).await;
        let mut roll = Roll {
            links,
            view: &mut view,
            target: &Target::in_place(old),
            opts,
            emit,
            interrupt: &interrupt,
            records: records.clone(),
            started,
            swap_etcdctl: false,
        };
        let failed = match &res {
            Ok(o) if o.success() => None,
            Ok(o) => Some(format!("{}: {}", o.describe_exit(), o.last_error_line())),
            Err(e) => Some(e.to_string()),
        };
        let healthy = match failed {
            None => roll.wait_healthy(i, old, opts.health_timeout).await,
            Some(e) => Err(e),
        };
        match healthy {
            Ok(()) => {
                let down = t0.elapsed().as_millis() as u64;
                if let Some(r) = records.lock().unwrap_or_else(|p| p.into_inner()).get_mut(i) {
                    r.state = MemberState::RolledBack;
                    r.down_ms = Some(down);
                }
                emit(Event::HostDone {
                    host,
                    from: new.to_string(),
                    to: old.to_string(),
                    down_ms: Some(down),
                    catch_up_ms: None,
                    backup: None,
                });
            }
            Err(e) => {
                emit(Event::HostFailed {
                    host: host.clone(),
                    step: Step::RollingBack,
                    error: e.clone(),
                });
                code = exit::NEEDS_ATTENTION;
                message = format!("rollback stopped at {host}: {e}; check that member now");
                break;
            }
        }
    }
    emit(Event::UpgradeSummary {
        rows: summary_rows(&records),
    });
    finish(emit, code, message)
}

/// `backup`: the online snapshot of every member, without upgrading.
pub async fn backup(
    links: &[HostLink],
    opts: &RollOptions,
    emit: &Emitter,
    lock: &LockRequest,
) -> i32 {
    if unreachable_code(links).is_none() {
        if let Err(code) = take_lock(links, lock, opts, emit).await {
            return code;
        }
    }
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "");
    let jobs = links.iter().map(|l| {
        let stamp = stamp.clone();
        async move {
            let host = l.name().to_string();
            if let Err(e) = l.session() {
                return (host, Err(e.to_string()));
            }
            let dir = format!(
                "{}/etcdroll-{host}-{stamp}",
                l.host.etcd.backup_dir.trim_end_matches('/')
            );
            emit(Event::Step {
                host: host.clone(),
                step: Step::BackingUp,
                detail: Some(dir.clone()),
            });
            let res = match l
                .run_privileged(
                    &commands::snapshot_save(&l.host.etcd, &dir),
                    opts.command_timeout,
                )
                .await
            {
                Ok(o) if o.success() => Ok(format!("{dir}/snapshot.db")),
                Ok(o) => Err(format!("{}: {}", o.describe_exit(), o.last_error_line())),
                Err(e) => Err(e.to_string()),
            };
            (host, res)
        }
    });
    let mut failed = 0;
    for (host, res) in join_all(jobs).await {
        match res {
            Ok(path) => emit(Event::HostDone {
                host,
                from: String::new(),
                to: String::new(),
                down_ms: None,
                catch_up_ms: None,
                backup: Some(path),
            }),
            Err(e) => {
                failed += 1;
                emit(Event::HostFailed {
                    host,
                    step: Step::BackingUp,
                    error: e,
                });
            }
        }
    }
    if failed > 0 {
        return finish(
            emit,
            unreachable_code(links).unwrap_or(exit::FAILED),
            format!("{failed} backup(s) failed"),
        );
    }
    finish(
        emit,
        exit::OK,
        format!("backed up {} member(s)", links.len()),
    )
}
