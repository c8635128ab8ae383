//! Renders the engine's events: live bars on a terminal, timestamped plain lines
//! otherwise, or JSON lines for automation. Knows nothing of SSH or etcd.

mod bars;
mod prompt;
mod table;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use console::style;

use bars::Bars;

use crate::events::{Emitter, Event, MemberState, Step};
use crate::upgrade::record::MemberRecord;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Timestamped plain lines.
    Plain,
    /// One JSON object per line (see README, "JSON events").
    Json,
    /// As auto, with more columns in `status` (SSH address, client URL, raft term).
    Wide,
}

/// `--output wide`: read by the tables, which render without a `Ui` at hand.
static WIDE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn wide() -> bool {
    WIDE.load(std::sync::atomic::Ordering::Relaxed)
}

enum Mode {
    Bars(Box<Bars>),
    Plain,
    Json,
}

pub struct Ui {
    mode: Mutex<Mode>,
}

impl Ui {
    pub fn new(format: OutputFormat) -> Arc<Ui> {
        if format == OutputFormat::Wide {
            WIDE.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let mode = match format {
            OutputFormat::Json => Mode::Json,
            OutputFormat::Plain => Mode::Plain,
            OutputFormat::Auto | OutputFormat::Wide
                if std::io::stderr().is_terminal() && std::io::stdout().is_terminal() =>
            {
                Mode::Bars(Box::new(Bars::new()))
            }
            OutputFormat::Auto | OutputFormat::Wide => Mode::Plain,
        };
        Arc::new(Ui {
            mode: Mutex::new(mode),
        })
    }

    pub fn is_json(&self) -> bool {
        matches!(*self.lock(), Mode::Json)
    }

    /// The emitter the engine gets.
    pub fn emitter(self: &Arc<Self>) -> Emitter {
        let ui = self.clone();
        Arc::new(move |e| ui.render(&e))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mode> {
        self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop drawing bars (before printing the final report).
    pub fn finish(&self) {
        if let Mode::Bars(b) = &mut *self.lock() {
            b.detach();
        }
    }

    /// With several clusters, lay the bars out grouped: a heading per cluster, its
    /// hosts beneath it.
    pub fn group_by_cluster(&self, clusters: &[(String, Vec<String>)]) {
        if let Mode::Bars(b) = &mut *self.lock() {
            b.group_by_cluster(clusters);
        }
    }

    /// Run `f` with the bars hidden (for a prompt on the terminal).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &*self.lock() {
            Mode::Bars(b) => b.suspend(f),
            _ => f(),
        }
    }

    /// Print the plan and ask on the terminal whether to go on (the bars hidden
    /// meanwhile).
    pub fn ask_to_proceed(&self, steps: &[String]) -> bool {
        self.suspend(|| prompt::ask_to_proceed(steps))
    }

    /// `etcdroll inventory`: one JSON document (like `ansible-inventory --list`),
    /// or a block per cluster with each host's settings and their origins.
    pub fn inventory(&self, inv: &crate::inventory::Inventory) {
        if self.is_json() {
            println!("{}", table::inventory_json(inv));
        } else {
            print!("{}", table::inventory_text(inv));
        }
    }

    /// Print a line outside the event stream (errors from main); JSON mode wraps it.
    pub fn error(&self, message: &str) {
        self.render(&Event::RunFinished {
            ok: false,
            exit_code: crate::exit::USAGE,
            message: Some(message.to_string()),
            next: Vec::new(),
            round_trips: crate::round_trips::so_far(),
        });
    }

    pub fn render(&self, e: &Event) {
        let mut mode = self.lock();
        match &mut *mode {
            Mode::Json => {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("ts".into(), timestamp().into());
                }
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{v}");
                let _ = out.flush();
            }
            Mode::Plain => plain(e),
            Mode::Bars(b) => b.render(e),
        }
    }
}

fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn step_text(step: Step, detail: &Option<String>) -> String {
    match detail {
        Some(d) => format!("{} ({d})", step.label()),
        None => step.label().to_string(),
    }
}

