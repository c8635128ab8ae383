//! A host for unit tests of the engine's decisions: it answers commands from a
//! queue, keeps every command it was sent, and its etcd member refuses every
//! connection. The lab (real sshd and etcd) stays the proof of the real thing.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

use super::remote_host::RemoteHost;
use crate::etcd::client::{Dial, DialFuture};
use crate::etcd::{EtcdClient, EtcdVars, ServiceManager};
use crate::ssh::{ExecOutput, Payload, RemoteCommand, SshError};

/// Answers privileged commands from a queue (then with success) and keeps
/// every command it was sent.
pub(crate) struct FakeHost {
    pub(crate) vars: EtcdVars,
    answers: Mutex<VecDeque<ExecOutput>>,
    sent: Mutex<Vec<String>>,
    /// Why it could not be logged into, if it could not.
    pub(crate) unreachable: Option<SshError>,
}

impl FakeHost {
    pub(crate) fn answering(answers: Vec<ExecOutput>) -> FakeHost {
        FakeHost {
            vars: EtcdVars {
                service_manager: ServiceManager::Command,
                start_cmd: Some("start-etcd".into()),
                stop_cmd: Some("stop-etcd".into()),
                ..EtcdVars::default()
            },
            answers: Mutex::new(answers.into()),
            sent: Mutex::new(Vec::new()),
            unreachable: None,
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

    pub(crate) fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

impl RemoteHost for FakeHost {
    fn name(&self) -> &str {
        "m0"
    }
    fn reachable(&self) -> Result<(), SshError> {
        match &self.unreachable {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
    fn etcd(&self) -> &EtcdVars {
        &self.vars
    }
    fn lock_dir(&self) -> &str {
        "/run/etcdroll"
    }
    fn unit(&self) -> Option<&crate::etcd::discover::UnitFacts> {
        None
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
    /// A client whose every connection is refused: a member that is down.
    fn etcd_client(&self, timeout: Duration) -> BoxFuture<'_, Result<EtcdClient, String>> {
        let client = EtcdClient::new(&self.vars.client_url, Box::new(RefusingDial), timeout);
        Box::pin(async move { Ok(client) })
    }
}

struct RefusingDial;

impl Dial for RefusingDial {
    fn dial(&self) -> DialFuture<'_> {
        Box::pin(async { Err("connection refused".to_string()) })
    }
}
