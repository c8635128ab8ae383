//! The known_hosts files on disk: where OpenSSH looks for them, and recording a
//! newly accepted key (`--accept-new-host-keys`) the way OpenSSH writes one.

use std::path::{Path, PathBuf};

use super::{key_type, lookup_name, KnownHostsError};

/// Append a key, creating the file (0600) and its directory (0700) if needed.
pub fn append(
    path: &Path,
    host: &str,
    port: u16,
    algorithm: &str,
    key_b64: &str,
) -> Result<(), KnownHostsError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let werr = |source| KnownHostsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(werr)?;
    }
    let needs_newline = std::fs::read(path)
        .map(|b| !b.is_empty() && !b.ends_with(b"\n"))
        .unwrap_or(false);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(werr)?;
    let line = format!(
        "{}{} {} {key_b64}\n",
        if needs_newline { "\n" } else { "" },
        lookup_name(host, port),
        key_type(algorithm)
    );
    f.write_all(line.as_bytes()).map_err(werr)
}

/// Where OpenSSH looks by default.
pub fn default_paths() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let ssh = Path::new(&home).join(".ssh");
        v.push(ssh.join("known_hosts"));
        v.push(ssh.join("known_hosts2"));
    }
    v.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    v.push(PathBuf::from("/etc/ssh/ssh_known_hosts2"));
    v
}
