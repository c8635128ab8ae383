//! Ansible's rules over the raw groups: repeated sections merged, children
//! followed (cycles refused), the selected group's hosts collected in order, and
//! each host's variables taken with Ansible's precedence before they are turned
//! into a `Host`. Lowest to highest, as `ansible-inventory --list` shows it (and
//! Ansible's default `VARIABLE_PRECEDENCE`): the inventory's vars of `all`, of
//! the other groups (by depth, then name), `group_vars/all`, `group_vars/GROUP`
//! (same order), the inventory's host vars, `host_vars/HOST`, then `-e`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::host::build_host;
use super::limit::apply_limit;
use super::vars_dirs::{Kind, VarsDirs};
use super::{Inventory, InventoryError, LoadOptions, Location, RawGroup, RawInventory, RawVar};

/// Group membership, variable precedence, validation.
pub(super) fn resolve(
    raw: RawInventory,
    path: &Path,
    mut vars_dirs: Option<&mut VarsDirs>,
    opts: &LoadOptions,
) -> Result<Inventory, InventoryError> {
    // Merge repeated group sections.
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, RawGroup> = HashMap::new();
    for g in raw.groups {
        match groups.get_mut(&g.name) {
            Some(existing) => {
                existing.hosts.extend(g.hosts);
                existing.vars.extend(g.vars);
                existing.children.extend(g.children);
            }
            None => {
                order.push(g.name.clone());
                groups.insert(g.name.clone(), g);
            }
        }
    }
    // `all` is a group whether or not the inventory writes it, as in Ansible.
    if !groups.contains_key("all") {
        order.insert(0, "all".to_string());
        groups.insert(
            "all".to_string(),
            RawGroup {
                name: "all".to_string(),
                loc: Location {
                    file: path.to_path_buf(),
                    ..Location::default()
                },
                ..RawGroup::default()
            },
        );
    }
    // Parents of each group, and cycle check.
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    for name in &order {
        for (child, loc) in &groups[name].children {
            if !groups.contains_key(child) {
                // A child named but never defined is an empty group, as in Ansible.
                parents.entry(child.clone()).or_default();
            }
            let _ = loc;
            parents.entry(child.clone()).or_default().push(name.clone());
        }
    }
    for name in &order {
        let mut seen = HashSet::new();
        if has_cycle(name, &groups, &mut seen, &mut Vec::new()) {
            let loc = groups[name].loc.clone();
            return Err(InventoryError::At {
                location: loc,
                message: format!("group {name:?} is its own descendant through children"),
            });
        }
    }
    let depth = |g: &str| -> usize { group_depth(g, &parents, &mut HashSet::new()) };

    let Some(selected) = groups.get(opts.group) else {
        let mut names: Vec<&str> = order
            .iter()
            .map(String::as_str)
            .filter(|n| *n != "all")
            .collect();
        names.sort();
        return Err(InventoryError::File {
            path: path.to_path_buf(),
            message: format!(
                "group {:?} not found; groups are: {} (pick one with --group)",
                opts.group,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        });
    };
    let _ = selected;
    // Hosts of the selected group (and its descendants), first-seen order.
    let mut host_names: Vec<(String, Location)> = Vec::new();
    collect_hosts(
        opts.group,
        &groups,
        &order,
        &mut host_names,
        &mut HashSet::new(),
    );
    if host_names.is_empty() {
        return Err(InventoryError::At {
            location: groups[opts.group].loc.clone(),
            message: format!("group {:?} has no hosts", opts.group),
        });
    }
    // Which groups contain each host (directly or through children).
    // And the hosts of each group, for --limit.
    let mut member_of: HashMap<String, Vec<String>> = HashMap::new();
    let mut group_hosts: Vec<(String, Vec<String>)> = Vec::new();
    for name in &order {
        let mut hs = Vec::new();
        collect_hosts(name, &groups, &order, &mut hs, &mut HashSet::new());
        for (h, _) in &hs {
            member_of.entry(h.clone()).or_default().push(name.clone());
        }
        group_hosts.push((name.clone(), hs.into_iter().map(|(h, _)| h).collect()));
    }
    // `ungrouped`, as Ansible reconciles it: the hosts in no other group.
    let ungrouped: Vec<String> = group_hosts
        .iter()
        .find(|(g, _)| g == "all")
        .map(|(_, hs)| hs.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|h| member_of[*h].iter().all(|g| g == "all" || g == "ungrouped"))
        .cloned()
        .collect();
    match group_hosts.iter_mut().find(|(g, _)| g == "ungrouped") {
        Some((_, hs)) => *hs = ungrouped,
        None => group_hosts.push(("ungrouped".to_string(), ungrouped)),
    }
    let mut hosts = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (hname, loc) in &host_names {
        let mut gs: Vec<&String> = member_of
            .get(hname)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        gs.sort_by_key(|g| {
            (
                if g.as_str() == "all" { 0 } else { 1 + depth(g) },
                (*g).clone(),
            )
        });
        let mut vars: BTreeMap<String, RawVar> = BTreeMap::new();
        if !gs.iter().any(|g| g.as_str() == "all") {
            if let Some(all) = groups.get("all") {
                for v in &all.vars {
                    vars.insert(v.key.clone(), v.clone());
                }
            }
        }
        for g in &gs {
            for v in &groups[*g].vars {
                vars.insert(v.key.clone(), v.clone());
            }
        }
        if let Some(dirs) = vars_dirs.as_deref_mut() {
            // group_vars/all first, whether or not `all` was written in the file.
            if !gs.iter().any(|g| g.as_str() == "all") {
                for v in dirs.get(Kind::Group, "all")? {
                    vars.insert(v.key.clone(), v.clone());
                }
            }
            for g in &gs {
                for v in dirs.get(Kind::Group, g)? {
                    vars.insert(v.key.clone(), v.clone());
                }
            }
        }
        for name in &order {
            for (h, _, hv) in &groups[name].hosts {
                if h == hname {
                    for v in hv {
                        vars.insert(v.key.clone(), v.clone());
                    }
                }
            }
        }
        if let Some(dirs) = vars_dirs.as_deref_mut() {
            for v in dirs.get(Kind::Host, hname)? {
                vars.insert(v.key.clone(), v.clone());
            }
        }
        for v in opts.extra_vars.map(|x| x.0.as_slice()).unwrap_or_default() {
            vars.insert(v.key.clone(), v.clone());
        }
        hosts.push(build_host(
            hname,
            loc.clone(),
            opts.group,
            &vars,
            &mut notes,
        )?);
    }
    if let Some(limit) = opts.limit {
        hosts = apply_limit(hosts, limit, opts.group, &group_hosts).map_err(|message| {
            InventoryError::File {
                path: path.to_path_buf(),
                message,
            }
        })?;
    }
    if let Some(dirs) = vars_dirs {
        notes.splice(0..0, dirs.notes.drain(..));
    }
    let mut seen = HashSet::new();
    notes.retain(|n| seen.insert(n.clone()));
    Ok(Inventory {
        path: path.to_path_buf(),
        hosts,
        notes,
    })
}

fn has_cycle(
    name: &str,
    groups: &HashMap<String, RawGroup>,
    seen: &mut HashSet<String>,
    stack: &mut Vec<String>,
) -> bool {
    if stack.iter().any(|s| s == name) {
        return true;
    }
    if !seen.insert(name.to_string()) {
        return false;
    }
    stack.push(name.to_string());
    let cyc = groups
        .get(name)
        .map(|g| {
            g.children
                .iter()
                .any(|(c, _)| has_cycle(c, groups, seen, stack))
        })
        .unwrap_or(false);
    stack.pop();
    cyc
}

fn group_depth(
    g: &str,
    parents: &HashMap<String, Vec<String>>,
    seen: &mut HashSet<String>,
) -> usize {
    if !seen.insert(g.to_string()) {
        return 0;
    }
    parents
        .get(g)
        .map(|ps| {
            ps.iter()
                .filter(|p| p.as_str() != "all")
                .map(|p| 1 + group_depth(p, parents, seen))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// The hosts of a group, then of its children (depth first), each once; `all`
/// has every group's, in the order the groups were written.
fn collect_hosts(
    name: &str,
    groups: &HashMap<String, RawGroup>,
    order: &[String],
    out: &mut Vec<(String, Location)>,
    seen: &mut HashSet<String>,
) {
    if !seen.insert(name.to_string()) {
        return;
    }
    let Some(g) = groups.get(name) else { return };
    for (h, loc, _) in &g.hosts {
        if !out.iter().any(|(x, _)| x == h) {
            out.push((h.clone(), loc.clone()));
        }
    }
    for (c, _) in &g.children {
        collect_hosts(c, groups, order, out, seen);
    }
    if name == "all" {
        for other in order {
            collect_hosts(other, groups, order, out, seen);
        }
    }
}
