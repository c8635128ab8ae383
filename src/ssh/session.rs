//! A logged-in connection to one host, kept open for the whole run, and what the
//! rest of etcdroll does with it: run a command (in the kept shell, see
//! `shell.rs`, or on a channel of its own when it needs stdin or the shell is
//! busy), feed bytes to one (the upload, see `upload.rs`), open a tunnel.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use russh::client::Handle;
use russh::ChannelMsg;

use super::host_key::HostKeyCheck;
use super::shell;
use super::{ExecOutput, RemoteCommand, SshError, TunnelStream};

/// Drops the kept shell; the next command starts a fresh one.
fn discard_shell(kept: &mut Option<shell::KeptShell>) {
    if let Some(sh) = kept.take() {
        tokio::spawn(sh.close());
    }
}

/// A logged-in connection to one host, kept open for the whole run.
pub struct Session {
    label: String,
    handle: Handle<HostKeyCheck>,
    /// Keeps the jump host's connection alive as long as this one.
    _via: Option<Arc<Session>>,
    /// Runs the commands that need no stdin (see `shell.rs`); opened on first use.
    shell: tokio::sync::Mutex<Option<shell::KeptShell>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.label)
            .finish()
    }
}

impl Session {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    pub(super) fn new(
        label: String,
        handle: Handle<HostKeyCheck>,
        via: Option<Arc<Session>>,
    ) -> Session {
        Session {
            label,
            handle,
            _via: via,
            shell: tokio::sync::Mutex::new(None),
        }
    }

    /// The SSH connection, for a channel through it to the next jump.
    pub(super) fn handle(&self) -> &Handle<HostKeyCheck> {
        &self.handle
    }

    /// An error as the caller must see it: as a dropped connection when the
    /// connection is gone, so callers branch on the kind, never on the text.
    pub(super) fn told(&self, e: SshError) -> SshError {
        if self.is_closed() {
            e.into_disconnected()
        } else {
            e
        }
    }

    pub(super) fn channel_err(&self, step: &str, e: impl fmt::Display) -> SshError {
        SshError::Channel {
            host: self.label.clone(),
            step: step.to_string(),
            reason: e.to_string(),
        }
    }

