//! The end of a run as the operator and automation see it: the engine's
//! outcomes (one per cluster) become the process's exit code and the run's last
//! event, `run_finished`, which comes exactly once.

use crate::events::{Emitter, Event};
use crate::exit::{self, Ending};
use crate::upgrade::clusters::most_serious;
use crate::upgrade::phase::Outcome;

/// Reports how the run ended and returns its exit code: one cluster's outcome
/// as it is; with several, the most serious code and a line naming each.
pub(super) fn report(results: Vec<(String, Outcome)>, emit: &Emitter) -> i32 {
    if let [(_, outcome)] = results.as_slice() {
        let code = outcome.ending.code();
        emit(Event::RunFinished {
            ok: outcome.ending == Ending::Done,
            exit_code: code,
            message: Some(outcome.message.clone()),
            next: outcome.next.clone(),
            round_trips: crate::round_trips::so_far(),
        });
        return code;
    }
    if results.is_empty() {
        return exit::FAILED;
    }
    let code = most_serious(results.iter().map(|(_, o)| o.ending.code()));
    let lines: Vec<String> = results
        .iter()
        .map(|(n, o)| match o.ending {
            Ending::Done => format!("cluster {n}: ok"),
            e => format!("cluster {n}: exit {}", e.code()),
        })
        .collect();
    emit(Event::RunFinished {
        ok: code == exit::OK,
        exit_code: code,
        message: Some(lines.join("; ")),
        next: Vec::new(),
        round_trips: crate::round_trips::so_far(),
    });
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn reported(results: Vec<(String, Outcome)>) -> (i32, Vec<Event>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let emit: Emitter = Arc::new(move |e| sink.lock().unwrap().push(e));
        let code = report(results, &emit);
        let events = seen.lock().unwrap().clone();
        (code, events)
    }

    #[test]
    fn several_clusters_end_in_one_run_finished_naming_each() {
        let (code, seen) = reported(vec![
            ("a".into(), Outcome::ok("upgraded")),
            ("b".into(), Outcome::new(Ending::Failed, "stopped")),
        ]);
        assert_eq!(code, exit::FAILED);
        assert!(
            matches!(
                seen.as_slice(),
                [Event::RunFinished { ok: false, exit_code, message: Some(m), .. }]
                    if *exit_code == exit::FAILED && m == "cluster a: ok; cluster b: exit 1"
            ),
            "{seen:?}"
        );
    }

    #[test]
    fn one_cluster_ends_with_its_own_words_code_and_next_steps() {
        let outcome = Outcome::new(Ending::Interrupted, "interrupted").with_next(vec![
            crate::events::NextStep::new("continue", "etcdroll upgrade"),
        ]);
        let (code, seen) = reported(vec![("a".into(), outcome)]);
        assert_eq!(code, exit::INTERRUPTED);
        assert!(
            matches!(
                seen.as_slice(),
                [Event::RunFinished { ok: false, exit_code: 130, message: Some(m), next, .. }]
                    if m == "interrupted" && next.len() == 1
            ),
            "{seen:?}"
        );
    }
}
