//! Plain text tables for `status`, `check` and the upgrade summary.

use console::{measure_text_width, style};

use crate::events::{CheckRow, HostDiscovered, MemberRow, SummaryRow};

/// Left-aligned columns, widths from the widest cell (ANSI colours not counted).
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(measure_text_width(c));
            }
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(w.saturating_sub(measure_text_width(c)) + 2));
            }
        }
        s.trim_end().to_string()
    };
    let head: Vec<String> = header
        .iter()
        .map(|h| style(*h).bold().to_string())
        .collect();
    let mut out = line(&head);
    for r in rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

fn yes_no(b: bool, yes: &str, no: &str) -> String {
    if b {
        style(yes).green().to_string()
    } else {
        style(no).red().to_string()
    }
}

pub fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

pub fn members(rows: &[MemberRow]) -> String {
    let mut body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.host.clone(),
                r.name.clone(),
                r.id.clone(),
                r.server_version.clone(),
                r.cluster_version.clone(),
                yes_no(r.healthy, "healthy", "UNHEALTHY"),
                if r.leader {
                    style("leader").cyan().to_string()
                } else {
                    String::new()
                },
                if r.raft_index > 0 {
                    r.raft_index.to_string()
                } else {
                    String::new()
                },
                if r.db_size > 0 {
                    human_bytes(r.db_size)
                } else {
                    String::new()
                },
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut heads = vec![
        "HOST",
        "NAME",
        "ID",
        "VERSION",
        "CLUSTER",
        "HEALTH",
        "LEADER",
        "RAFT INDEX",
        "DB SIZE",
        "ERROR",
    ];
    if super::wide() {
        heads.splice(1..1, ["ADDRESS", "CLIENT URL", "TERM"]);
        widen(&mut body, rows);
    }
    render(&heads, &body)
}

/// `status --output wide`: the same table with where each member was reached
/// and its raft term, after the host.
fn widen(table_rows: &mut [Vec<String>], rows: &[MemberRow]) {
    for (t, r) in table_rows.iter_mut().zip(rows) {
        t.splice(
            1..1,
            [
                r.address.clone(),
                r.client_url.clone(),
                if r.raft_term > 0 {
                    r.raft_term.to_string()
                } else {
                    String::new()
                },
            ],
        );
    }
}

pub fn check_line(r: &CheckRow) -> String {
    let verdict = if r.problems.is_empty() {
        style("ok").green().to_string()
    } else {
        style("REFUSED").red().bold().to_string()
    };
    let mut s = format!(
        "{:<12} {verdict:<8} {} -> {} {}{}",
        r.host,
        r.version.as_deref().unwrap_or("?"),
        r.target.as_deref().unwrap_or("-"),
        r.plan,
        if r.leader { " (leader)" } else { "" }
    );
    for p in &r.problems {
        s.push_str(&format!("\n{:<12}   - {}", "", style(p).red()));
    }
    s
}

