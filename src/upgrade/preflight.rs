//! Pre-flight: learn everything about every member at once, change nothing, and
//! list every reason an upgrade must not start (design §1 step 1).

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;

use crate::etcd::commands::{self, HostFacts};
use crate::etcd::discover;
use crate::etcd::rules::{member_refusals, MemberInput, Setting};
use crate::etcd::{upgrade_step, EtcdClient, Member, UpgradeStep, Version};
use crate::events::CheckRow;

use super::fleet::HostLink;
use super::remote_host::RemoteHost;

/// What the pre-flight saw of one member.
pub struct MemberView {
    pub host: String,
    pub facts: Option<HostFacts>,
    pub client: Option<EtcdClient>,
    /// The client's twin (`EtcdClient::twin`), made on first use by the roll's gates.
    pub twin: Option<EtcdClient>,
    pub id: u64,
    pub running: Option<Version>,
    pub cluster_version: Option<Version>,
    pub healthy: bool,
    pub health_answer: String,
    pub leader_id: u64,
    pub raft_index: u64,
    pub v2_enabled: bool,
    pub auth_enabled: Option<bool>,
    pub step: Option<UpgradeStep>,
    pub problems: Vec<String>,
    /// Stopped by a restart script that never finished (its turn file is there and
    /// the service is down): the run named here left it so; a changing command
    /// starts it again before anything else.
    pub left_stopped: Option<String>,
}

impl MemberView {
    pub(crate) fn new(host: &str) -> MemberView {
        MemberView {
            host: host.to_string(),
            facts: None,
            client: None,
            twin: None,
            id: 0,
            running: None,
            cluster_version: None,
            healthy: false,
            health_answer: String::new(),
            leader_id: 0,
            raft_index: 0,
            v2_enabled: false,
            auth_enabled: None,
            step: None,
            problems: Vec::new(),
            left_stopped: None,
        }
    }

    /// The client and its twin, for two questions at once.
    pub fn client_pair(&mut self) -> Option<(&mut EtcdClient, &mut EtcdClient)> {
        let client = self.client.as_mut()?;
        let twin = self.twin.get_or_insert_with(|| client.twin());
        Some((client, twin))
    }

    pub fn is_leader(&self) -> bool {
        self.id != 0 && self.leader_id == self.id
    }
}

/// The whole cluster as the pre-flight saw it.
pub struct ClusterView {
    pub members: Vec<MemberView>,
    pub member_list: Vec<Member>,
    pub cluster_version: Option<Version>,
    /// Problems that belong to no single host.
    pub problems: Vec<String>,
}

impl ClusterView {
    pub fn refused(&self) -> bool {
        !self.problems.is_empty() || self.members.iter().any(|m| !m.problems.is_empty())
    }

    /// The members left stopped by an interrupted run, to start again first.
    pub fn left_stopped(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].left_stopped.is_some())
            .collect()
    }

    pub fn all_problems(&self) -> Vec<String> {
        let mut out = self.problems.clone();
        for m in &self.members {
            out.extend(m.problems.iter().map(|p| format!("{}: {p}", m.host)));
        }
        out
    }

    pub fn leader_host(&self) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.is_leader())
            .map(|m| m.host.as_str())
    }

    pub fn check_rows(&self, target: Option<Version>) -> Vec<CheckRow> {
        self.members
            .iter()
            .map(|m| CheckRow {
                host: m.host.clone(),
                version: m.running.map(|v| v.to_string()),
                target: target.map(|v| v.to_string()),
                healthy: m.healthy,
                leader: m.is_leader(),
                plan: match &m.step {
                    Some(UpgradeStep::AlreadyThere) => "already there: skip".into(),
                    Some(UpgradeStep::Patch) => "patch upgrade".into(),
                    Some(UpgradeStep::NextMinor) => "minor upgrade".into(),
                    Some(UpgradeStep::Refused(_)) => "refused".into(),
                    None if m.left_stopped.is_some() => "left stopped: start it first".into(),
                    None if m.healthy => "healthy".into(),
                    None => "unhealthy".into(),
                },
                problems: m.problems.clone(),
            })
            .collect()
    }
}

