//! The command line: the commands and their flags as clap parses them, `main`,
//! and the dispatch of each command to `commands`, which wires the engine
//! (`upgrade`) to the UI (`ui`) and returns the exit code. The shared flags are in
//! `args`, loading the inventory and connecting in `connect`, Ctrl-C in `interrupt`.

mod args;
mod commands;
mod connect;
mod interrupt;
mod outcome;

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::exit;

pub use args::{parse_duration, Common, TargetArgs, Waits};

/// `etcdroll --help`: the commands grouped by what they do to a cluster, on one
/// screen (clap lists subcommands in one flat list).
const HELP: &str = "\
{about}

{usage-heading} {usage}

Change the cluster:
  upgrade      Rolling upgrade: pre-flight, stage, then one member at a time behind health gates
  rollback     Return upgraded members to their etcd.old, while the cluster is still mixed
  backup       An online snapshot of every member into its etcd_backup_dir

Look, change nothing:
  check        The pre-flight alone: may the upgrade run? (with --binary)
  status       Every member: version, health, leader, raft index, db size
  inventory    The hosts as resolved, every setting with its origin; connects to nothing

Hosts and tools:
  exec         A command on every host at once (Ansible's -m shell)
  completions  Shell completions for bash, zsh, fish, …
  man          The manual page (roff)

Options:
{options}

Every command takes -i INVENTORY and Ansible's -l, -e, -b, -K, -u, -f; see `etcdroll COMMAND --help`.
";

#[derive(Parser, Debug)]
#[command(
    name = "etcdroll",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("ETCDROLL_GIT_COMMIT"), ")"),
    about = "Rolling upgrades of etcd clusters over SSH",
    long_about = "Rolling upgrades of etcd clusters over SSH, one member at a time, with backups, \
                  health gates and automatic rollback. Hosts come from an Ansible inventory.",
    help_template = HELP
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
        #[arg(
            last = true,
            required_unless_present = "list_hosts",
            value_name = "CMD"
        )]
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
    /// Print the hosts as etcdroll resolved them, per cluster: address, port, user,
    /// jump hosts and every etcd setting with where it came from. Connects to
    /// nothing (systemd hosts describe themselves at connect time: see `check`).
    Inventory {
        #[command(flatten)]
        common: Common,
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
    fn common(&self) -> Option<&Common> {
        match self {
            Command::Exec { common, .. }
            | Command::Status { common }
            | Command::Check { common, .. }
            | Command::Upgrade { common, .. }
            | Command::Rollback { common, .. }
            | Command::Backup { common, .. }
            | Command::Inventory { common } => Some(common),
            Command::Completions { .. } | Command::Man => None,
        }
    }

    fn verbosity(&self) -> u8 {
        self.common().map_or(0, |c| c.verbose)
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
    if let Some(common) = cli.command.common().filter(|c| c.list_hosts) {
        return connect::list_hosts(common);
    }
    match cli.command {
        Command::Exec {
            common,
            privileged,
            command,
        } => commands::exec(common, privileged, command).await,
        Command::Status { common } => commands::status(common).await,
        Command::Check {
            common,
            target,
            waits,
        } => commands::check(common, target, waits).await,
        Command::Upgrade {
            common,
            target,
            waits,
            dry_run,
            yes,
            settle,
            forks,
        } => commands::upgrade(common, target, waits, dry_run, yes, settle, forks).await,
        Command::Rollback { common, waits, yes } => commands::rollback(common, waits, yes).await,
        Command::Backup { common, waits } => commands::backup(common, waits).await,
        Command::Inventory { common } => commands::inventory(common),
        // Handled in `main` before the runtime starts.
        Command::Completions { .. } | Command::Man => exit::OK,
    }
}

#[cfg(test)]
mod tests {
    /// The grouped help is written by hand: it must name every command, and fit
    /// a screen.
    #[test]
    fn the_help_names_every_command_and_fits_a_screen() {
        let cmd = <super::Cli as clap::CommandFactory>::command();
        for sub in cmd.get_subcommands() {
            let line = format!("\n  {:<12} ", sub.get_name());
            assert!(
                super::HELP.contains(&line),
                "{} missing from HELP",
                sub.get_name()
            );
        }
        let mut cmd = <super::Cli as clap::CommandFactory>::command();
        let help = cmd.render_long_help().to_string();
        assert!(help.lines().count() <= 30, "{help}");
    }
}
