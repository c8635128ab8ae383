//! Stage and roll: upload the new binary everywhere, then replace one member at a
//! time, followers first and the leader last, each behind health and catch-up gates,
//! with the old binary put back when a member does not come back healthy.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;

use crate::etcd::commands::{self, marker, restart_exit};
use crate::etcd::{EtcdClient, Version};
use crate::events::{Emitter, Event, MemberState, Step, SummaryRow};
use crate::ssh::{Payload, RemoteCommand};

use super::fleet::HostLink;
use super::preflight::ClusterView;

/// The binaries to install and the version they must report.
#[derive(Clone)]
pub struct Target {
    pub version: Version,
    pub etcd: Payload,
    pub etcdctl: Option<Payload>,
    /// Where they are staged on the hosts.
    pub stage: Stage,
    /// The later hops of a path (one binary per minor), in order.
    pub then: Vec<Target>,
}

/// Where a target's binaries are staged on the hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stage {
    /// Uploaded as `NAME.new`, for this run's roll.
    #[default]
    Next,
    /// Uploaded up front as `NAME.new-X.Y.Z`, for a later hop of a path.
    Later,
    /// Uploaded earlier as `NAME.new-X.Y.Z`: renamed to `NAME.new` and verified.
    Prestaged,
}

impl Target {
    pub fn new(version: Version, etcd: Payload, etcdctl: Option<Payload>) -> Target {
        Target {
            version,
            etcd,
            etcdctl,
            stage: Stage::Next,
            then: Vec::new(),
        }
    }

    /// A target with no binaries: what a member is rolled back or restarted to.
    pub fn in_place(version: Version) -> Target {
        Target::new(
            version,
            Payload {
                bytes: Default::default(),
                sha256: String::new(),
            },
            None,
        )
    }

    /// The staged name of `binary` for this target.
    fn staged(&self, binary: &str) -> String {
        match self.stage {
            Stage::Next | Stage::Prestaged => commands::staged_path(binary),
            Stage::Later => commands::staged_path_for(binary, self.version),
        }
    }
}

/// Every limit and pause of the roll, from the command line.
#[derive(Clone, Debug)]
pub struct RollOptions {
    pub run_id: String,
    pub command_timeout: Duration,
    pub upload_stall_timeout: Duration,
    pub health_timeout: Duration,
    pub catch_up_timeout: Duration,
    pub cluster_version_timeout: Duration,
    pub poll_interval: Duration,
    pub settle: Duration,
}

/// Ctrl-C: once asks to stop after the current member; the count is read between members.
#[derive(Default)]
pub struct Interrupt {
    count: AtomicU32,
}

