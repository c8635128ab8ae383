//! The rules of etcd's upgrade guides, as one table: each row names the guide it
//! comes from and has a unit test of its own. The path rules depend only on the
//! versions (is `from → to` an upgrade etcd supports?); the member rules also on
//! what the pre-flight saw of the member (its data dir, auth, flags, v2 data).

use super::Version;

/// What the member rules look at.
#[derive(Clone, Debug, Default)]
pub struct MemberInput {
    /// `member/snap/db` exists: the data dir holds v3 data.
    pub has_v3_data: bool,
    /// None when the member cannot say.
    pub auth_enabled: Option<bool>,
    /// The member's settings that rules ask about, as read from its command
    /// line (`--enable-v2=true`) and environment (`ETCD_ENABLE_V2=true`), each
    /// with where it was read.
    pub settings: Vec<Setting>,
    /// `etcdutl check v2store` (3.5.32+): Some(false) when it found custom v2
    /// data, Some(true) when none, None when it could not be run.
    pub v2store_clean: Option<bool>,
}

/// One flag or environment variable of the running member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// As written: `--enable-v2`, `--enable-v2=true`, `ETCD_ENABLE_V2=true`.
    pub text: String,
    /// Where: "/proc/PID/cmdline" or "/proc/PID/environ".
    pub source: String,
}

impl Setting {
    fn name_and_value(&self) -> (String, String) {
        let t = self.text.trim_start_matches('-');
        let (name, value) = t.split_once('=').unwrap_or((t, "true"));
        // ETCD_ENABLE_V2 and --enable-v2 are one setting.
        let name = name
            .strip_prefix("ETCD_")
            .map(|n| n.to_ascii_lowercase().replace('_', "-"))
            .unwrap_or_else(|| name.to_string());
        (name, value.to_ascii_lowercase())
    }

    fn is_on(&self, name: &str) -> bool {
        let (n, v) = self.name_and_value();
        n == name && v != "false" && v != "0"
    }
}

/// A rule of the guides.
pub struct Rule {
    pub name: &'static str,
    /// The guide it comes from.
    pub source: &'static str,
    pub check: Check,
}

pub enum Check {
    /// On the versions alone: Some(reason) refuses.
    Path(fn(Version, Version) -> Option<String>),
    /// On a member: Some(reason) refuses.
    Member(fn(Version, Version, &MemberInput) -> Option<String>),
}

const GUIDE_2_3: &str = "etcd upgrade guide 2.3 → 3.0 (shared/reference)";

/// etcd's 3.6 upgrade guide asks every member to run this 3.5 patch first. It
/// was 3.5.20 (learner members), then 3.5.24 and 3.5.26 (stale members in the
/// v2 store), and 3.5.32 since 2026; kubespray still checks 3.5.26.
pub const MIN_3_5_FOR_3_6: Version = Version::new(3, 5, 32);
/// etcd's 3.7 upgrade guide: every member on 3.6.11 or later first.
pub const MIN_3_6_FOR_3_7: Version = Version::new(3, 6, 11);

