//! What a host counts as it goes: plain atomics that an executor shares
//! with whatever exports them (the server's Prometheus endpoint).
//!
//! Invariant: counting never blocks or allocates.

use std::sync::atomic::{AtomicU64, Ordering};

/// A host's counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Commands this node's own clients proposed while it led (commands
    /// forwarded by followers count there, as `proposals_forwarded`).
    pub proposals: AtomicU64,
    /// Proposals refused (not the leader, transfer in progress).
    pub proposals_refused: AtomicU64,
    /// Commands this node, following, forwarded to the leader.
    pub proposals_forwarded: AtomicU64,
    /// Forwarded commands whose placement came back after their entry
    /// had applied here: the outcome is lost, the caller is told to
    /// retry, and its resend is a second entry (answered from the
    /// session table, not applied again).
    pub proposals_forwarded_late: AtomicU64,
    /// Committed entries applied to the state machine.
    pub applied_entries: AtomicU64,
    /// Times the known leader changed.
    pub leader_changes: AtomicU64,
    /// Snapshots taken (log compactions).
    pub snapshots: AtomicU64,
    /// Peer messages the Raft core refused as malformed or impossible
    /// (`flotilla_raft::StepError`): a broken or hostile peer.
    pub peer_messages_refused: AtomicU64,
    /// A gauge, not a counter: commands taken and not yet answered here
    /// (proposed as leader, forwarded, or waiting for the next batch),
    /// as of the latest Ready handled.
    pub proposals_in_flight: AtomicU64,
}

/// Adds `n` to `counter`; returns the new total.
pub(crate) fn add(counter: &AtomicU64, n: u64) -> u64 {
    counter.fetch_add(n, Ordering::Relaxed) + n
}
