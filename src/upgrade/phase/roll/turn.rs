//! A member's turn, in one place: the online backup, then one remote script
//! (`restart.sh`) that stops the member, copies its data dir, swaps the binary
//! and starts it, then the gates (healthy on the new version, caught up, every
//! member healthy). `TurnStep` and `TurnExit` are the script's markers and exit
//! codes; a failure hands over to `undo.rs`.

use std::time::{Duration, Instant, SystemTime};

use super::{health, Ctx, Roll, RollEnd};
use crate::etcd::EtcdVars;
use crate::etcd::{commands, Version};
use crate::events::{Event, MemberState, Step};
use crate::ssh::RemoteCommand;

/// The restart script, kept as a script; its values come as positional arguments.
pub const RESTART_SH: &str = include_str!("restart.sh");

/// Which way the script swaps the binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swap {
    /// `NAME.new` becomes `NAME`; the running one is kept as `NAME.old`.
    In,
    /// `NAME.old` becomes `NAME`; the failed new one is kept as `NAME.new`.
    Back,
    /// Restart on the binary in place.
    None,
}

/// One run of `restart.sh` on a member.
pub struct Restart<'v> {
    pub vars: &'v EtcdVars,
    /// The turn file (beside the run lock) and its line: which run stopped the member.
    pub turn_file: String,
    pub turn_line: String,
    /// The online backup, taken while the member serves; a failure stops nothing.
    pub snapshot: Option<RemoteCommand>,
    /// The offline backup of the stopped member's data dir.
    pub offline: Option<RemoteCommand>,
    pub swap: Swap,
    /// The binaries to swap: etcd, and etcdctl when one was staged.
    pub binaries: Vec<String>,
    /// How long the service's start may take (the health timeout).
    pub start_limit: Duration,
}

impl Restart<'_> {
    /// How long the whole script may take: the commands, and the start.
    pub fn limit(&self, command_timeout: Duration) -> Duration {
        command_timeout + self.start_limit
    }

    pub fn command(&self) -> RemoteCommand {
        let text =
            |c: &Option<RemoteCommand>| c.as_ref().map(|c| c.to_string()).unwrap_or_default();
        RemoteCommand::new("sh")
            .arg("-c")
            .arg(RESTART_SH)
            .arg("etcdroll-restart")
            .arg(&self.turn_file)
            .arg(&self.turn_line)
            .arg(commands::service_start(self.vars, self.start_limit).as_str())
            .arg(commands::service_stop(self.vars).as_str())
            .arg(text(&self.snapshot))
            .arg(text(&self.offline))
            .arg(match self.swap {
                Swap::In => "in",
                Swap::Back => "back",
                Swap::None => "none",
            })
            .args(&self.binaries)
    }
}

/// The marker lines the script prints as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnStep {
    Stopping,
    Stopped,
    BackedUp,
    Swapped,
    Starting,
    Started,
}

impl TurnStep {
    pub fn parse(line: &str) -> Option<TurnStep> {
        Some(match line.trim().strip_prefix("@etcdroll ")? {
            "stopping" => TurnStep::Stopping,
            "stopped" => TurnStep::Stopped,
            "backed_up" => TurnStep::BackedUp,
            "swapped" => TurnStep::Swapped,
            "starting" => TurnStep::Starting,
            "started" => TurnStep::Started,
            _ => return None,
        })
    }
}

/// Where the script stopped, from its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnExit {
    /// 9: the online backup failed; nothing was stopped.
    SnapshotFailed,
    /// 10: the stop command failed; a start was attempted.
    StopFailed,
    /// 11: the offline backup failed; the old binary was started again.
    BackupFailed,
    /// 12: a swap failed; the swaps before it were undone and the old binary started again.
    SwapFailed,
    /// 13: the start command failed: the member may be down.
    StartFailed,
    /// Anything else (killed, or a shell error).
    Other(u32),
}

impl TurnExit {
    pub fn from_code(code: u32) -> TurnExit {
        match code {
            9 => TurnExit::SnapshotFailed,
            10 => TurnExit::StopFailed,
            11 => TurnExit::BackupFailed,
            12 => TurnExit::SwapFailed,
            13 => TurnExit::StartFailed,
            n => TurnExit::Other(n),
        }
    }

    /// The script started the old binary again itself.
    pub fn old_binary_restarted(self) -> bool {
        matches!(
            self,
            TurnExit::StopFailed | TurnExit::BackupFailed | TurnExit::SwapFailed
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            TurnExit::SnapshotFailed => "the snapshot backup failed",
            TurnExit::StopFailed => "stopping the service failed; it was started again",
            TurnExit::BackupFailed => {
                "the offline backup failed (disk full?); the old binary was started again"
            }
            TurnExit::SwapFailed => "swapping the binary failed; the old binary was started again",
            TurnExit::StartFailed => "starting the service with the new binary failed",
            TurnExit::Other(_) => "the restart script failed",
        }
    }
}

