//! `rollback`'s own phases: choose the members running something other than
//! their saved `etcd.old` (only while the cluster version allows going back, the
//! guide's rule), refuse what cannot work, then swap each back, followers first
//! and the leader last, with the same restart script as an upgrade's turn.

use std::time::Instant;

use futures::future::BoxFuture;

use super::roll::turn::{Restart, Swap};
use super::roll::Roll;
use super::{Flow, Outcome, Phase, Run};
use crate::etcd::Version;
use crate::events::{Event, MemberState, Step};
use crate::exit::Ending;
use crate::ssh::RemoteCommand;
use crate::upgrade::preflight::ClusterView;
use crate::upgrade::record::{self, summary_rows, MemberRecord};

/// A member to return: its index, the saved old version, the running one.
type Return = (usize, Version, Version);

/// The members to return, as the cluster version allows.
fn returns(view: &ClusterView) -> Vec<Return> {
    // Only an etcd.old the cluster version still allows counts: after a
    // completed hop of a path (2.3 → 3.0, then 3.0 → 3.1 interrupted), the
    // members not yet on 3.1 still keep 2.3 as etcd.old, and that hop can no
    // longer be undone.
    let candidates: Vec<Return> = view
        .members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let facts = m.facts.as_ref()?;
            let old = facts
                .old_binary_version
                .as_deref()
                .and_then(Version::parse)?;
            let running = m.running?;
            (old != running).then_some((i, old, running))
        })
        .collect();
    let allowed = |old: &Version| {
        view.cluster_version
            .is_none_or(|cv| old.minor_floor() >= cv.minor_floor())
    };
    let todo: Vec<Return> = candidates
        .iter()
        .filter(|(_, o, _)| allowed(o))
        .cloned()
        .collect();
    if !todo.is_empty() {
        return todo;
    }
    // Nothing the cluster version allows: say why, with the newest old one.
    candidates
        .iter()
        .max_by_key(|(_, o, _)| *o)
        .cloned()
        .into_iter()
        .collect()
}

pub struct ChooseReturns;

impl Phase for ChooseReturns {
    fn name(&self) -> &'static str {
        "choose-rollback"
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow> {
        Box::pin(async move {
            let view = run.view();
            let mut todo = returns(view);
            let Some(old_version) = todo.iter().map(|(_, o, _)| *o).min() else {
                return Flow::Stop(Outcome::ok(
                    "nothing to roll back: no member runs a binary other than its saved etcd.old",
                ));
            };
            if let Some(cv) = view.cluster_version {
                if cv.minor_floor() > old_version.minor_floor() {
                    return Flow::Stop(Outcome::refused(format!(
                        "REFUSED: the cluster version has moved to {}.{}: once all members run the new version, \
                         the cluster is upgraded and a downgrade to {old_version} is not possible (etcd upgrade guide, \
                         \"Downgrade\"). Restore from the backups instead.",
                        cv.major, cv.minor
                    )));
                }
            }
            // 3.x → 2.x: seen in the lab with these builds, and reported for the
            // official ones (kubernetes#32253): etcd 2.3 cannot read the
            // write-ahead log etcd 3.0 has written (it panics in wal.decode), and
            // a data dir from before 3.0 is behind the leader's record of the
            // member (raft panics "tocommit out of range"). So although the
            // upgrade guide allows it while mixed, swapping the binary back would
            // leave the member down: refuse, changing nothing.
            let to_2x: Vec<String> = todo
                .iter()
                .filter(|(_, old, new)| old.major < 3 && new.major >= 3)
                .map(|(i, old, new)| format!("{} ({new} → {old})", view.members[*i].host))
                .collect();
            if !to_2x.is_empty() {
                return Flow::Stop(Outcome::refused(format!(
                    "REFUSED, nothing was changed: {} ran etcd 3.x, whose write-ahead log etcd 2.x cannot read \
                     (2.3 panics in wal.decode; kubernetes#32253), so swapping the binary back would leave it down, \
                     although the upgrade guide allows a rollback while the cluster version is still 2.3. \
                     The cluster is serving, mixed: finish the upgrade (run `upgrade` again), or, to return to 2.3, \
                     restore the cluster from the v2 backups (`etcdctl backup`, in each member's backup dir) with \
                     etcd 2.3's --force-new-cluster.",
                    to_2x.join(", ")
                )));
            }
            let records = view
                .members
                .iter()
                .map(|m| {
                    let from = m.running.map(|v| v.to_string()).unwrap_or_default();
                    let to = m
                        .facts
                        .as_ref()
                        .and_then(|f| f.old_binary_version.clone())
                        .unwrap_or_default();
                    MemberRecord::new(&m.host, from, to, MemberState::Untouched)
                })
                .collect();
            // Followers first, the leader last.
            todo.sort_by_key(|(i, _, _)| view.members[*i].is_leader());
            run.todo = todo.iter().map(|(i, _, _)| *i).collect();
            record::replace(&run.records, records);
            Flow::Next
        })
    }
}

