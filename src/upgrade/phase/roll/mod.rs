//! The roll: replace one member at a time, followers first and the leader last
//! (leadership handed over first where etcd can), each member's turn behind
//! health and catch-up gates (`turn.rs`), with the old binary put back when a
//! member does not come back healthy (`undo.rs`). `health.rs` holds the waits.

#[cfg(test)]
mod decision_tests;
mod health;
pub mod turn;
mod undo;

use std::time::Instant;

use futures::future::{join_all, BoxFuture};

use super::{Flow, Phase, Run};
use crate::etcd::{EtcdClient, MemberStatus, Version};
use crate::events::{Emitter, Event, MemberState, Step};
use crate::upgrade::preflight::MemberView;
use crate::upgrade::record::{Record, Records};
use crate::upgrade::remote_host::RemoteHost;
use crate::upgrade::target::{Interrupt, RollOptions, Target};

pub use health::Deadline;

/// How a roll ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RollEnd {
    Completed,
    Interrupted,
    /// A member failed; the message says which and what was done about it.
    Failed(String),
    /// A member may be down: the operator must act.
    NeedsAttention(String),
}

/// One member during the roll: how to reach it, what is known of it, and its
/// record in the run's report.
pub struct Member<'r> {
    pub link: &'r dyn RemoteHost,
    pub view: &'r mut MemberView,
    pub record: Record,
}

impl Member<'_> {
    pub fn name(&self) -> &str {
        self.link.name()
    }
    fn client(&mut self) -> Option<&mut EtcdClient> {
        self.view.client.as_mut()
    }
}

/// What every member's turn reads and none changes.
#[derive(Clone, Copy)]
pub struct Ctx<'r> {
    pub target: &'r Target,
    pub opts: &'r RollOptions,
    pub emit: &'r Emitter,
    pub interrupt: &'r Interrupt,
    pub started: Instant,
    /// The new etcdctl was staged and is swapped with etcd.
    pub swap_etcdctl: bool,
}

impl Ctx<'_> {
    fn step(&self, m: &Member, step: Step, detail: Option<String>) {
        m.record.update(|r| r.step = Some(step));
        (self.emit)(Event::Step {
            host: m.name().to_string(),
            step,
            detail,
        });
    }

    fn warn(&self, m: &Member, message: String) {
        (self.emit)(Event::Warning {
            host: Some(m.name().to_string()),
            message,
        });
    }

    fn since_start(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// The members and the run's context, for one roll (or one recovery, or the
/// finish's checks).
pub struct Roll<'r> {
    pub members: Vec<Member<'r>>,
    pub ctx: Ctx<'r>,
    pub cluster_version: Option<Version>,
    /// What the last gates read, so the next step need not ask again (each
    /// question is a round trip on a far link): the leader, taken once by the
    /// next `current_leader`, and the cluster version a member reported.
    pub seen: Seen,
}

#[derive(Default)]
pub struct Seen {
    pub leader: Option<usize>,
    pub cluster_version: Option<String>,
}