    /// The kept shell, started on first use.
    async fn kept_shell<'a>(
        &self,
        kept: &'a mut Option<shell::KeptShell>,
    ) -> Result<&'a mut shell::KeptShell, SshError> {
        if kept.is_none() {
            let channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.channel_err("open session", e))?;
            tracing::info!(target: "etcdroll::ssh", "{}: channel opened for the kept shell", self.label);
            let opened = shell::KeptShell::open(channel)
                .await
                .map_err(|e| self.channel_err("start the shell", e))?;
            *kept = Some(opened);
        }
        kept.as_mut()
            .ok_or_else(|| self.channel_err("exec", "no shell"))
    }

    fn shell_err(&self, step: &str, e: shell::ShellError, limit: Duration) -> SshError {
        match e {
            shell::ShellError::Channel(e) => self.channel_err(step, e),
            shell::ShellError::Ended => {
                self.channel_err(step, "the remote shell ended before the command did")
            }
            shell::ShellError::Source(e) => self.channel_err(step, e),
            shell::ShellError::Stalled(doing) => SshError::Timeout {
                host: self.label.clone(),
                step: format!("{step} (no progress while {doing})"),
                limit,
            },
        }
    }

    /// Run a command; collect its exit status and output. `input` is written to its
    /// stdin first (then EOF), which is how secrets reach sudo without a command line.
    pub async fn exec(
        &self,
        cmd: &RemoteCommand,
        input: Option<&[u8]>,
        limit: Duration,
    ) -> Result<ExecOutput, SshError> {
        self.exec_streaming(cmd, input, limit, &mut |_| {}).await
    }

    /// Like `exec`, and calls `on_line` with each complete stdout line as it arrives,
    /// so one remote script can report its steps live. With `-v`, each command is
    /// logged with its duration and exit status (never its stdin: a password).
    pub async fn exec_streaming(
        &self,
        cmd: &RemoteCommand,
        input: Option<&[u8]>,
        limit: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ExecOutput, SshError> {
        let t0 = std::time::Instant::now();
        let result = self
            .exec_streaming_inner(cmd, input, limit, on_line)
            .await
            .map_err(|e| self.told(e));
        if tracing::enabled!(target: "etcdroll::remote", tracing::Level::INFO) {
            let line: String = cmd
                .as_str()
                .replace('\n', " ⏎ ")
                .chars()
                .take(240)
                .collect();
            let outcome = match &result {
                Ok(o) => o.describe_exit(),
                Err(e) => format!("error: {e}"),
            };
            tracing::info!(
                target: "etcdroll::remote",
                "{} | {} ms | {outcome} | {line}",
                self.label,
                t0.elapsed().as_millis()
            );
        }
        result
    }

    async fn exec_streaming_inner(
        &self,
        cmd: &RemoteCommand,
        input: Option<&[u8]>,
        limit: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ExecOutput, SshError> {
        // The kept shell runs one command at a time; a command that needs stdin, or
        // one issued while the shell is busy, gets a channel of its own.
        if input.is_none() {
            if let Ok(mut kept) = self.shell.try_lock() {
                let run = async {
                    let _wait = crate::round_trips::wait();
                    let sh = self.kept_shell(&mut kept).await?;
                    sh.run(cmd.as_str(), on_line)
                        .await
                        .map_err(|e| self.shell_err("exec", e, limit))
                };
                let result = tokio::time::timeout(limit, run).await;
                if !matches!(result, Ok(Ok(_))) {
                    // Its state is unknown now: the next command starts a fresh one.
                    discard_shell(&mut kept);
                }
                return result.map_err(|_| SshError::Timeout {
                    host: self.label.clone(),
                    step: format!("command `{}`", truncate(cmd.as_str(), 80)),
                    limit,
                })?;
            }
        }
        let run = async {
            // Opening the channel and the command's answer: two rounds.
            let _wait = crate::round_trips::wait_rounds(2);
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| self.channel_err("open session", e))?;
            tracing::info!(target: "etcdroll::ssh", "{}: channel opened for a command with stdin, or while the kept shell is busy", self.label);
            channel
                .exec(true, cmd.as_str().as_bytes())
                .await
                .map_err(|e| self.channel_err("exec", e))?;
            if let Some(data) = input {
                channel
                    .data_bytes(bytes::Bytes::copy_from_slice(data))
                    .await
                    .map_err(|e| self.channel_err("write stdin", e))?;
            }
            channel
                .eof()
                .await
                .map_err(|e| self.channel_err("exec", e))?;
            let mut out = ExecOutput::default();
            let mut seen = 0usize;
            // Data may still arrive after ExitStatus: read until the channel closes.
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        out.stdout.extend_from_slice(&data);
                        while let Some(nl) = out.stdout[seen..].iter().position(|b| *b == b'\n') {
                            on_line(&String::from_utf8_lossy(&out.stdout[seen..seen + nl]));
                            seen += nl + 1;
                        }
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.exit_status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.exit_signal = Some(format!("{signal_name:?}"))
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            if seen < out.stdout.len() {
                on_line(&String::from_utf8_lossy(&out.stdout[seen..]));
            }
            Ok(out)
        };
        tokio::time::timeout(limit, run)
            .await
            .map_err(|_| SshError::Timeout {
                host: self.label.clone(),
                step: format!("command `{}`", truncate(cmd.as_str(), 80)),
                limit,
            })?
    }

    /// Runs `cmd` in the kept shell with `payload` on its stdin, as `upload` does;
    /// the shell is replaced if the command took more or fewer bytes than sent.
    /// Public for the tests of that guard.
    #[doc(hidden)]
    pub async fn feed(
        &self,
        cmd: &str,
        payload: &bytes::Bytes,
        stall_limit: Duration,
    ) -> Result<ExecOutput, SshError> {
        let mut source = shell::InMemory(payload.clone());
        let (out, _) = self.run_fed("feed", cmd, &mut source, stall_limit).await?;
        Ok(out)
    }

    /// `cmd` in the kept shell (waited for if busy) with what `source` gives on
    /// its stdin; the output and how many bytes were sent.
    pub(super) async fn run_fed(
        &self,
        step: &str,
        cmd: &str,
        source: &mut dyn shell::FeedSource,
        stall_limit: Duration,
    ) -> Result<(ExecOutput, u64), SshError> {
        let mut kept = self.shell.lock().await;
        let _wait = crate::round_trips::wait();
        let sh = self.kept_shell(&mut kept).await?;
        match sh.run_fed(cmd, source, stall_limit).await {
            Ok(fed) => {
                if !fed.shell_usable {
                    discard_shell(&mut kept);
                }
                Ok((fed.output, fed.sent))
            }
            Err(e) => {
                discard_shell(&mut kept);
                Err(self.shell_err(step, e, stall_limit))
            }
        }
    }

    /// A TCP connection to `host:port` opened by the remote sshd (direct-tcpip).
    pub async fn tunnel(&self, host: &str, port: u16) -> Result<TunnelStream, SshError> {
        let _wait = crate::round_trips::wait();
        let ch = self
            .handle
            .channel_open_direct_tcpip(host.to_string(), port as u32, "127.0.0.1", 0)
            .await
            .map_err(|e| self.channel_err(&format!("tunnel to {host}:{port}"), e))?;
        Ok(ch.into_stream())
    }

    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}
