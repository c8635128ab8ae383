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

/// Wrap an emitter so every event is also appended to the journal. A journal that
/// cannot be written is reported once and then skipped: it never stops a run.
pub fn recording(emit: &Emitter, path: &Path, run_id: &str) -> Emitter {
    let file = std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).and_then(|_| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    });
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
