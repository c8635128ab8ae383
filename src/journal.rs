//! The local journal: every event of the runs that change a cluster (`upgrade`,
//! `rollback`, `backup`), one JSON object per line with its run id, appended to a
//! file on the controller. A re-run reads it to say where an interrupted run stopped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::events::{Emitter, Event};

/// `$XDG_STATE_HOME/etcdroll/journal.jsonl`, else `~/.local/state/etcdroll/journal.jsonl`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))?;
    Some(base.join("etcdroll/journal.jsonl"))
}

/// The emitter of a run that changes clusters (`command` on `hosts`): it records
/// every event in the journal at `path` (else `default_path`), after warning where
/// the previous run on these hosts stopped if it did not finish, and it opens with
/// `run_started`. Without a journal path, `emit` as it is.
pub fn start_run(
    emit: &Emitter,
    path: Option<PathBuf>,
    hosts: Vec<String>,
    run_id: &str,
    command: &str,
) -> Emitter {
    let Some(path) = path.or_else(default_path) else {
        return emit.clone();
    };
    if let Some(message) = unfinished_run(&path, &hosts) {
        emit(Event::Warning {
            host: None,
            message,
        });
    }
    let emit = recording(emit, &path, run_id);
    emit(Event::RunStarted {
        run_id: run_id.to_string(),
        command: command.to_string(),
        hosts,
    });
    emit
}

/// Wrap an emitter so every event is also appended to the journal. A journal that
/// cannot be written is reported once and then skipped: it never stops a run.
pub fn recording(emit: &Emitter, path: &Path, run_id: &str) -> Emitter {
    let file = open_private(path);
    let emit = emit.clone();
    let file = match file {
        Ok(f) => Some(Mutex::new(f)),
        Err(e) => {
            emit(Event::Warning {
                host: None,
                message: format!("cannot write the journal {}: {e}", path.display()),
            });
            None
        }
    };
    let run_id = run_id.to_string();
    Arc::new(move |e: Event| {
        if let Some(f) = &file {
            let mut v = serde_json::to_value(&e).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("run_id".into(), run_id.clone().into());
                o.insert(
                    "ts".into(),
                    humantime::format_rfc3339_millis(std::time::SystemTime::now())
                        .to_string()
                        .into(),
                );
            }
            if let Ok(mut f) = f.lock() {
                let _ = writeln!(f, "{v}");
            }
        }
        emit(e)
    })
}

/// The journal holds hosts, commands and steps of every run: private to its owner.
/// Its directory is made 0700, the file 0600, and a symlink in its place is refused
/// (O_NOFOLLOW), so nobody can point it at another file.
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.as_os_str().is_empty() && !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    // A journal made by an older etcdroll was 0644: tighten it.
    if meta.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// If the last run recorded for these hosts did not finish, a sentence saying where
/// it stopped (the last step seen per host).
pub fn unfinished_run(path: &Path, hosts: &[String]) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // The last run that touched any of these hosts.
    let last_run = events.iter().rev().find(|e| {
        e["host"]
            .as_str()
            .is_some_and(|h| hosts.iter().any(|x| x == h))
    })?["run_id"]
        .as_str()?
        .to_string();
    let run: Vec<&Value> = events
        .iter()
        .filter(|e| e["run_id"] == last_run.as_str())
        .collect();
    if run.iter().any(|e| e["event"] == "run_finished") {
        return None;
    }
    let mut last_steps: Vec<(String, String)> = Vec::new();
    for e in &run {
        let Some(h) = e["host"].as_str() else {
            continue;
        };
        let what = match e["event"].as_str() {
            Some("step") => e["step"].as_str().unwrap_or("").to_string(),
            Some("host_done") => "done".into(),
            Some("host_failed") => "failed".into(),
            _ => continue,
        };
        match last_steps.iter_mut().find(|(x, _)| x == h) {
            Some(entry) => entry.1 = what,
            None => last_steps.push((h.to_string(), what)),
        }
    }
    let started = run.first().and_then(|e| e["ts"].as_str()).unwrap_or("?");
    let steps: Vec<String> = last_steps
        .iter()
        .map(|(h, s)| format!("{h}: {s}"))
        .collect();
    Some(format!(
        "the previous run {last_run} (started {started}) did not finish; last step seen per member: {}. \
         This run checks every member first and continues from there",
        if steps.is_empty() { "none".to_string() } else { steps.join(", ") }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_journal_is_private_and_never_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/etcdroll/journal.jsonl");
        drop(open_private(&path).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("state/etcdroll/link.jsonl");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_private(&link).is_err(), "a symlink is refused");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
    }
}
