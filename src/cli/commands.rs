//! What each command does, as wiring: connect, hand the hosts to the engine
//! (one cluster at a time or all at once), ask when the operator must confirm,
//! and report the engine's outcomes (`outcome.rs`: the exit code and the last
//! event). The decisions are the engine's (`upgrade`); the words are `ui`'s.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use super::connect::{connect, connect_members, connect_with, load_inventory};
use super::interrupt::with_interrupts;
use super::outcome::report;
use super::{Common, TargetArgs, Waits};
use crate::events::Emitter;
use crate::exit;
use crate::journal;
use crate::ui::Ui;
use crate::upgrade::clusters::{self, by_cluster, each_cluster, release_after_hard_stop};
use crate::upgrade::lock::LockInfo;
use crate::upgrade::procedures::{self, LockRequest, UpgradeRequest};
use crate::upgrade::record::Records;
use crate::upgrade::target::{Interrupt, Target};
use crate::upgrade::{adhoc, HostLink};

/// `exec`: one command on every host at once.
pub(super) async fn exec(common: Common, privileged: bool, command: Vec<String>) -> i32 {
    let Some((ui, emit, links)) = connect(&common).await else {
        return exit::USAGE;
    };
    let cmd = adhoc::command_from_args(&command);
    let code = adhoc::exec(&links, &cmd, common.command_timeout, privileged, &emit).await;
    ui.finish();
    code
}

/// `inventory`: the hosts as resolved, each setting with its origin; no host contacted.
pub(super) fn inventory(common: Common) -> i32 {
    let ui = Ui::new(common.output);
    let Some(inv) = load_inventory(&common, &ui) else {
        return exit::USAGE;
    };
    ui.inventory(&inv);
    exit::OK
}

/// `status`: every member of every cluster, each cluster on its own.
pub(super) async fn status(common: Common) -> i32 {
    let Some((ui, emit, links)) = connect_members(&common).await else {
        return exit::USAGE;
    };
    // Each cluster's member list, leader and cluster version are its own.
    let clusters = by_cluster(links);
    let limit = common.command_timeout;
    let results = clusters::each_cluster_codes(&clusters, &emit, |_, links, emit| async move {
        adhoc::status(links, limit, &emit).await
    })
    .await;
    let code = clusters::most_serious(results.iter().map(|(_, c)| *c));
    ui.finish();
    code
}

/// `check`: the pre-flight of every cluster against its target version.
pub(super) async fn check(common: Common, target: TargetArgs, waits: Waits) -> i32 {
    let binaries = target.binaries();
    let version = match binaries.version() {
        Ok(v) => v,
        Err(e) => return usage_error(&common, &e.to_string()),
    };
    let Some((ui, emit, links, versions)) = connect_with(&common, |hosts| {
        clusters::cluster_versions(hosts, &binaries, version)
    })
    .await
    else {
        return exit::USAGE;
    };
    let opts = waits.roll_options(&common, Duration::ZERO);
    // Each cluster is surveyed on its own (its members, leader and cluster
    // version), all at once: nothing is changed.
    let clusters = by_cluster(links);
    show_clusters(&ui, &clusters);
    let outcomes = each_cluster(&clusters, &emit, |i, links, emit| {
        let name = &clusters[i].0;
        let version = versions
            .iter()
            .find(|(c, _)| c == name)
            .and_then(|(_, v)| *v);
        let opts = &opts;
        async move { procedures::check(links, version, opts, &emit).await }
    })
    .await;
    let code = report(outcomes, &emit);
    ui.finish();
    code
}

