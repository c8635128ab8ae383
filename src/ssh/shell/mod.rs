//! The kept shell: one long-lived `/bin/sh` per session that runs the session's
//! commands one after another, so the host's login shell (and whatever its rc files
//! do: a `pyenv init` costs 80 ms here) runs once per host instead of once per
//! command. Each command runs as `sh -c 'COMMAND' </dev/null` inside it, so a
//! syntax error, an `exit` or a `cd` in one command never reaches the next, and is
//! framed by markers with a per-shell nonce on stdout and stderr; the end marker
//! carries the exit status.
//!
//! A command can also be *fed* (the upload): it reads exactly N bytes from the
//! shell's own stdin. The bytes are sent only once the command has said it started,
//! so the shell itself never reads them as commands; after the command the shell
//! reads a line that must be the command's token before it takes another command,
//! so a reader that took fewer or more bytes than sent makes the shell exit (it is
//! then replaced) instead of running what it read.
//!
//! The shell's half of this is `kept_shell.sh`: functions the shell reads once when
//! it starts; each command is then one line that calls one of them with the
//! command as a quoted argument. The markers are read back by `framed.rs`.

use std::time::Duration;

use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

mod framed;

pub use framed::parse_framed;

use super::command::{quote, RemoteCommand};
use super::ExecOutput;
use framed::{find, Framed};

/// The shell functions that frame each command (see the script's comment).
const KEPT_SHELL_SH: &str = include_str!("kept_shell.sh");

pub(super) struct KeptShell {
    channel: Channel<Msg>,
    nonce: String,
    count: u64,
    /// The fastest any command of this shell came back: one round trip and a
    /// fork at most, the best cheap measure of how far the host is.
    fastest: Option<Duration>,
}

/// Why the kept shell could not run a command; the shell is then discarded.
pub(super) enum ShellError {
    Channel(russh::Error),
    /// The shell's channel closed before the command's end marker.
    Ended,
    /// No progress for the stall limit, while sending or waiting for the result.
    Stalled(&'static str),
    /// The bytes to feed could not be produced here (a local file unreadable).
    Source(String),
}

/// What a fed command is given: chunks taken one at a time as the channel's
/// window allows, so a file is read from disk as it is sent, never held whole.
pub(in crate::ssh) trait FeedSource: Send {
    /// Whether to wait for the command's first line of output before sending:
    /// the command says there what it accepts (the upload receiver's offer).
    fn wants_offer(&self) -> bool {
        false
    }
    /// Called once the command has started, with its first line when asked for
    /// and the fastest answer this shell has given, this start included (one
    /// round trip and a fork; the minimum filters out a busy host's spikes).
    fn start(
        &mut self,
        _offer: Option<String>,
        _answered_in: Duration,
    ) -> futures::future::BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    /// The next bytes to send; None at the end.
    fn next_chunk(
        &mut self,
    ) -> futures::future::BoxFuture<'_, Result<Option<bytes::Bytes>, String>>;
    /// `total` bytes have been sent so far.
    fn sent(&mut self, _total: u64) {}
}

/// Bytes in memory, fed as they are in 256 KiB chunks (the tests' `Session::feed`).
pub(in crate::ssh) struct InMemory(pub bytes::Bytes);

impl FeedSource for InMemory {
    fn next_chunk(
        &mut self,
    ) -> futures::future::BoxFuture<'_, Result<Option<bytes::Bytes>, String>> {
        let n = self.0.len().min(256 * 1024);
        let chunk = (n > 0).then(|| self.0.split_to(n));
        Box::pin(async move { Ok(chunk) })
    }
}

/// What a fed command did.
pub(super) struct Fed {
    pub output: ExecOutput,
    /// Bytes of the payload sent before the command ended or took them all.
    pub sent: u64,
    /// The shell read the token back after the command: it may run the next one.
    pub shell_usable: bool,
}

/// The markers' nonce: from the OS's random source, so no command's output can
/// forge a marker. It is sent on the shell's stdin, never in an argv.
fn nonce() -> String {
    let mut buf = [0u8; 16];
    if getrandom::fill(&mut buf).is_err() {
        // No OS random source (never seen on Linux): still unique per shell.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = format!("{}:{}", now.as_nanos(), std::process::id());
        buf.copy_from_slice(&Sha256::digest(seed.as_bytes())[..16]);
    }
    hex::encode(buf)
}

