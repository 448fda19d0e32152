//! The web console every member serves over HTTP/1.1 (on its client
//! port through [`crate::http`], and on its metrics port): `GET /` is one
//! HTML page with inline CSS and JavaScript ([`PAGE`], embedded in the
//! binary: no external script, no build step, no network), which polls
//! `GET /api/cluster` every second and draws the members' table and a
//! chart of the commit index, and polls this member's `/metrics` and
//! charts its request rates, request and fsync percentiles, proposals and
//! leader changes (parsed in the page: no endpoint of its own).
//!
//! - `GET /api/status`: this member's own view, as JSON ([`status`]): its
//!   Raft state (role, term, leader, commit, applied, log size), its store
//!   (revision, size, alarms), its version, and the member table.
//! - `GET /api/log` (and `/api/log/values`, refused while authentication
//!   is on): the last entries of this member's log ([`log`]).
//! - `GET /api/cluster`: a JSON array with one object per member of the
//!   member table, in id order ([`cluster`]). This member answers for
//!   itself; every other member is asked server-side, over gRPC
//!   (`Maintenance.Status`, the call `etcdctl endpoint status` makes),
//!   within [`PEER_TIMEOUT`], so the browser talks to one origin (no CORS)
//!   and TLS between members is the members' own. A member that does not
//!   answer in time is `{"id": N, "address": ..., "error": "..."}`.
//!
//! Invariant: every number the page shows comes from a member's answer;
//! a field a member's gRPC Status does not carry (its role, its log size)
//! is derived from what it does carry (role) or left `null` (log size),
//! never made up.

use std::time::Duration;

use flotilla_proto::etcdserverpb as pb;
use flotilla_raft::NodeId;
use flotilla_runtime::lock;
use http::StatusCode;
use serde_json::{Value, json};

use crate::core::Core;

/// The console page.
pub const PAGE: &str = include_str!("console.html");

/// How long `/api/cluster` waits for each other member's status: the
/// page polls every second, so a member slower than this is shown down.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether `GET path` is one of the console's paths.
pub(crate) fn serves(path: &str) -> bool {
    matches!(
        path,
        "/" | "/api/status" | "/api/cluster" | "/api/log" | "/api/log/values"
    )
}

/// Entries `/api/log` shows.
pub const LOG_ENTRIES: usize = 50;
/// Bytes of each payload `/api/log/values` shows.
pub const PREVIEW_BYTES: usize = 120;

/// The status, content type and body of `GET path`, one of [`serves`]'s.
pub(crate) async fn answer(core: &Core, path: &str) -> (StatusCode, &'static str, String) {
    const JSON: &str = "application/json";
    match path {
        "/" => (StatusCode::OK, "text/html; charset=utf-8", PAGE.to_string()),
        "/api/status" => (StatusCode::OK, JSON, status(core).to_string()),
        "/api/cluster" => (StatusCode::OK, JSON, cluster(core).await.to_string()),
        "/api/log" => log(core, false).await,
        "/api/log/values" if auth_enabled(core) => (
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8",
            "403 the log's values are not shown while authentication is enabled\n".into(),
        ),
        "/api/log/values" => log(core, true).await,
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n".into(),
        ),
    }
}

fn auth_enabled(core: &Core) -> bool {
    lock(&core.sm).replica.store().auth().enabled()
}

/// `/api/log`: the last [`LOG_ENTRIES`] entries this member's log holds,
/// oldest first, each `index`, `term`, `kind` (`noop`, `command`,
/// `conf-change`) and `bytes`; with `values`, also `preview`: the first
/// [`PREVIEW_BYTES`] of its payload, bytes outside printable ASCII shown
/// as `.` (a command is binary: keys and values show through).
async fn log(core: &Core, values: bool) -> (StatusCode, &'static str, String) {
    let entries = match core.node.log_tail(LOG_ENTRIES, values).await {
        Ok(e) => e,
        Err(e) => {
            let body = format!("503 the log cannot be read: {e}\n");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                body,
            );
        }
    };
    let rows: Vec<Value> = (entries.iter())
        .map(|e| {
            let mut row = json!({
                "index": e.index.0,
                "term": e.term.0,
                "kind": e.kind,
                "bytes": e.bytes,
            });
            if let Some(data) = &e.data {
                let shown = data.iter().take(PREVIEW_BYTES);
                let preview: String = shown
                    .map(|&b| {
                        if (0x20..0x7f).contains(&b) {
                            b as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                row["preview"] = preview.into();
            }
            row
        })
        .collect();
    (
        StatusCode::OK,
        "application/json",
        Value::from(rows).to_string(),
    )
}

/// This member's own status.
pub fn status(core: &Core) -> Value {
    let s = core.node.status();
    let members: Vec<Value> = core
        .member_list()
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "name": m.name,
                "client_urls": m.client_ur_ls,
                "peer_urls": m.peer_ur_ls,
                "learner": m.is_learner,
            })
        })
        .collect();
    let (revision, db_size, alarms) = {
        let sm = lock(&core.sm);
        let store = sm.replica.store();
        let alarms: Vec<Value> = store
            .alarms()
            .map(|(member, kind)| json!({"member": member, "alarm": format!("{kind:?}")}))
            .collect();
        (store.revision(), store.size_bytes(), alarms)
    };
    json!({
        "id": core.me.get(),
        "name": format!("node{}", core.me),
        "address": own_address(core),
        "role": s.role.to_string(),
        "term": s.term.0,
        "leader": s.leader.map(NodeId::get),
        "commit": s.commit.0,
        "applied": s.applied.0,
        "last_index": s.last_index.0,
        "log_bytes": s.log_bytes,
        "revision": revision,
        "db_size": db_size,
        "alarms": alarms,
        "version": crate::cluster::VERSION,
        "learner": s.learners.contains(&s.id),
        "members": members,
    })
}

