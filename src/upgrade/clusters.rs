//! An inventory may hold several clusters (`etcd_cluster` per host). Each is
//! checked, upgraded, rolled back or backed up on its own — its own members,
//! leader, cluster version and binary — and all of them at once.
//!
//! This module groups the hosts by cluster, runs a procedure for each with an
//! emitter that names the cluster, and hands back each cluster's outcome (cli
//! reports them). `binaries` decides which binary each cluster is upgraded to.

mod binaries;

use std::future::Future;
use std::sync::Arc;

use crate::events::{Emitter, Event};
use crate::exit::{self, Ending};

use super::phase::Outcome;

use super::HostLink;

pub use binaries::{
    cluster_targets, cluster_versions, ClusterTargetError, TargetBinaries, TargetError,
};

/// Hosts grouped by cluster (`etcd_cluster`, else the group), in inventory order.
pub fn by_cluster(links: Vec<HostLink>) -> Vec<(String, Vec<HostLink>)> {
    let mut out: Vec<(String, Vec<HostLink>)> = Vec::new();
    for l in links {
        match out.iter_mut().find(|(n, _)| *n == l.host.cluster) {
            Some((_, v)) => v.push(l),
            None => out.push((l.host.cluster.clone(), vec![l])),
        }
    }
    out
}

/// Each cluster's name with the names of its hosts, for a UI that groups them.
pub fn cluster_layout(clusters: &[(String, Vec<HostLink>)]) -> Vec<(String, Vec<String>)> {
    clusters
        .iter()
        .map(|(c, ls)| (c.clone(), ls.iter().map(|l| l.name().to_string()).collect()))
        .collect()
}

/// Each procedure releases its lock on every way out it sees; a hard stop (the
/// second Ctrl-C) drops it mid-phase, so this releases what such a stop left
/// (only this run's own lock: another run's is never touched).
pub async fn release_after_hard_stop(
    clusters: &[(String, Vec<HostLink>)],
    run_id: &str,
    limit: std::time::Duration,
) {
    for (_, links) in clusters {
        super::lock::release_all(links, run_id, limit).await;
    }
}

/// Runs `run` for every cluster at once, each with its own emitter (see
/// `cluster_emitter`; `run` gets the cluster's index in `clusters`), and returns
/// each cluster's name with its outcome, in the clusters' order. With several
/// clusters, each one's end is reported as it comes (`cluster_finished`); the
/// run's own end is the caller's to report, once.
pub async fn each_cluster<'a, Fut>(
    clusters: &'a [(String, Vec<HostLink>)],
    emit: &Emitter,
    run: impl Fn(usize, &'a [HostLink], Emitter) -> Fut,
) -> Vec<(String, Outcome)>
where
    Fut: Future<Output = Outcome>,
{
    let several = clusters.len() > 1;
    let runs = clusters.iter().enumerate().map(|(i, (name, links))| {
        let running = run(i, links, cluster_emitter(emit, name, several));
        let emit = emit.clone();
        async move {
            let outcome = running.await;
            if several {
                emit(Event::ClusterFinished {
                    cluster: name.clone(),
                    ok: outcome.ending == Ending::Done,
                    exit_code: outcome.ending.code(),
                    message: Some(outcome.message.clone()),
                    next: outcome.next.clone(),
                });
            }
            (name.clone(), outcome)
        }
    });
    futures::future::join_all(runs).await
}

/// Like `each_cluster`, for a run that reports no outcome of its own (`status`):
/// each cluster's name with its exit code, in the clusters' order.
pub async fn each_cluster_codes<'a, Fut>(
    clusters: &'a [(String, Vec<HostLink>)],
    emit: &Emitter,
    run: impl Fn(usize, &'a [HostLink], Emitter) -> Fut,
) -> Vec<(String, i32)>
where
    Fut: Future<Output = i32>,
{
    let several = clusters.len() > 1;
    let runs = clusters.iter().enumerate().map(|(i, (name, links))| {
        let running = run(i, links, cluster_emitter(emit, name, several));
        async move { (name.clone(), running.await) }
    });
    futures::future::join_all(runs).await
}

/// The emitter of one cluster's run: with several clusters, its end is a
/// `cluster_finished` event (the run's own `run_finished` comes once, last) and its
/// `cluster`, `phase` and `phase_finished` events carry its name; with one, the run's emitter as it is.
pub fn cluster_emitter(emit: &Emitter, cluster: &str, several: bool) -> Emitter {
    let emit = emit.clone();
    if !several {
        return emit;
    }
    let cluster = cluster.to_string();
    Arc::new(move |e| match e {
        Event::RunFinished {
            ok,
            exit_code,
            message,
            next,
            ..
        } => emit(Event::ClusterFinished {
            cluster: cluster.clone(),
            ok,
            exit_code,
            message,
            next,
        }),
        Event::Cluster {
            cluster_version,
            leader,
            healthy,
            members,
            ..
        } => emit(Event::Cluster {
            name: Some(cluster.clone()),
            cluster_version,
            leader,
            healthy,
            members,
        }),
        Event::Phase { phase, .. } => emit(Event::Phase {
            phase,
            cluster: Some(cluster.clone()),
        }),
        Event::PhaseFinished {
            phase,
            round_trips,
            seconds,
            ..
        } => emit(Event::PhaseFinished {
            phase,
            cluster: Some(cluster.clone()),
            round_trips,
            seconds,
        }),
        other => emit(other),
    })
}

/// The exit code of a run whose clusters ended with `codes`: the most serious
/// (`exit::OK` for none).
pub fn most_serious(codes: impl IntoIterator<Item = i32>) -> i32 {
    codes
        .into_iter()
        .max_by_key(|c| severity(*c))
        .unwrap_or(exit::OK)
}

/// Which exit code wins when clusters end differently: the one that needs the
/// operator most.
fn severity(code: i32) -> u8 {
    match code {
        exit::NEEDS_ATTENTION => 6,
        exit::INTERRUPTED => 5,
        exit::FAILED => 4,
        exit::UNREACHABLE => 3,
        exit::REFUSED => 2,
        exit::OK => 0,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_that_needs_the_operator_most_wins() {
        assert_eq!(most_serious([]), exit::OK);
        assert_eq!(most_serious([exit::OK, exit::REFUSED]), exit::REFUSED);
        assert_eq!(
            most_serious([exit::FAILED, exit::NEEDS_ATTENTION, exit::INTERRUPTED]),
            exit::NEEDS_ATTENTION
        );
        assert_eq!(
            most_serious([exit::UNREACHABLE, exit::FAILED]),
            exit::FAILED
        );
    }
}