/// What the kept shell reads first: its functions, then its nonce, set as a
/// shell variable (not exported: no command sees it in its environment).
fn opening(nonce: &str) -> bytes::Bytes {
    let mut text = String::from(KEPT_SHELL_SH);
    text.push_str("\netcdroll_nonce=");
    text.push_str(&quote(nonce));
    text.push('\n');
    bytes::Bytes::from(text.into_bytes())
}

/// The line that has the kept shell run `command` as its `count`th, through
/// `function`, each value a quoted argument.
fn invocation(function: &str, count: u64, command: &str) -> bytes::Bytes {
    let mut line = RemoteCommand::new(function)
        .arg(count.to_string())
        .arg(command)
        .to_string();
    line.push('\n');
    bytes::Bytes::from(line.into_bytes())
}

impl KeptShell {
    /// Starts `/bin/sh` on the host through the login shell, which runs once.
    pub(super) async fn open(channel: Channel<Msg>) -> Result<KeptShell, russh::Error> {
        channel.exec(true, &b"exec /bin/sh"[..]).await?;
        let nonce = nonce();
        channel.data_bytes(opening(&nonce)).await?;
        Ok(KeptShell {
            channel,
            nonce,
            count: 0,
            fastest: None,
        })
    }

    pub(super) async fn close(self) {
        let _ = self.channel.close().await;
    }

    /// A marker of this shell's current command.
    fn marker(&self, kind: &str) -> String {
        format!("etcdroll-{kind}-{}-{}", self.nonce, self.count)
    }

    /// Sends the next command, `command` run by the script's `function`
    /// (`etcdroll_run` or `etcdroll_fed`). Returns the readers of the command's
    /// stdout and stderr.
    async fn send(
        &mut self,
        function: &str,
        command: &str,
    ) -> Result<(Framed, Framed), ShellError> {
        let (begin, end) = (self.marker("begin"), self.marker("end"));
        self.channel
            .data_bytes(invocation(function, self.count, command))
            .await
            .map_err(ShellError::Channel)?;
        Ok((Framed::new(&begin, &end), Framed::new(&begin, &end)))
    }

