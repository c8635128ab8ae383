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

/// The payload's gzip copy, made by the first upload that wants it (on a
/// blocking thread) while the others wait for it.
async fn packed_copy(payload: &Payload) -> Result<Arc<Packed>, String> {
    let cell = payload.gzip.clone();
    let p = payload.clone();
    cell.get_or_init(|| async move {
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
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Output, Stdio};

    /// Runs `upload.sh` under `shell` with `input` on its stdin, with `path_env`
    /// as PATH when given.
    fn receive_with(
        shell: &str,
        path: &std::path::Path,
        size: u64,
        input: &[u8],
        path_env: Option<&std::path::Path>,
    ) -> Output {
        let mut cmd = Command::new(shell);
        cmd.arg("-c")
            .arg(UPLOAD_SH)
            .arg("etcdroll-upload")
            .arg(path)
            .arg(size.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = path_env {
            cmd.env("PATH", p);
        }
        let mut child = cmd.spawn().unwrap();
        // The receiver may stop reading early (a refused header): ignore EPIPE.
        let _ = child.stdin.take().unwrap().write_all(input);
        child.wait_with_output().unwrap()
    }

    fn receive(shell: &str, path: &std::path::Path, size: u64, input: &[u8]) -> Output {
        receive_with(shell, path, size, input, None)
    }

    /// The receiver's output: its offer line, then the hash it printed.
    fn offer_and_hash(out: &Output) -> (String, String) {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let offer = lines.next().unwrap_or("").to_string();
        let hash = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("")
            .to_string();
        (offer, hash)
    }

    fn plain(data: &[u8]) -> Vec<u8> {
        [b"plain\n".as_slice(), data].concat()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn gzipped(stream: &[u8]) -> Vec<u8> {
        [format!("gzip {}\n", stream.len()).as_bytes(), stream].concat()
    }

    /// Bytes a shell would run or choke on, and some that do not compress.
    fn awkward_data() -> Vec<u8> {
        let mut data = b"line one\n$(touch /tmp/x)\n\xff\x00 bytes\n".repeat(1000);
        let mut next = crate::ssh::test_rng::xorshift(7);
        data.extend((0..50_000).map(|_| next() as u8));
        data
    }

    #[test]
    fn the_receiver_writes_a_private_file_and_prints_its_hash() {
        let data = awkward_data();
        let want = hex::encode(Sha256::digest(&data));
        for shell in ["sh", "dash"] {
            for (how, input) in [("plain", plain(&data)), ("gzip", gzipped(&gzip(&data)))] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("it's a file");
                let out = receive(shell, &path, data.len() as u64, &input);
                assert!(out.status.success(), "{shell} {how}: {out:?}");
                assert_eq!(std::fs::read(&path).unwrap(), data, "{shell} {how}");
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{shell} {how}");
                let (offer, hash) = offer_and_hash(&out);
                assert_eq!(offer, "etcdroll-upload gzip", "{shell} {how}");
                assert_eq!(hash, want, "{shell} {how}: the hash of the unpacked file");
            }
        }
    }

    /// A short input (the bytes stopped coming, or the disk filled) fails with 1
    /// and says how many bytes arrived; a file that cannot be written fails too.
    #[test]
    fn the_receiver_fails_when_the_file_is_not_whole() {
        for shell in ["sh", "dash"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("short");
            let out = receive(shell, &path, 10, &plain(b"abc"));
            assert_eq!(out.status.code(), Some(1), "{shell}: {out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr).trim(),
                format!("{} has 3 bytes, expected 10", path.display()),
                "{shell}"
            );
            // A whole gzip stream of the wrong file is caught by the size too.
            let out = receive(shell, &path, 10, &gzipped(&gzip(b"abc")));
            assert_eq!(out.status.code(), Some(1), "{shell}: {out:?}");
            let out = receive(shell, &dir.path().join("no/such/dir"), 3, &plain(b"abc"));
            assert!(!out.status.success(), "{shell}: {out:?}");
        }
    }

    /// A gzip stream cut short, or with a flipped byte, is refused with 3 and a
    /// message naming the file, even when what came out has the right size.
    #[test]
    fn the_receiver_refuses_a_corrupt_or_cut_gzip_stream() {
        let data = awkward_data();
        let stream = gzip(&data);
        let cut = &stream[..stream.len() / 2];
        let mut flipped = stream.clone();
        // The CRC-32 of the trailer: the data unpacks whole, to the right size.
        let at = flipped.len() - 8;
        flipped[at] ^= 0x40;
        let mut bad_data = stream.clone();
        bad_data[stream.len() / 2] ^= 0x01;
        for shell in ["sh", "dash"] {
            for (what, s) in [
                ("cut", cut),
                ("bad crc", &flipped[..]),
                ("bad data", &bad_data[..]),
            ] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("f");
                let out = receive(shell, &path, data.len() as u64, &gzipped(s));
                assert_eq!(out.status.code(), Some(3), "{shell} {what}: {out:?}");
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains(&format!(
                        "gzip -dc refused the stream for {} (corrupt or cut short)",
                        path.display()
                    )),
                    "{shell} {what}: {err}"
                );
                assert_eq!(
                    offer_and_hash(&out).1,
                    "",
                    "{shell} {what}: no hash printed"
                );
            }
        }
    }

    /// A host without gzip says so, and takes the file as it is.
    #[test]
    fn the_receiver_without_gzip_offers_plain() {
        let bin = tempfile::tempdir().unwrap();
        for tool in ["head", "tee", "wc", "grep", "sha256sum", "openssl"] {
            if let Ok(found) = which(tool) {
                std::os::unix::fs::symlink(found, bin.path().join(tool)).unwrap();
            }
        }
        let data = awkward_data();
        for shell in ["/bin/sh", "/bin/dash"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let out = receive_with(
                shell,
                &path,
                data.len() as u64,
                &plain(&data),
                Some(bin.path()),
            );
            assert!(out.status.success(), "{shell}: {out:?}");
            let (offer, hash) = offer_and_hash(&out);
            assert_eq!(offer, "etcdroll-upload plain", "{shell}");
            assert_eq!(hash, hex::encode(Sha256::digest(&data)), "{shell}");
            assert_eq!(std::fs::read(&path).unwrap(), data, "{shell}");
        }
    }

    fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
            .ok_or(())
    }

    /// A header the script does not know is refused before anything is written.
    #[test]
    fn the_receiver_refuses_an_unknown_header() {
        for input in [&b"zstd 4\nabcd"[..], b"gzip 12x\n", b""] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f");
            let out = receive("dash", &path, 4, input);
            assert_eq!(out.status.code(), Some(2), "{input:?}: {out:?}");
            assert!(!path.exists(), "{input:?}");
        }
    }

    /// The command line built for the host runs the receiver with its arguments
    /// unchanged, whatever the path holds.
    #[test]
    fn the_receive_command_passes_the_path_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a b; $(id) 'q'");
        let line = receive_command(&path.to_string_lossy(), 4);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(line.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&plain(b"data"))
            .unwrap();
        assert!(child.wait_with_output().unwrap().status.success());
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    /// `auto` compresses off a LAN only, and never for a host without gzip;
    /// `gzip` and `none` do as they say.
    #[test]
    fn the_auto_rule() {
        let lan = Duration::from_millis(4);
        let far = Duration::from_millis(100);
        assert_eq!(choose_wire(Compress::Auto, true, lan, false), Wire::Plain);
        assert_eq!(
            choose_wire(
                Compress::Auto,
                true,
                FAR_ANSWER - Duration::from_micros(1),
                false
            ),
            Wire::Plain
        );
        assert_eq!(
            choose_wire(Compress::Auto, true, FAR_ANSWER, false),
            Wire::Gzip
        );
        assert_eq!(choose_wire(Compress::Auto, true, far, false), Wire::Gzip);
        assert_eq!(choose_wire(Compress::Auto, false, far, true), Wire::Plain);
        // A copy already made costs no wait: taken on a LAN-like answer too (a
        // thin pipe close by looks like a LAN).
        assert_eq!(choose_wire(Compress::Auto, true, lan, true), Wire::Gzip);
        assert_eq!(choose_wire(Compress::Gzip, true, lan, false), Wire::Gzip);
        assert_eq!(choose_wire(Compress::Gzip, false, lan, true), Wire::Plain);
        assert_eq!(choose_wire(Compress::None, true, far, true), Wire::Plain);
        // The copy must shrink the file to 90% or less.
        assert!(pays(24_000_000, 9_100_000));
        assert!(pays(1000, 900));
        assert!(!pays(1000, 901));
        assert!(!pays(1000, 1020));
        assert!(!pays(0, 20));
        assert_eq!("auto".parse(), Ok(Compress::Auto));
        assert_eq!("none".parse(), Ok(Compress::None));
        assert!("zstd"
            .parse::<Compress>()
            .unwrap_err()
            .contains("auto, gzip or none"));
    }

    /// The gzip copy unpacks to the file, and a file changed since the run read
    /// it is refused rather than sent.
    #[test]
    fn the_packed_copy_is_the_file_and_notices_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd");
        let data = awkward_data();
        std::fs::write(&path, &data).unwrap();
        let payload = Payload::read(&path).unwrap();
        assert_eq!(payload.len, data.len() as u64);
        assert_eq!(payload.sha256, hex::encode(Sha256::digest(&data)));
        let packed = pack(&payload).unwrap();
        let mut stream = vec![0u8; packed.len as usize];
        packed.file.read_exact_at(&mut stream, 0).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&stream[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        std::fs::write(&path, b"another binary").unwrap();
        assert_eq!(
            pack(&payload).err().unwrap(),
            format!(
                "{} changed on this machine since the run read it: run again",
                path.display()
            )
        );
    }
}
