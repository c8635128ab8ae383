//! The binaries a run upgrades to. They are files on this machine: each is read
//! once, its version read by running it here (or stated when it cannot run here),
//! and several of them make a path, one hop per minor.
//!
//! Each cluster of the inventory may name its own (`etcdroll_binary`,
//! `etcdroll_etcdctl` on its hosts, e.g. for another architecture); a cluster
//! that names none takes the run's `--binary`.

use std::path::{Path, PathBuf};

use crate::etcd::{upgrade_step, UpgradeStep, Version};
use crate::inventory::Host;
use crate::ssh::{Compress, Payload};
use crate::upgrade::target::Target;

/// The new binaries as the operator names them: one etcd per hop, the etcdctl
/// for a single one, and the version when the binary cannot run here.
#[derive(Debug, Clone, Default)]
pub struct TargetBinaries {
    pub binaries: Vec<PathBuf>,
    pub etcdctl: Option<PathBuf>,
    pub target_version: Option<String>,
    /// How they cross the wire to the hosts (`--compress`).
    pub compress: Compress,
}

/// Why the binaries cannot be the run's target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("--target-version {0:?} is not a version like 3.5.1")]
    NotAVersion(String),
    #[error("--binary is required")]
    NoBinary,
    #[error(
        "with several --binary, each takes the etcdctl beside it and its own version: \
         --etcdctl and --target-version apply to a single --binary"
    )]
    PathWithSingleOptions,
    #[error("--binary: two binaries are etcd {0}: give each version once")]
    SameVersionTwice(Version),
    #[error("--binary path: {from} → {to} is not an upgrade etcd supports: {why}")]
    UnsupportedHop {
        from: Version,
        to: Version,
        why: String,
    },
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot run {} here to read its version ({source}); if it is for another architecture, pass --target-version",
        .path.display()
    )]
    CannotRunHere {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} --version does not print an etcd version: is it an etcd binary? (pass --target-version if it cannot run here)",
        .0.display()
    )]
    NotEtcd(PathBuf),
}

/// Why the clusters of the inventory cannot each be given a target.
#[derive(Debug, thiserror::Error)]
pub enum ClusterTargetError {
    #[error(
        "cluster {cluster}: its hosts name different binaries (etcdroll_binary / etcdroll_etcdctl): {}; \
         a cluster is upgraded to one binary, so set them on the cluster's group",
        .by_host.join(", ")
    )]
    DifferentBinaries {
        cluster: String,
        /// `host: binary` for each host of the cluster.
        by_host: Vec<String>,
    },
    #[error("cluster {0}: etcdroll_etcdctl is set but etcdroll_binary is not")]
    EtcdctlWithoutBinary(String),
    #[error("cluster {cluster} (etcdroll_binary): {source}")]
    OwnBinary {
        cluster: String,
        source: TargetError,
    },
    #[error("--binary is required (or etcdroll_binary for cluster {0} in the inventory)")]
    NoBinary(String),
}

impl TargetBinaries {
    /// The target version: stated, or read by running the binary here (the
    /// lowest, with several). None without binaries.
    pub fn version(&self) -> Result<Option<Version>, TargetError> {
        if let Some(v) = &self.target_version {
            return Version::parse(v)
                .map(Some)
                .ok_or_else(|| TargetError::NotAVersion(v.clone()));
        }
        let mut lowest: Option<Version> = None;
        for bin in &self.binaries {
            let v = binary_version(bin)?;
            lowest = Some(lowest.map_or(v, |l| l.min(v)));
        }
        Ok(lowest)
    }

    /// Reads the binaries into the run's target.
    pub fn load(&self) -> Result<Target, TargetError> {
        if self.binaries.len() > 1 {
            return self.load_path();
        }
        let version = self.version()?.ok_or(TargetError::NoBinary)?;
        let read = |p: &Path| read_payload(p, self.compress);
        let etcd = read(self.binaries.first().ok_or(TargetError::NoBinary)?)?;
        let etcdctl = self.etcdctl.as_deref().map(read).transpose()?;
        Ok(Target::new(version, etcd, etcdctl))
    }

