//! What a leader knows about each follower's log, and the flow control
//! that keeps a slow follower from blocking the leader or making it buffer
//! without bound (etcd's `tracker` package, same three states):
//!
//! ```text
//!            reject / stall                 snapshot acked
//!   Replicate ───────────────► Probe ◄──────────────────── Snapshot
//!       ▲   ◄─────────────────   │  next below the log start   ▲
//!       │      append acked      └─────────────────────────────┘
//! ```
//!
//! - **Probe**: one append in flight until it is answered (or a heartbeat
//!   answer arrives); used until the follower's match index is known.
//! - **Replicate**: appends are pipelined: `next` moves ahead as messages
//!   leave, bounded by [`Inflights`] (messages and bytes).
//! - **Snapshot**: the follower is behind the log start; the leader streams
//!   it the snapshot in chunks and sends no appends.
//!
//! Invariant: `matched < next`.

use std::collections::VecDeque;

use crate::types::LogIndex;

/// The replication state of one follower.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ProgressState {
    Probe,
    Replicate,
    Snapshot,
}

/// Appends in flight to one follower: the last index each carries and its
/// bytes, oldest first.
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    queue: VecDeque<(LogIndex, u64)>,
    bytes: u64,
    max_msgs: usize,
    max_bytes: u64,
}

impl Inflights {
    pub(crate) fn new(max_msgs: usize, max_bytes: u64) -> Inflights {
        Inflights {
            queue: VecDeque::new(),
            bytes: 0,
            max_msgs,
            max_bytes,
        }
    }

    pub(crate) fn add(&mut self, last: LogIndex, bytes: u64) {
        self.queue.push_back((last, bytes));
        self.bytes += bytes;
    }

    /// Frees every message whose entries are all at or below `index`.
    pub(crate) fn free_to(&mut self, index: LogIndex) {
        while let Some(&(last, bytes)) = self.queue.front() {
            if last > index {
                break;
            }
            self.queue.pop_front();
            self.bytes -= bytes;
        }
    }

    pub(crate) fn full(&self) -> bool {
        self.queue.len() >= self.max_msgs || self.bytes >= self.max_bytes
    }

    pub(crate) fn reset(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

/// The leader's view of one follower.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The highest index known to match the leader's log.
    pub(crate) matched: LogIndex,
    /// The next index to send.
    pub(crate) next: LogIndex,
    /// The commit index the last append sent to it carried.
    pub(crate) commit_sent: LogIndex,
    /// The highest index it waits to learn committed: the last of the
    /// commands it forwarded, or a read index it was given.
    pub(crate) awaits_commit: LogIndex,
    pub(crate) state: ProgressState,
    /// Probe: an append is in flight.
    pub(crate) probe_sent: bool,
    pub(crate) inflights: Inflights,
    /// Heard from since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// The leader's tick count when it last heard from it, if ever.
    pub(crate) heard_at: Option<u64>,
    /// `matched` when the previous heartbeat answer arrived: no movement
    /// between two answers while entries are outstanding means appends were
    /// lost, and the leader falls back to probing.
    pub(crate) matched_at_heartbeat: LogIndex,
    /// Snapshot: the index of the snapshot in transfer.
    pub(crate) snapshot_index: LogIndex,
    /// Snapshot: the offset the follower acknowledged.
    pub(crate) snapshot_offset: u64,
    /// Snapshot: `snapshot_offset` at the previous heartbeat answer.
    pub(crate) snapshot_offset_at_heartbeat: u64,
    /// The highest heartbeat round (ReadIndex sequence) it acknowledged.
    pub(crate) read_seq: u64,
    /// Whether it is a learner (does not count towards quorums).
    pub(crate) learner: bool,
}

impl Progress {
    /// Notes an answer from it at leader tick `now`.
    pub(crate) fn heard(&mut self, now: u64) {
        self.recent_active = true;
        self.heard_at = Some(now);
    }

    pub(crate) fn new(next: LogIndex, max_msgs: usize, max_bytes: u64, learner: bool) -> Progress {
        Progress {
            matched: LogIndex(0),
            next,
            commit_sent: LogIndex(0),
            awaits_commit: LogIndex(0),
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(max_msgs, max_bytes),
            recent_active: false,
            heard_at: None,
            matched_at_heartbeat: LogIndex(0),
            snapshot_index: LogIndex(0),
            snapshot_offset: 0,
            snapshot_offset_at_heartbeat: 0,
            read_seq: 0,
            learner,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        let floor = if self.state == ProgressState::Snapshot {
            self.snapshot_index.max(self.matched)
        } else {
            self.matched
        };
        self.state = ProgressState::Probe;
        self.next = floor.next();
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched.next();
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_snapshot(&mut self, index: LogIndex) {
        self.state = ProgressState::Snapshot;
        self.snapshot_index = index;
        self.snapshot_offset = 0;
        self.snapshot_offset_at_heartbeat = 0;
        self.inflights.reset();
    }

    /// Records an acknowledgement up to `index`; true if `matched` moved.
    pub(crate) fn maybe_update(&mut self, index: LogIndex) -> bool {
        let moved = index > self.matched;
        if moved {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index.next());
        self.inflights.free_to(index);
        moved
    }

    /// Handles a rejection of the append whose previous index was
    /// `rejected`; `probe_to` is where the follower's hint says to look.
    /// Returns false for a stale rejection (one the leader already acted on).
    pub(crate) fn maybe_decrease_to(&mut self, rejected: LogIndex, probe_to: LogIndex) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched.next();
            return true;
        }
        if self.next.prev() != rejected {
            return false;
        }
        self.next = rejected.min(probe_to.next()).max(self.matched.next());
        self.probe_sent = false;
        true
    }

    /// Whether no append may be sent now.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }

    /// Records an append carrying entries up to `last` (or none).
    pub(crate) fn sent_append(&mut self, last: Option<(LogIndex, u64)>) {
        match self.state {
            ProgressState::Replicate => {
                if let Some((last, bytes)) = last {
                    self.next = last.next();
                    self.inflights.add(last, bytes);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_appends_are_bounded_by_inflights() {
        let mut p = Progress::new(LogIndex(1), 2, 1 << 20, false);
        p.become_replicate();
        p.sent_append(Some((LogIndex(3), 10)));
        assert!(!p.is_paused());
        p.sent_append(Some((LogIndex(5), 10)));
        assert!(p.is_paused(), "two messages in flight is the limit");
        assert!(p.maybe_update(LogIndex(3)));
        assert!(!p.is_paused());
        assert_eq!(p.next, LogIndex(6));
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut p = Progress::new(LogIndex(10), 4, 1 << 20, false);
        p.sent_append(None);
        assert!(
            !p.maybe_decrease_to(LogIndex(5), LogIndex(2)),
            "rejects an older probe"
        );
        assert!(p.maybe_decrease_to(LogIndex(9), LogIndex(2)));
        assert_eq!(p.next, LogIndex(3));
        p.maybe_update(LogIndex(2));
        p.become_replicate();
        assert!(!p.maybe_decrease_to(LogIndex(2), LogIndex(0)));
        assert!(p.maybe_decrease_to(LogIndex(4), LogIndex(0)));
        assert_eq!(p.next, LogIndex(3));
    }
}
