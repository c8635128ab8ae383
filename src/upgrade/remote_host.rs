//! The one seam between the engine and a host: run a command (as the login
//! user, or with the privilege the inventory asks for), upload a file, reach
//! its etcd member through a tunnel, and know the host's etcd layout. `HostLink` implements it over SSH; a member's turn and its
//! undo use nothing else, so their decisions are unit-tested against a fake
//! host (`phase/roll/decision_tests.rs`) while the lab stays the proof.

use std::time::Duration;

use futures::future::BoxFuture;

use super::fleet::HostLink;
use crate::etcd::discover::UnitFacts;
use crate::etcd::{EtcdClient, EtcdVars};
use crate::ssh::{ExecOutput, Payload, RemoteCommand, SshError};

pub trait RemoteHost: Send + Sync {
    /// The inventory's name for the host.
    fn name(&self) -> &str;

    /// Whether it could be logged into at the start (Err: why not).
    fn reachable(&self) -> Result<(), SshError>;

    /// The host's etcd member: binaries, data dir, service, client URL.
    fn etcd(&self) -> &EtcdVars;

    /// Where this run's lock and turn files live on the host.
    fn lock_dir(&self) -> &str;

    /// What systemd said of the etcd unit, where it was asked.
    fn unit(&self) -> Option<&UnitFacts>;

    /// Run a command as the login user.
    fn run<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        limit: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, SshError>>;

    /// Run a command with privilege when the host asks for `become`.
    fn run_privileged<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        limit: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, SshError>>;

    /// Like `run_privileged`, reporting each stdout line as it arrives.
    fn run_privileged_streaming<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        limit: Duration,
        on_line: &'a mut (dyn FnMut(&str) + Send),
    ) -> BoxFuture<'a, Result<ExecOutput, SshError>>;

    /// Stream `payload` to `path` on the host, verified there (see `ssh::upload`).
    fn upload<'a>(
        &'a self,
        payload: &'a Payload,
        path: &'a str,
        stall_limit: Duration,
        progress: &'a (dyn Fn(u64) + Send + Sync),
    ) -> BoxFuture<'a, Result<(), SshError>>;

    /// An HTTP client for the host's etcd member, through a tunnel.
    fn etcd_client(&self, timeout: Duration) -> BoxFuture<'_, Result<EtcdClient, String>>;
}

impl RemoteHost for HostLink {
    fn name(&self) -> &str {
        HostLink::name(self)
    }

    fn reachable(&self) -> Result<(), SshError> {
        self.session().map(|_| ())
    }

    fn etcd(&self) -> &EtcdVars {
        &self.host.etcd
    }

    fn lock_dir(&self) -> &str {
        &self.host.lock_dir
    }

    fn unit(&self) -> Option<&UnitFacts> {
        self.unit.as_ref()
    }

    fn run<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        limit: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, SshError>> {
        Box::pin(HostLink::run(self, cmd, limit))
    }

    fn run_privileged<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        limit: Duration,
    ) -> BoxFuture<'a, Result<ExecOutput, SshError>> {
        Box::pin(HostLink::run_privileged(self, cmd, limit))
    }

    fn run_privileged_streaming<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        limit: Duration,
        on_line: &'a mut (dyn FnMut(&str) + Send),
    ) -> BoxFuture<'a, Result<ExecOutput, SshError>> {
        Box::pin(HostLink::run_privileged_streaming(
            self, cmd, limit, on_line,
        ))
    }

    fn upload<'a>(
        &'a self,
        payload: &'a Payload,
        path: &'a str,
        stall_limit: Duration,
        progress: &'a (dyn Fn(u64) + Send + Sync),
    ) -> BoxFuture<'a, Result<(), SshError>> {
        Box::pin(async move {
            let session = self.live_session().await?;
            session.upload(payload, path, stall_limit, progress).await
        })
    }

    fn etcd_client(&self, timeout: Duration) -> BoxFuture<'_, Result<EtcdClient, String>> {
        Box::pin(HostLink::etcd_client(self, timeout))
    }
}
