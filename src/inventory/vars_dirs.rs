//! `group_vars/` and `host_vars/` beside the inventory, found and read as
//! Ansible's `host_group_vars` plugin does: for an entity NAME, the first of
//! `NAME` (a file, or a directory read recursively in sorted order), `NAME.yml`,
//! `NAME.yaml`, `NAME.json`; in a directory, hidden files and `~` backups are
//! skipped, and only files with no extension or one of those three are read.
//! A whole file encrypted with Ansible Vault is not read, and says so in a note.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::raw::is_vault;
use super::yaml::{loc, vars, Vars};
use super::{InventoryError, Location, RawVar};

const EXTENSIONS: &[&str] = &["yml", "yaml", "json"];

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Group,
    Host,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Group => "group_vars",
            Kind::Host => "host_vars",
        }
    }
}

/// The variables of `group_vars/` and `host_vars/` under one directory, each
/// entity's read once.
pub(super) struct VarsDirs {
    base: PathBuf,
    cache: HashMap<(Kind, String), Vec<RawVar>>,
    pub notes: Vec<String>,
}

impl VarsDirs {
    pub fn new(base: &Path) -> VarsDirs {
        VarsDirs {
            base: base.to_path_buf(),
            cache: HashMap::new(),
            notes: Vec::new(),
        }
    }

    /// The variables set for one group or host, in the order they apply (a later
    /// one wins).
    pub fn get(&mut self, kind: Kind, name: &str) -> Result<&[RawVar], InventoryError> {
        let key = (kind, name.to_string());
        if !self.cache.contains_key(&key) {
            let mut out = Vec::new();
            for file in self.files(kind, name) {
                out.extend(read_vars_file(&file, &mut self.notes)?);
            }
            self.cache.insert(key.clone(), out);
        }
        Ok(self.cache.get(&key).map(Vec::as_slice).unwrap_or_default())
    }

    fn files(&mut self, kind: Kind, name: &str) -> Vec<PathBuf> {
        // As in Ansible, a name that is a path is not looked up (and a name that
        // would step out of the directory is not either).
        if name.is_empty() || name.starts_with('/') || name.contains("..") || name.contains('\0') {
            return Vec::new();
        }
        let dir = self.base.join(kind.dir());
        if !dir.is_dir() {
            if dir.exists() {
                let note = format!(
                    "{}: not read: {} must be a directory",
                    dir.display(),
                    kind.dir()
                );
                if !self.notes.contains(&note) {
                    self.notes.push(note);
                }
            }
            return Vec::new();
        }
        let mut found = Vec::new();
        for ext in std::iter::once("").chain(EXTENSIONS.iter().copied()) {
            let path = if ext.is_empty() {
                dir.join(name)
            } else {
                dir.join(format!("{name}.{ext}"))
            };
            if path.is_dir() {
                dir_files(&path, &mut found);
                break;
            }
            if path.exists() {
                found.push(path);
                break;
            }
        }
        found
    }
}

/// Ansible's `_get_dir_vars_files`: sorted, recursive into directories with no
/// extension, files with no extension or a YAML/JSON one.
fn dir_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<std::ffi::OsString> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let s = name.to_string_lossy();
        if s.starts_with('.') || s.ends_with('~') {
            continue;
        }
        let path = dir.join(&name);
        let ext = Path::new(&name).extension().map(|e| e.to_string_lossy());
        if path.is_dir() {
            if ext.is_none() {
                dir_files(&path, out);
            }
        } else if path.is_file() && ext.as_deref().is_none_or(|e| EXTENSIONS.contains(&e)) {
            out.push(path);
        }
    }
}

/// One vars file: a YAML (or JSON) mapping of variables, each with its line.
pub(super) fn read_vars_file(
    path: &Path,
    notes: &mut Vec<String>,
) -> Result<Vec<RawVar>, InventoryError> {
    let bytes = std::fs::read(path).map_err(|source| InventoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let Ok(text) = String::from_utf8(bytes) else {
        return Err(InventoryError::File {
            path: path.to_path_buf(),
            message: "not UTF-8 text (expected a YAML or JSON mapping of variables)".to_string(),
        });
    };
    if is_vault(&text) {
        notes.push(format!(
            "{}: not read: Ansible Vault-encrypted; if it sets variables etcdroll uses, pass them with -e @FILE",
            path.display()
        ));
        return Ok(Vec::new());
    }
    let options = serde_saphyr::options! { strict_booleans: true };
    let map: Option<Vars> = serde_saphyr::from_str_with_options(&text, options).map_err(|e| {
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
                "{} (expected a YAML or JSON mapping of variables)",
                e.without_snippet()
            ),
        }
    })?;
    Ok(vars(path, map))
}