/// `upgrade`: every cluster to its binary, up to `forks` clusters at a time.
pub(super) async fn upgrade(
    common: Common,
    target: TargetArgs,
    waits: Waits,
    dry_run: bool,
    yes: bool,
    settle: Duration,
    forks: u32,
) -> i32 {
    // --binary is read before connecting, so a wrong path fails at once.
    let binaries = target.binaries();
    let given = match (!binaries.binaries.is_empty())
        .then(|| binaries.load())
        .transpose()
    {
        Ok(t) => t,
        Err(e) => return usage_error(&common, &e.to_string()),
    };
    let Some((ui, emit, links, targets)) = connect_with(&common, |hosts| {
        clusters::cluster_targets(hosts, &binaries, given)
    })
    .await
    else {
        return exit::USAGE;
    };
    let opts = waits.roll_options(&common, settle);
    let run = opts.run_id.clone();
    let emit = journaled(&common, &emit, &links, &run, "upgrade");
    let interactive = std::io::stdin().is_terminal() && !ui.is_json();
    let clusters = by_cluster(links);
    // Every cluster has a target (both come from the same hosts), in the
    // clusters' order.
    let Some(targets) = clusters
        .iter()
        .map(|(n, _)| targets.iter().find(|(c, _)| c == n).map(|(_, t)| t.clone()))
        .collect::<Option<Vec<Target>>>()
    else {
        ui.finish();
        return usage_error(&common, "a cluster of the inventory has no target binary");
    };
    let interrupt = Arc::new(Interrupt::default());
    let several = clusters.len() > 1;
    show_clusters(&ui, &clusters);
    if several && !yes && interactive && !dry_run {
        let names: Vec<String> = clusters
            .iter()
            .zip(&targets)
            .map(|((n, _), t)| format!("{n} to {}", t.version))
            .collect();
        let steps = vec![format!(
            "upgrade {} clusters ({}), up to {forks} at a time, each one member at a time",
            names.len(),
            names.join(", "),
        )];
        if !ui.ask_to_proceed(&steps) {
            return exit::REFUSED;
        }
    }
    let records: Vec<Records> = clusters
        .iter()
        .map(|_| Arc::new(std::sync::Mutex::new(Vec::new())))
        .collect();
    let forks = Arc::new(tokio::sync::Semaphore::new(forks as usize));
    let all = each_cluster(&clusters, &emit, |i, links, emit| {
        let confirm_ui = ui.clone();
        let req = UpgradeRequest {
            links,
            target: targets[i].clone(),
            opts: opts.clone(),
            dry_run,
            confirm: Box::new(move |steps: &[String]| {
                if yes || several || !interactive {
                    return true;
                }
                confirm_ui.ask_to_proceed(steps)
            }),
            interrupt: interrupt.clone(),
            records: records[i].clone(),
            lock: lock_request(&common, &run),
            inventory: common.inventory.display().to_string(),
        };
        let forks = forks.clone();
        async move {
            let _slot = forks.acquire().await;
            procedures::upgrade(req, &emit).await
        }
    });
    let all = async { report(all.await, &emit) };
    let code = with_interrupts(all, &interrupt, &records, &emit).await;
    // Each procedure released its lock on its way out; only a stop at once
    // (the second Ctrl-C, which ends in 130) can have left one.
    if code == exit::INTERRUPTED {
        release_after_hard_stop(&clusters, &run, common.command_timeout).await;
    }
    ui.finish();
    code
}

/// `rollback`: every member running a new binary back to its etcd.old.
pub(super) async fn rollback(common: Common, waits: Waits, yes: bool) -> i32 {
    let Some((ui, emit, links)) = connect_members(&common).await else {
        return exit::USAGE;
    };
    if !yes && std::io::stdin().is_terminal() && !ui.is_json() {
        let steps = vec![
            "return every member running a new binary to its etcd.old, one at a time".to_string(),
        ];
        if !ui.ask_to_proceed(&steps) {
            return exit::REFUSED;
        }
    }
    let interrupt = Arc::new(Interrupt::default());
    let records: Records = Arc::new(std::sync::Mutex::new(Vec::new()));
    let opts = waits.roll_options(&common, Duration::ZERO);
    let lock = lock_request(&common, &opts.run_id);
    let emit = journaled(&common, &emit, &links, &opts.run_id, "rollback");
    // Each cluster on its own, all at once, each one member at a time.
    let clusters = by_cluster(links);
    show_clusters(&ui, &clusters);
    let all = each_cluster(&clusters, &emit, |_, links, emit| {
        let (opts, lock, interrupt) = (&opts, &lock, interrupt.clone());
        async move { procedures::rollback(links, opts, &emit, interrupt, lock).await }
    });
    let all = async { report(all.await, &emit) };
    let code = with_interrupts(all, &interrupt, std::slice::from_ref(&records), &emit).await;
    // Each procedure released its lock on its way out; only a stop at once
    // (the second Ctrl-C, which ends in 130) can have left one.
    if code == exit::INTERRUPTED {
        release_after_hard_stop(&clusters, &opts.run_id, common.command_timeout).await;
    }
    ui.finish();
    code
}

/// `backup`: an online snapshot of every member.
pub(super) async fn backup(common: Common, waits: Waits) -> i32 {
    let Some((ui, emit, links)) = connect_members(&common).await else {
        return exit::USAGE;
    };
    let opts = waits.roll_options(&common, Duration::ZERO);
    let lock = lock_request(&common, &opts.run_id);
    let emit = journaled(&common, &emit, &links, &opts.run_id, "backup");
    let clusters = by_cluster(links);
    show_clusters(&ui, &clusters);
    let outcomes = each_cluster(&clusters, &emit, |_, links, emit| {
        let (opts, lock) = (&opts, &lock);
        async move { procedures::backup(links, opts, &emit, lock).await }
    })
    .await;
    let code = report(outcomes, &emit);
    ui.finish();
    code
}

/// With several clusters, the bars are grouped under a heading per cluster.
fn show_clusters(ui: &Ui, clusters: &[(String, Vec<HostLink>)]) {
    if clusters.len() > 1 {
        ui.group_by_cluster(&clusters::cluster_layout(clusters));
    }
}

/// The emitter that also records the run in the local journal (see
/// `journal::start_run`).
fn journaled(
    common: &Common,
    emit: &Emitter,
    links: &[HostLink],
    run_id: &str,
    command: &str,
) -> Emitter {
    let hosts = links.iter().map(|l| l.name().to_string()).collect();
    journal::start_run(emit, common.journal.clone(), hosts, run_id, command)
}

fn lock_request(common: &Common, run_id: &str) -> LockRequest {
    LockRequest {
        info: LockInfo::for_this_run(run_id),
        break_lock: common.break_lock,
    }
}

fn usage_error(common: &Common, message: &str) -> i32 {
    Ui::new(common.output).error(message);
    exit::USAGE
}
