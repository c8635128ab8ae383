//! Finish: how the roll ended becomes the run's outcome. After a completed
//! roll, wait for the cluster version to move (the guide's sign that the
//! cluster is upgraded) and run the etcdctl health check the guide ends with;
//! after any other end, say what state the cluster is in and the command that
//! continues or goes back. The summary is emitted here, once.

use futures::future::{join_all, BoxFuture};

use super::roll::{Ctx, Deadline, Member, Roll, RollEnd};
use super::{Flow, Outcome, Phase, Run};
use crate::etcd::{commands, Version};
use crate::events::{Event, NextStep};
use crate::exit::Ending;
use crate::ssh::quote;
use crate::upgrade::record::{oldest_from, summary_rows};
use crate::upgrade::remote_host::RemoteHost;

pub struct Finish;

impl Phase for Finish {
    fn name(&self) -> &'static str {
        "finish"
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow> {
        Box::pin(async move {
            let resume = std::env::args()
                .map(|a| quote(&a))
                .collect::<Vec<_>>()
                .join(" ");
            let inventory = quote(&run.inventory);
            let rollback_cmd = format!("etcdroll rollback -i {inventory}");
            let version = run.target.version;
            let records = run.records.clone();
            let end = run.roll_end.take().unwrap_or(RollEnd::Completed);
            let outcome = match end {
                RollEnd::Completed => {
                    let swap_etcdctl = run.target.etcdctl.is_some();
                    let seen = std::mem::take(&mut run.seen);
                    let mut roll = Roll::enter(run, records.clone(), swap_etcdctl);
                    roll.seen = seen;
                    match roll.wait_cluster_version().await {
                        Ok(cv) => {
                            // The cluster line (over the tunnels) and the etcdctl
                            // check (a command per host) at once: one round.
                            let cluster = Version::parse(&cv).unwrap_or(version.minor_floor());
                            let ((), health) = roll.cluster_line_and_endpoint_health(cv.clone(), cluster).await;
                            match health {
                                Ok(()) => Outcome::ok(format!(
                                    "upgraded to {version}: cluster version {cv}, every member healthy"
                                )),
                                Err(e) => Outcome::new(
                                    Ending::Failed,
                                    format!("every member runs {version} but {e}"),
                                ),
                            }
                        }
                        Err(e) => Outcome::new(Ending::Failed, e),
                    }
                }
                RollEnd::Interrupted => Outcome::new(
                    Ending::Interrupted,
                    format!(
                        "interrupted: stopped after the current member; every member is running (states and \
                         backups in the summary). To continue: {resume}\n  To go back while the cluster version \
                         is still {}: {rollback_cmd}",
                        oldest_from(&records)
                    ),
                )
                .with_next(vec![
                    NextStep::new("continue", &resume),
                    NextStep::new("rollback", &rollback_cmd),
                ]),
                RollEnd::Failed(msg) => Outcome::new(
                    Ending::Failed,
                    format!(
                        "upgrade stopped: {msg}\n  The state of every member and its backup are in the summary. \
                         Members already upgraded stay on {version}.\n  To retry once the cause is fixed: {resume}\n  \
                         To return the upgraded members (while the cluster version has not moved): {rollback_cmd}"
                    ),
                )
                .with_next(vec![
                    NextStep::new("retry", &resume),
                    NextStep::new("rollback", &rollback_cmd),
                ]),
                RollEnd::NeedsAttention(msg) => Outcome::new(
                    Ending::NeedsAttention,
                    format!(
                        "upgrade stopped, ACTION NEEDED: {msg}\n  Then check with: etcdroll status -i {inventory}\n  \
                         and resume with: {resume}"
                    ),
                )
                .with_next(vec![
                    NextStep::new("check", format!("etcdroll status -i {inventory}")),
                    NextStep::new("continue", &resume),
                ]),
            };
            (run.emit)(Event::UpgradeSummary {
                rows: summary_rows(&records),
            });
            Flow::Stop(outcome)
        })
    }
}

