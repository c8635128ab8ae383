//! The options the commands share, as clap parses them: which inventory and how
//! to reach its hosts (`Common`), which binaries to upgrade to (`TargetArgs`), and
//! how long to wait (`Waits`). They turn into the engine's own option types here,
//! so the engine never sees clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::inventory::Secret;
use crate::reach::ReachOptions;
use crate::ssh::{Compress, SshOptions};
use crate::ui::OutputFormat;
use crate::upgrade::clusters::TargetBinaries;
use crate::upgrade::target::RollOptions;

/// The binaries to upgrade to.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// The new etcd binary (on this machine; uploaded to every member). Give it
    /// once per minor to walk a whole path in one run (3.2 → 3.3 → 3.4 → 3.5):
    /// each with the etcdctl beside it, all staged first, one rolling upgrade per hop.
    #[arg(long, value_name = "PATH")]
    pub binary: Vec<PathBuf>,
    /// The new etcdctl, installed beside etcd and swapped with it.
    #[arg(long, value_name = "PATH")]
    pub etcdctl: Option<PathBuf>,
    /// The version the binary is, when it cannot run on this machine (it is
    /// checked again by running it on every host).
    #[arg(long, value_name = "X.Y.Z")]
    pub target_version: Option<String>,
    /// How the binaries cross the wire when staged: gzip (to hosts that have
    /// gzip; hashed on the host after decompression), none, or auto: gzip only
    /// off a LAN (the host's fastest answer took 30 ms or more) and when it
    /// shrinks the file to 90% or less.
    #[arg(long, value_name = "auto|gzip|none", default_value = "auto", value_parser = parse_compress)]
    pub compress: Compress,
}

fn parse_compress(s: &str) -> Result<Compress, String> {
    s.parse()
}

/// Limits of the waits during an upgrade.
#[derive(Args, Debug, Clone)]
pub struct Waits {
    /// How long a restarted member may take to be healthy on the new version.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// How long a member may take to catch up with the leader's raft index.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub catch_up_timeout: Duration,
    /// How long the cluster version may take to reach the new minor at the end.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub cluster_version_timeout: Duration,
    /// Limit for an upload that makes no progress.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub upload_stall_timeout: Duration,
    /// Interval of health and catch-up polls.
    #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
}

impl Waits {
    pub(super) fn roll_options(&self, common: &Common, settle: Duration) -> RollOptions {
        RollOptions {
            run_id: run_id(),
            command_timeout: common.command_timeout,
            upload_stall_timeout: self.upload_stall_timeout,
            health_timeout: self.health_timeout,
            catch_up_timeout: self.catch_up_timeout,
            cluster_version_timeout: self.cluster_version_timeout,
            poll_interval: self.poll_interval,
            settle,
        }
    }
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:04x}", nanos / 1_000_000, std::process::id() & 0xffff)
}

