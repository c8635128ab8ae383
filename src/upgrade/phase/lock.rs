//! The first phase of every changing procedure: take the run lock on every
//! member (after `--break-lock` removed stale ones), so a second operator learns
//! at once who is running; released again on every way out.

use std::time::Duration;

use futures::future::BoxFuture;

use super::{Flow, Outcome, Phase, Run};
use crate::events::{Emitter, Event};
use crate::upgrade::fleet::HostLink;
use crate::upgrade::lock::{self, LockInfo};

/// The run lock to take before changing anything.
pub struct LockRequest {
    pub info: LockInfo,
    pub break_lock: bool,
}

pub struct TakeLock<'a> {
    pub request: &'a LockRequest,
}

impl Phase for TakeLock<'_> {
    fn name(&self) -> &'static str {
        "lock"
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow> {
        Box::pin(async move {
            // A dry run changes nothing, and an unreachable host is refused by
            // the pre-flight with its own exit code.
            if run.dry_run || super::any_unreachable(run.links).is_some() {
                return Flow::Next;
            }
            match take(run.links, self.request, run.opts.command_timeout, run.emit).await {
                Ok(()) => Flow::Next,
                Err(outcome) => Flow::Stop(outcome),
            }
        })
    }

    fn undo<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>, _end: &'r Outcome) -> BoxFuture<'r, ()> {
        Box::pin(async move {
            if !run.dry_run {
                lock::release_all(run.links, &run.opts.run_id, run.opts.command_timeout).await;
            }
        })
    }
}

/// Take the lock (breaking stale ones first when asked); the refusal to stop with
/// when it cannot be had.
pub async fn take(
    links: &[HostLink],
    request: &LockRequest,
    limit: Duration,
    emit: &Emitter,
) -> Result<(), Outcome> {
    let warn = |message| {
        emit(Event::Warning {
            host: None,
            message,
        })
    };
    if request.break_lock {
        for message in lock::break_all(links, limit).await {
            warn(message);
        }
    }
    match lock::acquire_all(links, &request.info, limit).await {
        Ok(warnings) => {
            for message in warnings {
                warn(message);
            }
            Ok(())
        }
        Err(why) => Err(Outcome::refused(format!(
            "REFUSED, nothing was changed:\n  {why}"
        ))),
    }
}
