//! Uploads: a file streamed into a path on the host through the kept shell (no
//! sftp-server, no login shell per upload), checked on arrival by its size and
//! SHA-256. The receiving end is `upload.sh`, given the path and size as
//! arguments.

use std::time::Duration;

use super::{Payload, RemoteCommand, Session, SshError};

/// The receiving end of an upload, run on the host (see the script's comment).
const UPLOAD_SH: &str = include_str!("upload.sh");

/// The command that receives `len` bytes into `remote_path`.
fn receive_command(remote_path: &str, len: u64) -> RemoteCommand {
    RemoteCommand::new("sh")
        .arg("-c")
        .arg(UPLOAD_SH)
        .arg("etcdroll-upload")
        .arg(remote_path)
        .arg(len.to_string())
}

impl Session {
    /// Stream `payload` into `remote_path` (created with mode 0600 by `umask`) and
    /// check its SHA-256 on the host. `progress` is called with the bytes sent so far.
    /// Uses `tee` and a hash tool (see `upload.sh`), so it needs no sftp-server.
    /// The bytes go through the kept shell (no login shell per upload).
    pub async fn upload(
        &self,
        payload: &Payload,
        remote_path: &str,
        stall_limit: Duration,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), SshError> {
        self.upload_whole(payload, remote_path, stall_limit, progress)
            .await
            .map_err(|e| self.told(e))
    }

    async fn upload_whole(
        &self,
        payload: &Payload,
        remote_path: &str,
        stall_limit: Duration,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), SshError> {
        let step = format!("upload to {remote_path}");
        let cmd = receive_command(remote_path, payload.len());
        let (out, sent) = self
            .run_fed(&step, cmd.as_str(), &payload.bytes, stall_limit, progress)
            .await?;
        if sent < payload.len() && out.success() {
            return Err(self.channel_err(
                &step,
                format!(
                    "the remote command ended after {sent} of {} bytes",
                    payload.len()
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Output, Stdio};

    /// Runs `upload.sh` under `shell` with `input` on its stdin.
    fn receive(shell: &str, path: &std::path::Path, size: u64, input: &[u8]) -> Output {
        let mut child = Command::new(shell)
            .arg("-c")
            .arg(UPLOAD_SH)
            .arg("etcdroll-upload")
            .arg(path)
            .arg(size.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn the_receiver_writes_a_private_file_and_prints_its_hash() {
        let data = b"line one\n$(touch /tmp/x)\n\xff\x00 bytes";
        for shell in ["sh", "dash"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("it's a file");
            let out = receive(shell, &path, data.len() as u64, data);
            assert!(out.status.success(), "{shell}: {out:?}");
            assert_eq!(std::fs::read(&path).unwrap(), data, "{shell}");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{shell}");
            let printed = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                printed.split_whitespace().next().unwrap_or(""),
                hex::encode(Sha256::digest(data)),
                "{shell}"
            );
        }
    }

    /// A short input (the bytes stopped coming, or the disk filled) fails with 1
    /// and says how many bytes arrived; a file that cannot be written fails too.
    #[test]
    fn the_receiver_fails_when_the_file_is_not_whole() {
        for shell in ["sh", "dash"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("short");
            let out = receive(shell, &path, 10, b"abc");
            assert_eq!(out.status.code(), Some(1), "{shell}: {out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr).trim(),
                format!("{} has 3 bytes, expected 10", path.display()),
                "{shell}"
            );
            let out = receive(shell, &dir.path().join("no/such/dir"), 3, b"abc");
            assert!(!out.status.success(), "{shell}: {out:?}");
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
        child.stdin.take().unwrap().write_all(b"data").unwrap();
        assert!(child.wait_with_output().unwrap().status.success());
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