    /// Runs `command` with the shell's stdin, once it has started, fed what
    /// `source` gives, chunk by chunk (see the module comment).
    pub(super) async fn run_fed(
        &mut self,
        command: &str,
        source: &mut dyn FeedSource,
        stall_limit: Duration,
    ) -> Result<Fed, ShellError> {
        self.count += 1;
        let ready = self.marker("ready");
        let token = self.marker("fed");
        let ack = self.marker("ack");
        // The start line comes through the environment, not the argv, so `ps`
        // on the host never shows the shell's nonce (see kept_shell.sh).
        let asked = std::time::Instant::now();
        let (mut stdout, mut stderr) = self.send("etcdroll_fed", command).await?;
        let mut started = false;
        // The command's first line after the start line, for a source that asks.
        let mut offer: Option<String> = None;
        let feed = |msg: Option<ChannelMsg>,
                    stdout: &mut Framed,
                    stderr: &mut Framed,
                    started: &mut bool,
                    offer: &mut Option<String>|
         -> Result<(), ShellError> {
            match msg {
                Some(ChannelMsg::Data { data }) => stdout.feed(&data, &mut |l| {
                    if l == ready {
                        *started = true;
                    } else if *started && offer.is_none() {
                        *offer = Some(l.to_string());
                    }
                }),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.feed(&data, &mut |_| {}),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return Err(ShellError::Ended),
                Some(_) => {}
            }
            Ok(())
        };
        // Nothing is sent before the command has started: until then the bytes
        // would reach the shell's command reader.
        let wants_offer = source.wants_offer();
        while !(started && (offer.is_some() || !wants_offer)) && !stdout.done() {
            let msg = tokio::time::timeout(stall_limit, self.channel.wait())
                .await
                .map_err(|_| ShellError::Stalled("starting"))?;
            feed(msg, &mut stdout, &mut stderr, &mut started, &mut offer)?;
        }
        let mut sent = 0u64;
        if started {
            let answered = self.answered_in(asked.elapsed());
            source
                .start(offer.clone(), answered)
                .await
                .map_err(ShellError::Source)?;
            let mut writer = self.channel.make_writer();
            'send: loop {
                let chunk = match source.next_chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(e) => return Err(ShellError::Source(e)),
                };
                let write = writer.write_all(&chunk);
                tokio::pin!(write);
                let deadline = tokio::time::Instant::now() + stall_limit;
                loop {
                    // The command ending early (a failed write) or the connection
                    // dropping shows here while a write waits on the window.
                    tokio::select! {
                        r = &mut write => {
                            r.map_err(|e| ShellError::Channel(russh::Error::IO(e)))?;
                            break;
                        }
                        msg = self.channel.wait() => {
                            feed(msg, &mut stdout, &mut stderr, &mut started, &mut offer)?;
                            if stdout.done() {
                                break 'send;
                            }
                        }
                        _ = tokio::time::sleep_until(deadline) => {
                            return Err(ShellError::Stalled("sending"));
                        }
                    }
                }
                sent += chunk.len() as u64;
                source.sent(sent);
            }
            let _ = writer.flush().await;
        }
        // The token goes right behind the bytes, so the shell finds it as soon as
        // the command ends (one round trip fewer than waiting for the end first).
        let token_sent = self
            .channel
            .data_bytes(bytes::Bytes::from(format!("{token}\n").into_bytes()))
            .await
            .is_ok();
        while !(stdout.done() && stderr.done()) {
            let msg = tokio::time::timeout(stall_limit, self.channel.wait())
                .await
                .map_err(|_| ShellError::Stalled("waiting for the result"))?;
            feed(msg, &mut stdout, &mut stderr, &mut started, &mut offer)?;
        }
        let shell_usable = token_sent && self.acknowledged(&ack, &stdout.after).await;
        let mut body = stdout.body;
        // The start line (and the offer a source asked for) are the protocol's,
        // not the command's output.
        let mut line = format!("{ready}\n");
        if let Some(o) = offer.filter(|_| wants_offer) {
            line.push_str(&o);
            line.push('\n');
        }
        if body.starts_with(line.as_bytes()) {
            body.drain(..line.len());
        }
        Ok(Fed {
            output: ExecOutput {
                exit_status: stdout.status,
                exit_signal: None,
                stdout: body,
                stderr: stderr.body,
            },
            sent,
            shell_usable,
        })
    }

    /// Waits for the shell's answer to the token it read after a fed command
    /// (`seen`: what already came after the end marker); without one the shell is
    /// not to be used again.
    async fn acknowledged(&mut self, ack: &str, seen: &[u8]) -> bool {
        let want = format!("{ack}\n");
        let mut seen = seen.to_vec();
        if find(&seen, want.as_bytes()).is_some() {
            return true;
        }
        let wait = async {
            loop {
                match self.channel.wait().await {
                    Some(ChannelMsg::Data { data }) => {
                        seen.extend_from_slice(&data);
                        if find(&seen, want.as_bytes()).is_some() {
                            return true;
                        }
                    }
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return false,
                    Some(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or(false)
    }

    /// Records an answer's time; the fastest so far.
    fn answered_in(&mut self, took: Duration) -> Duration {
        let fastest = self.fastest.map_or(took, |f| f.min(took));
        self.fastest = Some(fastest);
        fastest
    }

    /// Runs one command; `on_line` sees each complete stdout line as it arrives.
    pub(super) async fn run(
        &mut self,
        command: &str,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ExecOutput, ShellError> {
        self.count += 1;
        let asked = std::time::Instant::now();
        let (mut stdout, mut stderr) = self.send("etcdroll_run", command).await?;
        while !(stdout.done() && stderr.done()) {
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => stdout.feed(&data, on_line),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.feed(&data, &mut |_| {}),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return Err(ShellError::Ended),
                Some(_) => {}
            }
        }
        self.answered_in(asked.elapsed());
        Ok(ExecOutput {
            exit_status: stdout.status,
            exit_signal: None,
            stdout: stdout.body,
            stderr: stderr.body,
        })
    }
}

#[cfg(test)]
mod tests;