    /// Several binaries: a path, one hop per binary, ordered by version, each
    /// step one etcd allows, each binary with the etcdctl beside it (if any).
    fn load_path(&self) -> Result<Target, TargetError> {
        if self.etcdctl.is_some() || self.target_version.is_some() {
            return Err(TargetError::PathWithSingleOptions);
        }
        let mut hops = Vec::new();
        for bin in &self.binaries {
            let version = binary_version(bin)?;
            let ctl = bin.with_file_name("etcdctl");
            let read = |p: &Path| read_payload(p, self.compress);
            let etcdctl = ctl.is_file().then(|| read(&ctl)).transpose()?;
            hops.push(Target::new(version, read(bin)?, etcdctl));
        }
        hops.sort_by_key(|t| t.version);
        for pair in hops.windows(2) {
            let (from, to) = (pair[0].version, pair[1].version);
            match upgrade_step(from, to) {
                UpgradeStep::Patch | UpgradeStep::NextMinor => {}
                UpgradeStep::AlreadyThere => return Err(TargetError::SameVersionTwice(from)),
                UpgradeStep::Refused(why) => {
                    return Err(TargetError::UnsupportedHop { from, to, why })
                }
            }
        }
        let mut first = hops.remove(0);
        first.then = hops;
        Ok(first)
    }
}

/// A binary's size and SHA-256, read by streaming it once; its bytes are read
/// again from disk as each upload sends them (never held in memory).
/// Its gzip copy is started now, in the background, so that it is ready by the
/// time the uploads start (connecting, the lock and the pre-flight come first):
/// `--compress auto` takes it only if it is (see `ssh::upload`).
fn read_payload(path: &Path, compress: Compress) -> Result<Payload, TargetError> {
    let payload = Payload::read(path)
        .map(|p| p.with_compress(compress))
        .map_err(|source| TargetError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
    payload.start_gzip_copy();
    Ok(payload)
}

/// An etcd binary's version, read by running it here.
fn binary_version(bin: &Path) -> Result<Version, TargetError> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|source| TargetError::CannotRunHere {
            path: bin.to_path_buf(),
            source,
        })?;
    Version::from_version_output(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| TargetError::NotEtcd(bin.to_path_buf()))
}

/// A cluster's own new binaries (`etcdroll_binary`, `etcdroll_etcdctl`).
type OwnBinaries = Option<(PathBuf, Option<PathBuf>)>;

/// The clusters of the inventory in order, each with its own new binaries if its
/// hosts name them; all hosts of a cluster must name the same.
fn cluster_binaries(hosts: &[Host]) -> Result<Vec<(String, OwnBinaries)>, ClusterTargetError> {
    let mut clusters: Vec<(&str, Vec<&Host>)> = Vec::new();
    for h in hosts {
        match clusters.iter_mut().find(|(n, _)| *n == h.cluster) {
            Some((_, v)) => v.push(h),
            None => clusters.push((&h.cluster, vec![h])),
        }
    }
    let mut out = Vec::new();
    for (name, members) in clusters {
        let mut set: Vec<(Option<&PathBuf>, Option<&PathBuf>)> = members
            .iter()
            .map(|h| (h.new_binary.as_ref(), h.new_etcdctl.as_ref()))
            .collect();
        set.dedup();
        if set.len() > 1 {
            let by_host = members
                .iter()
                .map(|h| {
                    let b = h.new_binary.as_ref();
                    format!(
                        "{}: {}",
                        h.name,
                        b.map_or("(--binary)".to_string(), |p| p.display().to_string())
                    )
                })
                .collect();
            return Err(ClusterTargetError::DifferentBinaries {
                cluster: name.to_string(),
                by_host,
            });
        }
        let own = match set.first().copied() {
            Some((Some(binary), etcdctl)) => Some((binary.clone(), etcdctl.cloned())),
            Some((None, Some(_))) => {
                return Err(ClusterTargetError::EtcdctlWithoutBinary(name.to_string()))
            }
            _ => None,
        };
        out.push((name.to_string(), own));
    }
    Ok(out)
}

