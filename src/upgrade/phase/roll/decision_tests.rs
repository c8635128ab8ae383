//! A member's turn against a fake host (`RemoteHost`), for the decisions that
//! follow each exit code of `restart.sh`: what is sent next, how the roll ends,
//! and the state the member's record is left in. The lab tests (tests/upgrade.rs,
//! tests/faults.rs) prove the same against real sshd and etcd.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use super::{Ctx, Member, Roll, RollEnd};
use crate::etcd::commands::HostFacts;
use crate::etcd::{EtcdClient, EtcdVars, ServiceManager, Version};
use crate::events::{Emitter, Event, MemberState, Step};
use crate::ssh::{ExecOutput, Payload, RemoteCommand, SshError};
use crate::upgrade::preflight::MemberView;
use crate::upgrade::record::{self, MemberRecord, Record, Records};
use crate::upgrade::remote_host::RemoteHost;
use crate::upgrade::target::{Interrupt, RollOptions, Target};

/// Answers privileged commands from a queue (then with success) and keeps
/// every command it was sent.
struct FakeHost {
    vars: EtcdVars,
    answers: Mutex<VecDeque<ExecOutput>>,
    sent: Mutex<Vec<String>>,
}

impl FakeHost {
    fn answering(answers: Vec<ExecOutput>) -> FakeHost {
        FakeHost {
            vars: EtcdVars {
                service_manager: ServiceManager::Command,
                start_cmd: Some("start-etcd".into()),
                stop_cmd: Some("stop-etcd".into()),
                ..EtcdVars::default()
            },
            answers: Mutex::new(answers.into()),
            sent: Mutex::new(Vec::new()),
        }
    }

    fn answer(&self, cmd: &RemoteCommand) -> ExecOutput {
        self.sent.lock().unwrap().push(cmd.to_string());
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(ExecOutput {
                exit_status: Some(0),
                ..ExecOutput::default()
            })
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

impl RemoteHost for FakeHost {
    fn name(&self) -> &str {
        "m0"
    }
    fn etcd(&self) -> &EtcdVars {
        &self.vars
    }
    fn lock_dir(&self) -> &str {
        "/run/etcdroll"
    }
    fn run<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        _limit: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, SshError>> {
        Box::pin(async move { Ok(self.answer(cmd)) })
    }
    fn run_privileged<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        _limit: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, SshError>> {
        Box::pin(async move { Ok(self.answer(cmd)) })
    }
    fn run_privileged_streaming<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        _limit: Duration,
        on_line: &'a mut (dyn FnMut(&str) + Send),
    ) -> BoxFuture<'a, Result<ExecOutput, SshError>> {
        Box::pin(async move {
            let out = self.answer(cmd);
            for line in out.stdout_text().lines() {
                on_line(line);
            }
            Ok(out)
        })
    }
    fn upload<'a>(
        &'a self,
        _payload: &'a Payload,
        path: &'a str,
        _stall_limit: Duration,
        _progress: &'a (dyn Fn(u64) + Send + Sync),
    ) -> BoxFuture<'a, Result<(), SshError>> {
        self.sent.lock().unwrap().push(format!("upload {path}"));
        Box::pin(async { Ok(()) })
    }
    fn etcd_client(&self, _timeout: Duration) -> BoxFuture<'_, Result<EtcdClient, String>> {
        Box::pin(async { Err("the fake host has no etcd member".to_string()) })
    }
}

/// What restart.sh prints up to `last`, and its exit code.
fn restart_exit(markers: &[&str], code: u32) -> ExecOutput {
    let stdout: String = markers.iter().map(|m| format!("@etcdroll {m}\n")).collect();
    ExecOutput {
        exit_status: Some(code),
        stdout: stdout.into_bytes(),
        stderr: b"what the failing step said\n".to_vec(),
        ..ExecOutput::default()
    }
}

struct Turn {
    end: Result<(), RollEnd>,
    sent: Vec<String>,
    record: MemberRecord,
    events: Vec<Event>,
}

