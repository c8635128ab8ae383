//! The gates a member's turn waits at: healthy on the expected version, caught
//! up with the leader, every member healthy again. All are polls against a
//! deadline, so they share one `Deadline`.

use std::time::{Duration, Instant};

use futures::future::join_all;

use super::Roll;
use crate::etcd::{Health, Version};
use crate::events::Event;

/// A poll's time limit: `pause` sleeps one interval, or says the time is up.
pub struct Deadline {
    at: Instant,
    poll: Duration,
}

impl Deadline {
    pub fn after(limit: Duration, poll: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            poll,
        }
    }

    /// False (at once) when the deadline has passed; else sleeps one interval.
    pub async fn pause(&self) -> bool {
        if Instant::now() >= self.at {
            return false;
        }
        tokio::time::sleep(self.poll).await;
        true
    }
}

impl Roll<'_> {
    /// Poll member `i` until `/health` is true and it reports `version`.
    pub async fn wait_healthy(
        &mut self,
        i: usize,
        version: Version,
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = Deadline::after(limit, self.ctx.opts.poll_interval);
        let mut last: String;
        let Some(client) = self.members[i].client() else {
            return Err("no client for this member".into());
        };
        client.reset();
        loop {
            match client.version().await {
                Ok(v) if Version::parse(&v.server) == Some(version) => {
                    match client.health().await {
                        Ok(h) if h.healthy => {
                            self.seen.cluster_version = Some(v.cluster);
                            return Ok(());
                        }
                        Ok(h) => last = format!("/health answered {}", h.answer),
                        Err(e) => last = e.to_string(),
                    }
                }
                Ok(v) => last = format!("it reports etcd {}, expected {version}", v.server),
                Err(e) => last = e.to_string(),
            }
            if !deadline.pause().await {
                return Err(format!(
                    "not healthy on {version} within {}: last answer: {last}",
                    humantime::format_duration(limit)
                ));
            }
        }
    }

    /// Wait until member `i`'s raft index reaches the leader's. The first round
    /// asks every member at once, which gives the leader, its index and this
    /// member's; later rounds ask only this member.
    pub(super) async fn wait_caught_up(&mut self, i: usize) -> Result<(), String> {
        let opts = self.ctx.opts;
        let deadline = Deadline::after(opts.catch_up_timeout, opts.poll_interval);
        let statuses = self.all_status().await;
        let leader = self.leader_among(&statuses);
        self.seen.leader = leader;
        let target_index = leader
            .and_then(|l| statuses[l].as_ref())
            .map_or(0, |s| s.raft_index);
        let host = self.members[i].name().to_string();
        let mut unanswered = None;
        let mut first = statuses[i].as_ref().map(|s| s.raft_index);
        loop {
            let idx = match first.take() {
                Some(idx) => idx,
                None => match self.members[i].client() {
                    Some(c) => match c.status().await {
                        Ok(s) => s.raft_index,
                        Err(e) => {
                            unanswered = Some(e.to_string());
                            0
                        }
                    },
                    None => 0,
                },
            };
            if idx >= target_index {
                return Ok(());
            }
            (self.ctx.emit)(Event::CatchUp {
                host: host.clone(),
                gap: target_index - idx,
            });
            if !deadline.pause().await {
                return Err(match unanswered.filter(|_| idx == 0) {
                    Some(e) => format!(
                        "its raft index could not be read within {} ({e}); it is running the new version and healthy",
                        humantime::format_duration(opts.catch_up_timeout)
                    ),
                    None => format!(
                        "still {} raft entries behind the leader after {}; it is running the new version and healthy",
                        target_index - idx,
                        humantime::format_duration(opts.catch_up_timeout)
                    ),
                });
            }
        }
    }

    /// Wait until every member answers `/health` true, asking all of them at once
    /// (on 2.3–3.0 one `/health` is a quorum read costing a few hundred ms).
    pub(super) async fn wait_cluster_healthy(&mut self) -> Result<(), String> {
        let opts = self.ctx.opts;
        let deadline = Deadline::after(opts.health_timeout, opts.poll_interval);
        loop {
            let sick: Vec<String> = self
                .all_health()
                .await
                .into_iter()
                .filter_map(|(name, h)| match h {
                    Ok(h) if h.healthy => None,
                    Ok(h) => Some(format!("{name}: {}", h.answer)),
                    Err(e) => Some(format!("{name}: {e}")),
                })
                .collect();
            if sick.is_empty() {
                return Ok(());
            }
            if !deadline.pause().await {
                return Err(format!(
                    "the cluster did not become healthy: {}",
                    sick.join("; ")
                ));
            }
        }
    }

    /// Every member's `/health`, asked in parallel.
    pub(super) async fn all_health(&mut self) -> Vec<(String, Result<Health, String>)> {
        let asks = self.members.iter_mut().map(|m| async move {
            let name = m.name().to_string();
            let h = match m.client() {
                Some(c) => c.health().await.map_err(|e| e.to_string()),
                None => Err("no client".to_string()),
            };
            (name, h)
        });
        join_all(asks).await
    }
}