/// Limits for the pre-flight's requests.
#[derive(Clone, Copy, Debug)]
pub struct SurveyLimits {
    pub command: Duration,
}

/// Survey every member at once. `target` adds the upgrade rules; without it, only
/// health, membership and versions are checked.
pub async fn survey(
    links: &[HostLink],
    target: Option<Version>,
    limits: SurveyLimits,
) -> ClusterView {
    let members = join_all(links.iter().map(|l| survey_member(l, target, limits))).await;
    let mut view = ClusterView {
        members,
        member_list: Vec::new(),
        cluster_version: None,
        problems: Vec::new(),
    };
    // The member list, asked of the leader if it answers, else any healthy member.
    let order: Vec<usize> = {
        let mut idx: Vec<usize> = (0..view.members.len()).collect();
        idx.sort_by_key(|i| (!view.members[*i].is_leader(), !view.members[*i].healthy));
        idx
    };
    for i in order {
        if let Some(c) = view.members[i].client.as_mut() {
            if let Ok(list) = c.members().await {
                view.member_list = list;
                break;
            }
        }
    }
    view.cluster_version = view.members.iter().filter_map(|m| m.cluster_version).min();
    cluster_rules(&mut view, target);
    view
}

pub(crate) async fn survey_member(
    link: &dyn RemoteHost,
    target: Option<Version>,
    limits: SurveyLimits,
) -> MemberView {
    if let Err(e) = link.reachable() {
        let mut m = MemberView::new(link.name());
        m.problems.push(format!("unreachable: {}", e.detail()));
        return m;
    }
    // The probe (a shell command) and the questions to etcd (HTTP through a
    // tunnel) need nothing from each other: ask both at once.
    let probing = async {
        match link
            .run_privileged(
                &commands::probe(link.etcd(), &super::lock::turn_file(link.lock_dir())),
                limits.command,
            )
            .await
        {
            Ok(out) if out.success() => Ok(commands::parse_probe(&out.stdout_text())),
            Ok(out) => Err(format!(
                "the pre-flight probe failed ({}): {}",
                out.describe_exit(),
                out.last_error_line()
            )),
            Err(e) => Err(format!("the pre-flight probe failed: {}", e.detail())),
        }
    };
    let (probed, (mut m, unanswered)) = tokio::join!(probing, ask_member(link, target, limits));
    match probed {
        Ok(facts) => m.facts = Some(facts),
        Err(problem) => m.problems.insert(0, problem),
    }
    if let Some(e) = unanswered {
        match m.facts.as_ref() {
            Some(f) if !f.service_active && f.unfinished_turn.is_some() => {
                m.left_stopped = f.unfinished_turn.clone();
            }
            _ => m.problems.push(format!(
                "etcd does not answer at {} ({e}): every member must be up and healthy before an upgrade, \
                 so that stopping one never costs quorum",
                link.etcd().client_url
            )),
        }
    }
    if m.client.is_some() {
        member_rules(&mut m, link, target);
    }
    m
}