impl TargetArgs {
    /// The binaries as the engine takes them.
    pub(super) fn binaries(&self) -> TargetBinaries {
        TargetBinaries {
            binaries: self.binary.clone(),
            etcdctl: self.etcdctl.clone(),
            target_version: self.target_version.clone(),
            compress: self.compress,
        }
    }
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Ansible inventory, YAML or INI.
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: PathBuf,
    /// Inventory group holding the etcd members.
    #[arg(long, default_value = "etcd")]
    pub group: String,
    /// Read the inventory with Ansible's own `ansible-inventory --list` (from
    /// PATH, or ETCDROLL_ANSIBLE_INVENTORY), as a plugin config (`plugin:`)
    /// always is: for inventories only Ansible understands.
    #[arg(long)]
    pub inventory_via_ansible: bool,
    /// More detail on stderr: -v each remote command with its duration and exit
    /// status, -vv also each HTTP request to etcd, -vvv also the SSH layer (host
    /// key, algorithms, authentication). Never secrets, never in the JSON stream.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only these hosts, in Ansible's pattern language: host and group names,
    /// globs (`*`, `?`, `[..]`), `~REGEX`, `GROUP[0]`/`GROUP[1:2]`, separated by
    /// `,` or `:`; `!PAT` excludes, `&PAT` intersects, `@FILE` reads one a line.
    #[arg(short = 'l', long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Print the hosts the command would act on (after --group and --limit), as
    /// `ansible --list-hosts` does, and exit: connects to nothing.
    #[arg(long)]
    pub list_hosts: bool,
    /// Variables above every host and group variable, as in Ansible: KEY=VALUE
    /// (several in one, space-separated), @FILE (YAML or JSON), or a JSON
    /// mapping (repeatable; a later one wins).
    #[arg(short = 'e', long = "extra-vars", value_name = "VARS")]
    pub extra_vars: Vec<String>,
    /// Login user for every host (overrides ansible_user).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Private key file, tried before ssh-agent (repeatable).
    #[arg(long = "private-key", value_name = "FILE")]
    pub private_keys: Vec<PathBuf>,
    /// Extra known_hosts file (repeatable); ~/.ssh/known_hosts and
    /// /etc/ssh/ssh_known_hosts are always read.
    #[arg(long = "known-hosts", value_name = "FILE")]
    pub known_hosts: Vec<PathBuf>,
    /// Record host keys not yet known instead of refusing them. A CHANGED key is
    /// always refused.
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Jump host(s) for every host: [user@]host[:port][,...] (like ssh -J).
    #[arg(short = 'J', long = "jump", value_name = "HOPS")]
    pub jump: Option<String>,
    /// ssh_config file (default ~/.ssh/config when it exists), resolved by OpenSSH's
    /// own `ssh -G`: Host, Match, Include, HostName, User, Port, IdentityFile,
    /// ProxyJump, UserKnownHostsFile.
    #[arg(short = 'F', long = "ssh-config", value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Run privileged steps with sudo on every host (like ansible_become).
    #[arg(short = 'b', long = "become")]
    pub become_: bool,
    /// Ask once for the sudo password (else ETCDROLL_BECOME_PASS, else the
    /// inventory's ansible_become_pass). It is fed to sudo on stdin only.
    #[arg(short = 'K', long)]
    pub ask_become_pass: bool,
    /// Do not use ssh-agent.
    #[arg(long)]
    pub no_agent: bool,
    /// Output: bars on a terminal (else plain lines), plain, JSON lines, or wide
    /// (as auto, with more columns in `status`, like kubectl's `-o wide`).
    #[arg(short = 'o', long, value_enum, default_value = "auto")]
    pub output: OutputFormat,
    /// Limit for TCP connect plus SSH handshake, per host.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Limit for SSH authentication, per host.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub auth_timeout: Duration,
    /// The local journal of runs (JSON lines), default
    /// $XDG_STATE_HOME/etcdroll/journal.jsonl or ~/.local/state/etcdroll/journal.jsonl.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Remove a stale run lock (left by a run that died) after showing it.
    #[arg(long)]
    pub break_lock: bool,
    /// Limit for each remote command and HTTP request.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub command_timeout: Duration,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 10s, 2m)"))
}

impl Common {
    pub(super) fn ssh_options(&self) -> SshOptions {
        SshOptions {
            connect_timeout: self.connect_timeout,
            auth_timeout: self.auth_timeout,
            known_hosts_files: self.known_hosts.clone(),
            accept_new_host_keys: self.accept_new_host_keys,
            identity_files: self.private_keys.clone(),
            use_agent: !self.no_agent,
            ..SshOptions::default()
        }
    }

    pub(super) fn reach(&self) -> Result<ReachOptions, String> {
        let become_password = if self.ask_become_pass {
            Some(Secret::new(
                rpassword::prompt_password("BECOME password: ")
                    .map_err(|e| format!("cannot read the password: {e}"))?,
            ))
        } else {
            crate::secret_env::get(crate::secret_env::BECOME_PASS).map(Secret::new)
        };
        Ok(ReachOptions {
            become_password,
            jump: self.jump.clone(),
            user: self.user.clone(),
            become_: self.become_,
            ssh_config: self.ssh_config.clone(),
        })
    }
}
