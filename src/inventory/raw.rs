//! An inventory as written, before any of Ansible's rules are applied: groups
//! with their hosts, variables and children, each with where it was written.
//! Both parsers (INI and YAML) produce this, so the rules are applied once.

use super::Location;

/// A variable value as written: INI gives strings, YAML typed scalars.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Float(f64),
    Null,
    /// A list or map: fine for variables etcdroll ignores.
    Complex,
}

#[derive(Debug, Clone)]
pub(crate) struct RawVar {
    pub key: String,
    pub value: Value,
    pub loc: Location,
}

#[derive(Debug, Default)]
pub(crate) struct RawGroup {
    pub name: String,
    pub loc: Location,
    /// Hosts listed directly, each with its vars, in order.
    pub hosts: Vec<(String, Location, Vec<RawVar>)>,
    pub vars: Vec<RawVar>,
    pub children: Vec<(String, Location)>,
}

/// Both formats parse into this; groups may repeat (merged in order).
#[derive(Debug, Default)]
pub(crate) struct RawInventory {
    pub groups: Vec<RawGroup>,
}
