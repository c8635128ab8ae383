//! The record of each member during a run: its state, step, backup and
//! downtime. Shared with the Ctrl-C handler, so a hard stop can still say which
//! member is in which state, and turned into the summary at the end.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::events::{MemberState, Step, SummaryRow};

#[derive(Clone, Debug)]
pub struct MemberRecord {
    pub host: String,
    pub from: String,
    pub to: String,
    pub state: MemberState,
    pub step: Option<Step>,
    pub backup: Option<String>,
    pub down_ms: Option<u64>,
    pub catch_up_ms: Option<u64>,
    pub down_at_ms: Option<u64>,
    pub up_at_ms: Option<u64>,
}

impl MemberRecord {
    /// A member not yet touched by this run.
    pub fn new(host: &str, from: String, to: String, state: MemberState) -> MemberRecord {
        MemberRecord {
            host: host.to_string(),
            from,
            to,
            state,
            step: None,
            backup: None,
            down_ms: None,
            catch_up_ms: None,
            down_at_ms: None,
            up_at_ms: None,
        }
    }
}

pub type Records = Arc<Mutex<Vec<MemberRecord>>>;

/// The records, even after a panic elsewhere poisoned the lock: a report must
/// still be possible.
pub fn lock(records: &Records) -> MutexGuard<'_, Vec<MemberRecord>> {
    records.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn replace(records: &Records, new: Vec<MemberRecord>) {
    *lock(records) = new;
}

/// One member's record in the shared list.
#[derive(Clone)]
pub struct Record {
    all: Records,
    index: usize,
}

impl Record {
    pub fn new(all: Records, index: usize) -> Record {
        Record { all, index }
    }

    pub fn update(&self, f: impl FnOnce(&mut MemberRecord)) {
        if let Some(r) = lock(&self.all).get_mut(self.index) {
            f(r);
        }
    }

    pub fn read<T>(&self, f: impl FnOnce(&MemberRecord) -> T) -> Option<T> {
        lock(&self.all).get(self.index).map(f)
    }
}

pub fn summary_rows(records: &Records) -> Vec<SummaryRow> {
    lock(records)
        .iter()
        .map(|r| SummaryRow {
            host: r.host.clone(),
            from: r.from.clone(),
            to: r.to.clone(),
            state: r.state,
            backup: r.backup.clone(),
            down_ms: r.down_ms,
            catch_up_ms: r.catch_up_ms,
            down_at_ms: r.down_at_ms,
            up_at_ms: r.up_at_ms,
        })
        .collect()
}

/// The oldest version any member started this run on: the cluster version a
/// rollback can still return to.
pub fn oldest_from(records: &Records) -> String {
    lock(records)
        .iter()
        .map(|r| r.from.clone())
        .filter(|v| !v.is_empty())
        .min()
        .unwrap_or_else(|| "the old one".into())
}