impl Ctx<'_> {
    /// The line a member's turn file holds: which run stopped it, and why.
    pub(super) fn turn_line(&self) -> String {
        format!(
            "run {} (upgrade to {}, started {})",
            self.opts.run_id,
            self.target.version,
            humantime::format_rfc3339_seconds(SystemTime::now() - self.started.elapsed())
        )
    }
}

impl Roll<'_> {
    /// Member `i`'s whole turn; Err says how the roll must end.
    pub(super) async fn upgrade_member(&mut self, i: usize) -> Result<(), RollEnd> {
        let ctx = self.ctx;
        let cluster_version = self.cluster_version;
        let m = &mut self.members[i];
        let host = m.name().to_string();
        let vars = m.link.etcd().clone();
        let from = m.view.running;
        let backup_dir = backup_dir(&vars, &host, ctx.target.version);

        // Online backup first, in the same remote script as the restart: if it
        // fails, the script stops there and nothing was stopped. It is a v3
        // snapshot, so it needs a v3 etcdctl and a cluster past 2.3 (a mixed
        // 2.3/3.0 cluster refuses every v3 call): there, the guide's v2
        // `etcdctl backup` of the stopped member is the backup.
        ctx.step(m, Step::BackingUp, Some(backup_dir.clone()));
        let etcdctl_version = m
            .view
            .facts
            .as_ref()
            .and_then(|f| f.etcdctl_version.as_deref())
            .and_then(Version::parse);
        let v3_cluster = cluster_version.is_some_and(|c| c >= Version::new(3, 0, 0));
        let snapshot = (v3_cluster && etcdctl_version.is_some_and(|v| v >= Version::new(3, 0, 0)))
            .then(|| commands::turn_snapshot(&vars, &backup_dir));
        m.record.update(|r| r.backup = Some(backup_dir.clone()));

        // Downtime: one remote script stops, copies the data dir, swaps, starts.
        let v2 = m.view.v2_enabled
            && etcdctl_version
                .zip(from)
                .is_some_and(|(ctl, server)| commands::etcdctl_has_v2_backup(ctl, server));
        let mut binaries = vec![vars.binary.clone()];
        if ctx.swap_etcdctl {
            binaries.push(vars.etcdctl_binary.clone());
        }
        let restart = Restart {
            vars: &vars,
            turn_file: crate::upgrade::lock::turn_file(m.link.lock_dir()),
            turn_line: ctx.turn_line(),
            snapshot,
            offline: Some(commands::offline_backup(&vars, &backup_dir, v2)),
            swap: Swap::In,
            binaries,
            start_limit: ctx.opts.health_timeout,
        };
        let mut t_stop: Option<Instant> = None;
        let record = m.record.clone();
        let mut on_line = |line: &str| {
            if line.trim() == "@etcdroll backup copied" {
                (ctx.emit)(Event::Warning {
                    host: Some(host.clone()),
                    message: format!(
                        "its data dir was copied whole while it was stopped, so its downtime grew \
                         with its data: hard links could not be used (is {} on another filesystem \
                         than {}? or etcd wrote a raft snapshot during the online backup)",
                        vars.backup_dir, vars.data_dir
                    ),
                });
                return;
            }
            let (step, detail) = match TurnStep::parse(line) {
                Some(TurnStep::Stopping) => {
                    t_stop = Some(Instant::now());
                    (Step::Stopping, None)
                }
                Some(TurnStep::Stopped) => (
                    Step::BackingUp,
                    Some(
                        if v2 {
                            "data dir copy + etcdctl backup (v2)"
                        } else {
                            "data dir copy"
                        }
                        .to_string(),
                    ),
                ),
                Some(TurnStep::BackedUp) => (Step::Swapping, None),
                Some(TurnStep::Starting) => (Step::Starting, None),
                Some(TurnStep::Swapped | TurnStep::Started) | None => return,
            };
            record.update(|r| {
                r.step = Some(step);
                if step == Step::Stopping {
                    r.state = MemberState::Unknown;
                }
            });
            (ctx.emit)(Event::Step {
                host: host.clone(),
                step,
                detail,
            });
        };
        // The health gate's polls run while the script does: the new version's
        // first healthy answer is seen as soon as it is given, not one poll (and
        // a new tunnel) after the script's answer arrives — on a far link that
        // saves round trips every turn. The polls only see the old version until
        // the swap, and decide nothing until the script has succeeded.
        let target = ctx.target.version;
        let last_answer = std::sync::Mutex::new(String::new());
        let link = m.link;
        let waiting = m.record.clone();
        let (out, polled) = {
            let poll = health::poll_new_version(
                &mut *self.members[i].view,
                target,
                ctx.opts.poll_interval,
                &last_answer,
            );
            tokio::pin!(poll);
            let command = restart.command();
            let script = link.run_privileged_streaming(
                &command,
                restart.limit(ctx.opts.command_timeout),
                &mut on_line,
            );
            tokio::pin!(script);
            let mut early = None;
            let out = loop {
                tokio::select! {
                    out = &mut script => break out.map_err(|e| e.detail()),
                    up = &mut poll, if early.is_none() => early = Some(up),
                }
            };
            let polled = match &out {
                Ok(o) if o.success() => {
                    waiting.update(|r| r.step = Some(Step::WaitingHealthy));
                    (ctx.emit)(Event::Step {
                        host: host.clone(),
                        step: Step::WaitingHealthy,
                        detail: None,
                    });
                    match early {
                        Some(up) => Some(up),
                        None => tokio::time::timeout(ctx.opts.health_timeout, poll)
                            .await
                            .ok(),
                    }
                }
                _ => None,
            };
            (out, polled)
        };
        let m = &mut self.members[i];
        let down_at = t_stop.map(|t| t.duration_since(ctx.started).as_millis() as u64);
        m.record.update(|r| r.down_at_ms = down_at);
        match &out {
            Ok(o) if o.success() => {}
            Ok(o) => {
                let exit = TurnExit::from_code(o.exit_status.unwrap_or(0));
                if exit == TurnExit::SnapshotFailed {
                    m.record.update(|r| r.backup = None);
                    return Err(self.fail(
                        i,
                        Step::BackingUp,
                        format!(
                            "snapshot backup failed ({}); the member was not stopped",
                            o.last_error_line()
                        ),
                    ));
                }
                let why = format!("{} ({})", exit.describe(), o.last_error_line());
                if exit.old_binary_restarted() {
                    // The old binary was started again by the script: confirm it serves.
                    return Err(self.confirm_old_running(i, Step::Stopping, why, from).await);
                }
                return Err(self.roll_back_member(i, why, from).await);
            }
            Err(e) => {
                let why = format!("the restart script did not finish: {e}");
                return Err(self.roll_back_member(i, why, from).await);
            }
        }

        // Healthy on the new version?
        let Some((cluster_version, t_up)) = polled else {
            let why = format!(
                "not healthy on {target} within {}: last answer: {}",
                humantime::format_duration(ctx.opts.health_timeout),
                last_answer.lock().map(|l| l.clone()).unwrap_or_default()
            );
            return Err(self.roll_back_member(i, why, from).await);
        };
        self.seen.cluster_version = Some(cluster_version);
        let down_ms = t_stop.map(|t| t_up.duration_since(t).as_millis() as u64);
        let up_at = ctx.since_start();
        let m = &mut self.members[i];
        m.record.update(|r| {
            r.down_ms = down_ms;
            r.up_at_ms = Some(up_at);
            r.state = MemberState::Upgraded;
        });
        m.view.running = Some(target);

        // Caught up with the leader, and every member healthy again? Both asked
        // in one round first: when nothing lags, that round is both gates.
        ctx.step(m, Step::CatchingUp, None);
        let (statuses, health) = self.all_status_and_health().await;
        let first_round_caught = {
            let leader = self.leader_among(&statuses);
            let target = leader
                .and_then(|l| statuses[l].as_ref())
                .map(|s| s.raft_index);
            let own = statuses[i].as_ref().map(|s| s.raft_index);
            matches!((own, target), (Some(o), Some(t)) if o >= t)
        };
        let caught = self.wait_caught_up(i, statuses).await;
        let catch_up_ms = Some(t_up.elapsed().as_millis() as u64);
        self.members[i]
            .record
            .update(|r| r.catch_up_ms = catch_up_ms);
        if let Err(why) = caught {
            return Err(self.fail(i, Step::CatchingUp, why));
        }

        // Every member healthy again?
        ctx.step(&self.members[i], Step::ClusterHealth, None);
        let health = first_round_caught.then_some(health);
        if let Err(why) = self.wait_cluster_healthy(health).await {
            return Err(self.fail(i, Step::ClusterHealth, why));
        }
        let m = &self.members[i];
        let backup = m.record.read(|r| r.backup.clone()).flatten();
        (ctx.emit)(Event::HostDone {
            host,
            from: from.map(|v| v.to_string()).unwrap_or_default(),
            to: target.to_string(),
            down_ms,
            catch_up_ms,
            backup,
        });
        m.record.update(|r| r.step = Some(Step::Done));
        Ok(())
    }
}

/// Where this turn's backups go. Milliseconds and the target: the hops of a
/// path can follow each other within one second, and each needs its own.
fn backup_dir(vars: &EtcdVars, host: &str, target: Version) -> String {
    let stamp = humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .replace(':', "");
    format!(
        "{}/etcdroll-{host}-{stamp}-to-{target}",
        vars.backup_dir.trim_end_matches('/'),
    )
}

#[cfg(test)]
#[path = "turn_tests.rs"]
mod tests;