pub const RULES: &[Rule] = &[
    Rule {
        name: "never down",
        source: "every etcd upgrade guide (downgrade only while mixed, by rollback)",
        check: Check::Path(|from, to| {
            (to < from).then(|| {
                format!(
                    "{to} is older than the running {from}: a downgrade is not an upgrade \
                     (use `etcdroll rollback` while the cluster version is still the old one)"
                )
            })
        }),
    },
    Rule {
        name: "2.3 first",
        source: GUIDE_2_3,
        check: Check::Path(|from, to| {
            (from.major == 2 && from.minor < 3 && to.major >= 3).then(|| {
                format!(
                    "the running cluster must be 2.3 or greater to upgrade to 3.0 (it is {from}): upgrade to 2.3 first"
                )
            })
        }),
    },
    Rule {
        name: "one minor at a time",
        source: "every etcd upgrade guide (\"upgrade one minor version at a time\")",
        check: Check::Path(|from, to| {
            if to <= from || from.same_minor(to) {
                return None;
            }
            let next = if from.major == 2 {
                Version::new(3, 0, 0)
            } else {
                Version::new(from.major, from.minor + 1, 0)
            };
            (to.minor_floor() != next).then(|| {
                format!(
                    "{from} → {to} skips minor versions: etcd supports upgrading one minor at a time \
                     ({}.{} next)",
                    next.major, next.minor
                )
            })
        }),
    },
    Rule {
        name: "3.5 → 3.6 from 3.5.32",
        source: "etcd 3.6 upgrade guide",
        check: Check::Path(|from, to| {
            (from.major == 3 && from.minor == 5 && to >= Version::new(3, 6, 0) && from < MIN_3_5_FOR_3_6)
                .then(|| {
                    format!(
                        "etcd 3.6 requires every member on {MIN_3_5_FOR_3_6} or later first (it runs {from}): \
                         upgrade to the latest 3.5 patch, then to 3.6"
                    )
                })
        }),
    },
    Rule {
        name: "3.6 → 3.7 from 3.6.11",
        source: "etcd 3.7 upgrade guide",
        check: Check::Path(|from, to| {
            (from.major == 3 && from.minor == 6 && to >= Version::new(3, 7, 0) && from < MIN_3_6_FOR_3_7)
                .then(|| {
                    format!(
                        "etcd 3.7 requires every member on {MIN_3_6_FOR_3_7} or later first (it runs {from}): \
                         upgrade to the latest 3.6 patch, then to 3.7"
                    )
                })
        }),
    },
    Rule {
        name: "3.2+ needs v3 data",
        source: GUIDE_2_3,
        check: Check::Member(|from, to, m| {
            (from != to && to >= Version::new(3, 2, 0) && !m.has_v3_data).then(|| {
                "member/snap/db is missing: when migrating from v2 with no v3 data, etcd server v3.2+ \
                 panics when etcd restores from existing snapshots but no v3 ETCD_DATA_DIR/member/snap/db file \
                 (the upgrade guide). Do not upgrade until the v3.0 server contains v3 data \
                 (write a v3 key through 3.0 or 3.1), or, if the db file was moved, put it back"
                    .to_string()
            })
        }),
    },
    Rule {
        name: "3.4 → 3.5 not with auth",
        source: "etcd 3.5 upgrade guide",
        check: Check::Member(|from, to, m| {
            (from < Version::new(3, 5, 0) && to >= Version::new(3, 5, 0) && m.auth_enabled == Some(true))
                .then(|| {
                    "auth is enabled: a rolling upgrade from 3.4 or older to 3.5 is not supported with auth \
                     (3.5 changed the WAL format of auth entries); disable auth for the upgrade or migrate offline"
                        .to_string()
                })
        }),
    },
    Rule {
        name: "3.6 has no v2",
        source: "etcd 3.6 upgrade guide",
        check: Check::Member(|from, to, m| {
            if from >= Version::new(3, 6, 0) || to < Version::new(3, 6, 0) {
                return None;
            }
            if let Some(s) = m.settings.iter().find(|s| s.is_on("enable-v2")) {
                return Some(format!(
                    "v2 is enabled ({} in {}): etcd 3.6 has no --enable-v2 and refuses custom v2 data \
                     (\"detected disallowed v2 WAL\"); move v2 clients to v3, drop the setting, restart the member, then upgrade",
                    s.text, s.source
                ));
            }
            (m.v2store_clean == Some(false)).then(|| {
                "etcdutl check v2store found custom v2 data: etcd 3.6 refuses to start on it \
                 (\"detected disallowed v2 WAL\"); migrate the v2 keys to v3 and remove them first"
                    .to_string()
            })
        }),
    },
    Rule {
        name: "3.7 has no --experimental flags",
        source: "etcd 3.7 upgrade guide",
        check: Check::Member(|from, to, m| {
            if from >= Version::new(3, 7, 0) || to < Version::new(3, 7, 0) {
                return None;
            }
            let exp: Vec<String> = m
                .settings
                .iter()
                .filter(|s| s.name_and_value().0.starts_with("experimental-"))
                .map(|s| format!("{} in {}", s.text, s.source))
                .collect();
            (!exp.is_empty()).then(|| {
                format!(
                    "etcd 3.7 removed the --experimental-* flags: {}; use their stable names (3.6 has both), restart, then upgrade",
                    exp.join(", ")
                )
            })
        }),
    },
];

/// The path rules' verdict on `from → to`.
pub fn path_refusal(from: Version, to: Version) -> Option<String> {
    RULES.iter().find_map(|r| match r.check {
        Check::Path(f) => f(from, to),
        Check::Member(_) => None,
    })
}

