//! What a member answers, as etcdroll uses it: the same types whichever API
//! (v2 or a v3 gateway prefix) gave them, and the choice of API by version.
//! grpc-gateway's JSON quirks (uint64 as a string) are read here.

use serde::Deserialize;
use serde_json::Value;

/// `/version`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct VersionInfo {
    #[serde(rename = "etcdserver")]
    pub server: String,
    #[serde(rename = "etcdcluster")]
    pub cluster: String,
}

/// `/health`, parsed from the body (served as text/plain on every version).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    pub healthy: bool,
    /// The body as answered, for reports.
    pub answer: String,
}

/// One member's view of itself (`/v3/maintenance/status`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemberStatus {
    pub member_id: u64,
    pub leader: u64,
    pub version: String,
    pub raft_index: u64,
    pub raft_term: u64,
    pub db_size: u64,
}

/// How a member is asked for its status and the member list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `/v2/stats/self`, `/v2/members`, the raft index from `X-Raft-Index`.
    V2,
    /// The v3 JSON gateway under this path prefix.
    V3(&'static str),
}

impl Api {
    /// The API for a member of `server` version in a cluster of `cluster` version.
    pub fn for_versions(
        server: crate::etcd::Version,
        cluster: Option<crate::etcd::Version>,
    ) -> Api {
        use crate::etcd::Version as V;
        if server < V::new(3, 0, 0) || cluster.is_some_and(|c| c < V::new(3, 0, 0)) {
            Api::V2
        } else if server < V::new(3, 3, 0) {
            Api::V3("/v3alpha")
        } else if server < V::new(3, 4, 0) {
            Api::V3("/v3beta")
        } else {
            Api::V3("/v3")
        }
    }
}

/// An entry of the member list.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// grpc-gateway renders uint64 as a JSON string; older ones as a number.
pub(super) fn u64_field(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

pub(super) fn str_list(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