impl Interrupt {
    pub fn press(&self) -> u32 {
        self.count.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn requested(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }
}

/// Per-member record of the run, shared with the Ctrl-C handler so a hard stop can
/// still say which member is in which state.
#[derive(Clone, Debug)]
pub struct MemberRecord {
    pub host: String,
    pub from: String,
    pub to: String,
    pub state: MemberState,
    pub step: Option<Step>,
    pub backup: Option<String>,
    pub down_ms: Option<u64>,
    pub catch_up_ms: Option<u64>,
    pub down_at_ms: Option<u64>,
    pub up_at_ms: Option<u64>,
}

pub type Records = Arc<Mutex<Vec<MemberRecord>>>;

pub fn summary_rows(records: &Records) -> Vec<SummaryRow> {
    lock(records)
        .iter()
        .map(|r| SummaryRow {
            host: r.host.clone(),
            from: r.from.clone(),
            to: r.to.clone(),
            state: r.state,
            backup: r.backup.clone(),
            down_ms: r.down_ms,
            catch_up_ms: r.catch_up_ms,
            down_at_ms: r.down_at_ms,
            up_at_ms: r.up_at_ms,
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a roll ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RollEnd {
    Completed,
    Interrupted,
    /// A member failed; the message says which and what was done about it.
    Failed(String),
    /// A member may be down: the operator must act.
    NeedsAttention(String),
}

/// Upload the binaries to every member that needs them, at once, and run the
/// staged etcd's `--version` on each host. Returns the problems (none: all staged).
pub async fn stage(
    links: &[HostLink],
    todo: &[usize],
    target: &Target,
    opts: &RollOptions,
    emit: &Emitter,
) -> Vec<String> {
    let jobs = todo
        .iter()
        .map(|&i| stage_one(&links[i], target, opts, emit));
    join_all(jobs).await.into_iter().flatten().collect()
}

async fn stage_one(
    link: &HostLink,
    target: &Target,
    opts: &RollOptions,
    emit: &Emitter,
) -> Option<String> {
    let host = link.name().to_string();
    let vars = &link.host.etcd;
    let mut files = vec![(&target.etcd, vars.binary.as_str())];
    if let Some(ctl) = &target.etcdctl {
        files.push((ctl, vars.etcdctl_binary.as_str()));
    }
    if target.stage == Stage::Prestaged {
        // Uploaded and verified when the path started: put it in place as NAME.new.
        for (_, dest) in &files {
            let out = link
                .run_privileged(
                    &commands::activate_staged(dest, target.version),
                    opts.command_timeout,
                )
                .await;
            if let Some(p) = match out {
                Ok(o) if o.success() => None,
                Ok(o) => Some(format!(
                    "the binary staged for {} is gone ({})",
                    target.version,
                    o.last_error_line()
                )),
                Err(e) => Some(e.to_string()),
            } {
                emit(Event::HostFailed {
                    host: host.clone(),
                    step: Step::Verifying,
                    error: p.clone(),
                });
                return Some(format!("{host}: {p}"));
            }
        }
        files.clear();
    }
    for (payload, dest) in files {
        emit(Event::Step {
            host: host.clone(),
            step: Step::Uploading,
            detail: Some(dest.to_string()),
        });
        // Staging is safe to repeat: the upload goes to a temporary name, so a
        // dropped connection is reconnected and the upload redone (3 tries).
        let staged = target.staged(dest);
        let mut result = upload_and_stage(link, payload, dest, &staged, opts, emit, 0).await;
        for attempt in 1..3 {
            let dropped = result.is_err() && link.session().is_ok_and(|s| s.is_closed());
            if !dropped {
                break;
            }
            emit(Event::Warning {
                host: Some(host.clone()),
                message:
                    "the SSH connection dropped while staging; reconnecting and uploading again"
                        .into(),
            });
            result = upload_and_stage(link, payload, dest, &staged, opts, emit, attempt).await;
        }
        if !link.become_ {
            let _ = link
                .run_privileged(
                    &commands::remove_upload_tmps(dest, &opts.run_id),
                    opts.command_timeout,
                )
                .await;
        }
        if let Err(e) = result {
            emit(Event::HostFailed {
                host: host.clone(),
                step: Step::Uploading,
                error: e.clone(),
            });
            return Some(format!("{host}: staging {dest} failed: {e}"));
        }
    }
    emit(Event::Step {
        host: host.clone(),
        step: Step::Verifying,
        detail: None,
    });
    // The staged etcd must run on this host and be the version we expect; a staged
    // etcdctl must run too.
    let staged = target.staged(&vars.binary);
    let cmd = RemoteCommand::new(&staged).arg("--version");
    let mut problem = match link.run_privileged(&cmd, opts.command_timeout).await {
        Ok(out) if out.success() => match Version::from_version_output(&out.stdout_text()) {
            Some(v) if v == target.version => None,
            Some(v) => Some(format!(
                "the staged binary reports etcd {v}, expected {}",
                target.version
            )),
            None => Some(format!(
                "the staged binary does not print an etcd version: {:?}",
                out.stdout_text().lines().next().unwrap_or("")
            )),
        },
        Ok(out) => Some(format!(
            "the staged binary does not run on this host ({}: {}): wrong architecture or a broken file?",
            out.describe_exit(),
            out.last_error_line()
        )),
        Err(e) => Some(e.to_string()),
    };
    if problem.is_none() && target.etcdctl.is_some() {
        let ctl = commands::etcdctl_version(&target.staged(&vars.etcdctl_binary));
        problem = match link.run_privileged(&ctl, opts.command_timeout).await {
            Ok(out) if out.success() => match Version::parse(out.stdout_text().trim()) {
                Some(_) => None,
                None => Some(
                    "the staged etcdctl does not run on this host or prints no version \
                     (wrong architecture, or not an etcdctl?)"
                        .to_string(),
                ),
            },
            Ok(out) => Some(format!(
                "the staged etcdctl does not run on this host ({}: {})",
                out.describe_exit(),
                out.last_error_line()
            )),
            Err(e) => Some(e.to_string()),
        };
    }
    if let Some(p) = problem {
        let _ = link
            .run_privileged(
                &commands::unstage(&target.staged(&vars.binary)),
                opts.command_timeout,
            )
            .await;
        if target.etcdctl.is_some() {
            let _ = link
                .run_privileged(
                    &commands::unstage(&target.staged(&vars.etcdctl_binary)),
                    opts.command_timeout,
                )
                .await;
        }
        emit(Event::HostFailed {
            host: host.clone(),
            step: Step::Verifying,
            error: p.clone(),
        });
        return Some(format!("{host}: {p}"));
    }
    emit(Event::Step {
        host,
        step: Step::Staged,
        detail: Some(target.version.to_string()),
    });
    None
}

/// Upload to a temporary name, verify the checksum there, then give it the
/// installed file's mode and owner and rename it to `NAME.new`: no partial file
/// ever carries the binary's name. With become, the upload lands in a private temp
/// dir as the login user and is moved into place with sudo.
async fn upload_and_stage(
    link: &HostLink,
    payload: &Payload,
    dest: &str,
    staged: &str,
    opts: &RollOptions,
    emit: &Emitter,
    attempt: u32,
) -> Result<(), String> {
    let session = link.live_session().await.map_err(|e| e.to_string())?;
    let tmp = if link.become_ {
        let out = link
            .run(
                &RemoteCommand::new("mktemp").arg("-d"),
                opts.command_timeout,
            )
            .await
            .map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(format!("mktemp -d failed: {}", out.last_error_line()));
        }
        format!("{}/upload", out.stdout_text().trim())
    } else {
        commands::upload_tmp_path(dest, &opts.run_id, attempt)
    };
    let total = payload.len();
    let host = link.name().to_string();
    let last = Mutex::new(Instant::now() - Duration::from_secs(1));
    let progress = |sent: u64| {
        let mut l = lock(&last);
        if sent == total || l.elapsed() >= Duration::from_millis(100) {
            *l = Instant::now();
            emit(Event::Upload {
                host: host.clone(),
                sent,
                total,
            });
        }
    };
    session
        .upload(payload, &tmp, opts.upload_stall_timeout, &progress)
        .await
        .map_err(|e| e.to_string())?;
    let out = link
        .run_privileged(
            &commands::stage_installed(&tmp, dest, staged),
            opts.command_timeout,
        )
        .await
        .map_err(|e| e.to_string())?;
    if link.become_ {
        let dir = tmp.trim_end_matches("/upload").to_string();
        let _ = link
            .run(
                &RemoteCommand::new("rm").arg("-rf").arg(dir),
                opts.command_timeout,
            )
            .await;
    }
    if !out.success() {
        return Err(format!(
            "installing as {staged} failed ({}): {}",
            out.describe_exit(),
            out.last_error_line()
        ));
    }
    Ok(())
}

/// Everything the roll needs at hand.
pub struct Roll<'a> {
    pub links: &'a [HostLink],
    pub view: &'a mut ClusterView,
    pub target: &'a Target,
    pub opts: &'a RollOptions,
    pub emit: &'a Emitter,
    pub interrupt: &'a Interrupt,
    pub records: Records,
    pub started: Instant,
    /// The new etcdctl was staged and is swapped with etcd.
    pub swap_etcdctl: bool,
}

impl Roll<'_> {
    fn record(&self, i: usize, f: impl FnOnce(&mut MemberRecord)) {
        if let Some(r) = lock(&self.records).get_mut(i) {
            f(r);
        }
    }

    fn step(&self, i: usize, step: Step, detail: Option<String>) {
        self.record(i, |r| r.step = Some(step));
        (self.emit)(Event::Step {
            host: self.links[i].name().to_string(),
            step,
            detail,
        });
    }

    fn since_start(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Roll every member in `todo`, one at a time.
    pub async fn run(&mut self, todo: Vec<usize>) -> RollEnd {
        let mut remaining = todo;
        for &i in &remaining {
            self.step(i, Step::Waiting, None);
        }
        while !remaining.is_empty() {
            if self.interrupt.requested() {
                return RollEnd::Interrupted;
            }
            let leader = self.current_leader().await;
            let pick = remaining
                .iter()
                .position(|&i| Some(i) != leader)
                .unwrap_or(0);
            let i = remaining.remove(pick);
            if Some(i) == leader && self.links.len() > 1 {
                self.move_leadership_away(i).await;
            }
            if let Err(end) = self.upgrade_member(i).await {
                return end;
            }
            self.emit_cluster().await;
            if !self.opts.settle.is_zero() && !remaining.is_empty() {
                self.step(
                    remaining[0],
                    Step::Waiting,
                    Some(format!(
                        "settling {}",
                        humantime::format_duration(self.opts.settle)
                    )),
                );
                tokio::time::sleep(self.opts.settle).await;
            }
        }
        RollEnd::Completed
    }

    fn client(&mut self, i: usize) -> Option<&mut EtcdClient> {
        self.view.members.get_mut(i).and_then(|m| m.client.as_mut())
    }

    /// The index of the member that is leader now (leadership moves during a roll).
    async fn current_leader(&mut self) -> Option<usize> {
        let mut leader_id = None;
        for i in 0..self.view.members.len() {
            if let Some(c) = self.client(i) {
                if let Ok(s) = c.status().await {
                    self.view.members[i].id = s.member_id;
                    self.view.members[i].leader_id = s.leader;
                    leader_id = Some(s.leader);
                    break;
                }
            }
        }
        let leader_id = leader_id?;
        self.view.members.iter().position(|m| m.id == leader_id)
    }

    /// Hand leadership to another member before stopping the leader (etcd ≥ 3.3),
    /// preferring one already upgraded. Best effort: etcd also hands over on a
    /// graceful stop.
    async fn move_leadership_away(&mut self, i: usize) {
        let running = self.view.members[i].running;
        if !running.is_some_and(Version::can_move_leader) {
            (self.emit)(Event::Warning {
                host: Some(self.links[i].name().to_string()),
                message: format!(
                    "leadership could not be moved: etcd {} has no move-leader (it came in 3.3); \
                     the leader goes last and the cluster elects another as it stops",
                    fmt_version(running)
                ),
            });
            return;
        }
        let upgraded: Vec<usize> = lock(&self.records)
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == MemberState::Upgraded)
            .map(|(j, _)| j)
            .collect();
        let candidate = upgraded
            .into_iter()
            .chain(0..self.view.members.len())
            .find(|&j| j != i && self.view.members[j].id != 0);
        let Some(j) = candidate else { return };
        let target_id = self.view.members[j].id;
        self.step(
            i,
            Step::MovingLeader,
            Some(format!("to {}", self.links[j].name())),
        );
        if let Some(c) = self.client(i) {
            if let Err(e) = c.move_leader(target_id).await {
                (self.emit)(Event::Warning {
                    host: Some(self.links[i].name().to_string()),
                    message: format!("could not move leadership away ({e}); etcd will hand it over when it stops"),
                });
                return;
            }
        }
        // Wait (briefly) until the member sees the new leader.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(c) = self.client(i) {
                if let Ok(s) = c.status().await {
                    if s.leader != s.member_id && s.leader != 0 {
                        return;
                    }
                }
            }
            tokio::time::sleep(self.opts.poll_interval).await;
        }
    }

    async fn upgrade_member(&mut self, i: usize) -> Result<(), RollEnd> {
        let link = &self.links[i];
        let host = link.name().to_string();
        let vars = link.host.etcd.clone();
        let from = self.view.members[i].running;
        // Milliseconds and the target: the hops of a path can follow each
        // other within one second, and each needs a backup of its own.
        let stamp = humantime::format_rfc3339_millis(SystemTime::now())
            .to_string()
            .replace(':', "");
        let backup_dir = format!(
            "{}/etcdroll-{host}-{stamp}-to-{}",
            vars.backup_dir.trim_end_matches('/'),
            self.target.version
        );

        // Online backup first, in the same remote script as the restart: if it
        // fails, the script stops there and nothing was stopped. It is a v3
        // snapshot, so it needs a v3 etcdctl and a cluster past 2.3 (a mixed
        // 2.3/3.0 cluster refuses every v3 call): there, the guide's v2
        // `etcdctl backup` of the stopped member is the backup.
        self.step(i, Step::BackingUp, Some(backup_dir.clone()));
        let etcdctl_version = self.view.members[i]
            .facts
            .as_ref()
            .and_then(|f| f.etcdctl_version.as_deref())
            .and_then(Version::parse);
        let v3_cluster = self
            .view
            .cluster_version
            .is_some_and(|c| c >= Version::new(3, 0, 0));
        let snap = (v3_cluster && etcdctl_version.is_some_and(|v| v >= Version::new(3, 0, 0)))
            .then(|| commands::snapshot_save(&vars, &backup_dir));
        self.record(i, |r| r.backup = Some(backup_dir.clone()));

        // Downtime: one remote script stops, copies the data dir, swaps, starts.
        let v2 = self.view.members[i].v2_enabled
            && etcdctl_version
                .zip(from)
                .is_some_and(|(ctl, server)| commands::etcdctl_has_v2_backup(ctl, server));
        let offline = commands::offline_backup(&vars, &backup_dir, v2);
        let mut swaps = vec![commands::swap_in(&vars.binary)];
        if self.swap_etcdctl {
            swaps.push(commands::swap_in(&vars.etcdctl_binary));
        }
        let turn_file = super::lock::turn_file(link);
        let line = self.turn_line();
        let turn = commands::Turn {
            file: &turn_file,
            line: &line,
        };
        let script =
            commands::restart_with_swap(&vars, &swaps, snap.as_ref(), Some(&offline), &turn);
        let mut t_stop: Option<Instant> = None;
        let mut t_start: Option<Instant> = None;
        let emit = self.emit.clone();
        let records = self.records.clone();
        let mut on_line = |line: &str| {
            let (step, detail) = match line.trim() {
                marker::STOPPING => {
                    t_stop = Some(Instant::now());
                    (Step::Stopping, None)
                }
                marker::STOPPED => (
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
                marker::BACKED_UP => (Step::Swapping, None),
                marker::STARTING => {
                    t_start = Some(Instant::now());
                    (Step::Starting, None)
                }
                _ => return,
            };
            if let Some(r) = lock(&records).get_mut(i) {
                r.step = Some(step);
                if step == Step::Stopping {
                    r.state = MemberState::Unknown;
                }
            }
            emit(Event::Step {
                host: host.clone(),
                step,
                detail,
            });
        };
        let out = link
            .run_privileged_streaming(&script, self.opts.command_timeout, &mut on_line)
            .await
            .map_err(|e| e.to_string());
        let down_at = t_stop.map(|t| t.duration_since(self.started).as_millis() as u64);
        self.record(i, |r| r.down_at_ms = down_at);
        match &out {
            Ok(o) if o.success() => {}
            Ok(o) if o.exit_status == Some(restart_exit::SNAPSHOT_FAILED) => {
                self.record(i, |r| r.backup = None);
                return Err(self.fail(
                    i,
                    Step::BackingUp,
                    format!(
                        "snapshot backup failed ({}); the member was not stopped",
                        o.last_error_line()
                    ),
                ));
            }
            Ok(o) => {
                let code = o.exit_status.unwrap_or(0);
                let why = format!("{} ({})", restart_failure(code), o.last_error_line());
                if matches!(
                    code,
                    restart_exit::STOP_FAILED
                        | restart_exit::BACKUP_FAILED
                        | restart_exit::SWAP_FAILED
                ) {
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
        self.step(i, Step::WaitingHealthy, None);
        let target = self.target.version;
        let healthy = self.wait_healthy(i, target, self.opts.health_timeout).await;
        let t_up = Instant::now();
        if let Err(why) = healthy {
            return Err(self.roll_back_member(i, why, from).await);
        }
        let down_ms = t_stop.map(|t| t_up.duration_since(t).as_millis() as u64);
        let up_at = self.since_start();
        self.record(i, |r| {
            r.down_ms = down_ms;
            r.up_at_ms = Some(up_at);
            r.state = MemberState::Upgraded;
        });
        self.view.members[i].running = Some(target);
        let _ = t_start;

        // Caught up with the leader?
        self.step(i, Step::CatchingUp, None);
        let caught = self.wait_caught_up(i).await;
        let catch_up_ms = Some(t_up.elapsed().as_millis() as u64);
        self.record(i, |r| r.catch_up_ms = catch_up_ms);
        if let Err(why) = caught {
            return Err(self.fail(i, Step::CatchingUp, why));
        }

        // Every member healthy again?
        self.step(i, Step::ClusterHealth, None);
        if let Err(why) = self.wait_cluster_healthy().await {
            return Err(self.fail(i, Step::ClusterHealth, why));
        }
        let backup = lock(&self.records).get(i).and_then(|r| r.backup.clone());
        (self.emit)(Event::HostDone {
            host,
            from: from.map(|v| v.to_string()).unwrap_or_default(),
            to: target.to_string(),
            down_ms,
            catch_up_ms,
            backup,
        });
        self.record(i, |r| r.step = Some(Step::Done));
        Ok(())
    }

    /// Start a member an interrupted run left stopped, on the binary now in place;
    /// if that does not come up healthy and a saved binary of another version is
    /// there, put the saved one back and start it (as after a failed upgrade).
    pub async fn recover_member(&mut self, i: usize) -> Result<(), RollEnd> {
        let link = &self.links[i];
        let host = link.name().to_string();
        let facts = self.view.members[i].facts.clone().unwrap_or_default();
        let by = self.view.members[i]
            .left_stopped
            .clone()
            .unwrap_or_default();
        let installed = facts.binary_version.as_deref().and_then(Version::parse);
        let saved = facts.old_binary_version.as_deref().and_then(Version::parse);
        let Some(installed) = installed else {
            return Err(self.attention(
                i,
                format!(
                    "{host} was left stopped by {by}, and {} does not run: start it by hand",
                    link.host.etcd.binary
                ),
            ));
        };
        self.step(
            i,
            Step::Starting,
            Some(format!("left stopped by {by}: starting it on {installed}")),
        );
        let start = commands::service_start(&link.host.etcd).and(
            RemoteCommand::new("rm")
                .arg("-f")
                .arg(super::lock::turn_file(link)),
        );
        let started = link.run_privileged(&start, self.opts.command_timeout).await;
        let why = match started {
            Ok(o) if o.success() => {
                self.step(i, Step::WaitingHealthy, None);
                match self
                    .wait_healthy(i, installed, self.opts.health_timeout)
                    .await
                {
                    Ok(()) => {
                        (self.emit)(Event::Warning {
                            host: Some(host.clone()),
                            message: format!(
                                "started again on {installed} and healthy (it was left stopped by {by})"
                            ),
                        });
                        self.view.members[i].running = Some(installed);
                        return Ok(());
                    }
                    Err(why) => why,
                }
            }
            Ok(o) => format!(
                "starting it failed ({}: {})",
                o.describe_exit(),
                o.last_error_line()
            ),
            Err(e) => format!("starting it failed: {e}"),
        };
        let why = format!("left stopped by {by}; started again on {installed}, but {why}");
        match saved {
            Some(old) if old != installed => Err(self.roll_back_member(i, why, Some(old)).await),
            _ => Err(self.attention(i, format!("{host}: {why}"))),
        }
    }

    fn attention(&self, i: usize, why: String) -> RollEnd {
        (self.emit)(Event::HostFailed {
            host: self.links[i].name().to_string(),
            step: Step::Starting,
            error: format!("MEMBER IS NOT SERVING: {why}"),
        });
        self.record(i, |r| {
            r.state = MemberState::Stopped;
            r.step = Some(Step::Failed);
        });
        RollEnd::NeedsAttention(format!(
            "{why}. Start it by hand (its service) and check its log."
        ))
    }

    /// The line a member's turn file holds: which run stopped it, and why.
    fn turn_line(&self) -> String {
        format!(
            "run {} (upgrade to {}, started {})",
            self.opts.run_id,
            self.target.version,
            humantime::format_rfc3339_seconds(SystemTime::now() - self.started.elapsed())
        )
    }

    fn fail(&self, i: usize, step: Step, why: String) -> RollEnd {
        (self.emit)(Event::HostFailed {
            host: self.links[i].name().to_string(),
            step,
            error: why.clone(),
        });
        self.record(i, |r| r.step = Some(Step::Failed));
        RollEnd::Failed(format!("{}: {why}", self.links[i].name()))
    }

    /// Poll the member until `/health` is true and it reports `version`.
    pub async fn wait_healthy(
        &mut self,
        i: usize,
        version: Version,
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let poll = self.opts.poll_interval;
        let mut last: String;
        let Some(client) = self.client(i) else {
            return Err("no client for this member".into());
        };
        client.reset();
        loop {
            match client.version().await {
                Ok(v) if Version::parse(&v.server) == Some(version) => {
                    match client.health().await {
                        Ok(h) if h.healthy => return Ok(()),
                        Ok(h) => last = format!("/health answered {}", h.answer),
                        Err(e) => last = e.to_string(),
                    }
                }
                Ok(v) => last = format!("it reports etcd {}, expected {version}", v.server),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not healthy on {version} within {}: last answer: {last}",
                    humantime::format_duration(limit)
                ));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Wait until the member's raft index reaches the leader's (read once now).
    async fn wait_caught_up(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + self.opts.catch_up_timeout;
        let leader = self.current_leader().await;
        let target_index = match leader.and_then(|l| self.view.members[l].client.as_mut()) {
            Some(c) => c.status().await.map(|s| s.raft_index).unwrap_or(0),
            None => 0,
        };
        let host = self.links[i].name().to_string();
        let mut unanswered = None;
        loop {
            let idx = match self.client(i) {
                Some(c) => match c.status().await {
                    Ok(s) => s.raft_index,
                    Err(e) => {
                        unanswered = Some(e.to_string());
                        0
                    }
                },
                None => 0,
            };
            if idx >= target_index {
                return Ok(());
            }
            (self.emit)(Event::CatchUp {
                host: host.clone(),
                gap: target_index - idx,
            });
            if Instant::now() >= deadline {
                return Err(match unanswered.filter(|_| idx == 0) {
                    Some(e) => format!(
                        "its raft index could not be read within {} ({e}); it is running the new version and healthy",
                        humantime::format_duration(self.opts.catch_up_timeout)
                    ),
                    None => format!(
                        "still {} raft entries behind the leader after {}; it is running the new version and healthy",
                        target_index - idx,
                        humantime::format_duration(self.opts.catch_up_timeout)
                    ),
                });
            }
            tokio::time::sleep(self.opts.poll_interval).await;
        }
    }

    /// Wait until every member answers `/health` true, asking all of them at once
    /// (on 2.3–3.0 one `/health` is a quorum read costing a few hundred ms).
    async fn wait_cluster_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.opts.health_timeout;
        loop {
            let sick: Vec<String> = self
                .all_health()
                .await
                .into_iter()
                .filter_map(|(name, h)| match h {
                    Ok(h) if h.healthy => None,
                    Ok(h) => Some(format!("{name}: {}", h.answer)),
                    Err(e) => Some(format!("{name}: {e}")),
                })
                .collect();
            if sick.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the cluster did not become healthy: {}",
                    sick.join("; ")
                ));
            }
            tokio::time::sleep(self.opts.poll_interval).await;
        }
    }

    /// Every member's `/health`, asked in parallel.
    async fn all_health(&mut self) -> Vec<(String, Result<crate::etcd::Health, String>)> {
        let asks = self
            .view
            .members
            .iter_mut()
            .zip(self.links)
            .map(|(m, l)| async move {
                let h = match m.client.as_mut() {
                    Some(c) => c.health().await.map_err(|e| e.to_string()),
                    None => Err("no client".to_string()),
                };
                (l.name().to_string(), h)
            });
        join_all(asks).await
    }

    /// The last lines of the member's service log, when the service manager shows them.
    async fn logs(&self, i: usize) -> Option<String> {
        let link = &self.links[i];
        let cmd = commands::service_logs(&link.host.etcd, 15)?;
        let out = link
            .run_privileged(&cmd, self.opts.command_timeout)
            .await
            .ok()?;
        let text = out.stdout_text();
        (!text.trim().is_empty()).then_some(text)
    }

    /// The new binary did not come up healthy: put the old one back, start it, and
    /// wait for health on the old version. The report names what was seen.
    async fn roll_back_member(&mut self, i: usize, why: String, from: Option<Version>) -> RollEnd {
        let host = self.links[i].name().to_string();
        let logs = self.logs(i).await;
        (self.emit)(Event::HostFailed {
            host: host.clone(),
            step: Step::WaitingHealthy,
            error: why.clone(),
        });
        self.step(
            i,
            Step::RollingBack,
            Some(format!("back to {}", fmt_version(from))),
        );
        let vars = self.links[i].host.etcd.clone();
        let mut swaps = vec![commands::swap_back(&vars.binary)];
        if self.swap_etcdctl {
            swaps.push(commands::swap_back(&vars.etcdctl_binary));
        }
        let turn_file = super::lock::turn_file(&self.links[i]);
        let line = self.turn_line();
        let turn = commands::Turn {
            file: &turn_file,
            line: &line,
        };
        let script = commands::restart_with_swap(&vars, &swaps, None, None, &turn);
        let res = self.links[i]
            .run_privileged(&script, self.opts.command_timeout)
            .await;
        let mut report = format!("{host}: {why}");
        if from.is_some_and(|v| v.major < 3) {
            report.push_str(
                "\n  note: etcd 2.x cannot read a write-ahead log etcd 3.x has written (kubernetes#32253): \
                 if the new binary ran at all, the old one may not start on this data dir; \
                 its v2 backup is in the summary",
            );
        }
        if let Some(l) = &logs {
            report.push_str(&format!(
                "\n  last lines of its log:\n{}",
                indent(l, "    ")
            ));
        }
        let restarted = matches!(&res, Ok(o) if o.success());
        if !restarted {
            let detail = match &res {
                Ok(o) => format!("{}: {}", o.describe_exit(), o.last_error_line()),
                Err(e) => e.to_string(),
            };
            report.push_str(&format!("\n  putting the old binary back failed: {detail}"));
        }
        self.confirm_old_running(i, Step::RollingBack, report, from)
            .await
    }

    /// After a failed attempt, check that the member serves its old version again.
    async fn confirm_old_running(
        &mut self,
        i: usize,
        step: Step,
        report: String,
        from: Option<Version>,
    ) -> RollEnd {
        let host = self.links[i].name().to_string();
        let back = match from {
            Some(v) => self.wait_healthy(i, v, self.opts.health_timeout).await,
            None => Err("old version unknown".into()),
        };
        match back {
            Ok(()) => {
                self.record(i, |r| {
                    r.state = MemberState::RolledBack;
                    r.step = Some(Step::Failed);
                });
                (self.emit)(Event::HostFailed {
                    host: host.clone(),
                    step,
                    error: format!(
                        "rolled back: running {} again and healthy",
                        fmt_version(from)
                    ),
                });
                RollEnd::Failed(format!(
                    "{report}\n  {host} is running {} again and healthy; the other members were not touched by this attempt.",
                    fmt_version(from)
                ))
            }
            Err(e) => {
                self.record(i, |r| {
                    r.state = MemberState::Stopped;
                    r.step = Some(Step::Failed);
                });
                (self.emit)(Event::HostFailed {
                    host: host.clone(),
                    step: Step::RollingBack,
                    error: format!("MEMBER IS NOT SERVING: {e}"),
                });
                RollEnd::NeedsAttention(format!(
                    "{report}\n  {host} IS NOT SERVING after the attempt to restore {}: {e}. \
                     Start it by hand (its service) and check its log; the backup is in the summary.",
                    fmt_version(from)
                ))
            }
        }
    }

    pub async fn emit_cluster(&mut self) {
        let healthy = self
            .all_health()
            .await
            .iter()
            .filter(|(_, h)| matches!(h, Ok(h) if h.healthy))
            .count();
        let mut cluster_version = String::new();
        let mut leader = None;
        for i in 0..self.view.members.len() {
            let name = self.links[i].name().to_string();
            if let Some(c) = self.client(i) {
                if cluster_version.is_empty() {
                    if let Ok(v) = c.version().await {
                        cluster_version = v.cluster;
                    }
                }
                if let Ok(s) = c.status().await {
                    if s.leader == s.member_id {
                        leader = Some(name);
                    }
                }
            }
        }
        (self.emit)(Event::Cluster {
            name: None,
            cluster_version,
            leader,
            healthy,
            members: self.view.members.len(),
        });
    }

    /// Wait until the cluster version reaches the target's minor. The leader
    /// decides it every ~4 s (etcd's monitorVersions), and at once when a new term
    /// begins: so if it has not moved yet, hand leadership to another upgraded
    /// member to have it decided now instead of up to 4 s later. Then poll it,
    /// never read it once.
    pub async fn wait_cluster_version(&mut self) -> Result<String, String> {
        let want = self.target.version.minor_floor();
        let deadline = Instant::now() + self.opts.cluster_version_timeout;
        let mut last = String::new();
        if self.cluster_version_reached(want).await.is_none() && want.can_move_leader() {
            if let Some(leader) = self.current_leader().await {
                let other = (0..self.view.members.len())
                    .find(|&j| j != leader && self.view.members[j].id != 0);
                if let Some(j) = other {
                    let target_id = self.view.members[j].id;
                    if let Some(c) = self.client(leader) {
                        let _ = c.move_leader(target_id).await;
                    }
                }
            }
        }
        loop {
            // Every member must have applied it: one that has not yet refuses
            // the new version's calls ("not capable", seen on 3.5), which the
            // final health check would take for a failure.
            let mut reached = 0;
            for i in 0..self.view.members.len() {
                if let Some(c) = self.client(i) {
                    if let Ok(v) = c.version().await {
                        if Version::parse(&v.cluster).is_some_and(|c| c >= want) {
                            reached += 1;
                        }
                        last = v.cluster;
                    }
                }
            }
            if reached == self.view.members.len() {
                return Ok(last);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the cluster version is still {last} after {} (expected {}.{}); \
                     every member runs the new version: check the leader's log",
                    humantime::format_duration(self.opts.cluster_version_timeout),
                    want.major,
                    want.minor
                ));
            }
            tokio::time::sleep(self.opts.poll_interval).await;
        }
    }

    /// The cluster version, if it has reached `want`.
    async fn cluster_version_reached(&mut self, want: Version) -> Option<String> {
        for i in 0..self.view.members.len() {
            if let Some(c) = self.client(i) {
                if let Ok(v) = c.version().await {
                    return Version::parse(&v.cluster)
                        .filter(|c| *c >= want)
                        .map(|_| v.cluster);
                }
            }
        }
        None
    }

    /// The etcdctl health check the guide ends with, on every member at once, in
    /// the form the member's etcdctl and the cluster version allow (see
    /// `commands::final_health`); the output is parsed, never the exit code.
    pub async fn endpoint_health(&self, cluster_version: Version) -> Result<(), String> {
        let checks = self.links.iter().enumerate().map(|(i, l)| async move {
            let etcdctl = if self.swap_etcdctl {
                Some(self.target.version)
            } else {
                self.view.members[i]
                    .facts
                    .as_ref()
                    .and_then(|f| f.etcdctl_version.as_deref())
                    .and_then(Version::parse)
            };
            let Some(etcdctl) = etcdctl else {
                return Some(format!("{}: its etcdctl's version is unknown", l.name()));
            };
            let check = commands::final_health(&l.host.etcd, etcdctl, cluster_version);
            let out = l
                .run_privileged(&check.command, self.opts.command_timeout)
                .await;
            match out {
                Ok(o) if (check.ok)(&o.stdout_text()) => None,
                Ok(o) => Some(format!(
                    "{}: {}: {}{}{}",
                    l.name(),
                    check.what,
                    o.last_error_line(),
                    known_tls_issue(&l.host.etcd.client_url, cluster_version),
                    if o.stdout_text().contains("not capable") {
                        // Seen in the lab: a 3.5 member replaying a WAL that still
                        // begins in the 2.3 era keeps 2.3's capabilities.
                        " (the member refuses v3 as \"not capable\": etcd 3.5 keeps the API capabilities of the \
                         first cluster version in its WAL, so a cluster migrated from 2.3 that has taken no raft \
                         snapshot since (fewer writes than --snapshot-count) serves no v3 on 3.5 — let it take a \
                         snapshot on 3.4, e.g. restart it with a small --snapshot-count, then upgrade)"
                    } else {
                        ""
                    }
                )),
                Err(e) => Some(format!("{}: {}: {e}", l.name(), check.what)),
            }
        });
        let bad: Vec<String> = join_all(checks).await.into_iter().flatten().collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("the final health check failed: {}", bad.join("; ")))
        }
    }
}

/// etcd < 3.1 built with Go > 1.7 breaks the v3 API over TLS: the guide's known
/// issue, named in errors where it may be the cause.
pub fn known_tls_issue(client_url: &str, version: Version) -> &'static str {
    if client_url.starts_with("https://") && version < Version::new(3, 1, 0) {
        " (known issue: etcd before 3.1 built with Go newer than 1.7 cannot serve the v3 API over TLS; \
         use an official release build, or check through v2 and /health)"
    } else {
        ""
    }
}

fn restart_failure(code: u32) -> &'static str {
    match code {
        restart_exit::STOP_FAILED => "stopping the service failed; it was started again",
        restart_exit::BACKUP_FAILED => {
            "the offline backup failed (disk full?); the old binary was started again"
        }
        restart_exit::SWAP_FAILED => "swapping the binary failed; the old binary was started again",
        restart_exit::START_FAILED => "starting the service with the new binary failed",
        _ => "the restart script failed",
    }
}

fn fmt_version(v: Option<Version>) -> String {
    v.map(|v| v.to_string())
        .unwrap_or_else(|| "the old version".into())
}

fn indent(text: &str, pad: &str) -> String {
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