pub struct ReturnMembers;

impl Phase for ReturnMembers {
    fn name(&self) -> &'static str {
        "rollback"
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow> {
        Box::pin(async move {
            let chosen = returns(run.view());
            let todo: Vec<Return> = run
                .todo
                .iter()
                .filter_map(|i| chosen.iter().find(|(j, _, _)| j == i).cloned())
                .collect();
            let old_version = todo.iter().map(|(_, o, _)| *o).min();
            let mut outcome = Outcome::ok(format!(
                "rolled back to {}",
                old_version.map(|v| v.to_string()).unwrap_or_default()
            ));
            let records = run.records.clone();
            let mut roll = Roll::enter(run, records.clone(), false);
            let ctx = roll.ctx;
            for (i, old, new) in todo {
                if ctx.interrupt.requested() {
                    outcome = Outcome::new(
                        Ending::Interrupted,
                        "interrupted: stopped after the current member; every member is running",
                    );
                    break;
                }
                let link = roll.members[i].link;
                let host = link.name().to_string();
                (ctx.emit)(Event::Step {
                    host: host.clone(),
                    step: Step::RollingBack,
                    detail: Some(format!("{new} → {old}")),
                });
                let vars = link.etcd();
                let mut binaries = vec![vars.binary.clone()];
                let ctl_old = crate::etcd::commands::saved_path(&vars.etcdctl_binary);
                let has_ctl_old = link
                    .run(
                        &RemoteCommand::new("test").arg("-e").arg(&ctl_old),
                        ctx.opts.command_timeout,
                    )
                    .await
                    .is_ok_and(|o| o.success());
                if has_ctl_old {
                    binaries.push(vars.etcdctl_binary.clone());
                }
                let restart = Restart {
                    vars,
                    turn_file: crate::upgrade::lock::turn_file(link.lock_dir()),
                    turn_line: format!("run {} (rollback to {old})", ctx.opts.run_id),
                    snapshot: None,
                    offline: None,
                    swap: Swap::Back,
                    binaries,
                    start_limit: ctx.opts.health_timeout,
                };
                let t0 = Instant::now();
                let res = link
                    .run_privileged(&restart.command(), restart.limit(ctx.opts.command_timeout))
                    .await;
                let failed = match &res {
                    Ok(o) if o.success() => None,
                    Ok(o) => Some(format!("{}: {}", o.describe_exit(), o.last_error_line())),
                    Err(e) => Some(e.detail()),
                };
                let healthy = match failed {
                    None => roll.wait_healthy(i, old, ctx.opts.health_timeout).await,
                    Some(e) => Err(e),
                };
                match healthy {
                    Ok(()) => {
                        let down = t0.elapsed().as_millis() as u64;
                        roll.members[i].record.update(|r| {
                            r.state = MemberState::RolledBack;
                            r.down_ms = Some(down);
                        });
                        (ctx.emit)(Event::HostDone {
                            host,
                            from: new.to_string(),
                            to: old.to_string(),
                            down_ms: Some(down),
                            catch_up_ms: None,
                            backup: None,
                        });
                    }
                    Err(e) => {
                        (ctx.emit)(Event::HostFailed {
                            host: host.clone(),
                            step: Step::RollingBack,
                            error: e.clone(),
                        });
                        outcome = Outcome::new(
                            Ending::NeedsAttention,
                            format!("rollback stopped at {host}: {e}; check that member now"),
                        );
                        break;
                    }
                }
            }
            (ctx.emit)(Event::UpgradeSummary {
                rows: summary_rows(&records),
            });
            Flow::Stop(outcome)
        })
    }
}
