//! The pre-flight's reading of one member, against a fake host whose etcd
//! member does not answer: what it concludes from the probe's facts.

use std::time::Duration;

use super::{survey_member, SurveyLimits};
use crate::ssh::{ExecOutput, SshError};
use crate::upgrade::fake_host::FakeHost;

fn probe_says(lines: &str) -> ExecOutput {
    ExecOutput {
        exit_status: Some(0),
        stdout: lines.as_bytes().to_vec(),
        ..ExecOutput::default()
    }
}

const LIMITS: SurveyLimits = SurveyLimits {
    command: Duration::from_secs(1),
};

#[tokio::test]
async fn a_member_down_with_a_turn_file_was_left_stopped_by_that_run() {
    let host = FakeHost::answering(vec![probe_says(
        "user=root\nbinary_version=3.5.30\netcdctl_version=3.5.30\nservice_active=0\ndata_dir_exists=1\n\
         data_kib=10\nbackup_free_kib=999999\nunfinished_turn=run abc (upgrade to 3.5.30)\n",
    )]);
    let m = survey_member(&host, None, LIMITS).await;
    assert_eq!(
        m.left_stopped.as_deref(),
        Some("run abc (upgrade to 3.5.30)")
    );
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    assert!(
        host.sent()[0].contains("etcdroll-probe"),
        "{:?}",
        host.sent()
    );
}

#[tokio::test]
async fn a_member_that_runs_but_does_not_answer_is_refused() {
    let host = FakeHost::answering(vec![probe_says(
        "user=root\nbinary_version=3.4.23\nservice_active=1\n",
    )]);
    let m = survey_member(&host, None, LIMITS).await;
    assert_eq!(m.left_stopped, None);
    assert!(
        m.problems
            .iter()
            .any(|p| p.starts_with("etcd does not answer at")),
        "{:?}",
        m.problems
    );
    // A turn file alone (the service runs) is not "left stopped" either.
    let host = FakeHost::answering(vec![probe_says(
        "service_active=1\nunfinished_turn=run abc (upgrade to 3.5.30)\n",
    )]);
    let m = survey_member(&host, None, LIMITS).await;
    assert_eq!(m.left_stopped, None);
    assert!(!m.problems.is_empty());
}

#[tokio::test]
async fn an_unreachable_host_is_one_problem_naming_it_once_and_nothing_is_sent() {
    let mut host = FakeHost::answering(Vec::new());
    host.unreachable = Some(SshError::Unreachable {
        host: "m0".into(),
        addr: "198.18.0.2:22".into(),
        reason: "connection refused".into(),
    });
    let m = survey_member(&host, None, LIMITS).await;
    assert_eq!(
        m.problems,
        ["unreachable: cannot reach 198.18.0.2:22: connection refused"]
    );
    assert!(host.sent().is_empty());
}
