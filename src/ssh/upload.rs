//! Uploads: a file streamed into a path on the host through the kept shell (no
//! sftp-server, no login shell per upload), read from disk as it is sent, and
//! checked on arrival by its size and SHA-256. The receiving end is `upload.sh`,
//! given the path and size as arguments.
//!
//! On a slow or far link the file goes gzipped (`--compress`): the receiver says
//! on its first line whether the host has `gzip` (read together with the
//! command's start, so that costs no round trip), the controller answers with a
//! header line and the bytes, and the host hashes what `gzip -dc` gives back, so
//! the SHA-256 compared is still that of the file on this machine, end to end.
//! The gzip copy is made once per file into an unlinked temp file (not held in
//! memory) and shared by every host that takes it.

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::output::Packed;
use super::shell::FeedSource;
use super::{Compress, Payload, RemoteCommand, Session, SshError};

/// The receiving end of an upload, run on the host (see the script's comment).
const UPLOAD_SH: &str = include_str!("upload.sh");

/// zlib-rs's level 1 is its quick strategy: an etcd 3.5 binary shrinks to 47%;
/// level 2 gets 39% (GNU `gzip -1`'s ratio) in twice the time, which the copy,
/// made once per binary for every host, repays on any link slow enough to want it.
const LEVEL: u32 = 2;

/// Bytes read from disk and sent at a time.
const CHUNK: usize = 256 * 1024;

/// `auto` compresses for a host whose fastest answer so far (the kept shell's
/// commands and this upload's start: one round trip and a fork of `sh` each)
/// took at least this long. On the lab's LAN, with this machine loaded (load
/// average 12 on 2 cores), the fastest answers were 4–13 ms and a single one
/// 18 ms, hence the minimum and the margin. From here the path is a WAN or a
/// far bastion: OpenSSH's 2 MiB session window caps an upload at ≤ 70 MB/s at
/// 30 ms (≤ 20 MB/s at 100 ms), around or below the rate at which the gzip copy
/// stops paying (see `docs/design-notes.md`, issue 15). A thin pipe close by is
/// not seen this way: `--compress gzip`.
pub const FAR_ANSWER: Duration = Duration::from_millis(30);

/// `auto` sends the gzip copy only when it is at most this share of the file
/// (an already-compressed binary would cost the host's CPU for nothing).
const PAYS_PERCENT: u64 = 90;

/// The command that receives the `len` bytes of a file into `remote_path`.
#[doc(hidden)]
pub fn receive_command(remote_path: &str, len: u64) -> RemoteCommand {
    RemoteCommand::new("sh")
        .arg("-c")
        .arg(UPLOAD_SH)
        .arg("etcdroll-upload")
        .arg(remote_path)
        .arg(len.to_string())
}

/// How a file crosses the wire to one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Plain,
    Gzip,
}

/// The choice `--compress` makes for a host, from what the host can unpack and
/// how long its fastest answer took. `auto` compresses only off a LAN; the gzip
/// copy must then also shrink enough (`pays`).
/// `copy_ready`: the gzip copy, started in the background when the run began
/// (`Payload::start_gzip_copy`), is already made, so using it costs no wait:
/// then `auto` takes it on any link, which is what lets a thin pipe close by (no
/// RTT to tell it from a LAN) get it.
pub fn choose_wire(
    mode: Compress,
    host_has_gzip: bool,
    answered_in: Duration,
    copy_ready: bool,
) -> Wire {
    match mode {
        _ if !host_has_gzip => Wire::Plain,
        Compress::None => Wire::Plain,
        Compress::Gzip => Wire::Gzip,
        Compress::Auto if answered_in >= FAR_ANSWER || copy_ready => Wire::Gzip,
        Compress::Auto => Wire::Plain,
    }
}

impl Payload {
    /// Start making the gzip copy now, in the background (while the pre-flight
    /// runs), so that an upload need not wait for it.
    pub fn start_gzip_copy(&self) {
        if self.compress == Compress::None {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let p = self.clone();
            rt.spawn(async move {
                let _ = packed_copy(&p).await;
            });
        }
    }
}

