//! Which known_hosts lines name a host: OpenSSH's comma-separated patterns with
//! `*`/`?` wildcards and `!` negation, and hashed `|1|salt|hash` names. Kept
//! apart from the file's structure because it is the part most easily got
//! subtly wrong, and is tested against `ssh-keygen -F`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};

/// Does a comma-separated pattern list (or a hashed entry) match `name`?
/// A matching negated pattern makes the whole line not match.
pub(super) fn hosts_match(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_match(hashed, name);
    }
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for pat in patterns.split(',') {
        let (neg, pat) = match pat.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pat),
        };
        if glob(pat.to_ascii_lowercase().as_bytes(), name.as_bytes()) {
            if neg {
                return false;
            }
            positive = true;
        }
    }
    positive
}

fn hashed_match(entry: &str, name: &str) -> bool {
    let Some((salt, hash)) = entry.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
        return false;
    };
    // OpenSSH's client lowercases the host name before it looks it up, hashed
    // entries included (ssh-keygen -F does not, which is why it differs there).
    mac.update(name.to_ascii_lowercase().as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// `*` and `?` wildcards, as OpenSSH's match_pattern.
pub(super) fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}
