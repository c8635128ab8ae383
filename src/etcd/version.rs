//! etcd versions and the upgrade paths etcd supports.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parse "3.4.23", "v3.5.1", "3.5" (patch 0), "3.6.0-rc.1" (pre-release dropped).
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().trim_start_matches('v');
        let core = s.split(['-', '+']).next()?;
        let mut it = core.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = match it.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if it.next().is_some() {
            return None;
        }
        Some(Version::new(major, minor, patch))
    }

    /// The version from `etcd --version` output ("etcd Version: 3.4.23" on 3.x,
    /// "etcd Version: 2.3.8" on 2.3).
    pub fn from_version_output(out: &str) -> Option<Version> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix("etcd Version:"))
            .and_then(Version::parse)
    }

    /// The same major.minor with patch 0: what the cluster version reports.
    pub fn minor_floor(self) -> Version {
        Version::new(self.major, self.minor, 0)
    }

    pub fn same_minor(self, other: Version) -> bool {
        self.major == other.major && self.minor == other.minor
    }

    /// True when this etcd writes v3 data (member/snap/db) and needs it to start.
    pub fn needs_v3_data(self) -> bool {
        self >= Version::new(3, 2, 0)
    }

    /// True when the v3 gRPC API (and its JSON gateway) is the way to talk to it.
    pub fn has_v3_api(self) -> bool {
        self >= Version::new(3, 0, 0)
    }

    /// etcd ≥ 3.3 can hand leadership to a chosen member before it stops.
    pub fn can_move_leader(self) -> bool {
        self >= Version::new(3, 3, 0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What moving a member from one version to another is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpgradeStep {
    /// Already on the target.
    AlreadyThere,
    /// A newer patch of the same minor.
    Patch,
    /// The next minor (or 2.3 → 3.0).
    NextMinor,
    /// Not supported; the reason says what to do instead.
    Refused(String),
}

impl UpgradeStep {
    pub fn is_refused(&self) -> bool {
        matches!(self, UpgradeStep::Refused(_))
    }
}

/// What `from → to` is, by the path rules of `rules.rs`: from 2.3 to 3.0, then one
/// minor at a time with the floors the guides set, or a patch within a minor;
/// never down (that is `rollback`, and only while mixed).
pub fn upgrade_step(from: Version, to: Version) -> UpgradeStep {
    use UpgradeStep::*;
    if from == to {
        return AlreadyThere;
    }
    if let Some(why) = super::rules::path_refusal(from, to) {
        return Refused(why);
    }
    if from.same_minor(to) {
        Patch
    } else {
        NextMinor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parses_versions() {
        assert_eq!(v("3.4.23"), Version::new(3, 4, 23));
        assert_eq!(v("v3.5.1"), Version::new(3, 5, 1));
        assert_eq!(v("3.5"), Version::new(3, 5, 0));
        assert_eq!(v("3.6.0-rc.1"), Version::new(3, 6, 0));
        assert_eq!(Version::parse("banana"), None);
        assert_eq!(Version::parse("3.4.5.6"), None);
        let out = "etcd Version: 3.5.1\nGit SHA: e8732fb5f\nGo Version: go1.16.3\n";
        assert_eq!(Version::from_version_output(out), Some(v("3.5.1")));
        assert_eq!(Version::from_version_output("not etcd"), None);
    }

    #[test]
    fn upgrade_paths_follow_the_guides() {
        assert_eq!(
            upgrade_step(v("2.3.8"), v("3.0.17")),
            UpgradeStep::NextMinor
        );
        assert!(upgrade_step(v("2.2.5"), v("3.0.17")).is_refused());
        assert!(upgrade_step(v("2.3.8"), v("3.1.0")).is_refused());
        assert!(upgrade_step(v("3.3.1"), v("3.5.1")).is_refused());
        assert_eq!(
            upgrade_step(v("3.4.23"), v("3.5.1")),
            UpgradeStep::NextMinor
        );
        assert_eq!(upgrade_step(v("3.5.0"), v("3.5.1")), UpgradeStep::Patch);
        assert_eq!(
            upgrade_step(v("3.5.1"), v("3.5.1")),
            UpgradeStep::AlreadyThere
        );
        assert!(upgrade_step(v("3.5.1"), v("3.4.23")).is_refused());
        assert!(upgrade_step(v("3.5.1"), v("3.6.0")).is_refused());
        assert!(upgrade_step(v("3.5.26"), v("3.6.0")).is_refused());
        assert_eq!(
            upgrade_step(v("3.5.32"), v("3.6.4")),
            UpgradeStep::NextMinor
        );
        assert!(upgrade_step(v("3.4.23"), v("4.0.0")).is_refused());
    }

    #[test]
    fn refusals_say_what_to_do() {
        let UpgradeStep::Refused(why) = upgrade_step(v("3.3.1"), v("3.5.1")) else {
            panic!("should be refused")
        };
        assert!(why.contains("one minor at a time"), "{why}");
        assert!(why.contains("3.4 next"), "{why}");
    }

    #[test]
    fn v3_data_rule() {
        assert!(v("3.2.0").needs_v3_data());
        assert!(!v("3.1.9").needs_v3_data());
        assert!(v("3.5.1").needs_v3_data());
    }
}
