//! The v2 API's answers for status and the member list, for members of 2.3, of
//! a cluster still on 2.3, or refusing v3 calls: ids in hex, the raft index from
//! the `X-Raft-Index` header of a local read.

use serde_json::Value;

use super::answers::str_list;
use super::{EtcdClient, EtcdError, Member, MemberStatus};

impl EtcdClient {
    pub(super) async fn status_v2(&mut self) -> Result<MemberStatus, EtcdError> {
        let me = self.json("/v2/stats/self", None).await?;
        let hex = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .unwrap_or(0)
        };
        let member_id = hex(me.get("id"));
        let leader = if me.get("state").and_then(Value::as_str) == Some("StateLeader") {
            member_id
        } else {
            hex(me.get("leaderInfo").and_then(|l| l.get("leader")))
        };
        // A local (non-quorum) read of the root answers with this member's raft index.
        let path = "/v2/keys/?quorum=false";
        let (status, raft_index, body) = self.request_with_raft_index(path, None).await?;
        if status != 200 {
            return Err(EtcdError::Status {
                url: self.url.clone(),
                path: path.into(),
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        Ok(MemberStatus {
            member_id,
            leader,
            version: String::new(),
            raft_index: raft_index.unwrap_or(0),
            raft_term: 0,
            db_size: 0,
        })
    }

    pub(super) async fn members_v2(&mut self) -> Result<Vec<Member>, EtcdError> {
        let v = self.json("/v2/members", None).await?;
        Ok(v.get("members")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .map(|m| Member {
                        id: m
                            .get("id")
                            .and_then(Value::as_str)
                            .and_then(|s| u64::from_str_radix(s, 16).ok())
                            .unwrap_or(0),
                        name: m
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        peer_urls: str_list(m, "peerURLs"),
                        client_urls: str_list(m, "clientURLs"),
                        is_learner: false,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}
