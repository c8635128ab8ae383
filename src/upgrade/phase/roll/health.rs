//! The gates a member's turn waits at: healthy on the expected version, caught
//! up with the leader, every member healthy again. All are polls against a
//! deadline, so they share one `Deadline`. On a far link each question is a round
//! trip, so questions are asked together: a member's `/version` and `/health` at
//! once over its two connections (`MemberView::client_pair`), and the catch-up
//! and cluster-health gates' first round in one.

use std::time::{Duration, Instant};

use futures::future::join_all;

use std::sync::Mutex;

use super::Roll;
use crate::etcd::{EtcdClient, Health, MemberStatus, Version};
use crate::events::Event;
use crate::upgrade::preflight::MemberView;

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

/// Poll a member until it answers `/health` true on `version` — its `/version`
/// and `/health` asked at once on its two connections — and return the cluster
/// version it reported and when. Polls forever: the caller bounds it (it runs
/// while the member's restart script does, and under the health timeout after).
/// Connections that break (the member stopping) are redialed by the client.
/// `last` keeps the last answer for the caller's message.
pub async fn poll_new_version(
    view: &mut MemberView,
    version: Version,
    interval: Duration,
    last: &Mutex<String>,
) -> (String, Instant) {
    let note = |answer: String| {
        if let Ok(mut l) = last.lock() {
            *l = answer;
        }
    };
    let Some((client, twin)) = view.client_pair() else {
        note("no client for this member".into());
        return std::future::pending().await;
    };
    loop {
        match ask_new_version(client, twin, version).await {
            Ok(cluster_version) => return (cluster_version, Instant::now()),
            Err(answer) => note(answer),
        }
        tokio::time::sleep(interval).await;
    }
}

/// One round of the "healthy on `version`" question: `/version` on `client` and
/// `/health` on `twin`, at once. The cluster version the member reported, or
/// what it answered instead.
async fn ask_new_version(
    client: &mut EtcdClient,
    twin: &mut EtcdClient,
    version: Version,
) -> Result<String, String> {
    let (v, h) = futures::join!(client.version(), twin.health());
    match v {
        Ok(v) if Version::parse(&v.server) == Some(version) => match h {
            Ok(h) if h.healthy => Ok(v.cluster),
            Ok(h) => Err(format!("/health answered {}", h.answer)),
            Err(e) => Err(e.to_string()),
        },
        Ok(v) => Err(format!("it reports etcd {}, expected {version}", v.server)),
        Err(e) => Err(e.to_string()),
    }
}

impl Roll<'_> {
    /// Poll member `i` until `/health` is true and it reports `version`, both
    /// asked at once on fresh connections (the member has just restarted).
    pub async fn wait_healthy(
        &mut self,
        i: usize,
        version: Version,
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = Deadline::after(limit, self.ctx.opts.poll_interval);
        let mut last: String;
        let Some((client, twin)) = self.members[i].view.client_pair() else {
            return Err("no client for this member".into());
        };
        client.reset();
        twin.reset();
        let cluster_version = loop {
            match ask_new_version(client, twin, version).await {
                Ok(cluster_version) => break cluster_version,
                Err(answer) => last = answer,
            }
            if !deadline.pause().await {
                return Err(format!(
                    "not healthy on {version} within {}: last answer: {last}",
                    humantime::format_duration(limit)
                ));
            }
        };
        self.seen.cluster_version = Some(cluster_version);
        Ok(())
    }

    /// Wait until member `i`'s raft index reaches the leader's. `statuses` is
    /// the first round (every member's, asked at once: the leader, its index and
    /// this member's); later rounds ask only this member.
    pub(super) async fn wait_caught_up(
        &mut self,
        i: usize,
        statuses: Vec<Option<MemberStatus>>,
    ) -> Result<(), String> {
        let opts = self.ctx.opts;
        let deadline = Deadline::after(opts.catch_up_timeout, opts.poll_interval);
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
    /// `first`: answers just read, for the first round.
    pub(super) async fn wait_cluster_healthy(
        &mut self,
        mut first: Option<Vec<(String, Result<Health, String>)>>,
    ) -> Result<(), String> {
        let opts = self.ctx.opts;
        let deadline = Deadline::after(opts.health_timeout, opts.poll_interval);
        loop {
            let answers = match first.take() {
                Some(a) => a,
                None => self.all_health().await,
            };
            let sick: Vec<String> = answers
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

    /// Every member's status and `/health` in one round: the status on its
    /// client, `/health` on the twin, every member at once.
    pub(super) async fn all_status_and_health(
        &mut self,
    ) -> (
        Vec<Option<MemberStatus>>,
        Vec<(String, Result<Health, String>)>,
    ) {
        let asks = self.members.iter_mut().map(|m| async move {
            let name = m.name().to_string();
            let Some((client, twin)) = m.view.client_pair() else {
                return (None, (name, Err("no client".to_string())));
            };
            let (s, h) = futures::join!(client.status(), twin.health());
            let s = s.ok();
            if let Some(s) = &s {
                m.view.id = s.member_id;
                m.view.leader_id = s.leader;
            }
            (s, (name, h.map_err(|e| e.to_string())))
        });
        join_all(asks).await.into_iter().unzip()
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
