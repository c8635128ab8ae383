//! An inventory may hold several clusters (`etcd_cluster` per host). Each is
//! checked, upgraded, rolled back or backed up on its own — its own members,
//! leader, cluster version and binary — and all of them at once.
//!
//! This module groups the hosts by cluster, runs a procedure for each with an
//! emitter that names the cluster, and folds the clusters' exit codes into the
//! run's. `binaries` decides which binary each cluster is upgraded to.

mod binaries;

use std::future::Future;
use std::sync::Arc;

use crate::events::{Emitter, Event};
use crate::exit;

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
/// the run's exit code (see `clusters_outcome`).
pub async fn each_cluster<'a, Fut>(
    clusters: &'a [(String, Vec<HostLink>)],
    emit: &Emitter,
    run: impl Fn(usize, &'a [HostLink], Emitter) -> Fut,
) -> i32
where
    Fut: Future<Output = i32>,
{
    let results = each_cluster_codes(clusters, emit, run).await;
    clusters_outcome(results, clusters.len() > 1, emit)
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

/// The run's exit code from its clusters' (the most serious); with several, the
/// run's own `run_finished` says how each ended.
fn clusters_outcome(results: Vec<(String, i32)>, several: bool, emit: &Emitter) -> i32 {
    if !several {
        return results.first().map(|(_, c)| *c).unwrap_or(exit::FAILED);
    }
    let code = most_serious(results.iter().map(|(_, c)| *c));
    let lines: Vec<String> = results
        .iter()
        .map(|(n, c)| {
            format!(
                "cluster {n}: {}",
                if *c == exit::OK {
                    "ok".to_string()
                } else {
                    format!("exit {c}")
                }
            )
        })
        .collect();
    emit(Event::RunFinished {
        ok: code == exit::OK,
        exit_code: code,
        message: Some(lines.join("; ")),
        next: Vec::new(),
    });
    code
}

/// The emitter of one cluster's run: with several clusters, its end is a
/// `cluster_finished` event (the run's own `run_finished` comes once, last) and its
/// `cluster` events carry its name; with one, the run's emitter as it is.
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

    #[test]
    fn several_clusters_end_in_one_run_finished_naming_each() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let emit: Emitter = Arc::new(move |e| sink.lock().unwrap().push(e));
        let code = clusters_outcome(
            vec![("a".into(), exit::OK), ("b".into(), exit::FAILED)],
            true,
            &emit,
        );
        assert_eq!(code, exit::FAILED);
        let seen = seen.lock().unwrap();
        assert!(
            matches!(
                seen.as_slice(),
                [Event::RunFinished { ok: false, exit_code, message: Some(m), .. }]
                    if *exit_code == exit::FAILED && m == "cluster a: ok; cluster b: exit 1"
            ),
            "{seen:?}"
        );
    }
}
