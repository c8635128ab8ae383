//! Members an interrupted run left stopped (its restart script was killed
//! half-way) are started again before anything else, one at a time; then the
//! cluster is looked at again, since the pre-flight saw it with them down.

use futures::future::BoxFuture;

use super::preflight::emit_cluster_line;
use super::roll::{Roll, RollEnd};
use super::{Flow, Outcome, Phase, Run};
use crate::events::MemberState;
use crate::exit::Ending;
use crate::upgrade::preflight::{survey, ClusterView};
use crate::upgrade::record::{MemberRecord, Records};

pub struct Recover;

impl Phase for Recover {
    fn name(&self) -> &'static str {
        "recover"
    }

    fn plan(&self, run: &Run<'_>) -> Option<Vec<String>> {
        let mut steps = recovery_plan(run.view.as_ref()?);
        if steps.is_empty() {
            return None;
        }
        if run.dry_run {
            steps.push("then plan the upgrade from what the pre-flight sees".into());
        }
        Some(steps)
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow> {
        Box::pin(async move {
            let stopped = run.view().left_stopped();
            if stopped.is_empty() {
                return Flow::Next;
            }
            // A record list of its own: the run's records describe the roll.
            let records: Records = std::sync::Arc::new(std::sync::Mutex::new(
                run.view()
                    .members
                    .iter()
                    .map(|m| {
                        let from = m.running.map(|v| v.to_string()).unwrap_or_default();
                        MemberRecord::new(&m.host, from, String::new(), MemberState::Untouched)
                    })
                    .collect(),
            ));
            let mut end = None;
            {
                let mut roll = Roll::enter(run, records, false);
                for i in stopped {
                    if let Err(e) = roll.recover_member(i).await {
                        end = Some(e);
                        break;
                    }
                }
            }
            if let Some(end) = end {
                let (code, msg) = match end {
                    RollEnd::NeedsAttention(m) => {
                        (Ending::NeedsAttention, format!("ACTION NEEDED: {m}"))
                    }
                    RollEnd::Failed(m) => (
                        Ending::Failed,
                        format!(
                            "a member left stopped by an interrupted run could not be brought back on its new binary: {m}"
                        ),
                    ),
                    RollEnd::Interrupted | RollEnd::Completed => (Ending::Failed, "stopped".into()),
                };
                return Flow::Stop(Outcome::new(code, msg));
            }
            let view = survey(run.links, run.survey_target, run.limits()).await;
            emit_cluster_line(&view, run.emit);
            let refused = view.refused();
            if refused {
                for p in view.all_problems() {
                    run.warn(None, p);
                }
            }
            run.view = Some(view);
            if refused {
                return Flow::Stop(Outcome::new(
                    run.refusal(),
                    "REFUSED by the pre-flight after starting the members left stopped (reasons above)",
                ));
            }
            Flow::Next
        })
    }
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
