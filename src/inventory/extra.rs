//! Ansible's extra vars: `-e KEY=VALUE` (several pairs in one argument, split as
//! a shell would), `-e @FILE` (a YAML or JSON mapping) and `-e '{"key": …}'`
//! (JSON). As in Ansible they take precedence over every host and group
//! variable, for every host.

use std::path::{Path, PathBuf};

use super::raw::{RawVar, Value};
use super::{InventoryError, Location};

/// The `-e` arguments of a run, parsed, in order (a later one wins).
#[derive(Debug, Default, Clone)]
pub struct ExtraVars(pub(crate) Vec<RawVar>);

impl ExtraVars {
    pub fn parse(args: &[String]) -> Result<ExtraVars, InventoryError> {
        let mut vars = Vec::new();
        for arg in args {
            if let Some(file) = arg.strip_prefix('@') {
                vars.extend(from_file(Path::new(file))?);
                continue;
            }
            let given = if arg.trim_start().starts_with('{') {
                from_mapping(arg, &Location::extra_vars(), true)?
            } else {
                from_pairs(arg)?
            };
            // A value on the command line is in every `ps`, and etcdroll records
            // its command line (journal, lock file, the resume hint).
            if let Some(v) = given
                .iter()
                .find(|v| v.key.to_ascii_lowercase().contains("pass"))
            {
                return Err(usage(format!(
                    "{} on the command line would be visible to every user (ps) and recorded in the \
                     journal and the lock file: put it in a file (-e @FILE), or use -K or ETCDROLL_BECOME_PASS",
                    v.key
                )));
            }
            vars.extend(given);
        }
        Ok(ExtraVars(vars))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Location {
    fn extra_vars() -> Location {
        Location {
            file: PathBuf::from("-e"),
            line: 0,
            column: 0,
        }
    }
}

fn usage(message: String) -> InventoryError {
    InventoryError::File {
        path: PathBuf::from("-e"),
        message,
    }
}

fn from_pairs(arg: &str) -> Result<Vec<RawVar>, InventoryError> {
    let words = shlex::split(arg).ok_or_else(|| usage(format!("unbalanced quotes in {arg:?}")))?;
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(RawVar {
                key: k.to_string(),
                value: Value::Str(v.to_string()),
                loc: Location::extra_vars(),
            }),
            _ => Err(usage(format!(
                "{w:?} is not KEY=VALUE (use -e KEY=VALUE, -e @FILE or -e '{{\"KEY\": VALUE}}')"
            ))),
        })
        .collect()
}

fn from_file(path: &Path) -> Result<Vec<RawVar>, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if super::raw::is_vault(&text) {
        return Err(usage(format!(
            "{} is Ansible Vault-encrypted, which etcdroll cannot decrypt: pass a decrypted copy \
             (ansible-vault view {} > a file only you can read), or -K for the become password",
            path.display(),
            path.display()
        )));
    }
    let loc = Location {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
    };
    let json = path.extension().is_some_and(|e| e == "json");
    from_mapping(&text, &loc, json)
}

/// A mapping of variables, YAML (a superset of JSON) unless `json`.
fn from_mapping(text: &str, loc: &Location, json: bool) -> Result<Vec<RawVar>, InventoryError> {
    let map: serde_json::Map<String, serde_json::Value> = if json {
        serde_json::from_str(text)
            .map_err(|e| usage(format!("{}: not a JSON mapping: {e}", loc.file.display())))?
    } else {
        serde_saphyr::from_str(text)
            .map_err(|e| usage(format!("{}: not a YAML mapping: {e}", loc.file.display())))?
    };
    Ok(map
        .into_iter()
        .map(|(key, v)| RawVar {
            key,
            value: Value::of_json(&v),
            loc: loc.clone(),
        })
        .collect())
}
