// TEMPORARY STUB
use std::path::{Path, PathBuf};
pub struct KnownHosts;
#[derive(Debug)]
pub struct KnownHostsError;
impl std::fmt::Display for KnownHostsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("x")
    }
}
impl KnownHosts {
    pub fn load(_paths: &[PathBuf]) -> Result<KnownHosts, KnownHostsError> {
        Ok(KnownHosts)
    }
    pub fn check(
        &self,
        _host: &str,
        _port: u16,
        _algorithm: &str,
        _key_b64: &str,
    ) -> HostKeyStatus {
        HostKeyStatus::Unknown
    }
    pub fn known_algorithms(&self, _host: &str, _port: u16) -> Vec<String> {
        vec![]
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    Known {
        file: PathBuf,
        line: usize,
    },
    Unknown,
    OtherTypesKnown {
        algorithms: Vec<String>,
    },
    Changed {
        file: PathBuf,
        line: usize,
        expected_fingerprint: String,
    },
    Revoked {
        file: PathBuf,
        line: usize,
    },
}
pub fn fingerprint_sha256(_key_b64: &str) -> String {
    String::new()
}
pub fn lookup_name(host: &str, _port: u16) -> String {
    host.into()
}
pub fn append(
    _path: &Path,
    _host: &str,
    _port: u16,
    _algorithm: &str,
    _key_b64: &str,
) -> Result<(), KnownHostsError> {
    Ok(())
}
pub fn default_paths() -> Vec<PathBuf> {
    vec![]
}
