//! A whole path in one run: several binaries, one per minor (3.2 → 3.3 → 3.4 →
//! 3.5, or the guide's 2.3 → 3.0 and on). Every binary is staged and verified on
//! every member first, so a wrong file fails before any member stops; then each
//! hop is a full rolling upgrade (`upgrade_one`), and the next starts only once
//! the cluster version has moved. A failed hop stops the path with the cluster
//! serving the previous version; the same command, run again, continues there.

use std::sync::{Arc, Mutex};

use crate::etcd::Version;
use crate::events::{Emitter, Event, NextStep};
use crate::exit;

use super::lock::release_all;
use super::phase::lock::{take, LockRequest};
use super::phase::stage::stage;
use super::phase::{finish, Outcome};
use super::preflight::{survey, SurveyLimits};
use super::procedures::{upgrade_one, UpgradeRequest};
use super::target::{Stage, Target};

/// The path, then the release of the lock it took for all its hops.
pub async fn upgrade_path(req: UpgradeRequest<'_>, emit: &Emitter) -> i32 {
    let (links, run_id, limit, dry_run) = (
        req.links,
        req.opts.run_id.clone(),
        req.opts.command_timeout,
        req.dry_run,
    );
    let code = walk(req, emit).await;
    if !dry_run {
        release_all(links, &run_id, limit).await;
    }
    code
}

async fn walk(req: UpgradeRequest<'_>, emit: &Emitter) -> i32 {
    let UpgradeRequest {
        links,
        target,
        opts,
        dry_run,
        confirm,
        interrupt,
        records,
        lock,
        inventory,
    } = req;
    let mut first = target;
    let mut hops: Vec<Target> = std::mem::take(&mut first.then);
    hops.insert(0, first);
    let of = hops.len();

    // Where the cluster is: the hops up to its oldest member are done.
    let limits = SurveyLimits {
        command: opts.command_timeout,
    };
    let view = survey(links, None, limits).await;
    let oldest = view.members.iter().filter_map(|m| m.running).min();
    let start = oldest
        .map(|v| hops.iter().position(|h| h.version > v).unwrap_or(of - 1))
        .unwrap_or(0);
    let hop_from = |k: usize| -> String {
        match (k, oldest) {
            (k, Some(v)) if k == start => v.to_string(),
            (0, None) => "?".into(),
            (k, _) => hops[k - 1].version.to_string(),
        }
    };
    let hop_request = |target: Target, dry_run: bool| UpgradeRequest {
        links,
        target,
        opts: opts.clone(),
        dry_run,
        confirm: Box::new(|_: &[String]| true),
        interrupt: interrupt.clone(),
        records: records.clone(),
        // The path takes the lock (and breaks a stale one) once, before staging.
        lock: LockRequest {
            info: lock.info.clone(),
            break_lock: false,
        },
        inventory: inventory.clone(),
    };
    // A cluster that cannot take an upgrade is refused by the first hop's own
    // pre-flight, exactly as a single upgrade is.
    if view.refused() {
        return upgrade_one(hop_request(hops[start].clone(), dry_run), emit, true).await;
    }

    let steps = path_plan(&hops, start, oldest);
    if dry_run {
        emit(Event::Plan { steps });
        let (hop_emit, _) = hop_emitter(emit, start + 1, of, hop_from(start), &hops[start]);
        let code = upgrade_one(hop_request(hops[start].clone(), true), &hop_emit, false).await;
        let message = if code == exit::OK {
            "dry run: the first hop's pre-flight passed (each later hop is checked as it starts); nothing was changed".to_string()
        } else {
            "dry run: the first hop's pre-flight refused (reasons above); nothing was changed"
                .to_string()
        };
        return finish(emit, Outcome::new(code, message));
    }
    if !confirm(&steps) {
        return finish(emit, Outcome::refused("not confirmed; nothing was changed"));
    }
    emit(Event::Plan { steps });
    if let Err(outcome) = take(links, &lock, opts.command_timeout, emit).await {
        return finish(emit, outcome);
    }

    // Stage every later hop's binaries now, as NAME.new-X.Y.Z, verified on each
    // host; the first hop stages its own as NAME.new.
    let everyone: Vec<usize> = (0..links.len()).collect();
    for hop in hops.iter().skip(start + 1) {
        let later = Target {
            stage: Stage::Later,
            then: Vec::new(),
            ..hop.clone()
        };
        let problems = stage(links, &everyone, &later, &opts, emit).await;
        if !problems.is_empty() {
            return finish(
                emit,
                Outcome::refused(format!(
                    "staging etcd {} for a later hop failed, no member was stopped:\n  {}",
                    hop.version,
                    problems.join("\n  ")
                )),
            );
        }
    }

    for (k, hop) in hops.iter().enumerate().skip(start) {
        let from = hop_from(k);
        let to = hop.version;
        emit(Event::Hop {
            index: k + 1,
            of,
            from: from.clone(),
            to: to.to_string(),
        });
        let mut target = hop.clone();
        if k > start {
            target.stage = Stage::Prestaged;
        }
        let (hop_emit, ended) = hop_emitter(emit, k + 1, of, from.clone(), hop);
        let code = upgrade_one(hop_request(target, false), &hop_emit, false).await;
        if code != exit::OK {
            let why = ended
                .lock()
                .map(|m| m.clone().unwrap_or_default())
                .unwrap_or_default();
            return finish(
                emit,
                Outcome::new(
                    code,
                    format!(
                    "the path stopped at hop {} of {of} ({from} → {to}): {why}\n  \
                     The hops before it are done. Run the same command again to continue at this hop.",
                    k + 1
                ),
                )
                .with_next(vec![NextStep::new("continue", same_command())]),
            );
        }
    }
    let versions: Vec<String> = std::iter::once(hop_from(start))
        .chain(hops[start..].iter().map(|h| h.version.to_string()))
        .collect();
    finish(
        emit,
        Outcome::ok(format!(
            "path done: {}, every hop a rolling upgrade with its cluster version moved",
            versions.join(" → ")
        )),
    )
}