/// Whether a gzip copy of `packed` bytes is worth sending for a file of `len`.
pub fn pays(len: u64, packed: u64) -> bool {
    packed.saturating_mul(100) <= len.saturating_mul(PAYS_PERCENT)
}

/// Makes the gzip copy of `payload` in an unlinked temp file, reading the file
/// as it is compressed and checking it is still the one the run read.
fn pack(payload: &Payload) -> Result<Packed, String> {
    let local = payload.path.display();
    let mut src =
        std::fs::File::open(&payload.path).map_err(|e| format!("cannot read {local} here: {e}"))?;
    let tmp = tempfile::tempfile()
        .map_err(|e| format!("cannot make a temp file here for the gzip copy of {local}: {e}"))?;
    let mut gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::with_capacity(CHUNK, tmp),
        flate2::Compression::new(LEVEL),
    );
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read {local} here: {e}")),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
        gz.write_all(&buf[..n])
            .map_err(|e| format!("writing the gzip copy of {local} to a temp file: {e}"))?;
    }
    if len != payload.len || hex::encode(hasher.finalize()) != payload.sha256 {
        return Err(changed(payload));
    }
    let file = gz
        .finish()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(|e| format!("writing the gzip copy of {local} to a temp file: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("the gzip copy of {local}: {e}"))?
        .len();
    Ok(Packed { file, len })
}

fn changed(payload: &Payload) -> String {
    format!(
        "{} changed on this machine since the run read it: run again",
        payload.path.display()
    )
}

/// What an upload feeds the receiver: the header line, then the file (or its
/// gzip copy) read from disk a chunk at a time.
struct Upload<'a> {
    payload: &'a Payload,
    progress: &'a (dyn Fn(u64) + Send + Sync),
    header: Option<bytes::Bytes>,
    file: Option<Arc<std::fs::File>>,
    /// Bytes of `file` to send, and how far we are.
    wire_len: u64,
    offset: u64,
    /// How it went, once started.
    wire: Option<Wire>,
}

impl FeedSource for Upload<'_> {
    fn wants_offer(&self) -> bool {
        true
    }

    fn start(
        &mut self,
        offer: Option<String>,
        answered_in: Duration,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let has_gzip = offer.as_deref() == Some("etcdroll-upload gzip");
            let ready = matches!(self.payload.gzip.get(), Some(Ok(_)));
            let mut wire = choose_wire(self.payload.compress, has_gzip, answered_in, ready);
            let mut packed = None;
            if wire == Wire::Gzip {
                let auto = self.payload.compress == Compress::Auto;
                match packed_copy(self.payload).await {
                    Ok(p) if auto && !pays(self.payload.len, p.len) => wire = Wire::Plain,
                    Ok(p) => packed = Some(p),
                    // `auto` was only ever an optimisation: send the file as it is.
                    Err(e) if auto => {
                        tracing::warn!(target: "etcdroll::ssh", "{e}; sending it uncompressed");
                        wire = Wire::Plain;
                    }
                    Err(e) => return Err(e),
                }
            }
            let (file, wire_len, header) = match packed {
                Some(p) => (
                    Arc::new(
                        p.file
                            .try_clone()
                            .map_err(|e| format!("the gzip copy: {e}"))?,
                    ),
                    p.len,
                    format!("gzip {}\n", p.len),
                ),
                None => {
                    let f = std::fs::File::open(&self.payload.path).map_err(|e| {
                        format!("cannot read {} here: {e}", self.payload.path.display())
                    })?;
                    (Arc::new(f), self.payload.len, "plain\n".to_string())
                }
            };
            tracing::info!(
                target: "etcdroll::ssh",
                "upload of {}: {} bytes as {wire:?} ({} on the wire; fastest answer {} ms)",
                self.payload.path.display(),
                self.payload.len,
                wire_len,
                answered_in.as_millis()
            );
            self.file = Some(file);
            self.wire_len = wire_len;
            self.header = Some(header.into_bytes().into());
            self.wire = Some(wire);
            Ok(())
        })
    }

    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<bytes::Bytes>, String>> {
        Box::pin(async move {
            if let Some(h) = self.header.take() {
                return Ok(Some(h));
            }
            let Some(file) = self.file.clone() else {
                return Ok(None);
            };
            let n = (self.wire_len - self.offset).min(CHUNK as u64) as usize;
            if n == 0 {
                return Ok(None);
            }
            let at = self.offset;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                file.read_exact_at(&mut buf, at).map(|_| buf)
            })
            .await
            .map_err(|e| e.to_string())?;
            let buf = read.map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => changed(self.payload),
                _ => format!("cannot read {} here: {e}", self.payload.path.display()),
            })?;
            self.offset += n as u64;
            Ok(Some(buf.into()))
        })
    }

    fn sent(&mut self, _total: u64) {
        // Progress is told in the file's bytes, whatever the wire carries.
        if self.wire_len > 0 {
            let done =
                (self.offset as u128 * self.payload.len as u128 / self.wire_len as u128) as u64;
            (self.progress)(done);
        }
    }
}

