//! A member's turn against a fake host (`RemoteHost`), for the decisions that
//! follow each exit code of `restart.sh`: what is sent next, how the roll ends,
//! and the state the member's record is left in. The lab tests (tests/upgrade.rs,
//! tests/faults.rs) prove the same against real sshd and etcd.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Ctx, Member, Roll, RollEnd};
use crate::etcd::commands::HostFacts;
use crate::etcd::Version;
use crate::events::{Emitter, Event, MemberState, Step};
use crate::ssh::{ExecOutput, Payload};
use crate::upgrade::fake_host::FakeHost;
use crate::upgrade::preflight::MemberView;
use crate::upgrade::record::{self, MemberRecord, Record, Records};
use crate::upgrade::target::{Interrupt, RollOptions, Target};

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
    let target = Target::new(Version::new(3, 5, 30), Payload::empty(), None);
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
            seen: Default::default(),
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
