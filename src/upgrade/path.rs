//! A whole path in one run: several binaries, one per minor (3.2 → 3.3 → 3.4 →
//! 3.5, or the guide's 2.3 → 3.0 and on). Every binary is staged and verified on
//! every member first, so a wrong file fails before any member stops; then each
//! hop is a full rolling upgrade (`upgrade_one`), and the next starts only once
//! the cluster version has moved. A failed hop stops the path with the cluster
//! serving the previous version; the same command, run again, continues there.

use crate::etcd::Version;
use crate::events::{Emitter, Event, NextStep};
use crate::exit::Ending;

use super::lock::release_all;
use super::phase::lock::{take, LockRequest};
use super::phase::stage::stage;
use super::phase::Outcome;
use super::preflight::{survey, SurveyLimits};
use super::procedures::{upgrade_one, UpgradeRequest};
use super::target::{Stage, Target};

/// The path, then the release of the lock it took for all its hops.
pub async fn upgrade_path(req: UpgradeRequest<'_>, emit: &Emitter) -> Outcome {
    let (links, run_id, limit, dry_run) = (
        req.links,
        req.opts.run_id.clone(),
        req.opts.command_timeout,
        req.dry_run,
    );
    let outcome = walk(req, emit).await;
    if !dry_run {
        release_all(links, &run_id, limit).await;
    }
    outcome
}

async fn walk(req: UpgradeRequest<'_>, emit: &Emitter) -> Outcome {
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
        let hop = upgrade_one(hop_request(hops[start].clone(), true), emit, false).await;
        emit_hop_finished(emit, start + 1, of, hop_from(start), &hops[start], &hop);
        let message = if hop.ending == Ending::Done {
            "dry run: the first hop's pre-flight passed (each later hop is checked as it starts); nothing was changed".to_string()
        } else {
            "dry run: the first hop's pre-flight refused (reasons above); nothing was changed"
                .to_string()
        };
        return Outcome::new(hop.ending, message);
    }
    if !confirm(&steps) {
        return Outcome::refused("not confirmed; nothing was changed");
    }
    emit(Event::Plan { steps });
    if let Err(outcome) = take(links, &lock, opts.command_timeout, emit).await {
        return outcome;
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
            return Outcome::refused(format!(
                "staging etcd {} for a later hop failed, no member was stopped:\n  {}",
                hop.version,
                problems.join("\n  ")
            ));
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
        let ended = upgrade_one(hop_request(target, false), emit, false).await;
        emit_hop_finished(emit, k + 1, of, from.clone(), hop, &ended);
        if ended.ending != Ending::Done {
            return Outcome::new(
                ended.ending,
                format!(
                    "the path stopped at hop {} of {of} ({from} → {to}): {}\n  \
                     The hops before it are done. Run the same command again to continue at this hop.",
                    k + 1,
                    ended.message
                ),
            )
            .with_next(vec![NextStep::new("continue", same_command())]);
        }
    }
    let versions: Vec<String> = std::iter::once(hop_from(start))
        .chain(hops[start..].iter().map(|h| h.version.to_string()))
        .collect();
    Outcome::ok(format!(
        "path done: {}, every hop a rolling upgrade with its cluster version moved",
        versions.join(" → ")
    ))
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

/// How one hop ended, as its own event (the path ends the run once).
fn emit_hop_finished(
    emit: &Emitter,
    index: usize,
    of: usize,
    from: String,
    to: &Target,
    ended: &Outcome,
) {
    emit(Event::HopFinished {
        index,
        of,
        from,
        to: to.version.to_string(),
        ok: ended.ending == Ending::Done,
        exit_code: ended.ending.code(),
        message: Some(ended.message.clone()),
    });
}

/// This very command line, quoted: what continues a stopped path.
fn same_command() -> String {
    std::env::args()
        .map(|a| crate::ssh::quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}
