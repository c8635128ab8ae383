//! When a member's turn goes wrong: put the old binary back and prove it
//! serves again, or say plainly that the member is down and what to do. Also the
//! start of a member an interrupted run left stopped, which is the same repair.

use super::turn::{Restart, Swap};
use super::{fmt_version, Roll, RollEnd};
use crate::etcd::{commands, Version};
use crate::events::{Event, MemberState, Step};
use crate::ssh::RemoteCommand;

impl Roll<'_> {
    /// Start a member an interrupted run left stopped, on the binary now in place;
    /// if that does not come up healthy and a saved binary of another version is
    /// there, put the saved one back and start it (as after a failed upgrade).
    pub async fn recover_member(&mut self, i: usize) -> Result<(), RollEnd> {
        let ctx = self.ctx;
        let m = &self.members[i];
        let link = m.link;
        let host = m.name().to_string();
        let facts = m.view.facts.clone().unwrap_or_default();
        let by = m.view.left_stopped.clone().unwrap_or_default();
        let installed = facts.binary_version.as_deref().and_then(Version::parse);
        let saved = facts.old_binary_version.as_deref().and_then(Version::parse);
        let Some(installed) = installed else {
            return Err(self.attention(
                i,
                format!(
                    "{host} was left stopped by {by}, and {} does not run: start it by hand",
                    link.etcd().binary
                ),
            ));
        };
        ctx.step(
            m,
            Step::Starting,
            Some(format!("left stopped by {by}: starting it on {installed}")),
        );
        let start = commands::service_start(link.etcd(), ctx.opts.health_timeout).and(
            RemoteCommand::new("rm")
                .arg("-f")
                .arg(crate::upgrade::lock::turn_file(link.lock_dir())),
        );
        let started = link
            .run_privileged(&start, ctx.opts.command_timeout + ctx.opts.health_timeout)
            .await;
        let why = match started {
            Ok(o) if o.success() => {
                ctx.step(&self.members[i], Step::WaitingHealthy, None);
                match self
                    .wait_healthy(i, installed, ctx.opts.health_timeout)
                    .await
                {
                    Ok(()) => {
                        ctx.warn(
                            &self.members[i],
                            format!(
                                "started again on {installed} and healthy (it was left stopped by {by})"
                            ),
                        );
                        self.members[i].view.running = Some(installed);
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
            Err(e) => format!("starting it failed: {}", e.detail()),
        };
        let why = format!("left stopped by {by}; started again on {installed}, but {why}");
        match saved {
            Some(old) if old != installed => Err(self.roll_back_member(i, why, Some(old)).await),
            _ => Err(self.attention(i, format!("{host}: {why}"))),
        }
    }

    fn attention(&self, i: usize, why: String) -> RollEnd {
        let m = &self.members[i];
        (self.ctx.emit)(Event::HostFailed {
            host: m.name().to_string(),
            step: Step::Starting,
            error: format!("MEMBER IS NOT SERVING: {why}"),
        });
        m.record.update(|r| {
            r.state = MemberState::Stopped;
            r.step = Some(Step::Failed);
        });
        RollEnd::NeedsAttention(format!(
            "{why}. Start it by hand (its service) and check its log."
        ))
    }

    /// A gate failed with the member serving: report it and stop the roll.
    pub(super) fn fail(&self, i: usize, step: Step, why: String) -> RollEnd {
        let m = &self.members[i];
        (self.ctx.emit)(Event::HostFailed {
            host: m.name().to_string(),
            step,
            error: why.clone(),
        });
        m.record.update(|r| r.step = Some(Step::Failed));
        RollEnd::Failed(format!("{}: {why}", m.name()))
    }

    /// The last lines of the member's service log, when the service manager shows them.
    async fn logs(&self, i: usize) -> Option<String> {
        let link = self.members[i].link;
        let cmd = commands::service_logs(link.etcd(), 15)?;
        let out = link
            .run_privileged(&cmd, self.ctx.opts.command_timeout)
            .await
            .ok()?;
        let text = out.stdout_text();
        (!text.trim().is_empty()).then_some(text)
    }

    /// The new binary did not come up healthy: put the old one back, start it, and
    /// wait for health on the old version. The report names what was seen.
    pub(super) async fn roll_back_member(
        &mut self,
        i: usize,
        why: String,
        from: Option<Version>,
    ) -> RollEnd {
        let ctx = self.ctx;
        let logs = self.logs(i).await;
        let m = &self.members[i];
        let host = m.name().to_string();
        (ctx.emit)(Event::HostFailed {
            host: host.clone(),
            step: Step::WaitingHealthy,
            error: why.clone(),
        });
        ctx.step(
            m,
            Step::RollingBack,
            Some(format!("back to {}", fmt_version(from))),
        );
        let vars = m.link.etcd();
        let mut binaries = vec![vars.binary.clone()];
        if ctx.swap_etcdctl {
            binaries.push(vars.etcdctl_binary.clone());
        }
        let restart = Restart {
            vars,
            turn_file: crate::upgrade::lock::turn_file(m.link.lock_dir()),
            turn_line: ctx.turn_line(),
            snapshot: None,
            offline: None,
            swap: Swap::Back,
            binaries,
            start_limit: ctx.opts.health_timeout,
        };
        let res = m
            .link
            .run_privileged(&restart.command(), restart.limit(ctx.opts.command_timeout))
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
                Err(e) => e.detail(),
            };
            report.push_str(&format!("\n  putting the old binary back failed: {detail}"));
        }
        self.confirm_old_running(i, Step::RollingBack, report, from)
            .await
    }

    /// After a failed attempt, check that the member serves its old version again.
    pub(super) async fn confirm_old_running(
        &mut self,
        i: usize,
        step: Step,
        report: String,
        from: Option<Version>,
    ) -> RollEnd {
        let health_timeout = self.ctx.opts.health_timeout;
        let back = match from {
            Some(v) => self.wait_healthy(i, v, health_timeout).await,
            None => Err("old version unknown".into()),
        };
        let m = &self.members[i];
        let host = m.name().to_string();
        let emit = self.ctx.emit;
        match back {
            Ok(()) => {
                m.record.update(|r| {
                    r.state = MemberState::RolledBack;
                    r.step = Some(Step::Failed);
                });
                emit(Event::HostFailed {
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
                m.record.update(|r| {
                    r.state = MemberState::Stopped;
                    r.step = Some(Step::Failed);
                });
                emit(Event::HostFailed {
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
}

fn indent(text: &str, pad: &str) -> String {
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