fn ms(v: Option<u64>) -> String {
    v.map(|m| format!("{:.2}s", m as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// Lines for the events that are reports rather than progress (same in every
/// non-JSON mode).
fn report(e: &Event) -> Option<String> {
    match e {
        Event::ExecResult {
            host,
            exit_status,
            stdout,
            stderr,
            ok,
        } => {
            let head = if *ok {
                style(format!(
                    "{host} | CHANGED | rc={} >>",
                    exit_status.unwrap_or(0)
                ))
                .green()
            } else {
                let rc = exit_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into());
                style(format!("{host} | FAILED | rc={rc} >>")).red()
            };
            let mut s = head.to_string();
            for part in [stdout, stderr] {
                let t = part.trim_end();
                if !t.is_empty() {
                    s.push('\n');
                    s.push_str(t);
                }
            }
            Some(s)
        }
        Event::HostUnreachable { host, error } => Some(
            style(format!("{host} | UNREACHABLE! | {error}"))
                .red()
                .to_string(),
        ),
        Event::Recap { hosts } => {
            let mut s = String::from("RECAP");
            for h in hosts {
                let word = if h.unreachable {
                    style("unreachable").red()
                } else if h.ok {
                    style("ok").green()
                } else {
                    style("failed").red()
                };
                s.push_str(&format!("\n  {:<20} {word}", h.host));
            }
            let ok = hosts.iter().filter(|h| h.ok).count();
            let unr = hosts.iter().filter(|h| h.unreachable).count();
            s.push_str(&format!(
                "\n  ok={ok} failed={} unreachable={unr}",
                hosts.len() - ok - unr
            ));
            Some(s)
        }
        Event::Summary { rows } => Some(table::members(rows)),
        Event::UpgradeSummary { rows } => Some(table::upgrade(rows)),
        Event::Plan { steps } => {
            let mut s = String::from("Plan:");
            for (i, st) in steps.iter().enumerate() {
                s.push_str(&format!("\n  {:>2}. {st}", i + 1));
            }
            Some(s)
        }
        Event::ClusterFinished {
            cluster,
            ok,
            message,
            ..
        } => {
            let m = format!("cluster {cluster}: {}", message.as_deref().unwrap_or(""));
            Some(if *ok {
                style(m).green().to_string()
            } else {
                style(m).red().bold().to_string()
            })
        }
        Event::Hop {
            index,
            of,
            from,
            to,
        } => Some(
            style(format!("── hop {index} of {of}: {from} → {to} ──"))
                .bold()
                .to_string(),
        ),
        Event::HopFinished {
            index,
            of,
            from,
            to,
            ok,
            message,
            ..
        } => {
            let m = format!(
                "hop {index} of {of} ({from} → {to}): {}",
                message.as_deref().unwrap_or("")
            );
            Some(if *ok {
                style(m).green().to_string()
            } else {
                style(m).red().bold().to_string()
            })
        }
        Event::RunFinished { ok, message, .. } => message.as_ref().map(|m| {
            if *ok {
                style(m).green().to_string()
            } else {
                style(m).red().bold().to_string()
            }
        }),
        Event::Discovered { hosts } => Some(table::discovered(hosts)),
        Event::Phase { phase, .. } if phase.starts_with("settle") => {
            Some(format!("{phase} before the next member"))
        }
        Event::Warning { host, message } => Some(
            style(format!(
                "warning: {}{message}",
                host.as_ref().map(|h| format!("{h}: ")).unwrap_or_default()
            ))
            .yellow()
            .to_string(),
        ),
        _ => None,
    }
}

fn plain(e: &Event) {
    let line = match e {
        Event::RunStarted {
            command,
            hosts,
            run_id,
        } => Some(format!("{command}: {} host(s), run {run_id}", hosts.len())),
        Event::Step { host, step, detail } => Some(format!("{host} {}", step_text(*step, detail))),
        Event::Upload { host, sent, total } if sent == total => {
            Some(format!("{host} uploaded {} bytes", total))
        }
        Event::CatchUp { host, gap } => {
            Some(format!("{host} catching up: {gap} raft entries behind"))
        }
        Event::HostDone {
            host,
            from,
            to,
            down_ms,
            catch_up_ms,
            ..
        } => Some(format!(
            "{host} done: {from} -> {to}, down {}, caught up in {}",
            ms(*down_ms),
            ms(*catch_up_ms)
        )),
        Event::HostFailed { host, step, error } => Some(
            style(format!("{host} FAILED at {}: {error}", step.label()))
                .red()
                .to_string(),
        ),
        Event::Cluster {
            name,
            cluster_version,
            leader,
            healthy,
            members,
        } => Some(format!(
            "cluster{}: version {cluster_version}, leader {}, {healthy}/{members} healthy",
            name.as_deref().map(|n| format!(" {n}")).unwrap_or_default(),
            leader.as_deref().unwrap_or("-")
        )),
        Event::Check(row) => Some(table::check_line(row)),
        Event::MemberStatus(_) => None,
        other => {
            if let Some(r) = report(other) {
                // Reports print as blocks without a timestamp, like Ansible's.
                println!("{r}");
            }
            None
        }
    };
    if let Some(l) = line {
        println!("{} {l}", timestamp());
    }
}

/// Red words for a member the operator must look at.
pub fn state_word(s: MemberState) -> String {
    match s {
        MemberState::Upgraded => style("upgraded").green().to_string(),
        MemberState::RolledBack => style("rolled back").yellow().to_string(),
        MemberState::Untouched => "untouched".to_string(),
        MemberState::Stopped => style("STOPPED").red().bold().to_string(),
        MemberState::Unknown => style("UNKNOWN").red().to_string(),
    }
}

/// The message of a run stopped by a second Ctrl-C: the state of every member
/// and its last step, and what the operator does next.
pub fn hard_stop_message(records: &[MemberRecord]) -> String {
    let states: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{}: {:?}{}",
                r.host,
                r.state,
                r.step
                    .map(|s| format!(" (last step: {})", s.label()))
                    .unwrap_or_default()
            )
        })
        .collect();
    format!(
        "stopped NOW by a second Ctrl-C. Member states:\n  {}\nA member shown Unknown may be mid-restart: \
         check it with `etcdroll status`, then run `etcdroll upgrade` again to finish or `etcdroll rollback`.",
        states.join("\n  ")
    )
}
