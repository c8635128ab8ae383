//! `backup`'s one phase: the online snapshot of every member at once, without
//! upgrading anything.

use std::time::SystemTime;

use futures::future::{join_all, BoxFuture};

use super::{Flow, Outcome, Phase, Run};
use crate::etcd::commands;
use crate::events::{Event, Step};
use crate::exit::Ending;

pub struct SnapshotAll;

impl Phase for SnapshotAll {
    fn name(&self) -> &'static str {
        "backup"
    }

    fn run<'r, 'a: 'r>(&'r self, run: &'r mut Run<'a>) -> BoxFuture<'r, Flow> {
        Box::pin(async move {
            let (emit, opts) = (run.emit, run.opts);
            let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
                .to_string()
                .replace(':', "");
            let jobs = run.links.iter().map(|l| {
                let stamp = stamp.clone();
                async move {
                    let host = l.name().to_string();
                    if let Err(e) = l.session() {
                        return (host, Err(e.detail()));
                    }
                    let dir = format!(
                        "{}/etcdroll-{host}-{stamp}",
                        l.host.etcd.backup_dir.trim_end_matches('/')
                    );
                    emit(Event::Step {
                        host: host.clone(),
                        step: Step::BackingUp,
                        detail: Some(dir.clone()),
                    });
                    let res = match l
                        .run_privileged(
                            &commands::snapshot_save(&l.host.etcd, &dir),
                            opts.command_timeout,
                        )
                        .await
                    {
                        Ok(o) if o.success() => Ok(format!("{dir}/snapshot.db")),
                        Ok(o) => Err(format!("{}: {}", o.describe_exit(), o.last_error_line())),
                        Err(e) => Err(e.detail()),
                    };
                    (host, res)
                }
            });
            let mut failed = 0;
            for (host, res) in join_all(jobs).await {
                match res {
                    Ok(path) => emit(Event::HostDone {
                        host,
                        from: String::new(),
                        to: String::new(),
                        down_ms: None,
                        catch_up_ms: None,
                        backup: Some(path),
                    }),
                    Err(e) => {
                        failed += 1;
                        emit(Event::HostFailed {
                            host,
                            step: Step::BackingUp,
                            error: e,
                        });
                    }
                }
            }
            if failed > 0 {
                let code = super::any_unreachable(run.links).unwrap_or(Ending::Failed);
                return Flow::Stop(Outcome::new(code, format!("{failed} backup(s) failed")));
            }
            Flow::Stop(Outcome::ok(format!(
                "backed up {} member(s)",
                run.links.len()
            )))
        })
    }
}
