//! `~/.ssh/config` (or `-F FILE`), resolved by OpenSSH itself (`ssh -G`), so Host
//! patterns, Match, Include and tokens behave exactly as they do for `ssh`.

use std::path::{Path, PathBuf};

/// What the config says for one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SshConfigEntry {
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    pub proxy_jump: Option<String>,
    pub known_hosts_files: Vec<PathBuf>,
}

/// The config file in force: `-F FILE`, else `~/.ssh/config` if it exists.
pub fn config_file(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".ssh/config");
    p.exists().then_some(p)
}

/// Resolve `host` through `ssh -G -F FILE host`. Err when `ssh` cannot run or
/// rejects the file (its message names the problem).
pub async fn resolve(host: &str, file: &Path) -> Result<SshConfigEntry, String> {
    let out = tokio::process::Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(file)
        .arg("--")
        .arg(host)
        .output()
        .await
        .map_err(|e| format!("cannot run `ssh -G` to read {}: {e}", file.display()))?;
    if !out.status.success() {
        return Err(format!(
            "ssh_config {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout), host))
}

fn parse(text: &str, original: &str) -> SshConfigEntry {
    let mut e = SshConfigEntry::default();
    let mut identity: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        let value = value.trim();
        match key {
            "hostname" => e.hostname = Some(value.to_string()),
            "user" => e.user = Some(value.to_string()),
            "port" => e.port = value.parse().ok(),
            "identityfile" => identity.push(value.to_string()),
            "proxyjump" if value != "none" => e.proxy_jump = Some(value.to_string()),
            "userknownhostsfile" => e
                .known_hosts_files
                .extend(value.split_whitespace().map(expand)),
            _ => {}
        }
    }
    // `ssh -G` prints IdentityFile with its %-tokens unexpanded.
    let tokens = |p: &str| {
        let mut out = String::new();
        let mut chars = p.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('h') => out.push_str(e.hostname.as_deref().unwrap_or(original)),
                Some('n') => out.push_str(original),
                Some('r') => out.push_str(e.user.as_deref().unwrap_or("")),
                Some('p') => out.push_str(&e.port.unwrap_or(22).to_string()),
                Some('u') => out.push_str(&std::env::var("USER").unwrap_or_default()),
                Some('d') => out.push_str(&std::env::var("HOME").unwrap_or_default()),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    };
    e.identity_files = identity.iter().map(|p| expand(&tokens(p))).collect();
    e
}

fn expand(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_like_openssh() {
        if std::process::Command::new("ssh")
            .arg("-V")
            .output()
            .is_err()
        {
            eprintln!("\n!!!!! SKIPPED: no ssh client !!!!!\n");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            "Host db-*\n  HostName 10.1.2.3\n  User ops\n  Port 2200\n  ProxyJump jump@bastion:22\n  IdentityFile /keys/%r@%h\n\
             Host !db-9 *\n  UserKnownHostsFile /kh/one /kh/two\n",
        )
        .unwrap();
        let e = resolve("db-1", &cfg).await.unwrap();
        assert_eq!(e.hostname.as_deref(), Some("10.1.2.3"));
        assert_eq!(e.user.as_deref(), Some("ops"));
        assert_eq!(e.port, Some(2200));
        assert_eq!(e.proxy_jump.as_deref(), Some("jump@bastion:22"));
        assert_eq!(e.identity_files, vec![PathBuf::from("/keys/ops@10.1.2.3")]);
        assert_eq!(
            e.known_hosts_files,
            vec![PathBuf::from("/kh/one"), PathBuf::from("/kh/two")]
        );
        let other = resolve("web", &cfg).await.unwrap();
        assert_eq!(other.proxy_jump, None);
        assert_eq!(other.hostname.as_deref(), Some("web"));
    }
}
