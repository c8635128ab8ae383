//! `--limit`, in Ansible's host pattern language (its `InventoryManager`):
//! patterns separated by `,` (or by `:` when there is no comma), each a host
//! name or a group name (children included, `all` and `ungrouped` too), with
//! `*`, `?` and `[...]` globs, `~REGEX` (Python's `re.match`: anchored at the
//! start only), and a subscript on a group (`etcd[0]`, `etcd[-1]`,
//! `etcd[1:2]`, inclusive). `!PAT` excludes, `&PAT` intersects, `@FILE` reads
//! one pattern a line. The selected hosts are
//! (union of the plain patterns, `all` if none) ∩ each `&` − each `!`,
//! in the selected group's order. A pattern that matches nothing is fine as
//! long as something is selected.

use std::collections::HashSet;

use regex::Regex;

use super::Host;

/// The inventory's groups in order, each with its hosts (through children) in
/// order. `all` is one of them and holds every host.
pub(super) type Groups = [(String, Vec<String>)];

/// `*`, `?`, `[seq]`, `[!seq]` as Python's `fnmatch.translate` turns them into
/// a regex matching the whole name.
fn glob_regex(pat: &str) -> String {
    let p: Vec<char> = pat.chars().collect();
    let mut out = String::from("^(?s:");
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        i += 1;
        match c {
            '*' => {
                if !out.ends_with(".*") {
                    out.push_str(".*");
                }
            }
            '?' => out.push('.'),
            '[' => {
                let mut j = i;
                if j < p.len() && p[j] == '!' {
                    j += 1;
                }
                if j < p.len() && p[j] == ']' {
                    j += 1;
                }
                while j < p.len() && p[j] != ']' {
                    j += 1;
                }
                if j >= p.len() {
                    out.push_str("\\[");
                    continue;
                }
                let stuff = &p[i..j];
                i = j + 1;
                let (negate, stuff) = match stuff.split_first() {
                    Some(('!', rest)) => (true, rest),
                    _ => (false, stuff),
                };
                if stuff.is_empty() {
                    // `[!]` is any one character; `[]` cannot occur (`]` first is literal).
                    out.push('.');
                    continue;
                }
                out.push('[');
                if negate {
                    out.push('^');
                }
                for (k, ch) in stuff.iter().enumerate() {
                    if *ch == '-' && k > 0 && k + 1 < stuff.len() {
                        out.push('-');
                    } else {
                        out.push_str(&regex::escape(&ch.to_string()));
                    }
                }
                out.push(']');
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push_str(")$");
    out
}

fn compile(pat: &str) -> Result<Regex, String> {
    let re = match pat.strip_prefix('~') {
        Some(re) => format!("^(?:{re})"),
        None => glob_regex(pat),
    };
    Regex::new(&re).map_err(|e| format!("--limit: invalid host pattern {pat:?}: {e}"))
}

/// `NAME[i]` or `NAME[start:end]` (end inclusive, empty for the last), as
/// Ansible's `PATTERN_WITH_SUBSCRIPT`; a `~regex` has none.
fn split_subscript(pat: &str) -> (&str, Option<(i64, Option<i64>)>) {
    if pat.starts_with('~') || !pat.ends_with(']') {
        return (pat, None);
    }
    let Some(open) = pat.rfind('[') else {
        return (pat, None);
    };
    let (base, inner) = (&pat[..open], &pat[open + 1..pat.len() - 1]);
    if base.is_empty() {
        return (pat, None);
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let index = inner.strip_prefix('-').unwrap_or(inner);
    if digits(index) {
        return match inner.parse() {
            Ok(i) => (base, Some((i, None))),
            Err(_) => (pat, None),
        };
    }
    if let Some((start, end)) = inner.split_once([':', '-']) {
        if digits(start) && (end.is_empty() || digits(end)) {
            if let (Ok(s), Ok(e)) = (
                start.parse(),
                if end.is_empty() { Ok(-1) } else { end.parse() },
            ) {
                return (base, Some((s, Some(e))));
            }
        }
    }
    (pat, None)
}

/// Ansible's `_apply_subscript`, Python's indexing: None for an index out of
/// range (an error in Ansible too), a slice is clipped.
fn apply_subscript(hosts: Vec<String>, sub: Option<(i64, Option<i64>)>) -> Option<Vec<String>> {
    let len = hosts.len() as i64;
    let one = |i: i64| -> Option<Vec<String>> {
        let i = if i < 0 { len + i } else { i };
        (0..len)
            .contains(&i)
            .then(|| vec![hosts[i as usize].clone()])
    };
    match sub {
        None => Some(hosts),
        // `if end:` in Ansible: an end of 0 is no end.
        Some((start, None | Some(0))) => one(start),
        Some((start, Some(end))) => {
            let end = if end == -1 { len - 1 } else { end };
            let (s, e) = (start.min(len), (end + 1).clamp(0, len));
            Some(if s >= e {
                Vec::new()
            } else {
                hosts[s as usize..e as usize].to_vec()
            })
        }
    }
}

/// The hosts one pattern (without its `!` or `&`) names, as Ansible's
/// `_match_one_pattern`: the groups it matches, and the hosts it matches when
/// no group does or it is a regex or a glob.
fn match_one(pat: &str, groups: &Groups, all: &[String]) -> Result<Vec<String>, String> {
    let (expr, sub) = split_subscript(pat);
    let re = compile(expr)?;
    let mut out = Vec::new();
    let mut any_group = false;
    for (name, hosts) in groups {
        if re.is_match(name) {
            any_group = true;
            out.extend(hosts.iter().cloned());
        }
    }
    if !any_group || expr.starts_with('~') || expr.contains(['.', '?', '*', '[']) {
        out.extend(all.iter().filter(|h| re.is_match(h)).cloned());
    }
    apply_subscript(out, sub)
        .ok_or_else(|| format!("--limit: no host matched the subscripted pattern {pat:?}"))
}

/// Ansible's `split_host_pattern`: on commas if there is one, else on `:` and
/// whitespace outside `[...]`, except that `NAME:PORT` is one pattern (a host
/// with a port, which names no inventory host).
fn split_patterns(limit: &str) -> Vec<String> {
    let parts: Vec<String> = if limit.contains(',') {
        limit.split(',').map(str::to_string).collect()
    } else if limit.split_once(':').is_some_and(|(h, p)| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
    }) {
        vec![limit.to_string()]
    } else {
        // `(?:[^\s:\[\]]|\[[^\]]*\])+`: a `[...]` is kept whole; `:`,
        // whitespace and an unmatched bracket separate.
        let c: Vec<char> = limit.chars().collect();
        let (mut parts, mut cur, mut i) = (Vec::new(), String::new(), 0);
        while i < c.len() {
            let close = (c[i] == '[')
                .then(|| c[i..].iter().position(|&x| x == ']'))
                .flatten();
            if let Some(n) = close {
                cur.extend(&c[i..=i + n]);
                i += n + 1;
                continue;
            }
            if c[i] == ':' || c[i] == '[' || c[i] == ']' || c[i].is_whitespace() {
                parts.push(std::mem::take(&mut cur));
            } else {
                cur.push(c[i]);
            }
            i += 1;
        }
        parts.push(cur);
        parts
    };
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The patterns of a `--limit`, `@FILE` replaced by the file's lines (each
/// line one pattern, as Ansible reads it).
fn patterns(limit: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in split_patterns(limit) {
        match p.strip_prefix('@') {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("--limit @{file}: cannot read the limit file: {e}"))?;
                out.extend(text.split('\n').map(|l| l.trim().to_string()));
            }
            None => out.push(p),
        }
    }
    out.retain(|p| !p.is_empty());
    Ok(out)
}

/// The host names a `--limit` selects from the whole inventory: Ansible's
/// `order_patterns` then `_evaluate_patterns`.
pub(super) fn select(limit: &str, groups: &Groups) -> Result<HashSet<String>, String> {
    let all: &[String] = groups
        .iter()
        .find(|(g, _)| g == "all")
        .map(|(_, h)| h.as_slice())
        .unwrap_or_default();
    let pats = patterns(limit)?;
    let (mut plain, mut and, mut not) = (Vec::new(), Vec::new(), Vec::new());
    for p in &pats {
        match p.as_bytes()[0] {
            b'!' => not.push(p.as_str()),
            b'&' => and.push(p.as_str()),
            _ => plain.push(p.as_str()),
        }
    }
    if plain.is_empty() {
        plain.push("all");
    }
    // The order of the selection is the group's: a set is enough here.
    let mut hosts: HashSet<String> = HashSet::new();
    for p in plain.into_iter().chain(and).chain(not) {
        if all.iter().any(|h| h == p) {
            hosts.insert(p.to_string());
            continue;
        }
        let (op, body) = match p.as_bytes()[0] {
            b'!' | b'&' => (p.as_bytes()[0], &p[1..]),
            _ => (b'+', p),
        };
        let that: HashSet<String> = if body.is_empty() {
            HashSet::new()
        } else {
            match_one(body, groups, all)?.into_iter().collect()
        };
        match op {
            b'!' => hosts.retain(|h| !that.contains(h)),
            b'&' => hosts.retain(|h| that.contains(h)),
            _ => hosts.extend(that),
        }
    }
    Ok(hosts)
}

/// The hosts of the selected group that `--limit` selects, in the group's order.
pub(super) fn apply_limit(
    hosts: Vec<Host>,
    limit: &str,
    group: &str,
    groups: &Groups,
) -> Result<Vec<Host>, String> {
    let selected = select(limit, groups)?;
    let out: Vec<Host> = hosts
        .into_iter()
        .filter(|h| selected.contains(&h.name))
        .collect();
    if out.is_empty() {
        let mut names: Vec<&str> = groups
            .iter()
            .map(|(g, _)| g.as_str())
            .filter(|g| !matches!(*g, "all" | "ungrouped"))
            .collect();
        names.sort();
        return Err(format!(
            "--limit {limit:?} selects no host of group {group:?} \
             (a pattern names hosts or groups; the groups are: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_translate_as_fnmatch() {
        for (pat, name, want) in [
            ("e*", "e1", true),
            ("e*", "xe1", false),
            ("e?", "e12", false),
            ("e[12]", "e2", true),
            ("e[!12]", "e2", false),
            ("e[!12]", "e3", true),
            ("e[1-3]", "e2", true),
            ("e[1-3]", "e-", false),
            ("e[-1]", "e-", true),
            ("e[", "e[", true),
            ("a.b", "axb", false),
            ("a.b", "a.b", true),
            ("*", "", true),
        ] {
            let re = compile(pat).unwrap();
            assert_eq!(re.is_match(name), want, "{pat:?} vs {name:?}");
        }
        assert!(compile("~(").is_err());
    }

    #[test]
    fn patterns_split_as_ansible_does() {
        let split = |s: &str| split_patterns(s);
        assert_eq!(split("a,b"), ["a", "b"]);
        assert_eq!(split("a:b"), ["a", "b"]);
        // With a comma, a colon is no separator.
        assert_eq!(split("a:b, c"), ["a:b", "c"]);
        assert_eq!(split("a:!b:&c"), ["a", "!b", "&c"]);
        assert_eq!(split("web[0:1]:db"), ["web[0:1]", "db"]);
        assert_eq!(split("a b"), ["a", "b"]);
        // A host with a port is one pattern.
        assert_eq!(split("m0:22"), ["m0:22"]);
        assert_eq!(split(",,a,"), ["a"]);
        assert_eq!(split("a[b:c"), ["a", "b", "c"]);
    }

    #[test]
    fn subscripts() {
        assert_eq!(split_subscript("etcd[0]"), ("etcd", Some((0, None))));
        assert_eq!(split_subscript("etcd[-1]"), ("etcd", Some((-1, None))));
        assert_eq!(split_subscript("etcd[1:2]"), ("etcd", Some((1, Some(2)))));
        assert_eq!(split_subscript("etcd[1:]"), ("etcd", Some((1, Some(-1)))));
        assert_eq!(split_subscript("etcd[ab]"), ("etcd[ab]", None));
        assert_eq!(split_subscript("~e[0]"), ("~e[0]", None));
        let hs: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let sub = |s| apply_subscript(hs.clone(), s);
        let v = |x: &[&str]| Some(x.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(sub(Some((-1, None))), v(&["c"]));
        assert_eq!(sub(Some((1, Some(-1)))), v(&["b", "c"]));
        assert_eq!(sub(Some((0, Some(1)))), v(&["a", "b"]));
        assert_eq!(sub(Some((2, Some(0)))), v(&["c"]));
        assert_eq!(sub(Some((5, None))), None);
        assert_eq!(sub(Some((-4, None))), None);
        assert_eq!(sub(Some((2, Some(9)))), v(&["c"]));
        assert_eq!(sub(Some((3, Some(9)))), v(&[]));
    }

    /// etcd = e1 e2 (etcd_east) e3; web = w1 w2; e1 is also in web.
    const INI: &str = "\
u1

[etcd_east]
e1
e2

[etcd]
e3

[etcd:children]
etcd_east

[web]
w1
w2
e1

[prod:children]
etcd
web
";

    #[test]
    fn the_pattern_language() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("limit.txt");
        std::fs::write(&file, "etcd_east\n\n!e2\n").unwrap();
        let at = format!("@{}", file.display());
        let at_and = format!("e3,{at}");
        let cases: &[(&str, &str, &[&str])] = &[
            // group, limit, the hosts selected (in the group's order)
            ("all", "etcd", &["e1", "e2", "e3"]), // in all's order
            ("all", "etcd_east", &["e1", "e2"]),
            ("all", "all", &["u1", "e1", "e2", "e3", "w1", "w2"]),
            ("all", "ungrouped", &["u1"]),
            ("all", "prod", &["e1", "e2", "e3", "w1", "w2"]),
            ("all", "etcd:web", &["e1", "e2", "e3", "w1", "w2"]),
            ("all", "etcd,web", &["e1", "e2", "e3", "w1", "w2"]),
            ("all", "etcd,!web", &["e2", "e3"]),
            ("all", "etcd:&web", &["e1"]),
            ("all", "!etcd", &["u1", "w1", "w2"]),
            ("all", "&web", &["e1", "w1", "w2"]),
            ("all", "prod:!etcd_east:&etcd", &["e3"]),
            ("all", "w*", &["e1", "w1", "w2"]), // the group web, and w1, w2
            ("all", "?1", &["u1", "e1", "w1"]),
            ("all", "e[!1]", &["e2", "e3"]),
            ("all", "etcd_*", &["e1", "e2"]),
            ("all", "~e[13]", &["e1", "e3"]),
            ("all", "~etcd", &["e1", "e2", "e3"]), // re.match: etcd and etcd_east
            ("all", "~.1", &["u1", "e1", "w1"]),
            ("all", "~east", &[]),
            ("all", "nosuch,e3", &["e3"]),
            ("all", "etcd[0]", &["e3"]),
            ("all", "etcd[-1]", &["e2"]),
            ("all", "etcd[1:]", &["e1", "e2"]),
            ("all", "web[0:1]", &["w1", "w2"]),
            ("all", &at, &["e1"]),
            ("all", &at_and, &["e1", "e3"]),
            ("etcd", "web", &["e1"]),
            ("etcd", "all", &["e3", "e1", "e2"]),
            ("etcd", "!e1", &["e3", "e2"]),
            ("etcd", "e1,e3", &["e3", "e1"]),
            ("etcd", "e*,!e2", &["e3", "e1"]),
            ("etcd", " e1 : e2 ", &["e1", "e2"]),
        ];
        for (group, limit, want) in cases {
            let got = super::super::parse_str(
                INI,
                std::path::Path::new("i.ini"),
                &super::super::LoadOptions {
                    group,
                    limit: Some(limit),
                    extra_vars: None,
                    via_ansible: false,
                },
            );
            let got = match got {
                Ok(inv) => inv.hosts.into_iter().map(|h| h.name).collect::<Vec<_>>(),
                Err(e) => {
                    assert!(want.is_empty(), "--group {group} -l {limit:?}: {e}");
                    let e = e.to_string();
                    assert!(e.contains("selects no host"), "{e}");
                    assert!(e.contains("etcd, etcd_east, prod, web"), "{e}");
                    continue;
                }
            };
            assert_eq!(got, *want, "--group {group} -l {limit:?}");
        }
    }

    #[test]
    fn errors_name_the_pattern() {
        let groups = vec![("all".to_string(), vec!["a".to_string()])];
        let e = select("~(", &groups).unwrap_err();
        assert!(e.contains("\"~(\""), "{e}");
        let e = select("all[3]", &groups).unwrap_err();
        assert!(e.contains("subscripted pattern \"all[3]\""), "{e}");
        let e = select("@/nonexistent/limit", &groups).unwrap_err();
        assert!(e.contains("/nonexistent/limit"), "{e}");
    }
}