pub fn upgrade(rows: &[SummaryRow]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.host.clone(),
                format!("{} → {}", r.from, r.to),
                super::state_word(r.state),
                r.down_ms
                    .map(|m| format!("{:.2}s", m as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into()),
                r.catch_up_ms
                    .map(|m| format!("{:.2}s", m as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into()),
                r.backup.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = render(
        &["HOST", "VERSION", "STATE", "DOWN", "CATCH-UP", "BACKUP"],
        &body,
    );
    out.push_str(&timeline(rows));
    out
}

/// A compact chart of when each member was down, on one shared time axis.
fn timeline(rows: &[SummaryRow]) -> String {
    let end = rows
        .iter()
        .filter_map(|r| r.up_at_ms.or(r.down_at_ms))
        .max()
        .unwrap_or(0);
    if end == 0 {
        return String::new();
    }
    let width = 50u64;
    let mut s = format!("\n\nTimeline (0 → {:.1}s, █ = down):", end as f64 / 1000.0);
    for r in rows {
        let (Some(d), Some(u)) = (r.down_at_ms, r.up_at_ms) else {
            continue;
        };
        let a = (d * width / end) as usize;
        let b = ((u * width).div_ceil(end) as usize).max(a + 1);
        let mut bar = String::new();
        for i in 0..width as usize {
            bar.push(if i >= a && i < b { '█' } else { '·' });
        }
        s.push_str(&format!("\n  {:<12} {bar}", r.host));
    }
    s
}

/// What the members said of themselves, one line per setting and value (the
/// hosts that share it named together), with where the first host had it from.
pub fn discovered(hosts: &[HostDiscovered]) -> String {
    let mut rows: Vec<(String, String, Vec<String>, String)> = Vec::new();
    for h in hosts {
        for f in &h.settings {
            match rows.iter_mut().find(|r| r.0 == f.var && r.1 == f.value) {
                Some(r) => r.2.push(h.host.clone()),
                None => rows.push((
                    f.var.clone(),
                    f.value.clone(),
                    vec![h.host.clone()],
                    f.source.clone(),
                )),
            }
        }
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let mut out = String::from("found on the hosts (not set in the inventory):");
    for (var, value, on, source) in rows {
        out.push_str(&format!(
            "\n  {var:<width$}  {value}  on {}  ({source})",
            on.join(", ")
        ));
    }
    out
}

/// The hosts per cluster, in inventory order, each with its settings.
fn clusters(inv: &crate::inventory::Inventory) -> Vec<(&str, Vec<&crate::inventory::Host>)> {
    let mut out: Vec<(&str, Vec<&crate::inventory::Host>)> = Vec::new();
    for h in &inv.hosts {
        match out.iter_mut().find(|(c, _)| *c == h.cluster) {
            Some((_, hosts)) => hosts.push(h),
            None => out.push((h.cluster.as_str(), vec![h])),
        }
    }
    out
}

pub fn inventory_json(inv: &crate::inventory::Inventory) -> String {
    let clusters: Vec<serde_json::Value> = clusters(inv)
        .into_iter()
        .map(|(name, hosts)| {
            serde_json::json!({
                "cluster": name,
                "hosts": hosts.iter().map(|h| serde_json::json!({
                    "host": h.name,
                    "settings": crate::inventory::describe(h),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "inventory": inv.path.display().to_string(),
        "clusters": clusters,
        "notes": inv.notes,
    })
    .to_string()
}

pub fn inventory_text(inv: &crate::inventory::Inventory) -> String {
    let mut out = String::new();
    for (name, hosts) in clusters(inv) {
        out.push_str(&format!(
            "{} {name} ({} host{})\n",
            style("cluster").bold(),
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" }
        ));
        for h in hosts {
            out.push_str(&format!("  {}\n", style(&h.name).bold()));
            let rows = crate::inventory::describe(h);
            let wv = rows.iter().map(|r| r.var.len()).max().unwrap_or(0);
            let wval = rows.iter().map(|r| r.value.len()).max().unwrap_or(0);
            for r in rows {
                let origin = if r.origin == "default" {
                    style(r.origin).dim().to_string()
                } else {
                    r.origin
                };
                out.push_str(&format!(
                    "    {:<wv$}  {:<wval$}  {origin}\n",
                    r.var, r.value
                ));
            }
        }
    }
    out.push_str(
        "(an etcd setting left to the default is read from each systemd host when a command connects: see `check`)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = render(
            &["A", "B"],
            &[
                vec!["xxxx".into(), "1".into()],
                vec!["y".into(), "2".into()],
            ],
        );
        let plain = console::strip_ansi_codes(&t).to_string();
        assert!(plain.contains("xxxx  1"));
        assert!(plain.contains("y     2"));
        assert_eq!(plain.lines().count(), 3);
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(20480), "20.0 KiB");
    }
}