/// Gzip copies are made one at a time: each holds a compressor and its buffers
/// (about 1 MB), and on a controller's few cores several at once end no sooner,
/// so ten clusters' binaries cost the memory of one.
static PACKING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The payload's gzip copy, made by the first upload that wants it (on a
/// blocking thread, one copy at a time) while the others wait for it.
async fn packed_copy(payload: &Payload) -> Result<Arc<Packed>, String> {
    let cell = payload.gzip.clone();
    let p = payload.clone();
    cell.get_or_init(|| async move {
        let _turn = PACKING.acquire().await;
        tokio::task::spawn_blocking(move || pack(&p).map(Arc::new))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    })
    .await
    .clone()
}

impl Session {
    /// Stream `payload` into `remote_path` (created with mode 0600 by `umask`) and
    /// check its SHA-256 on the host. `progress` is called with the bytes of the
    /// file sent so far. Uses `tee` and a hash tool (see `upload.sh`), so it
    /// needs no sftp-server. The bytes go through the kept shell (no login shell
    /// per upload), gzipped where `payload.compress` says (see the module comment).
    pub async fn upload(
        &self,
        payload: &Payload,
        remote_path: &str,
        stall_limit: Duration,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), SshError> {
        self.upload_told(payload, remote_path, stall_limit, progress)
            .await
            .map(|_| ())
    }

    /// `upload`, saying how the file crossed the wire (for tests and the bench).
    pub async fn upload_told(
        &self,
        payload: &Payload,
        remote_path: &str,
        stall_limit: Duration,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Wire, SshError> {
        self.upload_streamed(payload, remote_path, stall_limit, progress)
            .await
            .map_err(|e| self.told(e))
    }

    async fn upload_streamed(
        &self,
        payload: &Payload,
        remote_path: &str,
        stall_limit: Duration,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<Wire, SshError> {
        let step = format!("upload to {remote_path}");
        let cmd = receive_command(remote_path, payload.len());
        let mut source = Upload {
            payload,
            progress,
            header: None,
            file: None,
            wire_len: 0,
            offset: 0,
            wire: None,
        };
        let (out, _) = self
            .run_fed(&step, cmd.as_str(), &mut source, stall_limit)
            .await?;
        let whole = source.wire.is_some() && source.offset == source.wire_len;
        if !whole && out.success() {
            return Err(self.channel_err(
                &step,
                format!(
                    "the remote command ended after {} of {} bytes",
                    source.offset, source.wire_len
                ),
            ));
        }
        if !out.success() {
            let said: Vec<String> = out
                .stderr_text()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            return Err(self.channel_err(
                &step,
                format!("{}: {}", out.describe_exit(), said.join("; ")),
            ));
        }
        let remote_sum = out
            .stdout_text()
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        if remote_sum != payload.sha256 {
            return Err(self.channel_err(
                &step,
                format!(
                    "checksum mismatch: sent {}, host has {remote_sum}",
                    payload.sha256
                ),
            ));
        }
        Ok(source.wire.unwrap_or(Wire::Plain))
    }
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
