//! Stage: upload the new binaries to every member that needs them, at once,
//! under a temporary name, verify them there (checksum, then `--version` run on
//! the host), and only then call them `NAME.new`. No member is stopped until
//! every one has a working staged binary, so a wrong file or a full disk fails
//! here with the cluster untouched. Its plan is the whole upgrade's plan.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};

use super::{Flow, Outcome, Phase, Run};
use crate::etcd::{commands, UpgradeStep, Version};
use crate::events::{Emitter, Event, Step};
use crate::ssh::{Payload, RemoteCommand, SshError};
use crate::upgrade::fleet::HostLink;
use crate::upgrade::preflight::ClusterView;
use crate::upgrade::remote_host::RemoteHost;
use crate::upgrade::target::{RollOptions, Stage, Target};

pub struct StageBinaries;

impl Phase for StageBinaries {
    fn name(&self) -> &'static str {
        "stage"
    }

    fn plan(&self, run: &Run<'_>) -> Option<Vec<String>> {
        Some(plan(run.view.as_ref()?, &run.todo, &run.target, run.links))
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow> {
        Box::pin(async move {
            let problems = stage(run.links, &run.todo, &run.target, run.opts, run.emit).await;
            if !problems.is_empty() {
                // Staged files elsewhere are left as etcd.new: harmless, and reused next run.
                return Flow::Stop(Outcome::refused(format!(
                    "staging failed, no member was stopped:\n  {}",
                    problems.join("\n  ")
                )));
            }
            let version = run.target.version;
            let emit = run.emit;
            for m in &run.view().members {
                if m.step == Some(UpgradeStep::AlreadyThere) {
                    emit(Event::Step {
                        host: m.host.clone(),
                        step: Step::Skipped,
                        detail: Some(format!("already on {version}")),
                    });
                }
            }
            Flow::Next
        })
    }
}

/// Describe the upgrade, for `--dry-run` and the confirmation prompt.
fn plan(view: &ClusterView, todo: &[usize], target: &Target, links: &[HostLink]) -> Vec<String> {
    let mut steps = Vec::new();
    let hosts: Vec<&str> = todo.iter().map(|&i| links[i].name()).collect();
    let skipped: Vec<&str> = view
        .members
        .iter()
        .filter(|m| m.step == Some(UpgradeStep::AlreadyThere))
        .map(|m| m.host.as_str())
        .collect();
    if !skipped.is_empty() {
        steps.push(format!(
            "skip {} (already on {})",
            skipped.join(", "),
            target.version
        ));
    }
    steps.push(format!(
        "{} etcd {} ({} bytes, sha256 {}) as etcd.new on {}",
        if target.stage == Stage::Prestaged {
            "put in place the staged"
        } else {
            "stage"
        },
        target.version,
        target.etcd.len(),
        &target.etcd.sha256[..12.min(target.etcd.sha256.len())],
        hosts.join(", ")
    ));
    let leader = view.leader_host();
    let mut order: Vec<&str> = hosts
        .iter()
        .copied()
        .filter(|h| Some(*h) != leader)
        .collect();
    if let Some(l) = leader.filter(|l| hosts.contains(l)) {
        order.push(l);
    }
    for h in order {
        let lead = if Some(h) == leader {
            " (leader: leadership moved away first)"
        } else {
            ""
        };
        steps.push(format!(
            "{h}{lead}: snapshot backup, stop, copy data dir, swap in etcd.new (keeping etcd.old), start, \
             wait until healthy on {} and caught up, then every member healthy",
            target.version
        ));
    }
    steps.push(format!(
        "wait for the cluster version to reach {}.{}, then etcdctl endpoint health on every member",
        target.version.major, target.version.minor
    ));
    steps
}

/// Upload the binaries to every member in `todo`, at once, and run the staged
/// etcd's `--version` on each host. Returns the problems (none: all staged).
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
                Err(e) => Some(e.detail()),
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
            let dropped = matches!(&result, Err(StageError::Ssh(e)) if e.is_disconnected());
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
                error: e.to_string(),
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
        Err(e) => Some(e.detail()),
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
            Err(e) => Some(e.detail()),
        };
    }
    if problem.is_none() {
        problem = hold_package(link, opts, emit).await;
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

/// A binary a Debian package owns is swapped only with the user's consent
/// (`etcdroll_replace_packaged_binary`, checked by the pre-flight); the package is
/// then held, before anything is swapped, so that the next `apt upgrade` does not
/// put the packaged version back on every host at once.
async fn hold_package(link: &HostLink, opts: &RollOptions, emit: &Emitter) -> Option<String> {
    let vars = &link.host.etcd;
    let pkg = link.unit.as_ref()?.packaged.get(&vars.binary)?;
    if !vars.replace_packaged {
        return None;
    }
    match link
        .run_privileged(&commands::hold_package(pkg), opts.command_timeout)
        .await
    {
        Ok(o) if o.success() => {
            emit(Event::Warning {
                host: Some(link.name().to_string()),
                message: format!(
                    "{} belongs to {pkg}: held it (apt-mark hold {pkg}) so apt keeps the swapped binary; \
                     run apt-mark unhold {pkg} when you go back to the package",
                    vars.binary
                ),
            });
            None
        }
        Ok(o) => Some(format!(
            "apt-mark hold {pkg} failed ({}): {}; nothing was swapped",
            o.describe_exit(),
            o.last_error_line()
        )),
        Err(e) => Some(e.detail()),
    }
}

/// Why staging a file on a host failed: the connection (a dropped one is
/// reconnected and the upload redone), or the host's own refusal.
#[derive(Debug, thiserror::Error)]
enum StageError {
    #[error("{}", .0.detail())]
    Ssh(SshError),
    #[error("{0}")]
    Host(String),
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
) -> Result<(), StageError> {
    let tmp = if link.become_ {
        let out = link
            .run(
                &RemoteCommand::new("mktemp").arg("-d"),
                opts.command_timeout,
            )
            .await
            .map_err(StageError::Ssh)?;
        if !out.success() {
            return Err(StageError::Host(format!(
                "mktemp -d failed: {}",
                out.last_error_line()
            )));
        }
        format!("{}/upload", out.stdout_text().trim())
    } else {
        commands::upload_tmp_path(dest, &opts.run_id, attempt)
    };
    let total = payload.len();
    let host = link.name().to_string();
    let last = Mutex::new(Instant::now() - Duration::from_secs(1));
    let progress = |sent: u64| {
        let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
        if sent == total || l.elapsed() >= Duration::from_millis(100) {
            *l = Instant::now();
            emit(Event::Upload {
                host: host.clone(),
                sent,
                total,
            });
        }
    };
    RemoteHost::upload(link, payload, &tmp, opts.upload_stall_timeout, &progress)
        .await
        .map_err(StageError::Ssh)?;
    let out = link
        .run_privileged(
            &commands::stage_installed(&tmp, dest, staged),
            opts.command_timeout,
        )
        .await
        .map_err(StageError::Ssh)?;
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
        return Err(StageError::Host(format!(
            "installing as {staged} failed ({}): {}",
            out.describe_exit(),
            out.last_error_line()
        )));
    }
    Ok(())
}
