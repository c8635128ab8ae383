//! Reading one variable's value as the type etcdroll needs (a string, a
//! boolean, a port, a path), with Ansible's leniency (`yes`, `1`, `~/`) and an
//! error that points at where the variable was written.

use std::path::{Path, PathBuf};

use super::{InventoryError, RawVar, Value};

/// A path on this machine: `~` expanded, a relative one taken from the
/// inventory's directory (the file's where it was written; for one written in
/// `group_vars/` or `host_vars/`, the directory that holds those).
pub(super) fn local_path(v: &RawVar) -> Result<PathBuf, InventoryError> {
    let p = expand_home(&required(v)?);
    if p.is_relative() {
        let file = &v.loc.file;
        let vars_dir = file.ancestors().skip(1).find(|a| {
            a.file_name()
                .is_some_and(|n| n == "group_vars" || n == "host_vars")
        });
        if let Some(dir) = vars_dir.and_then(Path::parent).or_else(|| file.parent()) {
            return Ok(dir.join(p));
        }
    }
    Ok(p)
}

pub(super) fn at(v: &RawVar, message: String) -> InventoryError {
    InventoryError::At {
        location: v.loc.clone(),
        message,
    }
}

/// Jinja, which Ansible evaluates and etcdroll does not: `{{ }}`, `{% %}`, `{# #}`.
pub(super) fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// Why a value etcdroll reads cannot be used as written (a template, a Vault
/// value), with what to do instead. The value itself is never repeated.
pub(super) fn unusable(v: &RawVar) -> Option<String> {
    let key = &v.key;
    let secret = key.to_ascii_lowercase().contains("pass");
    match &v.value {
        Value::Str(s) if is_template(s) => Some(if secret {
            format!(
                "{key} is a Jinja template, which etcdroll does not evaluate: \
                 give the password with -K or ETCDROLL_BECOME_PASS, or with -e @FILE (a file only you can read)"
            )
        } else {
            format!(
                "{key} is a Jinja template, which etcdroll does not evaluate: \
                 write the value itself, or pass it with -e {key}=VALUE"
            )
        }),
        Value::Vault => Some(if secret {
            format!(
                "{key} is an Ansible Vault value (!vault), which etcdroll cannot decrypt: \
                 give the password with -K or ETCDROLL_BECOME_PASS, or with -e @FILE (a file only you can read)"
            )
        } else {
            format!(
                "{key} is an Ansible Vault value (!vault), which etcdroll cannot decrypt: \
                 pass it decrypted with -e @FILE (a file only you can read)"
            )
        }),
        _ => None,
    }
}

pub(super) fn string_of(v: &RawVar) -> Result<Option<String>, InventoryError> {
    if let Some(why) = unusable(v) {
        return Err(at(v, why));
    }
    match &v.value {
        Value::Str(s) => Ok(Some(s.clone())),
        Value::Vault => Err(at(v, format!("{} is an Ansible Vault value", v.key))),
        Value::Int(i) => Ok(Some(i.to_string())),
        Value::Float(f) => Ok(Some(f.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Null => Ok(None),
        Value::Complex => Err(at(
            v,
            format!("{} must be a string, found a list or map", v.key),
        )),
    }
}

pub(super) fn bool_of(v: &RawVar) -> Result<bool, InventoryError> {
    if let Some(why) = unusable(v) {
        return Err(at(v, why));
    }
    match &v.value {
        Value::Bool(b) => Ok(*b),
        Value::Int(1) => Ok(true),
        Value::Int(0) => Ok(false),
        Value::Str(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(at(
                v,
                format!("{} must be a boolean (true/false), found {s:?}", v.key),
            )),
        },
        other => Err(at(
            v,
            format!("{} must be a boolean (true/false), found {other:?}", v.key),
        )),
    }
}

pub(super) fn port_of(v: &RawVar) -> Result<u16, InventoryError> {
    let s = string_of(v)?.unwrap_or_default();
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            at(
                v,
                format!("{} must be a port number (1-65535), found {s:?}", v.key),
            )
        })
}

pub(super) fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

pub(super) fn required(v: &RawVar) -> Result<String, InventoryError> {
    match string_of(v)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(at(v, format!("{} must not be empty", v.key))),
    }
}
