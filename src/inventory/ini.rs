//! Ansible's INI inventory: `[group]`, `[group:vars]`, `[group:children]`, host
//! lines `name key=value key2='quoted value'`, `#`/`;` comments, host ranges
//! `etcd[1:3]`. Hosts before any section are "ungrouped".

use std::path::Path;

use super::{InventoryError, Location, RawGroup, RawInventory, RawVar, Value};

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

pub(super) fn parse(text: &str, path: &Path) -> Result<RawInventory, InventoryError> {
    let mut out = RawInventory::default();
    let mut section = Section::Hosts("ungrouped".to_string());
    let at = |line: usize, column: usize, message: String| InventoryError::At {
        location: Location {
            file: path.to_path_buf(),
            line,
            column,
        },
        message,
    };
    // Duplicate host lines within one section are an error.
    let mut seen_in_section: Vec<String> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        let loc = |col: usize| Location {
            file: path.to_path_buf(),
            line: line_no,
            column: col,
        };
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(at(
                    line_no,
                    indent + 1,
                    format!("unclosed section header {line:?}: expected [group]"),
                ));
            };
            let (group, kind) = match name.split_once(':') {
                Some((g, "vars")) => (g, 1),
                Some((g, "children")) => (g, 2),
                Some((_, other)) => {
                    return Err(at(
                        line_no,
                        indent + 1,
                        format!("unknown section kind :{other}: expected [group], [group:vars] or [group:children]"),
                    ))
                }
                None => (name, 0),
            };
            if group.is_empty() || group.contains(char::is_whitespace) {
                return Err(at(line_no, indent + 2, format!("bad group name {group:?}")));
            }
            section = match kind {
                1 => Section::Vars(group.to_string()),
                2 => Section::Children(group.to_string()),
                _ => Section::Hosts(group.to_string()),
            };
            seen_in_section.clear();
            out.groups.push(RawGroup {
                name: group.to_string(),
                loc: loc(indent + 2),
                ..RawGroup::default()
            });
            continue;
        }
        let words = split_words(line)
            .ok_or_else(|| at(line_no, indent + 1, "unbalanced quotes".to_string()))?;
        match &section {
            Section::Vars(g) => {
                let (k, v) = line.split_once('=').ok_or_else(|| {
                    at(
                        line_no,
                        indent + 1,
                        format!("expected key=value in [{g}:vars], found {line:?}"),
                    )
                })?;
                let v = unquote(v.trim());
                let group = current(&mut out, g, loc(1));
                let col = indent + line.find('=').unwrap_or(0) + 2;
                group.vars.push(RawVar {
                    key: k.trim().to_string(),
                    value: Value::Str(v),
                    loc: loc(col),
                });
            }
            Section::Children(g) => {
                let child = words.first().cloned().unwrap_or_default();
                let group = current(&mut out, g, loc(1));
                group.children.push((child, loc(indent + 1)));
            }
            Section::Hosts(g) => {
                let Some((name, rest)) = words.split_first() else {
                    continue;
                };
                let mut vars = Vec::new();
                let mut search_from = name.len();
                for w in rest {
                    let Some((k, v)) = w.split_once('=') else {
                        let col = indent
                            + line[search_from..]
                                .find(w.as_str())
                                .map_or(search_from, |p| p + search_from)
                            + 1;
                        return Err(at(
                            line_no,
                            col,
                            format!("expected key=value after the host name, found {w:?}"),
                        ));
                    };
                    let pos = line[search_from..]
                        .find(k)
                        .map_or(search_from, |p| p + search_from);
                    search_from = pos + k.len();
                    vars.push(RawVar {
                        key: k.to_string(),
                        value: Value::Str(v.to_string()),
                        loc: loc(indent + search_from + 2),
                    });
                }
                let names = expand_range(name)
                    .ok_or_else(|| at(line_no, indent + 1, format!("bad host range {name:?}")))?;
                let group = current(&mut out, g, loc(1));
                for h in names {
                    if seen_in_section.contains(&h) {
                        return Err(at(
                            line_no,
                            indent + 1,
                            format!("host {h} is listed twice in [{g}]"),
                        ));
                    }
                    seen_in_section.push(h.clone());
                    group.hosts.push((h, loc(indent + 1), vars.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// The group the current section adds to (the last section pushed for it).
fn current<'a>(out: &'a mut RawInventory, name: &str, loc: Location) -> &'a mut RawGroup {
    let idx = out.groups.iter().rposition(|g| g.name == name);
    match idx {
        Some(i) => &mut out.groups[i],
        None => {
            out.groups.push(RawGroup {
                name: name.to_string(),
                loc,
                ..RawGroup::default()
            });
            let last = out.groups.len() - 1;
            &mut out.groups[last]
        }
    }
}

fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// Split on whitespace, honouring single and double quotes (as Ansible's shlex
/// split of a host line does); `#` after whitespace starts a comment.
fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                        continue;
                    }
                }
                cur.push(c)
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    in_word = true;
                }
                '#' if !in_word => break,
                c if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                c => {
                    cur.push(c);
                    in_word = true;
                }
            },
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// `etcd[1:3]` → etcd1, etcd2, etcd3; `node[01:03]` keeps the zero padding.
fn expand_range(name: &str) -> Option<Vec<String>> {
    let Some(open) = name.find('[') else {
        return Some(vec![name.to_string()]);
    };
    let close = open + name[open..].find(']')?;
    let (a, b) = name[open + 1..close].split_once(':')?;
    let (start, end): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
    if end < start || end - start > 10_000 {
        return None;
    }
    let width = if a.starts_with('0') { a.len() } else { 0 };
    Some(
        (start..=end)
            .map(|i| {
                format!(
                    "{}{:0width$}{}",
                    &name[..open],
                    i,
                    &name[close + 1..],
                    width = width
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_ranges() {
        assert_eq!(
            split_words("h1 a=1 b='x y' c=\"z w\" # comment").unwrap(),
            vec!["h1", "a=1", "b=x y", "c=z w"]
        );
        assert!(split_words("h1 a='x").is_none());
        assert_eq!(
            expand_range("etcd[1:3]").unwrap(),
            vec!["etcd1", "etcd2", "etcd3"]
        );
        assert_eq!(
            expand_range("n[08:10].x").unwrap(),
            vec!["n08.x", "n09.x", "n10.x"]
        );
        assert!(expand_range("n[3:1]").is_none());
    }
}
