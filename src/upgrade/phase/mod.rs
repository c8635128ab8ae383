//! The procedures as lists of phases (after k0sctl's `phase/`): `upgrade` is
//! lock, pre-flight, recover, choose, stage, roll, finish; `rollback` and
//! `backup` are lists of their own, and a path is one upgrade list per hop.
//! Each phase does one thing and may undo it; the runner here owns what every
//! procedure shares: the dry run, the operator's confirmation, and undoing the
//! phases that ran, in reverse order, on every way out (the lock's release is
//! one such undo).

pub mod backup;
pub mod choose;
pub mod finish;
pub mod lock;
pub mod preflight;
pub mod recover;
pub mod roll;
pub mod rollback;
pub mod stage;

use std::time::Instant;

use futures::future::BoxFuture;

use crate::etcd::Version;
use crate::events::{Emitter, Event, NextStep};
use crate::exit::Ending;

use super::fleet::HostLink;
use super::preflight::{ClusterView, SurveyLimits};
use super::record::Records;
use super::target::{Interrupt, RollOptions, Target};
use roll::{RollEnd, Seen};

/// Shows the plan to the operator and returns whether to go ahead.
pub type Confirm<'a> = Box<dyn Fn(&[String]) -> bool + Send + Sync + 'a>;

/// How a procedure ended: cli turns it into the exit code and the last line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ending: Ending,
    pub message: String,
    /// The commands the message suggests, as data for JSON users.
    pub next: Vec<NextStep>,
}

impl Outcome {
    pub fn new(ending: Ending, message: impl Into<String>) -> Outcome {
        Outcome {
            ending,
            message: message.into(),
            next: Vec::new(),
        }
    }
    pub fn ok(message: impl Into<String>) -> Outcome {
        Outcome::new(Ending::Done, message)
    }
    pub fn refused(message: impl Into<String>) -> Outcome {
        Outcome::new(Ending::Refused, message)
    }
    pub fn with_next(mut self, next: Vec<NextStep>) -> Outcome {
        self.next = next;
        self
    }
}

/// What a phase tells the runner.
pub enum Flow {
    Next,
    Stop(Outcome),
}

/// Everything the phases of one procedure share, filled in as they run.
pub struct Run<'a> {
    pub links: &'a [HostLink],
    pub opts: &'a RollOptions,
    pub emit: &'a Emitter,
    pub interrupt: &'a Interrupt,
    pub records: Records,
    pub started: Instant,
    pub dry_run: bool,
    pub confirm: &'a Confirm<'a>,
    /// The version the pre-flight judges the cluster against (none: rollback).
    pub survey_target: Option<Version>,
    /// What the roll installs (for a rollback, the version each member returns to).
    pub target: Target,
    /// The pre-flight's view, once it ran.
    pub view: Option<ClusterView>,
    /// The members to change, by index, in the order chosen.
    pub todo: Vec<usize>,
    /// How the roll ended, for the finish.
    pub roll_end: Option<RollEnd>,
    /// What the roll's last gates read (leader, cluster version), so the finish
    /// need not ask it again.
    pub seen: Seen,
    /// The inventory path, for the commands the report tells the operator to run.
    pub inventory: String,
}

impl<'a> Run<'a> {
    /// A run with no target and no dry run, confirmed already (rollback, backup).
    pub fn unattended(
        links: &'a [HostLink],
        opts: &'a RollOptions,
        emit: &'a Emitter,
        interrupt: &'a Interrupt,
        confirm: &'a Confirm<'a>,
    ) -> Run<'a> {
        Run {
            links,
            opts,
            emit,
            interrupt,
            records: Records::default(),
            started: Instant::now(),
            dry_run: false,
            confirm,
            survey_target: None,
            target: Target::in_place(Version::new(0, 0, 0)),
            view: None,
            todo: Vec::new(),
            roll_end: None,
            seen: Seen::default(),
            inventory: String::new(),
        }
    }

    pub fn limits(&self) -> SurveyLimits {
        SurveyLimits {
            command: self.opts.command_timeout,
        }
    }

    /// The pre-flight's view; every phase after the pre-flight has one.
    pub fn view(&mut self) -> &mut ClusterView {
        self.view
            .as_mut()
            .expect("a phase that needs the cluster runs after the pre-flight")
    }

    /// How a refusal ends: unreachable hosts have their own ending.
    pub fn refusal(&self) -> Ending {
        any_unreachable(self.links).unwrap_or(Ending::Refused)
    }

    pub fn warn(&self, host: Option<String>, message: String) {
        (self.emit)(Event::Warning { host, message });
    }
}

pub fn any_unreachable(links: &[HostLink]) -> Option<Ending> {
    links
        .iter()
        .any(|l| l.session().is_err())
        .then_some(Ending::Unreachable)
}

/// One step of a procedure.
pub trait Phase: Sync {
    /// What the phase is, for logs (`-v`).
    fn name(&self) -> &'static str;

    /// The plan to show before this phase changes anything; None when it
    /// changes nothing or an earlier phase's plan covered it.
    fn plan(&self, _run: &Run<'_>) -> Option<Vec<String>> {
        None
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow>;

    /// Called on every way out once the phase ran, in reverse order.
    fn undo<'r, 'a: 'r>(&'r self, _run: &'r mut Run<'a>, _end: &'r Outcome) -> BoxFuture<'r, ()> {
        Box::pin(async {})
    }
}

/// Runs the phases in order until one stops the procedure, then undoes the
/// ones that ran, in reverse order. A phase with a plan is shown first: in a dry
/// run the procedure ends there, and the operator may decline.
pub async fn run_phases(phases: &[&dyn Phase], run: &mut Run<'_>) -> Outcome {
    let mut done: Vec<&dyn Phase> = Vec::new();
    let mut end = Outcome::ok("done");
    for &phase in phases {
        if let Some(steps) = phase.plan(run) {
            if run.dry_run {
                (run.emit)(Event::Plan { steps });
                end = Outcome::ok("dry run: the pre-flight passed; nothing was changed");
                break;
            }
            if !(run.confirm)(&steps) {
                end = Outcome::refused("not confirmed; nothing was changed");
                break;
            }
            (run.emit)(Event::Plan { steps });
        }
        tracing::debug!(target: "etcdroll::phase", phase = phase.name(), "running");
        (run.emit)(Event::Phase {
            phase: phase.name().to_string(),
            cluster: None,
        });
        let (rounds_before, started) = (crate::round_trips::so_far(), Instant::now());
        let flow = phase.run(run).await;
        (run.emit)(Event::PhaseFinished {
            phase: phase.name().to_string(),
            cluster: None,
            round_trips: crate::round_trips::so_far() - rounds_before,
            seconds: started.elapsed().as_secs_f64(),
        });
        match flow {
            Flow::Next => done.push(phase),
            Flow::Stop(outcome) => {
                end = outcome;
                break;
            }
        }
    }
    for phase in done.iter().rev() {
        phase.undo(run, &end).await;
    }
    end
}
