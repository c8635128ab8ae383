//! Choose the members to upgrade (those the pre-flight found a patch or the
//! next minor away) and start the run's records; when every member is already
//! there, the upgrade ends here, successfully, having changed nothing.

use futures::future::BoxFuture;

use super::{Flow, Outcome, Phase, Run};
use crate::etcd::UpgradeStep;
use crate::events::{Event, MemberState, Step};
use crate::upgrade::record::{self, summary_rows, MemberRecord};

pub struct ChooseMembers;

impl Phase for ChooseMembers {
    fn name(&self) -> &'static str {
        "choose"
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow> {
        Box::pin(async move {
            let version = run.target.version;
            let view = run.view();
            let todo: Vec<usize> = view
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| {
                    matches!(m.step, Some(UpgradeStep::Patch | UpgradeStep::NextMinor))
                })
                .map(|(i, _)| i)
                .collect();
            let records = view
                .members
                .iter()
                .map(|m| {
                    let state = if m.step == Some(UpgradeStep::AlreadyThere) {
                        MemberState::Upgraded
                    } else {
                        MemberState::Untouched
                    };
                    let from = m.running.map(|v| v.to_string()).unwrap_or_default();
                    MemberRecord::new(&m.host, from, version.to_string(), state)
                })
                .collect();
            record::replace(&run.records, records);
            if !todo.is_empty() {
                run.todo = todo;
                return Flow::Next;
            }
            let emit = run.emit;
            for m in &run.view().members {
                emit(Event::Step {
                    host: m.host.clone(),
                    step: Step::Skipped,
                    detail: Some(format!("already on {version}")),
                });
            }
            (run.emit)(Event::UpgradeSummary {
                rows: summary_rows(&run.records),
            });
            Flow::Stop(Outcome::ok(format!(
                "nothing to do: every member already runs {version} and is healthy"
            )))
        })
    }
}
