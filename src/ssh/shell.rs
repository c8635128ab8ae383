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

use std::time::Duration;

use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::command::quote;
use super::ExecOutput;

pub(super) struct KeptShell {
    channel: Channel<Msg>,
    nonce: String,
    count: u64,
}

/// Why the kept shell could not run a command; the shell is then discarded.
pub(super) enum ShellError {
    Channel(russh::Error),
    /// The shell's channel closed before the command's end marker.
    Ended,
    /// No progress for the stall limit, while sending or waiting for the result.
    Stalled(&'static str),
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

impl KeptShell {
    /// Starts `/bin/sh` on the host through the login shell, which runs once.
    pub(super) async fn open(channel: Channel<Msg>) -> Result<KeptShell, russh::Error> {
        channel.exec(true, &b"exec /bin/sh"[..]).await?;
        Ok(KeptShell {
            channel,
            nonce: nonce(),
            count: 0,
        })
    }

    pub(super) async fn close(self) {
        let _ = self.channel.close().await;
    }

    /// A marker of this shell's current command.
    fn marker(&self, kind: &str) -> String {
        format!("etcdroll-{kind}-{}-{}", self.nonce, self.count)
    }

    /// Sends the next command: the shell line `line` between its begin and end
    /// markers (the end one with `$?`), then `after`. Returns the readers of the
    /// command's stdout and stderr.
    async fn send_framed(
        &mut self,
        line: &str,
        after: &str,
    ) -> Result<(Framed, Framed), ShellError> {
        let (begin, end) = (self.marker("begin"), self.marker("end"));
        let script = format!(
            "printf '\\n%s\\n' {begin}; printf '\\n%s\\n' {begin} >&2\n\
             {line}\n\
             printf '\\n%s %s\\n' {end} \"$?\"; printf '\\n%s\\n' {end} >&2\n{after}",
        );
        self.channel
            .data_bytes(bytes::Bytes::from(script.into_bytes()))
            .await
            .map_err(ShellError::Channel)?;
        Ok((Framed::new(&begin, &end), Framed::new(&begin, &end)))
    }

    /// Runs `command` with the shell's stdin, once it has started, fed `payload`
    /// (see the module comment). `progress` sees the bytes sent so far.
    pub(super) async fn run_fed(
        &mut self,
        command: &str,
        payload: &bytes::Bytes,
        stall_limit: Duration,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Fed, ShellError> {
        self.count += 1;
        let ready = self.marker("ready");
        let token = self.marker("fed");
        let ack = self.marker("ack");
        let (mut stdout, mut stderr) = self
            .send_framed(
                // The start line comes through the environment, not the argv,
                // so `ps` on the host never shows the shell's nonce.
                &format!(
                    "etcdroll_ready={ready} sh -c {}",
                    quote(&format!(
                        "printf '%s\\n' \"$etcdroll_ready\"; unset etcdroll_ready; {command}"
                    ))
                ),
                &format!(
                    "IFS= read -r etcdroll_fed; [ \"$etcdroll_fed\" = {token} ] || exit 1; \
                     printf '%s\\n' {ack}\n"
                ),
            )
            .await?;
        let mut started = false;
        let feed = |msg: Option<ChannelMsg>,
                    stdout: &mut Framed,
                    stderr: &mut Framed,
                    started: &mut bool|
         -> Result<(), ShellError> {
            match msg {
                Some(ChannelMsg::Data { data }) => stdout.feed(&data, &mut |l| {
                    if l == ready {
                        *started = true;
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
        while !started && !stdout.done() {
            let msg = tokio::time::timeout(stall_limit, self.channel.wait())
                .await
                .map_err(|_| ShellError::Stalled("starting"))?;
            feed(msg, &mut stdout, &mut stderr, &mut started)?;
        }
        let mut sent = 0u64;
        if started {
            let mut writer = self.channel.make_writer();
            'send: for chunk in payload.chunks(256 * 1024) {
                let write = writer.write_all(chunk);
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
                            feed(msg, &mut stdout, &mut stderr, &mut started)?;
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
                progress(sent);
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
            feed(msg, &mut stdout, &mut stderr, &mut started)?;
        }
        let shell_usable = token_sent && self.acknowledged(&ack, &stdout.after).await;
        let mut body = stdout.body;
        // The start line is the command's own noise, not its output.
        let line = format!("{ready}\n");
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

    /// Runs one command; `on_line` sees each complete stdout line as it arrives.
    pub(super) async fn run(
        &mut self,
        command: &str,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ExecOutput, ShellError> {
        self.count += 1;
        let (mut stdout, mut stderr) = self
            .send_framed(&format!("sh -c {} </dev/null", quote(command)), "")
            .await?;
        while !(stdout.done() && stderr.done()) {
            match self.channel.wait().await {
                Some(ChannelMsg::Data { data }) => stdout.feed(&data, on_line),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.feed(&data, &mut |_| {}),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return Err(ShellError::Ended),
                Some(_) => {}
            }
        }
        Ok(ExecOutput {
            exit_status: stdout.status,
            exit_signal: None,
            stdout: stdout.body,
            stderr: stderr.body,
        })
    }
}

/// One stream of the shell: bytes before the begin marker are dropped (what the
/// login shell's rc files print), the command's bytes are kept, the end marker
/// closes it (with the exit status on stdout). Lines are reported as soon as they
/// are complete, so a long script's progress markers arrive live.
struct Framed {
    begin: Vec<u8>,
    end: Vec<u8>,
    /// Bytes not yet known to be the command's: a tail that may start the end marker.
    buf: Vec<u8>,
    started: bool,
    body: Vec<u8>,
    /// `body[..reported]` has been reported as lines.
    reported: usize,
    /// A line was reported on the strength of a newline still in `buf`: skip that
    /// newline when it reaches `body`.
    newline_pending: bool,
    status: Option<u32>,
    finished: bool,
    /// What came after the end marker's line (a fed command's acknowledgement).
    after: Vec<u8>,
}

/// What a framed command's output comes to: its body, the status on its end
/// marker, and whether the end was seen. For the fuzz target and the tests:
/// `chunks` arrive one after another as the channel would deliver them.
#[doc(hidden)]
pub fn parse_framed(begin: &str, end: &str, chunks: &[&[u8]]) -> (Vec<u8>, Option<u32>, bool) {
    let mut f = Framed::new(begin, end);
    let mut lines = Vec::new();
    for c in chunks {
        f.feed(c, &mut |l| lines.push(l.to_string()));
    }
    (f.body, f.status, f.finished)
}

impl Framed {
    fn new(begin: &str, end: &str) -> Framed {
        Framed {
            begin: format!("\n{begin}\n").into_bytes(),
            end: format!("\n{end}").into_bytes(),
            buf: Vec::new(),
            started: false,
            body: Vec::new(),
            reported: 0,
            newline_pending: false,
            status: None,
            finished: false,
            after: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.finished
    }

    fn feed(&mut self, data: &[u8], on_line: &mut (dyn FnMut(&str) + Send)) {
        if self.finished {
            self.after.extend_from_slice(data);
            return;
        }
        self.buf.extend_from_slice(data);
        if !self.started {
            let Some(at) = find(&self.buf, &self.begin) else {
                return;
            };
            self.buf.drain(..at + self.begin.len());
            self.started = true;
        }
        // The end marker is "\nEND[ STATUS]\n"; it may arrive split across reads.
        if let Some(at) = find(&self.buf, &self.end) {
            let rest = &self.buf[at + self.end.len()..];
            if let Some(nl) = rest.iter().position(|b| *b == b'\n') {
                let status = String::from_utf8_lossy(&rest[..nl]).trim().to_string();
                self.status = status.parse().ok();
                let body: Vec<u8> = self.buf[..at].to_vec();
                self.body.extend_from_slice(&body);
                self.after = rest[nl + 1..].to_vec();
                self.buf.clear();
                self.finished = true;
                self.report(on_line, true);
            }
            return;
        }
        // Keep back only a tail that could be the start of the end marker.
        let hold = (1..=self.end.len().min(self.buf.len()))
            .rev()
            .find(|&n| self.buf[self.buf.len() - n..] == self.end[..n])
            .unwrap_or(0);
        let moved: Vec<u8> = self.buf.drain(..self.buf.len() - hold).collect();
        self.body.extend_from_slice(&moved);
        self.report(on_line, false);
        // A partial line followed by a newline is complete, whether that newline is
        // the command's or the one before the end marker.
        if hold > 0 && self.reported < self.body.len() {
            on_line(&String::from_utf8_lossy(&self.body[self.reported..]));
            self.reported = self.body.len();
            self.newline_pending = true;
        }
    }

    /// Reports complete lines, and at the end the last partial one.
    fn report(&mut self, on_line: &mut (dyn FnMut(&str) + Send), last: bool) {
        if self.newline_pending && self.body.len() > self.reported {
            if self.body[self.reported] == b'\n' {
                self.reported += 1;
            }
            self.newline_pending = false;
        }
        while let Some(nl) = self.body[self.reported..].iter().position(|b| *b == b'\n') {
            on_line(&String::from_utf8_lossy(
                &self.body[self.reported..self.reported + nl],
            ));
            self.reported += nl + 1;
        }
        if last && self.reported < self.body.len() {
            on_line(&String::from_utf8_lossy(&self.body[self.reported..]));
            self.reported = self.body.len();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    /// Any bytes, with markers and their pieces mixed in, cut anywhere: never a
    /// panic, and the cuts never change whether the command ended, nor, once it
    /// ended, its output and status.
    #[test]
    fn framing_does_not_depend_on_how_the_bytes_are_cut() {
        let (begin, end) = ("etcdroll-begin-n-1", "etcdroll-end-n-1");
        let pieces: [&[u8]; 9] = [
            b"\n",
            b"etcdroll-begin-n-1",
            b"etcdroll-end-n-1",
            b" 0\n",
            b" 17\n",
            b"abc",
            b"etcdroll-",
            b"\n\n",
            b"\xff\x00",
        ];
        let mut next = crate::ssh::test_rng::xorshift(0x9e3779b97f4a7c15);
        for _ in 0..3000 {
            let mut data = Vec::new();
            for _ in 0..(next() % 12) {
                data.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let whole = parse_framed(begin, end, &[&data]);
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = 1 + (next() as usize % rest.len().min(7));
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            // Until the end marker's line is complete, how much of the body is
            // already confirmed may differ; once it is, nothing may.
            let cut = parse_framed(begin, end, &chunks);
            assert_eq!(cut.2, whole.2, "{data:?} cut as {chunks:?}");
            if whole.2 {
                assert_eq!(cut, whole, "{data:?} cut as {chunks:?}");
            }
        }
    }

    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Option<u32>, Vec<String>) {
        let mut f = Framed::new("B", "E");
        let mut lines = Vec::new();
        for c in chunks {
            f.feed(c, &mut |l| lines.push(l.to_string()));
        }
        assert!(f.done());
        (f.body, f.status, lines)
    }

    #[test]
    fn rc_noise_is_dropped_and_the_status_read() {
        let (body, status, lines) = run(&[b"motd junk\n\nB\nhello\nworld\n\nE 3\n"]);
        assert_eq!(body, b"hello\nworld\n");
        assert_eq!(status, Some(3));
        assert_eq!(lines, ["hello", "world"]);
    }

    #[test]
    fn output_without_a_final_newline() {
        let (body, status, lines) = run(&[b"\nB\npartial\nE 0\n"]);
        assert_eq!(body, b"partial");
        assert_eq!(status, Some(0));
        assert_eq!(lines, ["partial"]);
    }

    #[test]
    fn markers_split_across_reads_byte_by_byte() {
        let all = b"\nB\nline one\n\nmore\n\nE 17\n";
        let chunks: Vec<&[u8]> = all.chunks(1).collect();
        let (body, status, lines) = run(&chunks);
        assert_eq!(body, b"line one\n\nmore\n");
        assert_eq!(status, Some(17));
        assert_eq!(lines, ["line one", "", "more"]);
    }

    /// A progress line is reported when its newline arrives, not when the command
    /// ends or more output comes.
    #[test]
    fn lines_are_reported_as_soon_as_they_are_complete() {
        let mut f = Framed::new("B", "E-long-marker");
        let mut lines = Vec::new();
        f.feed(b"\nB\n@step one\n", &mut |l| lines.push(l.to_string()));
        assert_eq!(lines, ["@step one"]);
        f.feed(b"\n", &mut |l| lines.push(l.to_string()));
        f.feed(b"two", &mut |l| lines.push(l.to_string()));
        assert_eq!(lines, ["@step one", ""]);
        f.feed(b"\nE-long-marker 0\n", &mut |l| lines.push(l.to_string()));
        assert!(f.done());
        assert_eq!(lines, ["@step one", "", "two"]);
        assert_eq!(f.body, b"@step one\n\ntwo");
    }

    /// What follows the end marker (a fed command's acknowledgement) is kept,
    /// whether it arrives with the marker or after it.
    #[test]
    fn bytes_after_the_end_marker_are_kept() {
        let mut f = Framed::new("B", "E");
        f.feed(b"\nB\nout\n\nE 0\nack-1", &mut |_| {});
        assert!(f.done());
        f.feed(b"\n", &mut |_| {});
        assert_eq!(f.body, b"out\n");
        assert_eq!(f.after, b"ack-1\n");
    }

    #[test]
    fn empty_output_and_stderr_marker_without_status() {
        let (body, status, lines) = run(&[b"\nB\n", b"\nE\n"]);
        assert!(body.is_empty());
        assert_eq!(status, None);
        assert!(lines.is_empty());
    }
}