/// The whole path, as the plan shows it.
fn path_plan(hops: &[Target], start: usize, oldest: Option<Version>) -> Vec<String> {
    let of = hops.len();
    let mut steps = vec![format!(
        "stage etcd {} on every member now (NAME.new-X.Y.Z, each verified there), so a bad binary fails before any member stops",
        hops[start + 1..]
            .iter()
            .map(|h| h.version.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )];
    if start + 1 >= of {
        steps.clear();
    }
    for (k, hop) in hops.iter().enumerate() {
        let from = if k == start {
            oldest.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
        } else if k > 0 {
            hops[k - 1].version.to_string()
        } else {
            "?".into()
        };
        let v = hop.version;
        steps.push(if k < start {
            format!("hop {} of {of}: {v}: already done", k + 1)
        } else {
            format!(
                "hop {} of {of}: {from} → {v}: a rolling upgrade (followers first, the leader last), \
                 then wait for the cluster version {}.{}{}",
                k + 1,
                v.major,
                v.minor,
                if hop.etcdctl.is_some() {
                    ", with its etcdctl"
                } else {
                    ""
                }
            )
        });
    }
    steps
}

/// The events of one hop: its `run_finished` becomes a `hop_finished` (the path
/// ends the run once), and its message is kept for the path's own report.
fn hop_emitter(
    emit: &Emitter,
    index: usize,
    of: usize,
    from: String,
    to: &Target,
) -> (Emitter, Arc<Mutex<Option<String>>>) {
    let ended = Arc::new(Mutex::new(None));
    let keep = ended.clone();
    let emit = emit.clone();
    let to = to.version.to_string();
    let wrapped: Emitter = Arc::new(move |e: Event| match e {
        Event::RunFinished {
            ok,
            exit_code,
            message,
            ..
        } => {
            if let Ok(mut k) = keep.lock() {
                k.clone_from(&message);
            }
            emit(Event::HopFinished {
                index,
                of,
                from: from.clone(),
                to: to.clone(),
                ok,
                exit_code,
                message,
            })
        }
        other => emit(other),
    });
    (wrapped, ended)
}

/// This very command line, quoted: what continues a stopped path.
fn same_command() -> String {
    std::env::args()
        .map(|a| crate::ssh::quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}
