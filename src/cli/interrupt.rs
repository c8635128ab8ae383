//! Ctrl-C during a run that changes clusters. The first press asks the procedure
//! to stop between members, so none is left half-upgraded; the second stops at
//! once, and the run ends saying which member is in which state (the words come
//! from `ui`).

use crate::events::{Emitter, Event};
use crate::exit;
use crate::ui;
use crate::upgrade::record::Records;
use crate::upgrade::target::Interrupt;

/// Run a procedure under Ctrl-C handling: the first Ctrl-C lets the current member
/// finish (the procedure checks between members); the second stops at once and
/// reports which member is in which state.
pub(super) async fn with_interrupts(
    run: impl std::future::Future<Output = i32>,
    interrupt: &Interrupt,
    records: &[Records],
    emit: &Emitter,
) -> i32 {
    tokio::pin!(run);
    loop {
        tokio::select! {
            code = &mut run => return code,
            _ = tokio::signal::ctrl_c() => {
                if interrupt.press() == 1 {
                    emit(Event::Warning {
                        host: None,
                        message: "Ctrl-C: finishing the current member, then stopping (press again to stop now)".into(),
                    });
                } else {
                    let recs: Vec<_> = records
                        .iter()
                        .flat_map(|r| r.lock().unwrap_or_else(|p| p.into_inner()).clone())
                        .collect();
                    emit(Event::RunFinished {
                        ok: false,
                        exit_code: exit::INTERRUPTED,
                        message: Some(ui::hard_stop_message(&recs)),
                        next: Vec::new(),
                        round_trips: crate::round_trips::so_far(),
                    });
                    return exit::INTERRUPTED;
                }
            }
        }
    }
}