/// Member m0 (3.4.23, with a v3 etcdctl, in a 3.4 cluster) takes its turn
/// towards 3.5.30 on a host answering `answers`. The member has no HTTP client
/// here, so any wait for its health fails: as if it never came back.
async fn turn(answers: Vec<ExecOutput>) -> Turn {
    let host = FakeHost::answering(answers);
    let mut view = MemberView::new("m0");
    view.running = Some(Version::new(3, 4, 23));
    view.facts = Some(HostFacts {
        etcdctl_version: Some("3.4.23".into()),
        ..HostFacts::default()
    });
    let records: Records = Arc::new(Mutex::new(vec![MemberRecord::new(
        "m0",
        "3.4.23".into(),
        "3.5.30".into(),
        MemberState::Untouched,
    )]));
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let emit: Emitter = Arc::new(move |e| seen.lock().unwrap().push(e));
    let target = Target::new(
        Version::new(3, 5, 30),
        Payload {
            bytes: Default::default(),
            sha256: String::new(),
        },
        None,
    );
    let opts = RollOptions {
        run_id: "abc".into(),
        command_timeout: Duration::from_secs(5),
        upload_stall_timeout: Duration::from_secs(5),
        health_timeout: Duration::from_millis(30),
        catch_up_timeout: Duration::from_millis(30),
        cluster_version_timeout: Duration::from_millis(30),
        poll_interval: Duration::from_millis(10),
        settle: Duration::ZERO,
    };
    let interrupt = Interrupt::default();
    let end = {
        let mut roll = Roll {
            members: vec![Member {
                link: &host,
                view: &mut view,
                record: Record::new(records.clone(), 0),
            }],
            ctx: Ctx {
                target: &target,
                opts: &opts,
                emit: &emit,
                interrupt: &interrupt,
                started: Instant::now(),
                swap_etcdctl: false,
            },
            cluster_version: Some(Version::new(3, 4, 0)),
        };
        roll.upgrade_member(0).await
    };
    let record = record::lock(&records)[0].clone();
    let events = events.lock().unwrap().clone();
    Turn {
        end,
        sent: host.sent(),
        record,
        events,
    }
}

fn is_restart(cmd: &str, swap: &str) -> bool {
    cmd.contains("etcdroll-restart") && cmd.contains(&format!(" {swap} "))
}

#[tokio::test]
async fn a_failed_snapshot_fails_the_turn_with_nothing_stopped_or_undone() {
    let t = turn(vec![restart_exit(&[], 9)]).await;
    match &t.end {
        Err(RollEnd::Failed(m)) => {
            assert!(m.starts_with("m0: snapshot backup failed"), "{m}");
            assert!(m.contains("the member was not stopped"), "{m}");
            assert!(!m.contains("m0: m0"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.sent.len(), 1, "nothing is sent after it: {:?}", t.sent);
    assert!(is_restart(&t.sent[0], "in"), "{}", t.sent[0]);
    assert!(
        t.sent[0].contains("snapshot save"),
        "the online backup is in the script"
    );
    assert_eq!(t.record.state, MemberState::Untouched);
    assert_eq!(t.record.backup, None, "no backup to point the operator to");
    assert!(t.events.iter().any(|e| matches!(
        e,
        Event::HostFailed {
            step: Step::BackingUp,
            ..
        }
    )));
}

#[tokio::test]
async fn a_failed_start_puts_the_old_binary_back_and_says_the_member_is_down() {
    let stopped = ["stopping", "stopped", "backed_up", "swapped", "starting"];
    let t = turn(vec![restart_exit(&stopped, 13)]).await;
    assert_eq!(t.sent.len(), 2, "{:?}", t.sent);
    assert!(is_restart(&t.sent[0], "in"));
    assert!(
        is_restart(&t.sent[1], "back"),
        "then the swap back: {}",
        t.sent[1]
    );
    assert!(
        !t.sent[1].contains("snapshot save"),
        "no backup on the way back"
    );
    match &t.end {
        Err(RollEnd::NeedsAttention(m)) => {
            assert!(
                m.contains("starting the service with the new binary failed"),
                "{m}"
            );
            assert!(m.contains("m0 IS NOT SERVING"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.record.state, MemberState::Stopped);
    assert!(t.record.down_at_ms.is_some(), "the stop marker was seen");
}

#[tokio::test]
async fn after_a_failed_backup_or_swap_the_script_restarted_the_old_binary_itself() {
    for (markers, code) in [
        (&["stopping", "stopped"][..], 11),
        (&["stopping", "stopped", "backed_up"][..], 12),
    ] {
        let t = turn(vec![restart_exit(markers, code)]).await;
        assert_eq!(
            t.sent.len(),
            1,
            "exit {code}: no swap back is sent: {:?}",
            t.sent
        );
        match &t.end {
            // The fake member never answers, so the check that the old
            // binary serves fails: the operator is told.
            Err(RollEnd::NeedsAttention(m)) => {
                assert!(
                    m.contains("the old binary was started again"),
                    "exit {code}: {m}"
                );
            }
            other => panic!("exit {code}: {other:?}"),
        }
        assert!(t.events.iter().any(|e| matches!(
            e,
            Event::Step {
                step: Step::Stopping,
                ..
            }
        )));
    }
}
