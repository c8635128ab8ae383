//! Live progress bars on a terminal: a line per host showing its current step, a
//! line for the cluster (or, with several clusters, a heading per cluster), and the
//! reports printed above them. Kept apart from the plain and JSON renderers, which
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
        }
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
        let style = ProgressStyle::with_template("{prefix:.bold} {spinner:.cyan} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = ProgressBar::new_spinner()
            .with_style(style)
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
        let _ = self.multi.println(s);
    }

    pub(super) fn render(&mut self, e: &Event) {
        match e {
            Event::Step { host, step, detail } => {
                let bar = self.bar(host);
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
                let secs = self
                    .upload_started
                    .get(host)
                    .map(|t| t.elapsed().as_secs_f64())
                    .unwrap_or(0.0)
                    .max(0.001);
                let mib = |b: u64| b as f64 / 1048576.0;
                bar.set_message(format!(
                    "uploading {:.1}/{:.1} MiB ({:.0} MiB/s)",
                    mib(*sent),
                    mib(*total),
                    mib(*sent) / secs
                ));
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
            Event::Hop { .. } => {
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
                // Final reports go below the bars, which stop drawing first.
                for bar in self.hosts.values() {
                    if !bar.is_finished() {
                        bar.abandon();
                    }
                }
                if let Some(c) = &self.cluster {
                    c.abandon();
                }
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