/// Every member rule that refuses, in table order.
pub fn member_refusals(from: Version, to: Version, m: &MemberInput) -> Vec<String> {
    RULES
        .iter()
        .filter_map(|r| match r.check {
            Check::Member(f) => f(from, to, m),
            Check::Path(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn rule(name: &str) -> &'static Rule {
        RULES.iter().find(|r| r.name == name).unwrap()
    }

    fn path(name: &str, from: &str, to: &str) -> Option<String> {
        match rule(name).check {
            Check::Path(f) => f(v(from), v(to)),
            Check::Member(_) => panic!("{name} is a member rule"),
        }
    }

    fn member(name: &str, from: &str, to: &str, m: &MemberInput) -> Option<String> {
        match rule(name).check {
            Check::Member(f) => f(v(from), v(to), m),
            Check::Path(_) => panic!("{name} is a path rule"),
        }
    }

    fn setting(text: &str, source: &str) -> Setting {
        Setting {
            text: text.into(),
            source: source.into(),
        }
    }

    #[test]
    fn every_rule_names_its_guide_and_is_tested() {
        for r in RULES {
            assert!(r.source.contains("guide"), "{}: {}", r.name, r.source);
        }
        assert_eq!(RULES.len(), 9, "a new rule needs a test below");
    }

    #[test]
    fn never_down() {
        assert!(path("never down", "3.5.1", "3.4.23")
            .unwrap()
            .contains("rollback"));
        assert!(path("never down", "3.4.23", "3.5.1").is_none());
    }

    #[test]
    fn two_three_first() {
        assert!(path("2.3 first", "2.2.5", "3.0.17")
            .unwrap()
            .contains("2.3 or greater"));
        assert!(path("2.3 first", "2.3.7", "3.0.16").is_none());
    }

    #[test]
    fn one_minor_at_a_time() {
        let why = path("one minor at a time", "3.3.1", "3.5.1").unwrap();
        assert!(why.contains("3.4 next"), "{why}");
        assert!(path("one minor at a time", "2.3.7", "3.1.0")
            .unwrap()
            .contains("3.0 next"));
        assert!(path("one minor at a time", "3.4.23", "4.0.0").is_some());
        assert!(path("one minor at a time", "2.3.7", "3.0.16").is_none());
        assert!(path("one minor at a time", "3.4.23", "3.5.30").is_none());
        assert!(
            path("one minor at a time", "3.5.16", "3.5.30").is_none(),
            "a patch"
        );
    }

    #[test]
    fn three_six_needs_3_5_32() {
        assert!(path("3.5 → 3.6 from 3.5.32", "3.5.26", "3.6.0")
            .unwrap()
            .contains("3.5.32"));
        assert!(path("3.5 → 3.6 from 3.5.32", "3.5.31", "3.6.5").is_some());
        assert!(path("3.5 → 3.6 from 3.5.32", "3.5.32", "3.6.0").is_none());
        assert!(path("3.5 → 3.6 from 3.5.32", "3.5.16", "3.5.30").is_none());
    }

    #[test]
    fn three_seven_needs_3_6_11() {
        assert!(path("3.6 → 3.7 from 3.6.11", "3.6.10", "3.7.0")
            .unwrap()
            .contains("3.6.11"));
        assert!(path("3.6 → 3.7 from 3.6.11", "3.6.11", "3.7.0").is_none());
    }

    #[test]
    fn v3_data_before_3_2() {
        let no_db = MemberInput::default();
        let why = member("3.2+ needs v3 data", "3.1.20", "3.2.32", &no_db).unwrap();
        assert!(why.contains("v3.2+ panics"), "{why}");
        assert!(member("3.2+ needs v3 data", "3.0.16", "3.1.20", &no_db).is_none());
        let db = MemberInput {
            has_v3_data: true,
            ..MemberInput::default()
        };
        assert!(member("3.2+ needs v3 data", "3.1.20", "3.2.32", &db).is_none());
    }

    #[test]
    fn no_auth_from_3_4_to_3_5() {
        let auth = MemberInput {
            auth_enabled: Some(true),
            ..MemberInput::default()
        };
        assert!(member("3.4 → 3.5 not with auth", "3.4.23", "3.5.30", &auth).is_some());
        assert!(member("3.4 → 3.5 not with auth", "3.5.16", "3.5.30", &auth).is_none());
        assert!(member(
            "3.4 → 3.5 not with auth",
            "3.4.23",
            "3.5.30",
            &MemberInput::default()
        )
        .is_none());
    }

    #[test]
    fn no_v2_before_3_6() {
        let flag = MemberInput {
            settings: vec![setting("--enable-v2", "/proc/42/cmdline")],
            ..MemberInput::default()
        };
        let why = member("3.6 has no v2", "3.5.32", "3.6.0", &flag).unwrap();
        assert!(why.contains("--enable-v2 in /proc/42/cmdline"), "{why}");
        let env = MemberInput {
            settings: vec![setting("ETCD_ENABLE_V2=true", "/proc/42/environ")],
            ..MemberInput::default()
        };
        assert!(member("3.6 has no v2", "3.5.32", "3.6.0", &env)
            .unwrap()
            .contains("environ"));
        let off = MemberInput {
            settings: vec![setting("--enable-v2=false", "/proc/42/cmdline")],
            ..MemberInput::default()
        };
        assert!(member("3.6 has no v2", "3.5.32", "3.6.0", &off).is_none());
        assert!(
            member("3.6 has no v2", "3.4.23", "3.5.30", &flag).is_none(),
            "only before 3.6"
        );
        let custom = MemberInput {
            v2store_clean: Some(false),
            ..MemberInput::default()
        };
        assert!(member("3.6 has no v2", "3.5.32", "3.6.0", &custom)
            .unwrap()
            .contains("check v2store"));
    }

    #[test]
    fn no_experimental_flags_before_3_7() {
        let m = MemberInput {
            settings: vec![
                setting(
                    "--experimental-initial-corrupt-check=true",
                    "/proc/7/cmdline",
                ),
                setting(
                    "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL=5s",
                    "/etc/etcd.env",
                ),
            ],
            ..MemberInput::default()
        };
        let why = member("3.7 has no --experimental flags", "3.6.11", "3.7.0", &m).unwrap();
        assert!(
            why.contains("--experimental-initial-corrupt-check")
                && why.contains("ETCD_EXPERIMENTAL_"),
            "{why}"
        );
        assert!(member("3.7 has no --experimental flags", "3.5.32", "3.6.0", &m).is_none());
    }
}