/// How often a member that answers `/health` false is asked before it counts as
/// unhealthy, and the pause between.
const HEALTH_ASKS: usize = 3;
const HEALTH_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// What the member's own API says: version, health, status, v2, auth. Returns
/// the error of `/version` when it did not answer (the probe tells what it means).
/// Asked over two connections, two questions at a time (each a round trip on a
/// far link): `/version` with the v2 probe, then `/health` with the status.
async fn ask_member(
    link: &dyn RemoteHost,
    target: Option<Version>,
    limits: SurveyLimits,
) -> (MemberView, Option<String>) {
    let mut m = MemberView::new(link.name());
    let mut client = match link.etcd_client(limits.command).await {
        Ok(c) => c,
        Err(e) => {
            m.problems.push(e);
            return (m, None);
        }
    };
    let mut unanswered = None;
    let mut twin = client.twin();
    let (version, v2) = futures::join!(client.version(), twin.v2_enabled());
    twin.adopt_api(&client);
    match version {
        Ok(v) => {
            m.running = Version::parse(&v.server);
            m.cluster_version = Version::parse(&v.cluster);
        }
        Err(e) => unanswered = Some(e.to_string()),
    }
    if m.running.is_some() {
        let (mut health, status) = futures::join!(client.health(), twin.status());
        // A member's /health is a quorum read with a one-second limit: an
        // election, or a loaded host, makes it false for a moment. Asked again
        // before the member is called unhealthy, which refuses the upgrade.
        for _ in 0..HEALTH_ASKS - 1 {
            if matches!(&health, Ok(h) if h.healthy) {
                break;
            }
            tokio::time::sleep(HEALTH_PAUSE).await;
            health = client.health().await;
        }
        match health {
            Ok(h) => {
                m.healthy = h.healthy;
                m.health_answer = h.answer.clone();
                if !h.healthy {
                    m.problems.push(format!(
                        "unhealthy: /health answered {} ({HEALTH_ASKS} times, {} apart); fix it before upgrading \
                         (stopping another member could cost quorum)",
                        h.answer,
                        humantime::format_duration(HEALTH_PAUSE)
                    ));
                }
            }
            Err(e) => m.problems.push(format!("/health failed: {e}")),
        }
        if let Ok(s) = status {
            m.id = s.member_id;
            m.leader_id = s.leader;
            m.raft_index = s.raft_index;
        }
        m.v2_enabled = v2.unwrap_or(false);
        if m.running.is_some_and(|v| v < Version::new(3, 5, 0))
            && target.is_some_and(|t| t >= Version::new(3, 5, 0))
        {
            m.auth_enabled = client.auth_enabled().await.unwrap_or(None);
        }
    }
    m.client = Some(client);
    m.twin = Some(twin);
    (m, unanswered)
}

/// The per-member rules of the upgrade guides.
fn member_rules(m: &mut MemberView, link: &dyn RemoteHost, target: Option<Version>) {
    let vars = link.etcd();
    let Some(facts) = m.facts.clone() else { return };
    let installed = facts.binary_version.as_deref().and_then(Version::parse);
    if installed.is_none() {
        m.problems.push(format!(
            "no runnable etcd at {} (etcd_binary): set etcd_binary to the path the service runs",
            vars.binary
        ));
    }
    if facts.etcdctl_version.is_none() {
        m.problems.push(format!(
            "no runnable etcdctl at {} (etcdctl_binary): it is needed for the backups",
            vars.etcdctl_binary
        ));
    }
    if !facts.data_dir_exists {
        m.problems.push(format!(
            "data dir {} (etcd_data_dir) does not exist",
            vars.data_dir
        ));
    }
    // systemd's view (`etcd::discover`): a unit that could not be started again
    // after its stop, or that would not run the binary etcdroll swaps.
    if let Some(unit) = link.unit() {
        if target.is_some() {
            m.problems.extend(discover::unit_problems(
                unit,
                &vars.binary,
                &vars.service,
                vars.replace_packaged,
            ));
        }
    }
    let Some(target) = target else { return };
    let Some(running) = m.running else { return };
    // A binary already swapped to the target while the old one still runs is the
    // trace of an interrupted run: the restart will finish it.
    if let Some(inst) = installed {
        if inst != running && inst != target {
            m.problems.push(format!(
                "{} is etcd {inst} but the member runs {running}: etcd_binary does not point at the running binary",
                vars.binary
            ));
        }
    }
    let step = upgrade_step(running, target);
    if let UpgradeStep::Refused(why) = &step {
        m.problems
            .push(format!("not a supported upgrade path: {why}"));
    }
    if step != UpgradeStep::AlreadyThere {
        // The guides' member rules (etcd::rules): v3 data before 3.2, no auth
        // from 3.4 to 3.5, no v2 before 3.6, no --experimental-* before 3.7.
        let input = MemberInput {
            has_v3_data: facts.has_v3_data,
            auth_enabled: m.auth_enabled,
            settings: facts
                .settings
                .iter()
                .map(|(text, source)| Setting {
                    text: text.clone(),
                    source: source.clone(),
                })
                .collect(),
            v2store_clean: facts.v2store.as_deref().map(|v| v == "clean"),
        };
        for why in member_refusals(running, target, &input) {
            m.problems.push(if why.starts_with("member/snap/db") {
                format!("{}/{why}", vars.data_dir)
            } else {
                why
            });
        }
        // Snapshot plus a copy of the data dir, with a 10% margin.
        let need = facts
            .data_kib
            .saturating_mul(2)
            .saturating_add(facts.data_kib / 10)
            .max(1024);
        match facts.backup_free_kib {
            Some(free) if free < need => m.problems.push(format!(
                "not enough space for the backup in {}: {} KiB free, {} KiB needed (data dir {} KiB, twice plus 10%); \
                 free space or set etcd_backup_dir",
                vars.backup_dir, free, need, facts.data_kib
            )),
            None => m.problems.push(format!("cannot tell the free space of {} (etcd_backup_dir)", vars.backup_dir)),
            _ => {}
        }
    }
    m.step = Some(step);
}

