//! The shard server's console, on its metrics port (`--metrics-listen`),
//! served by `flotilla_tls::pages`:
//! - `GET /`: one HTML page ([`PAGE`], embedded, inline CSS and
//!   JavaScript, no network) that polls `/api/shards` every second and
//!   draws the latest configuration's shards by group and state, the
//!   migrations in progress, and each group's Raft state here;
//! - `GET /api/shards`: this server's view as JSON ([`shards_json`]);
//! - `GET /metrics`: Prometheus text: per group (label `group`, 0 the
//!   controller) its Raft gauges, configuration number, shards by state
//!   and data bytes; for the process, the hosts' counters summed and the
//!   shared WAL's sync latency.
//!
//! Invariant: every figure is read from this server's replicas (their
//! status and state machines) at the request; nothing is remembered or
//! made up. A group's view is as this server's replica has applied it,
//! which may lag the group's leader: the page says which server it shows.

use std::fmt::Write as _;
use std::sync::Arc;

use flotilla_raft::Role;
use flotilla_runtime::{NodeStatus, lock, metrics::Metrics};
use flotilla_shardkv::{Gid, ShardState};
use flotilla_tls::pages::Pages;

use crate::hosted::Hosted;
use crate::service::state_name;

/// The console page.
pub const PAGE: &str = include_str!("console.html");

/// The console's paths over `hosted`, with the process's `metrics`.
pub fn pages(hosted: Arc<Hosted>, metrics: Arc<Metrics>) -> Pages {
    Arc::new(move |path| match path {
        "/" => Some(("text/html; charset=utf-8", PAGE.to_string())),
        "/api/shards" => Some(("application/json", shards_json(&hosted))),
        "/metrics" => Some((
            "text/plain; version=0.0.4; charset=utf-8",
            metrics_text(&hosted, &metrics),
        )),
        _ => None,
    })
}

/// One group's replica here, as both endpoints show it.
struct GroupView {
    gid: Gid,
    status: NodeStatus,
    config_num: u64,
    /// Each shard the replica holds, with its state.
    shards: Vec<(usize, ShardState)>,
    data_bytes: u64,
}

fn views(h: &Hosted) -> Vec<GroupView> {
    let ctrl = GroupView {
        gid: 0,
        status: h.ctrl.node.status(),
        config_num: h.latest().num,
        shards: Vec::new(),
        data_bytes: 0,
    };
    let groups = h.groups.iter().map(|(&gid, g)| {
        let (config_num, shards, data_bytes) = {
            let m = lock(&g.sm);
            let shards = m.states().into_iter().collect();
            (m.config().num, shards, m.data_bytes() as u64)
        };
        GroupView {
            gid,
            status: g.node.status(),
            config_num,
            shards,
            data_bytes,
        }
    });
    std::iter::once(ctrl).chain(groups).collect()
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Leader => "leader",
        Role::Candidate | Role::PreCandidate => "candidate",
        Role::Follower => "follower",
    }
}

/// `/api/shards`: `member`; `latest` (the controller's latest
/// configuration here: `num`, `shards` as each shard's gid, `groups` as
/// gid to servers); `groups`, one per replica here in gid order (0 the
/// controller): `gid`, `role`, `term`, `leader` (0: none known),
/// `commit`, `applied`, `config_num`, `data_bytes`, and `shards`, each
/// held shard's state (`serving`, `pulling`, `arrived`, `leaving`).
pub fn shards_json(h: &Hosted) -> String {
    let latest = h.latest();
    let groups: Vec<serde_json::Value> = views(h)
        .into_iter()
        .map(|v| {
            let shards: serde_json::Map<String, serde_json::Value> = (v.shards.iter())
                .map(|&(s, st)| (s.to_string(), state_name(st).into()))
                .collect();
            serde_json::json!({
                "gid": v.gid,
                "role": role_name(v.status.role),
                "term": v.status.term.0,
                "leader": v.status.leader.map_or(0, |l| l.get()),
                "commit": v.status.commit.0,
                "applied": v.status.applied.0,
                "config_num": v.config_num,
                "data_bytes": v.data_bytes,
                "shards": shards,
            })
        })
        .collect();
    let servers: serde_json::Map<String, serde_json::Value> = (latest.groups.iter())
        .map(|(g, s)| (g.to_string(), s.clone().into()))
        .collect();
    serde_json::json!({
        "member": h.me.get(),
        "latest": {"num": latest.num, "shards": latest.shards, "groups": servers},
        "groups": groups,
    })
    .to_string()
}

/// A per-group gauge: its name, its help, and how to read it.
type Gauge = (&'static str, &'static str, fn(&GroupView) -> u64);

/// `/metrics`: see the module docs.
pub fn metrics_text(h: &Hosted, metrics: &Metrics) -> String {
    let mut out = String::new();
    let views = views(h);
    let gauges: [Gauge; 7] = [
        ("flotilla_raft_term", "The Raft term.", |v| v.status.term.0),
        ("flotilla_raft_commit_index", "The commit index.", |v| {
            v.status.commit.0
        }),
        ("flotilla_raft_applied_index", "The applied index.", |v| {
            v.status.applied.0
        }),
        (
            "flotilla_raft_is_leader",
            "1 if this replica leads its group.",
            |v| u64::from(v.status.leader == Some(v.status.id)),
        ),
        (
            "flotilla_raft_log_bytes",
            "Log bytes since the snapshot.",
            |v| v.status.log_bytes,
        ),
        (
            "flotilla_shard_config_num",
            "The configuration the group has applied.",
            |v| v.config_num,
        ),
        (
            "flotilla_shard_data_bytes",
            "Bytes of keys and values the group holds.",
            |v| v.data_bytes,
        ),
    ];
    for (name, help, f) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for v in &views {
            let _ = writeln!(out, "{name}{{group=\"{}\"}} {}", v.gid, f(v));
        }
    }
    let name = "flotilla_shards";
    let _ = writeln!(
        out,
        "# HELP {name} Shards a group holds, by state.\n# TYPE {name} gauge"
    );
    let states = [
        ShardState::Serving,
        ShardState::Pulling,
        ShardState::Arrived,
        ShardState::Leaving,
    ];
    for v in views.iter().filter(|v| v.gid != 0) {
        for st in states {
            let n = v.shards.iter().filter(|(_, s)| *s == st).count();
            let state = state_name(st);
            let _ = writeln!(out, "{name}{{group=\"{}\",state=\"{state}\"}} {n}", v.gid);
        }
    }
    metrics.render_process(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_asks_for_its_json() {
        assert!(PAGE.contains("fetch(\"/api/shards\""));
        for outside in [
            "http://",
            "https://",
            "<script src",
            "<link",
            "@import",
            "//cdn",
        ] {
            assert!(!PAGE.contains(outside), "the page names {outside}");
        }
    }
}