impl<'r> Roll<'r> {
    /// The roll over the run's members, reporting into `records`.
    pub fn enter(run: &'r mut Run<'_>, records: Records, swap_etcdctl: bool) -> Roll<'r> {
        let view = run
            .view
            .as_mut()
            .expect("the roll runs after the pre-flight");
        let cluster_version = view.cluster_version;
        let members = view
            .members
            .iter_mut()
            .zip(run.links)
            .enumerate()
            .map(|(i, (view, link))| Member {
                link: link as &dyn RemoteHost,
                view,
                record: Record::new(records.clone(), i),
            })
            .collect();
        Roll {
            members,
            ctx: Ctx {
                target: &run.target,
                opts: run.opts,
                emit: run.emit,
                interrupt: run.interrupt,
                started: run.started,
                swap_etcdctl,
            },
            cluster_version,
            seen: Seen::default(),
        }
    }

    /// Roll every member in `todo`, one at a time.
    pub async fn run(&mut self, todo: Vec<usize>) -> RollEnd {
        let ctx = self.ctx;
        let mut remaining = todo;
        for &i in &remaining {
            ctx.step(&self.members[i], Step::Waiting, None);
        }
        while !remaining.is_empty() {
            if ctx.interrupt.requested() {
                return RollEnd::Interrupted;
            }
            let leader = self.current_leader().await;
            let pick = remaining
                .iter()
                .position(|&i| Some(i) != leader)
                .unwrap_or(0);
            let i = remaining.remove(pick);
            if Some(i) == leader && self.members.len() > 1 {
                self.move_leadership_away(i).await;
            }
            if let Err(end) = self.upgrade_member(i).await {
                return end;
            }
            self.emit_cluster_after_gates();
            if !ctx.opts.settle.is_zero() && !remaining.is_empty() {
                // A pause of the run, not of any one member: which member goes
                // next is decided after it (the leader goes last).
                (ctx.emit)(Event::Phase {
                    phase: format!("settle {}", humantime::format_duration(ctx.opts.settle)),
                    cluster: None,
                });
                tokio::time::sleep(ctx.opts.settle).await;
                (ctx.emit)(Event::Phase {
                    phase: "roll".into(),
                    cluster: None,
                });
            }
        }
        RollEnd::Completed
    }

    /// The index of the member that is leader now (leadership moves during a roll):
    /// the one the gates just saw, or asked of every member at once.
    pub(in crate::upgrade::phase) async fn current_leader(&mut self) -> Option<usize> {
        if let Some(leader) = self.seen.leader.take() {
            return Some(leader);
        }
        let statuses = self.all_status().await;
        self.leader_among(&statuses)
    }

    /// Every member's status, asked in parallel (one round), with each member's
    /// id and the leader it names recorded in its view.
    pub(in crate::upgrade::phase) async fn all_status(&mut self) -> Vec<Option<MemberStatus>> {
        let asks = self.members.iter_mut().map(|m| async move {
            let s = m.client()?.status().await.ok()?;
            m.view.id = s.member_id;
            m.view.leader_id = s.leader;
            Some(s)
        });
        join_all(asks).await
    }

    /// The member the answers name as leader (the first answer that names one).
    pub(super) fn leader_among(&self, statuses: &[Option<MemberStatus>]) -> Option<usize> {
        let leader_id = statuses
            .iter()
            .flatten()
            .map(|s| s.leader)
            .find(|&l| l != 0)?;
        self.members.iter().position(|m| m.view.id == leader_id)
    }

    /// Hand leadership to another member before stopping the leader (etcd ≥ 3.3),
    /// preferring one already upgraded. Best effort: etcd also hands over on a
    /// graceful stop.
    async fn move_leadership_away(&mut self, i: usize) {
        let ctx = self.ctx;
        let running = self.members[i].view.running;
        if !running.is_some_and(Version::can_move_leader) {
            ctx.warn(
                &self.members[i],
                format!(
                    "leadership could not be moved: etcd {} has no move-leader (it came in 3.3); \
                     the leader goes last and the cluster elects another as it stops",
                    fmt_version(running)
                ),
            );
            return;
        }
        let upgraded: Vec<usize> = (0..self.members.len())
            .filter(|&j| self.members[j].record.read(|r| r.state) == Some(MemberState::Upgraded))
            .collect();
        let candidate = upgraded
            .into_iter()
            .chain(0..self.members.len())
            .find(|&j| j != i && self.members[j].view.id != 0);
        let Some(j) = candidate else { return };
        let target_id = self.members[j].view.id;
        let to = format!("to {}", self.members[j].name());
        let m = &mut self.members[i];
        ctx.step(m, Step::MovingLeader, Some(to));
        if let Some(c) = m.client() {
            if let Err(e) = c.move_leader(target_id).await {
                ctx.warn(
                    m,
                    format!("could not move leadership away ({e}); etcd will hand it over when it stops"),
                );
            }
        }
        // No need to ask whether it moved: etcd answers MoveLeader only once the
        // leader sees the transferee lead (or with an error, on its timeout).
    }

    /// The cluster's state after a member's turn, from what its gates just read:
    /// every member healthy (the last gate), the leader the catch-up gate saw, and
    /// the cluster version the member reported. Asks nothing.
    fn emit_cluster_after_gates(&mut self) {
        let leader = self.seen.leader.map(|l| self.members[l].name().to_string());
        (self.ctx.emit)(Event::Cluster {
            name: None,
            cluster_version: self.seen.cluster_version.clone().unwrap_or_default(),
            leader,
            healthy: self.members.len(),
            members: self.members.len(),
        });
    }

    /// The cluster's state: health and leader, each asked of every member at once,
    /// with the cluster version when the caller knows it.
    pub async fn emit_cluster(&mut self, cluster_version: Option<String>) {
        let (statuses, health) = self.all_status_and_health().await;
        let healthy = health
            .iter()
            .filter(|(_, h)| matches!(h, Ok(h) if h.healthy))
            .count();
        let leader = self
            .leader_among(&statuses)
            .map(|l| self.members[l].name().to_string());
        let cluster_version = match cluster_version {
            Some(v) => v,
            None => {
                let mut v = String::new();
                for m in self.members.iter_mut() {
                    if let Some(Ok(info)) = match m.client() {
                        Some(c) => Some(c.version().await),
                        None => None,
                    } {
                        v = info.cluster;
                        break;
                    }
                }
                v
            }
        };
        (self.ctx.emit)(Event::Cluster {
            name: None,
            cluster_version,
            leader,
            healthy,
            members: self.members.len(),
        });
    }
}

/// The roll as a phase: its plan was shown by the stage phase, and how it ended
/// is reported by the finish.
pub struct RollMembers;

impl Phase for RollMembers {
    fn name(&self) -> &'static str {
        "roll"
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow> {
        Box::pin(async move {
            let todo = run.todo.clone();
            let records = run.records.clone();
            let swap_etcdctl = run.target.etcdctl.is_some();
            let mut roll = Roll::enter(run, records, swap_etcdctl);
            let end = roll.run(todo).await;
            let seen = std::mem::take(&mut roll.seen);
            run.roll_end = Some(end);
            run.seen = seen;
            Flow::Next
        })
    }
}

pub fn fmt_version(v: Option<Version>) -> String {
    v.map(|v| v.to_string())
        .unwrap_or_else(|| "the old version".into())
}
