//! Prometheus metrics: counters and histograms kept in atomics, rendered
//! in the text exposition format 0.0.4 (the etcd server serves them on
//! its client and metrics ports, `flotilla_etcd::http`).
//!
//! Invariants: recording never blocks or allocates (atomics only);
//! histogram buckets are cumulative when rendered, as Prometheus requires.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flotilla_host::Counters;

use crate::NodeStatus;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            d.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// The etcd methods whose latency is recorded.
pub const METHODS: [&str; 5] = ["Range", "Put", "DeleteRange", "Txn", "Compact"];

/// A node's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// What the replica host counts (proposals, applies, leader
    /// changes, snapshots, refused peer messages).
    pub replica: Arc<Counters>,
    /// Peer messages dropped undecoded: bytes that are no message, or a
    /// message not addressed to this node or not from the batch's sender.
    pub peer_messages_undecodable: AtomicU64,
    /// Members' hashes of the key history compared with this member's
    /// as leader (the etcd server's corruption checks).
    pub corruption_checks: AtomicU64,
    /// Connections whose TLS handshake failed or stalled (a certificate
    /// from an untrusted CA, none where one is required, garbage).
    pub tls_handshakes_failed: AtomicU64,
    /// WAL sync latency.
    pub fsync: Histogram,
    /// etcd request latency, per method of [`METHODS`].
    pub requests: [Histogram; METHODS.len()],
}

impl Metrics {
    /// Records one etcd request of `method` (one of [`METHODS`]).
    pub fn request(&self, method: &str, d: Duration) {
        if let Some(i) = METHODS.iter().position(|m| *m == method) {
            self.requests[i].observe(d);
        }
    }

    /// The exposition text, with gauges from `status` and the bytes sent
    /// to each peer (`sent`, [`crate::Transport::sent_bytes`]).
    pub fn render(&self, status: &NodeStatus, sent: &[(flotilla_raft::NodeId, u64)]) -> String {
        let mut out = String::new();
        self.render_counters(&mut out);
        render_gauges(&mut out, status);
        let name = "flotilla_proposals_in_flight";
        let _ = writeln!(
            out,
            "# HELP {name} Commands taken and not yet answered here.\n# TYPE {name} gauge\n{name} {}",
            self.replica.proposals_in_flight.load(Ordering::Relaxed)
        );
        let name = "flotilla_peer_sent_bytes_total";
        let _ = writeln!(
            out,
            "# HELP {name} Bytes of Raft messages sent to each peer.\n# TYPE {name} counter"
        );
        for (peer, bytes) in sent {
            let _ = writeln!(out, "{name}{{peer=\"{}\"}} {bytes}", peer.get());
        }
        let name = "flotilla_wal_fsync_seconds";
        let _ = writeln!(out, "# HELP {name} WAL sync latency.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        self.fsync.render(&mut out, name, "");
        let name = "flotilla_grpc_request_seconds";
        let _ = writeln!(out, "# HELP {name} etcd request latency.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (m, h) in METHODS.iter().zip(&self.requests) {
            h.render(&mut out, name, &format!("method=\"{m}\""));
        }
        out
    }

    /// What belongs to the process rather than to one Raft group, for a
    /// server hosting many groups (the shard server): the host's counters,
    /// summed over its groups, and the shared WAL's sync latency.
    pub fn render_process(&self, out: &mut String) {
        self.render_counters(out);
        let name = "flotilla_wal_fsync_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} WAL sync latency.\n# TYPE {name} histogram"
        );
        self.fsync.render(out, name, "");
    }

    fn render_counters(&self, out: &mut String) {
        let counters = [
            (
                "flotilla_proposals_total",
                "Commands proposed as leader by this member's clients.",
                &self.replica.proposals,
            ),
            (
                "flotilla_proposals_refused_total",
                "Proposals refused.",
                &self.replica.proposals_refused,
            ),
            (
                "flotilla_proposals_forwarded_total",
                "Commands forwarded to the leader.",
                &self.replica.proposals_forwarded,
            ),
            (
                "flotilla_proposals_forwarded_late_total",
                "Forwarded commands whose placement came back after they applied here: resent.",
                &self.replica.proposals_forwarded_late,
            ),
            (
                "flotilla_applied_entries_total",
                "Committed entries applied.",
                &self.replica.applied_entries,
            ),
            (
                "flotilla_leader_changes_total",
                "Changes of the known leader.",
                &self.replica.leader_changes,
            ),
            (
                "flotilla_snapshots_total",
                "Log compactions.",
                &self.replica.snapshots,
            ),
            (
                "flotilla_peer_messages_refused_total",
                "Peer messages the Raft core refused as malformed or impossible.",
                &self.replica.peer_messages_refused,
            ),
            (
                "flotilla_peer_messages_undecodable_total",
                "Peer messages dropped as undecodable or misaddressed.",
                &self.peer_messages_undecodable,
            ),
            (
                "flotilla_corruption_checks_total",
                "Members' hashes of the key history compared with this leader's.",
                &self.corruption_checks,
            ),
            (
                "flotilla_tls_handshakes_failed_total",
                "Connections refused in or stalled at the TLS handshake.",
                &self.tls_handshakes_failed,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
    }
}

fn render_gauges(out: &mut String, status: &NodeStatus) {
    let is_leader = u64::from(status.leader == Some(status.id));
    let lag = status.commit.0.saturating_sub(status.applied.0);
    let gauges = [
        ("flotilla_raft_term", "The Raft term.", status.term.0),
        (
            "flotilla_raft_commit_index",
            "The commit index.",
            status.commit.0,
        ),
        (
            "flotilla_raft_applied_index",
            "The applied index.",
            status.applied.0,
        ),
        (
            "flotilla_raft_apply_lag",
            "Committed entries not yet applied.",
            lag,
        ),
        (
            "flotilla_raft_is_leader",
            "1 if this member leads.",
            is_leader,
        ),
        (
            "flotilla_raft_log_bytes",
            "Log bytes since the snapshot.",
            status.log_bytes,
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
}
