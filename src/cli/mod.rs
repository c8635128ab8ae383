//! The command line: parse arguments, load the inventory, connect, pick the UI,
//! run a command, map the outcome to an exit code.

mod args;
mod interrupt;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::events::Emitter;
use crate::exit;
use crate::inventory::{self, LoadOptions};
use crate::journal;
use crate::ssh::Connector;
use crate::ui::Ui;
use crate::upgrade::clusters::{self, by_cluster, cluster_emitter, each_cluster};
use crate::upgrade::lock::{self, LockInfo};
use crate::upgrade::procedures::{self, LockRequest, UpgradeRequest};
use crate::upgrade::roll::{Interrupt, Records, Target};
use crate::upgrade::{self, adhoc, HostLink};
use interrupt::with_interrupts;

pub use args::{parse_duration, Common, TargetArgs, Waits};

#[derive(Parser, Debug)]
#[command(
    name = "etcdroll",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ETCDROLL_GIT_COMMIT"), ")"),
    about = "Rolling upgrades of etcd clusters over SSH",
    long_about = "Rolling upgrades of etcd clusters over SSH, one member at a time, with backups, \
                  health gates and automatic rollback. Hosts come from an Ansible inventory."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a command on every host at once (Ansible's `-m shell`).
    Exec {
        #[command(flatten)]
        common: Common,
        /// Run the command with sudo (as `ansible_become_user`, default root).
        #[arg(long = "privileged")]
        privileged: bool,
        /// The command: one argument is a shell command line; several are a program
        /// and its arguments, passed through unchanged.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Show every member: version, health, leader, raft index, db size.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Pre-flight only: check every member and say whether the upgrade may run.
    /// Changes nothing. Without --binary, checks health and membership only.
    Check {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        waits: Waits,
    },
    /// Rolling upgrade: pre-flight, stage the binary everywhere, then one member at a
    /// time (followers first, the leader last), each behind health gates.
    Upgrade {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        waits: Waits,
        /// Run the pre-flight, print the plan, change nothing (Ansible's --check).
        #[arg(long, visible_alias = "check")]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
        /// Clusters upgraded at the same time when the inventory holds several
        /// (`etcd_cluster` per host); each is still one member at a time.
        #[arg(short = 'f', long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        forks: u32,
        /// Pause after each member (on top of the measured catch-up).
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        settle: Duration,
    },
    /// Return every member running a new binary to its saved etcd.old, one at a time.
    /// Refused once the cluster version has moved to the new minor.
    Rollback {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        waits: Waits,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Print shell completions (bash, zsh, fish, …) for etcdroll to stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print etcdroll's manual page (roff) to stdout: `etcdroll man > etcdroll.1`.
    Man,
    /// Take an online snapshot of every member into its etcd_backup_dir.
    Backup {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        waits: Waits,
    },
}

impl Command {
    fn verbosity(&self) -> u8 {
        match self {
            Command::Exec { common, .. }
            | Command::Status { common }
            | Command::Check { common, .. }
            | Command::Upgrade { common, .. }
            | Command::Rollback { common, .. }
            | Command::Backup { common, .. } => common.verbose,
            Command::Completions { .. } | Command::Man => 0,
        }
    }
}

/// `-v`…`-vvv`: tracing to stderr, by target (see `Common::verbose`).
fn init_verbosity(level: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    if level == 0 {
        return;
    }
    let mut targets = Targets::new().with_target("etcdroll::remote", LevelFilter::INFO);
    if level >= 2 {
        targets = targets.with_target("etcdroll::http", LevelFilter::INFO);
    }
    if level >= 3 {
        // etcdroll's own SSH lines only: russh's debug output shows packets,
        // which could carry what etcdroll must never log.
        targets = targets.with_target("etcdroll::ssh", LevelFilter::INFO);
    }
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(targets))
        .try_init();
}

pub fn main() -> i32 {
    // Before the runtime starts any thread: see secret_env.
    crate::secret_env::take_from_environment();
    let cli = Cli::parse();
    // Completions and the manual page need no runtime and touch no host.
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "etcdroll", &mut std::io::stdout());
            return exit::OK;
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            return match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => exit::OK,
                Err(e) => {
                    eprintln!("etcdroll: cannot write the manual page: {e}");
                    exit::FAILED
                }
            };
        }
        _ => {}
    }
    init_verbosity(cli.command.verbosity());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("etcdroll: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Exec {
            common,
            privileged,
            command,
        } => {
            let Some((ui, emit, links)) = connect(&common).await else {
                return exit::USAGE;
            };
            let cmd = adhoc::command_from_args(&command);
            let code = adhoc::exec(&links, &cmd, common.command_timeout, privileged, &emit).await;
            ui.finish();
            code
        }
        Command::Status { common } => {
            let Some((ui, emit, links)) = connect(&common).await else {
                return exit::USAGE;
            };
            // Each cluster's member list, leader and cluster version are its own.
            let clusters = by_cluster(links);
            let several = clusters.len() > 1;
            let runs = clusters.iter().map(|(name, links)| {
                let emit = cluster_emitter(&emit, name, several);
                let limit = common.command_timeout;
                async move { (name.clone(), adhoc::status(links, limit, &emit).await) }
            });
            let results = futures::future::join_all(runs).await;
            let code = clusters::most_serious(results.iter().map(|(_, c)| *c));
            ui.finish();
            code
        }
        Command::Check {
            common,
            target,
            waits,
        } => {
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
            let code = each_cluster(&clusters, &emit, |i, links, emit| {
                let name = &clusters[i].0;
                let version = versions
                    .iter()
                    .find(|(c, _)| c == name)
                    .and_then(|(_, v)| *v);
                let opts = &opts;
                async move { procedures::check(links, version, opts, &emit).await }
            })
            .await;
            ui.finish();
            code
        }
        Command::Upgrade {
            common,
            target,
            waits,
            dry_run,
            yes,
            settle,
            forks,
        } => {
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
            let code = with_interrupts(all, &interrupt, &records, &emit).await;
            // Released on every way out, including a hard stop (only our own lock).
            for (_, links) in &clusters {
                lock::release_all(links, &run, common.command_timeout).await;
            }
            ui.finish();
            code
        }
        Command::Rollback { common, waits, yes } => {
            let Some((ui, emit, links)) = connect(&common).await else {
                return exit::USAGE;
            };
            if !yes && std::io::stdin().is_terminal() && !ui.is_json() {
                let steps = vec![
                    "return every member running a new binary to its etcd.old, one at a time"
                        .to_string(),
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
            let code =
                with_interrupts(all, &interrupt, std::slice::from_ref(&records), &emit).await;
            for (_, links) in &clusters {
                lock::release_all(links, &opts.run_id, common.command_timeout).await;
            }
            ui.finish();
            code
        }
        // Handled in `main` before the runtime starts.
        Command::Completions { .. } | Command::Man => exit::OK,
        Command::Backup { common, waits } => {
            let Some((ui, emit, links)) = connect(&common).await else {
                return exit::USAGE;
            };
            let opts = waits.roll_options(&common, Duration::ZERO);
            let lock = lock_request(&common, &opts.run_id);
            let emit = journaled(&common, &emit, &links, &opts.run_id, "backup");
            let clusters = by_cluster(links);
            show_clusters(&ui, &clusters);
            let code = each_cluster(&clusters, &emit, |_, links, emit| {
                let (opts, lock) = (&opts, &lock);
                async move { procedures::backup(links, opts, &emit, lock).await }
            })
            .await;
            for (_, links) in &clusters {
                lock::release_all(links, &opts.run_id, common.command_timeout).await;
            }
            ui.finish();
            code
        }
    }
}

