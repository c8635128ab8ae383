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
    /// An inline Ansible Vault value (`!vault |`): etcdroll cannot decrypt it,
    /// fine for variables it ignores.
    Vault,
}

impl Value {
    /// A YAML or JSON value as etcdroll keeps it.
    pub(crate) fn of_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::String(s) if is_vault(s) => Value::Vault,
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::Null => Value::Null,
            _ => Value::Complex,
        }
    }
}

/// Ansible Vault's envelope, whole files and inline `!vault` values alike.
pub(crate) fn is_vault(text: &str) -> bool {
    text.trim_start().starts_with("$ANSIBLE_VAULT;")
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