impl Roll<'_> {
    /// Wait until the cluster version reaches the target's minor. The leader
    /// decides it every ~4 s (etcd's monitorVersions), and at once when a new term
    /// begins: so if it has not moved yet, hand leadership to another upgraded
    /// member to have it decided now instead of up to 4 s later. Then poll it,
    /// never read it once.
    pub async fn wait_cluster_version(&mut self) -> Result<String, String> {
        let opts = self.ctx.opts;
        let want = self.ctx.target.version.minor_floor();
        let deadline = Deadline::after(opts.cluster_version_timeout, opts.poll_interval);
        let mut last = String::new();
        let mut nudged = !want.can_move_leader();
        // The last member's gate read the cluster version a moment ago: when it
        // had not moved, nudge at once instead of asking every member first (on
        // a far link, a round trip). If the leader decided it in between, the
        // nudge only hands leadership to another upgraded member.
        let undecided = self
            .seen
            .cluster_version
            .as_deref()
            .and_then(Version::parse)
            .is_some_and(|c| c < want);
        if undecided && !nudged {
            nudged = true;
            self.nudge_leader().await;
        }
        loop {
            // Every member must have applied it: one that has not yet refuses
            // the new version's calls ("not capable", seen on 3.5), which the
            // final health check would take for a failure.
            let asks = self
                .members
                .iter_mut()
                .map(|m| async move { m.view.client.as_mut()?.version().await.ok() });
            let mut reached = 0;
            let mut decided = false;
            for v in join_all(asks).await.into_iter().flatten() {
                if Version::parse(&v.cluster).is_some_and(|c| c >= want) {
                    reached += 1;
                    decided = true;
                }
                last = v.cluster;
            }
            if reached == self.members.len() {
                return Ok(last);
            }
            if !decided && !nudged {
                // Not decided by the leader yet: a new term decides it now.
                nudged = true;
                self.nudge_leader().await;
                continue;
            }
            if !deadline.pause().await {
                return Err(format!(
                    "the cluster version is still {last} after {} (expected {}.{}); \
                     every member runs the new version: check the leader's log",
                    humantime::format_duration(opts.cluster_version_timeout),
                    want.major,
                    want.minor
                ));
            }
        }
    }

    /// Hand leadership from the leader to another member: a new term.
    async fn nudge_leader(&mut self) {
        let Some(leader) = self.current_leader().await else {
            return;
        };
        let other = (0..self.members.len()).find(|&j| j != leader && self.members[j].view.id != 0);
        if let Some(j) = other {
            let target_id = self.members[j].view.id;
            if let Some(c) = self.members[leader].view.client.as_mut() {
                let _ = c.move_leader(target_id).await;
            }
        }
    }

    /// The final `cluster` line and the etcdctl health check, at once.
    async fn cluster_line_and_endpoint_health(
        &mut self,
        cluster_version: String,
        cluster: Version,
    ) -> ((), Result<(), String>) {
        // The check reads only the links and the context; the line, the clients.
        let ctx = self.ctx;
        let checks: Vec<(&dyn RemoteHost, Option<Version>)> = self
            .members
            .iter()
            .map(|m| (m.link, final_etcdctl(ctx, m)))
            .collect();
        futures::join!(
            self.emit_cluster(Some(cluster_version)),
            endpoint_health(ctx, checks, cluster)
        )
    }
}

/// The etcdctl this member's final check runs: the staged one, or the one the
/// probe found.
fn final_etcdctl(ctx: Ctx<'_>, m: &Member<'_>) -> Option<Version> {
    if ctx.swap_etcdctl {
        Some(ctx.target.version)
    } else {
        m.view
            .facts
            .as_ref()
            .and_then(|f| f.etcdctl_version.as_deref())
            .and_then(Version::parse)
    }
}

/// The etcdctl health check the guide ends with, on every member at once, in
/// the form the member's etcdctl and the cluster version allow (see
/// `commands::final_health`); the output is parsed, never the exit code.
async fn endpoint_health(
    ctx: Ctx<'_>,
    members: Vec<(&dyn RemoteHost, Option<Version>)>,
    cluster_version: Version,
) -> Result<(), String> {
    let checks = members.into_iter().map(|(l, etcdctl)| async move {
        let Some(etcdctl) = etcdctl else {
            return Some(format!("{}: its etcdctl's version is unknown", l.name()));
        };
        let check = commands::final_health(l.etcd(), etcdctl, cluster_version);
        let out = l
            .run_privileged(&check.command, ctx.opts.command_timeout)
            .await;
        match out {
            Ok(o) if (check.ok)(&o.stdout_text()) => None,
            Ok(o) => Some(format!(
                "{}: {}: {}{}",
                l.name(),
                check.what,
                o.last_error_line(),
                commands::final_health_hints(l.etcd(), cluster_version, &o.stdout_text()),
            )),
            Err(e) => Some(format!("{}: {}: {}", l.name(), check.what, e.detail())),
        }
    });
    let bad: Vec<String> = join_all(checks).await.into_iter().flatten().collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("the final health check failed: {}", bad.join("; ")))
    }
}
