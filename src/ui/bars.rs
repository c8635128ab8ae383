//! Live progress bars on a terminal: a run line (member i of N, elapsed time,
//! phase, hop), a line per host showing its current step (a byte bar while it
//! uploads), a line for the cluster (or, with several clusters, a heading per
//! cluster), and the reports printed above them. At the run's end the bars stop
//! where they stand and the final reports print below them, so the last screen
//! holds each host once. Kept apart from the plain and JSON renderers, which
//! hold no state.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{ms, report, step_text, table};
use crate::events::{Event, Step};

pub(super) struct Bars {
    multi: MultiProgress,
    hosts: HashMap<String, ProgressBar>,
    cluster: Option<ProgressBar>,
    /// Per cluster, with several: its heading line.
    headings: Vec<(String, ProgressBar)>,
    upload_started: HashMap<String, Instant>,
    /// The run's own line, on top.
    run: Option<ProgressBar>,
    run_state: RunLine,
    /// The bars were left on screen for good: later output prints below them.
    detached: bool,
}

/// What the run line says.
#[derive(Default)]
struct RunLine {
    command: String,
    members: usize,
    finished: usize,
    phase: String,
    hop: Option<(usize, usize)>,
}

impl RunLine {
    fn text(&self) -> String {
        let mut parts = vec![style(&self.command).bold().to_string()];
        if self.members > 0 {
            parts.push(format!(
                "member {} of {}",
                (self.finished + 1).min(self.members),
                self.members
            ));
        }
        if let Some((i, n)) = self.hop {
            parts.push(format!("hop {i} of {n}"));
        }
        if !self.phase.is_empty() {
            parts.push(self.phase.clone());
        }
        parts.join(" · ")
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} {spinner:.cyan} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn upload_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:.bold} {spinner:.cyan} uploading [{bar:24.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

impl Bars {
    /// A bar per host, and the cluster's line beneath them.
    pub(super) fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(15)),
            hosts: HashMap::new(),
            cluster: None,
            headings: Vec::new(),
            upload_started: HashMap::new(),
            run: None,
            run_state: RunLine::default(),
            detached: false,
        }
    }

    /// The run line: created with the run, updated as it goes.
    fn update_run_line(&mut self) {
        if self.detached {
            return;
        }
        if self.run.is_none() {
            let style = ProgressStyle::with_template("{msg} · {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let bar = ProgressBar::new_spinner().with_style(style);
            let bar = self.multi.insert(0, bar);
            bar.enable_steady_tick(Duration::from_millis(500));
            self.run = Some(bar);
        }
        if let Some(r) = &self.run {
            r.set_message(self.run_state.text());
        }
    }

    /// Stop every bar where it stands and leave them on screen: what prints
    /// next goes below them, and nothing draws them again.
    pub(super) fn detach(&mut self) {
        if self.detached {
            return;
        }
        self.abandon_all();
        if let Some(r) = &self.run {
            r.abandon();
        }
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
        self.detached = true;
    }

    /// Stop drawing every bar, where it stands.
    pub(super) fn abandon_all(&self) {
        for bar in self.hosts.values() {
            bar.abandon();
        }
        if let Some(c) = &self.cluster {
            c.abandon();
        }
        for (_, h) in &self.headings {
            h.abandon();
        }
    }

    /// A heading per cluster, its hosts beneath it.
    pub(super) fn group_by_cluster(&mut self, clusters: &[(String, Vec<String>)]) {
        for (cluster, hosts) in clusters {
            let heading = ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            heading.set_message(format!("{} {cluster}", style("cluster").bold()));
            self.multi.add(heading.clone());
            heading.tick();
            self.headings.push((cluster.clone(), heading));
            for h in hosts {
                let bar = self.bar(h);
                bar.set_message("waiting");
            }
        }
    }

    /// Run `f` with the bars hidden.
    pub(super) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    fn bar(&mut self, host: &str) -> ProgressBar {
        if let Some(b) = self.hosts.get(host) {
            return b.clone();
        }
        let bar = ProgressBar::new_spinner()
            .with_style(spinner_style())
            .with_prefix(format!("{host:<12}"));
        let bar = match &self.cluster {
            Some(c) => self.multi.insert_before(c, bar),
            None => self.multi.add(bar),
        };
        bar.enable_steady_tick(Duration::from_millis(100));
        self.hosts.insert(host.to_string(), bar.clone());
        bar
    }

    fn println(&self, s: &str) {
        if self.detached {
            eprintln!("{s}");
        } else {
            let _ = self.multi.println(s);
        }
    }

    pub(super) fn render(&mut self, e: &Event) {
        match e {
            Event::Step { host, step, detail } => {
                let bar = self.bar(host);
                if self.upload_started.contains_key(host) && *step != Step::Uploading {
                    self.upload_started.remove(host);
                    bar.set_style(spinner_style());
                }
                let text = step_text(*step, detail);
                match step {
                    Step::Done | Step::Skipped => {
                        bar.finish_with_message(style(text).green().to_string());
                    }
                    Step::Failed => bar.abandon_with_message(style(text).red().bold().to_string()),
                    Step::Uploading => {
                        self.upload_started.insert(host.clone(), Instant::now());
                        bar.set_message(text);
                    }
                    _ => bar.set_message(text),
                }
            }
            Event::Upload { host, sent, total } => {
                let bar = self.bar(host);
                if bar.length() != Some(*total) {
                    bar.set_style(upload_style());
                    bar.set_length(*total);
                    bar.reset_elapsed();
                }
                bar.set_position(*sent);
            }
            Event::RunStarted { command, hosts, .. } => {
                self.run_state.command = command.clone();
                if command.starts_with("upgrade") || command.starts_with("rollback") {
                    self.run_state.members = hosts.len();
                }
                self.update_run_line();
            }
            Event::Phase { phase, .. } => {
                self.run_state.phase = phase.clone();
                self.update_run_line();
            }
            Event::CatchUp { host, gap } => {
                self.bar(host)
                    .set_message(format!("catching up: {gap} entries behind the leader"));
            }
            Event::HostDone {
                host,
                from,
                to,
                down_ms,
                ..
            } => {
                self.run_state.finished += 1;
                self.update_run_line();
                let bar = self.bar(host);
                bar.finish_with_message(
                    style(format!("done {from} → {to}, down {}", ms(*down_ms)))
                        .green()
                        .to_string(),
                );
            }
            Event::HostFailed { host, step, error } => {
                let bar = self.bar(host);
                bar.abandon_with_message(
                    style(format!("FAILED at {}: {error}", step.label()))
                        .red()
                        .bold()
                        .to_string(),
                );
            }
            Event::Cluster {
                name,
                cluster_version,
                leader,
                healthy,
                members,
            } => {
                // With several clusters, the cluster's heading carries its state.
                if let Some((n, heading)) = self
                    .headings
                    .iter()
                    .find(|(n, _)| Some(n.as_str()) == name.as_deref())
                {
                    heading.set_message(format!(
                        "{} {n} · version {cluster_version} · leader {} · {healthy}/{members} healthy",
                        style("cluster").bold(),
                        leader.as_deref().unwrap_or("-")
                    ));
                    return;
                }
                if self.cluster.is_none() {
                    let style = ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar());
                    self.cluster =
                        Some(self.multi.add(ProgressBar::new_spinner().with_style(style)));
                }
                if let Some(c) = &self.cluster {
                    c.set_message(format!(
                        "{} version {cluster_version} · leader {} · {healthy}/{members} healthy",
                        style("cluster").bold(),
                        leader.as_deref().unwrap_or("-")
                    ));
                }
            }
            Event::Check(row) => self.println(&table::check_line(row)),
            Event::Hop { index, of, .. } => {
                self.run_state.hop = Some((*index, *of));
                self.run_state.finished = 0;
                self.update_run_line();
                // A new hop of a path: its members get fresh bars below the last.
                for (_, bar) in self.hosts.drain() {
                    if !bar.is_finished() {
                        bar.abandon();
                    }
                }
                if let Some(c) = self.cluster.take() {
                    c.abandon();
                }
                if let Some(r) = report(e) {
                    self.println(&r);
                }
            }
            Event::RunFinished { .. } | Event::UpgradeSummary { .. } | Event::Summary { .. } => {
                // Final reports go below the bars, which stop where they stand
                // and are never drawn again.
                self.detach();
                if let Some(r) = report(e) {
                    self.println(&r);
                }
            }
            other => {
                if let Some(r) = report(other) {
                    self.println(&r);
                }
            }
        }
    }
}
