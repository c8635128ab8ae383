//! `--limit`, as Ansible reads it: host name patterns with `*` and `?`,
//! separated by `,` or `:`, `!` to exclude.

use super::Host;

fn glob(pat: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pat.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star) = (0, 0, None);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Ansible-style `--limit`: patterns separated by `,` or `:`, `!` excludes.
pub(super) fn apply_limit(hosts: Vec<Host>, limit: &str) -> Result<Vec<Host>, String> {
    let pats: Vec<&str> = limit
        .split([',', ':'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let (neg, pos): (Vec<&str>, Vec<&str>) = pats.into_iter().partition(|p| p.starts_with('!'));
    let out: Vec<Host> = hosts
        .into_iter()
        .filter(|h| pos.is_empty() || pos.iter().any(|p| glob(p, &h.name)))
        .filter(|h| !neg.iter().any(|p| glob(&p[1..], &h.name)))
        .collect();
    if out.is_empty() {
        return Err(format!("--limit {limit:?} selects no host of the group"));
    }
    Ok(out)
}
