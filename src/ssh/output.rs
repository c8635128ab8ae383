//! The data that crosses a session: what a remote command gave back, and a file
//! to upload. Plain values, so the layers above can hold and test them without
//! a connection.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The outcome of one remote command.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    pub exit_status: Option<u32>,
    pub exit_signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// "exit 3" / "killed by TERM" / "no exit status", for messages.
    pub fn describe_exit(&self) -> String {
        match (&self.exit_status, &self.exit_signal) {
            (Some(s), _) => format!("exit {s}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "no exit status".to_string(),
        }
    }
    /// The last non-empty line of stderr (or stdout), for one-line error messages.
    pub fn last_error_line(&self) -> String {
        let pick = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string())
        };
        pick(&self.stderr)
            .or_else(|| pick(&self.stdout))
            .unwrap_or_default()
    }
}

/// A file to upload: where it is, its size and its SHA-256, taken by reading it
/// once when the run loads it. The bytes themselves are read from disk again as
/// each upload sends them (`upload.rs`), so memory does not grow with the number
/// of hosts or clusters; a gzip copy, when one is wanted, is made once per file
/// into an unlinked temp file and shared by every host that takes it.
#[derive(Clone)]
pub struct Payload {
    pub path: Arc<Path>,
    pub len: u64,
    pub sha256: String,
    /// How it goes over the wire (`--compress`).
    pub compress: Compress,
    /// The gzip copy, made on first need.
    pub(super) gzip: Arc<tokio::sync::OnceCell<Result<Arc<Packed>, String>>>,
}

/// A payload's compressed copy on this machine: an unlinked temp file (gone when
/// the last upload drops it) and its length.
pub(super) struct Packed {
    pub file: std::fs::File,
    pub len: u64,
}

/// How uploads go over the wire (`--compress`; see `upload.rs` for `auto`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compress {
    /// gzip to a host that has `gzip`, unless the link looks like a LAN or
    /// the file does not shrink enough to pay.
    #[default]
    Auto,
    /// gzip to every host that has `gzip` (the others get it as it is).
    Gzip,
    /// Never compressed.
    None,
}

impl std::str::FromStr for Compress {
    type Err = String;
    fn from_str(s: &str) -> Result<Compress, String> {
        match s {
            "auto" => Ok(Compress::Auto),
            "gzip" => Ok(Compress::Gzip),
            "none" => Ok(Compress::None),
            other => Err(format!("{other:?}: expected auto, gzip or none")),
        }
    }
}

impl Payload {
    /// Reads `path` once, streaming, for its size and SHA-256 (never held whole).
    pub fn read(path: &Path) -> std::io::Result<Payload> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        Ok(Payload {
            path: Arc::from(path),
            len,
            sha256: hex::encode(hasher.finalize()),
            compress: Compress::default(),
            gzip: Default::default(),
        })
    }

    /// No file: the target of a rollback or a restart, which uploads nothing.
    pub fn empty() -> Payload {
        Payload {
            path: Arc::from(Path::new("")),
            len: 0,
            sha256: String::new(),
            compress: Compress::None,
            gzip: Default::default(),
        }
    }

    /// The same file, sent as `compress` says.
    pub fn with_compress(mut self, compress: Compress) -> Payload {
        self.compress = compress;
        self
    }

    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
