//! The data that crosses a session: what a remote command gave back, and a file
//! to upload. Plain values, so the layers above can hold and test them without
//! a connection.

use std::path::Path;

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

/// A file to upload, read and hashed once however many hosts receive it.
#[derive(Clone)]
pub struct Payload {
    pub bytes: bytes::Bytes,
    pub sha256: String,
}

impl Payload {
    pub fn read(path: &Path) -> std::io::Result<Payload> {
        let bytes = std::fs::read(path)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(Payload {
            bytes: bytes.into(),
            sha256,
        })
    }
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}