/// The binary each cluster is upgraded to: its own, else `given` (the run's
/// `--binary`). Each file is read once; `run` gives the etcdctl and version that
/// apply to a cluster's own binary when its hosts name none.
pub fn cluster_targets(
    hosts: &[Host],
    run: &TargetBinaries,
    given: Option<Target>,
) -> Result<Vec<(String, Target)>, ClusterTargetError> {
    let mut loaded: Vec<((PathBuf, Option<PathBuf>), Target)> = Vec::new();
    let mut out = Vec::new();
    for (name, own) in cluster_binaries(hosts)? {
        let target = match own {
            Some((binary, etcdctl)) => {
                let key = (binary, etcdctl.or(run.etcdctl.clone()));
                match loaded.iter().find(|(k, _)| *k == key) {
                    Some((_, t)) => t.clone(),
                    None => {
                        let t = TargetBinaries {
                            binaries: vec![key.0.clone()],
                            etcdctl: key.1.clone(),
                            target_version: run.target_version.clone(),
                            compress: run.compress,
                        }
                        .load()
                        .map_err(|source| {
                            ClusterTargetError::OwnBinary {
                                cluster: name.clone(),
                                source,
                            }
                        })?;
                        loaded.push((key, t.clone()));
                        t
                    }
                }
            }
            None => given
                .clone()
                .ok_or_else(|| ClusterTargetError::NoBinary(name.clone()))?,
        };
        out.push((name, target));
    }
    Ok(out)
}

/// The version each cluster is checked against: its own binary's, else `given`
/// (that of `--binary` / `--target-version`; none: health only).
pub fn cluster_versions(
    hosts: &[Host],
    run: &TargetBinaries,
    given: Option<Version>,
) -> Result<Vec<(String, Option<Version>)>, ClusterTargetError> {
    let mut out = Vec::new();
    for (name, own) in cluster_binaries(hosts)? {
        let version = match own {
            Some((binary, _)) => TargetBinaries {
                binaries: vec![binary],
                etcdctl: None,
                target_version: run.target_version.clone(),
                compress: run.compress,
            }
            .version()
            .map_err(|source| ClusterTargetError::OwnBinary {
                cluster: name.clone(),
                source,
            })?,
            None => given,
        };
        out.push((name, version));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_before() {
        let several = TargetBinaries {
            binaries: vec!["/a/etcd".into(), "/b/etcd".into()],
            etcdctl: Some("/a/etcdctl".into()),
            target_version: None,
            compress: Compress::Auto,
        };
        assert_eq!(
            several.load().err().unwrap().to_string(),
            "with several --binary, each takes the etcdctl beside it and its own version: \
             --etcdctl and --target-version apply to a single --binary"
        );
        let stated = TargetBinaries {
            target_version: Some("3.x".into()),
            ..TargetBinaries::default()
        };
        assert_eq!(
            stated.version().unwrap_err().to_string(),
            r#"--target-version "3.x" is not a version like 3.5.1"#
        );
        assert_eq!(
            TargetBinaries::default().load().err().unwrap().to_string(),
            "--binary is required"
        );
        let missing = TargetBinaries {
            binaries: vec!["/nonexistent/etcd".into()],
            target_version: Some("3.5.1".into()),
            ..TargetBinaries::default()
        };
        assert!(missing
            .load()
            .err()
            .unwrap()
            .to_string()
            .starts_with("cannot read /nonexistent/etcd: "));
        let err = ClusterTargetError::DifferentBinaries {
            cluster: "east".into(),
            by_host: vec!["e1: /x/etcd".into(), "e2: (--binary)".into()],
        };
        assert_eq!(
            err.to_string(),
            "cluster east: its hosts name different binaries (etcdroll_binary / etcdroll_etcdctl): \
             e1: /x/etcd, e2: (--binary); a cluster is upgraded to one binary, so set them on the cluster's group"
        );
    }
}
