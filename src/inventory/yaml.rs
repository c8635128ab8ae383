//! Ansible's YAML inventory layout (`all:` / `children:` / `hosts:` / `vars:`),
//! read with serde-saphyr, keeping the line and column of every host and value.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

use super::{InventoryError, Location, RawGroup, RawInventory, RawVar, Value};

/// A map that keeps its entries in document order.
pub(super) struct Ordered<K, V>(pub(super) Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Ordered<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for V2<K, V> {
            type Value = Ordered<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry()? {
                    v.push(e);
                }
                Ok(Ordered(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Ordered(Vec::new()))
            }
        }
        d.deserialize_any(V2(PhantomData))
    }
}

pub(super) type Vars = Ordered<Spanned<String>, Spanned<serde_json::Value>>;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    #[serde(default)]
    hosts: Option<Ordered<Spanned<String>, Option<Vars>>>,
    #[serde(default)]
    vars: Option<Vars>,
    #[serde(default)]
    children: Option<Ordered<Spanned<String>, Option<Group>>>,
}

pub(super) fn loc(path: &Path, l: &serde_saphyr::Location) -> Location {
    Location {
        file: path.to_path_buf(),
        line: l.line() as usize,
        column: l.column() as usize,
    }
}

pub(super) fn vars(path: &Path, vs: Option<Vars>) -> Vec<RawVar> {
    vs.map(|o| {
        o.0.into_iter()
            .map(|(k, v)| {
                // The value's position, unless it starts on a later line (a block
                // scalar such as `!vault |`): then the key's, where it was set.
                let at = if v.referenced.line() > k.referenced.line() {
                    &k.referenced
                } else {
                    &v.referenced
                };
                RawVar {
                    key: k.value,
                    value: Value::of_json(&v.value),
                    loc: loc(path, at),
                }
            })
            .collect()
    })
    .unwrap_or_default()
}

fn flatten(path: &Path, name: Spanned<String>, g: Option<Group>, out: &mut RawInventory) {
    let mut raw = RawGroup {
        name: name.value.clone(),
        loc: loc(path, &name.referenced),
        ..RawGroup::default()
    };
    let Some(g) = g else {
        out.groups.push(raw);
        return;
    };
    raw.vars = vars(path, g.vars);
    for (h, hv) in g.hosts.map(|o| o.0).unwrap_or_default() {
        raw.hosts
            .push((h.value, loc(path, &h.referenced), vars(path, hv)));
    }
    let mut kids = Vec::new();
    for (c, cg) in g.children.map(|o| o.0).unwrap_or_default() {
        raw.children
            .push((c.value.clone(), loc(path, &c.referenced)));
        kids.push((c, cg));
    }
    out.groups.push(raw);
    for (c, cg) in kids {
        flatten(path, c, cg, out);
    }
}

pub(super) fn parse(text: &str, path: &Path) -> Result<RawInventory, InventoryError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let top: Ordered<Spanned<String>, Option<Group>> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let location = e
                .location()
                .map(|l| loc(path, &l))
                .unwrap_or_else(|| Location {
                    file: path.to_path_buf(),
                    line: 1,
                    column: 1,
                });
            InventoryError::At {
                location,
                message: format!(
                    "{} (expected an Ansible YAML inventory: groups with hosts, vars and children)",
                    e.without_snippet()
                ),
            }
        })?;
    let mut out = RawInventory::default();
    for (name, g) in top.0 {
        flatten(path, name, g, &mut out);
    }
    Ok(out)
}
