//! The pre-flight as a phase: look at every member (`upgrade::preflight`),
//! report what was seen, and stop the procedure, changing nothing, when any rule
//! refuses.

use futures::future::BoxFuture;

use super::{Flow, Outcome, Phase, Run};
use crate::events::{Emitter, Event};
use crate::upgrade::preflight::{survey, ClusterView};

/// What the pre-flight is for: its report and its refusal differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Upgrade,
    Rollback,
}

pub struct Preflight {
    pub purpose: Purpose,
}

impl Phase for Preflight {
    fn name(&self) -> &'static str {
        "preflight"
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow> {
        Box::pin(async move {
            if !run.dry_run && self.purpose == Purpose::Upgrade {
                // The gzip copies are made while the pre-flight asks its questions.
                for target in std::iter::once(&run.target).chain(&run.target.then) {
                    target.etcd.start_gzip_copy();
                    if let Some(ctl) = &target.etcdctl {
                        ctl.start_gzip_copy();
                    }
                }
            }
            let view = survey(run.links, run.survey_target, run.limits()).await;
            if self.purpose == Purpose::Upgrade {
                for row in view.check_rows(run.survey_target) {
                    (run.emit)(Event::Check(row));
                }
                for p in &view.problems {
                    run.warn(None, p.clone());
                }
            }
            emit_cluster_line(&view, run.emit);
            let refused = view.refused();
            if refused && self.purpose == Purpose::Rollback {
                for p in view.all_problems() {
                    run.warn(None, p);
                }
            }
            run.view = Some(view);
            if !refused {
                return Flow::Next;
            }
            let message = match self.purpose {
                Purpose::Upgrade => "REFUSED by the pre-flight (reasons above); nothing was changed",
                Purpose::Rollback => {
                    "REFUSED: every member must be reachable and healthy to roll back; nothing was changed"
                }
            };
            Flow::Stop(Outcome::new(run.refusal(), message))
        })
    }
}

/// The cluster's one-line state: version, leader, how many are healthy.
pub fn emit_cluster_line(view: &ClusterView, emit: &Emitter) {
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