/// Rules about the cluster as a whole: membership and quorum.
fn cluster_rules(view: &mut ClusterView, target: Option<Version>) {
    if view.member_list.is_empty() {
        if view.members.iter().any(|m| m.running.is_some()) {
            view.problems
                .push("no member answered the member list request; cannot check membership".into());
        }
        return;
    }
    let inventory_ids: HashSet<u64> = view
        .members
        .iter()
        .map(|m| m.id)
        .filter(|id| *id != 0)
        .collect();
    let listed: HashSet<u64> = view.member_list.iter().map(|m| m.id).collect();
    let v2_cluster = view.cluster_version.is_some_and(|v| v.major < 3);
    for m in &view.member_list {
        if m.is_learner || m.name.is_empty() {
            let hint = if v2_cluster {
                " Adding a v3 node to a v2.3 cluster during upgrades is not supported and could trigger panics (etcd issue 7249)."
            } else {
                ""
            };
            view.problems.push(format!(
                "member {:x} ({}) is {}: a membership change is in progress; finish it before upgrading \
                 (etcd: no membership changes during an upgrade).{hint}",
                m.id,
                m.peer_urls.join(","),
                if m.is_learner { "a learner" } else { "added but not started" }
            ));
        } else if !inventory_ids.contains(&m.id) && view.members.iter().all(|h| h.id != 0) {
            let hint = if v2_cluster {
                " Adding a v3 member to a v2.3 cluster during an upgrade is not supported and can panic (etcd issue 7249)."
            } else {
                ""
            };
            view.problems.push(format!(
                "member {} ({:x}, {}) is in the cluster but not in the inventory: an upgrade covers every member; \
                 add it to the inventory (or remove it from the cluster before starting).{hint}",
                m.name,
                m.id,
                m.peer_urls.join(",")
            ));
        }
    }
    for m in &view.members {
        if m.id != 0 && !listed.contains(&m.id) {
            view.problems.push(format!(
                "{} (member {:x}) is not in the cluster's member list: is it a member of another cluster?",
                m.host, m.id
            ));
        }
    }
    // Quorum: with one member stopped, the rest must still be a majority of healthy members.
    let healthy = view.members.iter().filter(|m| m.healthy).count();
    let total = view.member_list.len();
    // Members an interrupted run left stopped are started again first, as long as
    // the others hold quorum meanwhile; past that, they are problems like any other.
    let left = view.left_stopped();
    if !left.is_empty() {
        if healthy + left.len() == total && healthy > total / 2 {
            return;
        }
        for i in left {
            let m = &mut view.members[i];
            let why = format!(
                "stopped, left so by an interrupted etcdroll {}",
                m.left_stopped.take().unwrap_or_default()
            );
            m.problems.push(why);
        }
    }
    if target.is_some() && total > 1 && healthy < total {
        view.problems.push(format!(
            "only {healthy} of {total} members are healthy: stopping one more could cost quorum; \
             every member must be healthy before an upgrade"
        ));
    }
}

#[cfg(test)]
#[path = "preflight_tests.rs"]
mod tests;