/// With several clusters, the bars are grouped under a heading per cluster.
fn show_clusters(ui: &Ui, clusters: &[(String, Vec<HostLink>)]) {
    if clusters.len() > 1 {
        ui.group_by_cluster(&clusters::cluster_layout(clusters));
    }
}

/// The emitter that also records the run in the local journal, after saying where
/// the previous run on these hosts stopped if it did not finish.
fn journaled(
    common: &Common,
    emit: &Emitter,
    links: &[HostLink],
    run_id: &str,
    command: &str,
) -> Emitter {
    let hosts: Vec<String> = links.iter().map(|l| l.name().to_string()).collect();
    let Some(path) = common.journal.clone().or_else(journal::default_path) else {
        return emit.clone();
    };
    if let Some(message) = journal::unfinished_run(&path, &hosts) {
        emit(crate::events::Event::Warning {
            host: None,
            message,
        });
    }
    let emit = journal::recording(emit, &path, run_id);
    emit(crate::events::Event::RunStarted {
        run_id: run_id.to_string(),
        command: command.to_string(),
        hosts,
    });
    emit
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

/// Load the inventory and open one session per host (all at once). None when the
/// inventory is unusable (already reported).
async fn connect(common: &Common) -> Option<(Arc<Ui>, Emitter, Vec<HostLink>)> {
    connect_with(common, |_| Ok::<(), std::convert::Infallible>(()))
        .await
        .map(|(ui, emit, links, ())| (ui, emit, links))
}

/// Loads the inventory, runs `prepare` on its hosts (a refusal there is a usage
/// error, before any host is contacted), then connects.
async fn connect_with<T, E: std::fmt::Display>(
    common: &Common,
    prepare: impl FnOnce(&[inventory::Host]) -> Result<T, E>,
) -> Option<(Arc<Ui>, Emitter, Vec<HostLink>, T)> {
    let ui = Ui::new(common.output);
    let inv = match inventory::load(
        &common.inventory,
        &LoadOptions {
            group: &common.group,
            limit: common.limit.as_deref(),
        },
    ) {
        Ok(inv) => inv,
        Err(e) => {
            ui.error(&format!("inventory: {e}"));
            return None;
        }
    };
    let prepared = match prepare(&inv.hosts) {
        Ok(p) => p,
        Err(e) => {
            ui.error(&e.to_string());
            return None;
        }
    };
    let reach = match common.reach() {
        Ok(r) => r,
        Err(e) => {
            ui.error(&e);
            return None;
        }
    };
    let emit = ui.emitter();
    let connector = Arc::new(Connector::new(common.ssh_options()));
    let links = upgrade::connect_all(connector, &inv.hosts, &reach).await;
    Some((ui, emit, links, prepared))
}
