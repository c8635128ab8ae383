//! The calls that differ by API: asked through the member's v3 gateway prefix,
//! or through v2 where the member (or its cluster) has no usable v3 API, and
//! falling back to v2 when a v3 call is refused as "not capable".

use serde_json::Value;

use super::answers::{str_list, u64_field};
use super::{Api, EtcdClient, EtcdError, Member, MemberStatus};

impl EtcdClient {
    /// The member's id, leader and raft index: from the v3 gateway, or on v2
    /// from `/v2/stats/self` and the `X-Raft-Index` of a v2 read (no db size there).
    pub async fn status(&mut self) -> Result<MemberStatus, EtcdError> {
        let prefix = match self.api().await? {
            Api::V2 => return self.status_v2().await,
            Api::V3(p) => p,
        };
        let path = format!("{prefix}/maintenance/status");
        // A 3.5 member of a cluster migrated from v2 may not know the cluster
        // version until it next changes, and refuses v3 calls meanwhile ("not
        // capable", seen in the lab on 3.4 → 3.5 after a path from 2.3): ask v2.
        let v = match self.json(&path, Some("{}")).await {
            Err(e) if e.is_not_capable() => {
                return self.status_v2().await.map_err(|_| e);
            }
            r => r?,
        };
        let member_id = v
            .get("header")
            .map(|h| u64_field(h, "member_id"))
            .unwrap_or(0);
        Ok(MemberStatus {
            member_id,
            leader: u64_field(&v, "leader"),
            version: v
                .get("version")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            raft_index: u64_field(&v, "raftIndex"),
            raft_term: u64_field(&v, "raftTerm"),
            db_size: u64_field(&v, "dbSize"),
        })
    }

    /// The member list: v3 gateway, or v2 `/v2/members`.
    pub async fn members(&mut self) -> Result<Vec<Member>, EtcdError> {
        let prefix = match self.api().await? {
            Api::V2 => return self.members_v2().await,
            Api::V3(p) => p,
        };
        let path = format!("{prefix}/cluster/member/list");
        let v = match self.json(&path, Some("{}")).await {
            Err(e) if e.is_not_capable() => {
                return self.members_v2().await.map_err(|_| e);
            }
            r => r?,
        };
        Ok(v.get("members")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .map(|m| Member {
                        id: u64_field(m, "ID"),
                        name: m
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        peer_urls: str_list(m, "peerURLs"),
                        client_urls: str_list(m, "clientURLs"),
                        is_learner: m.get("isLearner").and_then(Value::as_bool).unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Ask this member (which must be the leader) to hand leadership to `target`.
    /// etcd has this from 3.3 (the caller checks the version first).
    pub async fn move_leader(&mut self, target: u64) -> Result<(), EtcdError> {
        let prefix = match self.api().await? {
            Api::V3(p) => p,
            Api::V2 => {
                return Err(self.decode_err(
                    "/maintenance/transfer-leadership",
                    "this member has no v3 API to move leadership with".into(),
                ))
            }
        };
        let body = format!("{{\"targetID\":\"{target}\"}}");
        self.json(
            &format!("{prefix}/maintenance/transfer-leadership"),
            Some(&body),
        )
        .await?;
        Ok(())
    }

    /// Whether auth is enabled (3.4 → 3.5 cannot roll with auth on: the WAL format of
    /// auth entries changed). None when the member cannot say (before 3.5 there is no
    /// status call, and an auth-enabled cluster refuses the probe).
    pub async fn auth_enabled(&mut self) -> Result<Option<bool>, EtcdError> {
        let prefix = match self.api().await? {
            Api::V3(p) => p,
            Api::V2 => return Ok(None),
        };
        match self
            .json(&format!("{prefix}/auth/status"), Some("{}"))
            .await
        {
            Ok(v) => Ok(v.get("enabled").and_then(Value::as_bool).or(Some(false))),
            Err(EtcdError::Status { status: 404, .. }) => Ok(None),
            Err(EtcdError::Status { body, .. })
                if body.contains("permission denied") || body.contains("user name") =>
            {
                Ok(Some(true))
            }
            Err(EtcdError::Status { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