/// This member's address, as the member table has it (the founders'
/// `--peers`, or a joiner's added URL).
fn own_address(core: &Core) -> Option<String> {
    lock(&core.sm)
        .members
        .list()
        .iter()
        .find(|m| m.id == core.me)
        .map(|m| m.addr.clone())
}

/// Every member's status, asked concurrently; in member-id order.
pub async fn cluster(core: &Core) -> Value {
    let members = core.member_list();
    let mut asks = tokio::task::JoinSet::new();
    for (i, m) in members.iter().enumerate() {
        let core = core.clone();
        let (id, address) = (m.id, m.peer_ur_ls.first().cloned());
        asks.spawn(async move {
            let answer = if id == core.me.get() {
                status(&core)
            } else {
                match peer_status(&core, NodeId(id)).await {
                    Ok(s) => s,
                    Err(e) => json!({"id": id, "error": e}),
                }
            };
            (i, with_address(answer, address))
        });
    }
    let mut answers = vec![Value::Null; members.len()];
    while let Some(done) = asks.join_next().await {
        // A task that panicked leaves its member `null`; the page shows
        // it down rather than losing the whole answer.
        if let Ok((i, answer)) = done {
            answers[i] = answer;
        }
    }
    Value::Array(answers)
}

/// `answer` with the member's URL from the member table, when it has
/// none of its own.
fn with_address(mut answer: Value, address: Option<String>) -> Value {
    if let (Some(obj), Some(addr)) = (answer.as_object_mut(), address) {
        obj.entry("url").or_insert(Value::String(addr));
    }
    answer
}

/// Member `id`'s status, as its `Maintenance.Status` answers it within
/// [`PEER_TIMEOUT`].
async fn peer_status(core: &Core, id: NodeId) -> Result<Value, String> {
    let channel = core
        .channel(id)
        .ok_or_else(|| "no address for the member".to_string())?;
    let mut client = pb::maintenance_client::MaintenanceClient::new(channel);
    let answer = tokio::time::timeout(PEER_TIMEOUT, client.status(pb::StatusRequest {}))
        .await
        .map_err(|_| format!("no answer within {PEER_TIMEOUT:?}"))?
        .map_err(|e| e.message().to_string())?
        .into_inner();
    Ok(from_status(id, &answer))
}

/// The console's JSON of a member's gRPC status. gRPC's Status has no
/// role: a member that names itself leader leads, a learner learns, any
/// other member follows (or campaigns: the table shows its term move).
fn from_status(id: NodeId, s: &pb::StatusResponse) -> Value {
    let header = s.header.unwrap_or_default();
    let role = if s.leader == id.get() {
        "leader"
    } else if s.is_learner {
        "learner"
    } else {
        "follower"
    };
    json!({
        "id": id.get(),
        "name": format!("node{id}"),
        "role": role,
        "term": s.raft_term,
        "leader": (s.leader != 0).then_some(s.leader),
        "commit": s.raft_index,
        "applied": s.raft_applied_index,
        "last_index": Value::Null,
        "log_bytes": Value::Null,
        "revision": header.revision,
        "db_size": s.db_size,
        "alarms": s.errors,
        "version": s.version,
        "learner": s.is_learner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_s_role_is_read_from_its_status() {
        let mut s = pb::StatusResponse {
            leader: 2,
            raft_term: 7,
            raft_index: 40,
            raft_applied_index: 39,
            ..Default::default()
        };
        let leader = from_status(NodeId(2), &s);
        assert_eq!(leader["role"], "leader");
        assert_eq!(leader["term"], 7);
        assert_eq!(leader["commit"], 40);
        assert_eq!(leader["applied"], 39);
        assert_eq!(from_status(NodeId(3), &s)["role"], "follower");
        s.is_learner = true;
        assert_eq!(from_status(NodeId(3), &s)["role"], "learner");
        s.leader = 0;
        assert_eq!(from_status(NodeId(3), &s)["leader"], Value::Null);
    }

    #[test]
    fn the_page_is_self_contained() {
        assert!(PAGE.contains("/api/cluster"));
        assert!(!PAGE.contains("<script src"), "no external script");
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
    }
}
