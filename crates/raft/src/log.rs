//! The in-memory log: the snapshot boundary, the entries after it, and the
//! commit, apply and durability marks.
//!
//! ```text
//!   snapshot        first                                   last
//!   |  offset  |  entries[0]  ...        ...            entries[n-1] |
//!                  applied <= committed <= last
//!                  unstable: first index not yet known durable here
//!                  handed:   first index not yet handed out to persist
//! ```
//!
//! Invariants (checked by [`RaftLog::check`]):
//! - entries are consecutive from `offset + 1`, with non-decreasing terms;
//! - `offset <= applied <= committed <= last_index` (`applied` may be below
//!   `offset` only while a received snapshot waits to be restored);
//! - `offset < unstable <= handed <= last_index + 1`: entries in
//!   `unstable..handed` are being written (asynchronous writes), those from
//!   `handed` on wait for the next Ready.

use std::collections::VecDeque;

use crate::codec::u64_len;
use crate::storage::InitialState;
use crate::types::{ConfState, Entry, LogIndex, Snapshot, SnapshotMeta, Term};

/// Encoded size of an entry in the codec (what storage will hold).
pub(crate) fn entry_encoded_len(e: &Entry) -> u64 {
    (u64_len(e.term.0) + u64_len(e.index.0) + 1 + u64_len(e.data.len() as u64) + e.data.len())
        as u64
}

/// A snapshot waiting to be persisted (and, if `restore`, installed by the
/// application).
#[derive(Clone, Debug)]
pub(crate) struct PendingSnapshot {
    pub(crate) snapshot: Snapshot,
    pub(crate) restore: bool,
}

/// What became of a follower's append.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AppendOutcome {
    /// The log does not match at the previous index: reject.
    Mismatch,
    /// Merged; the index of the last entry the message carried.
    Appended(LogIndex),
    /// The message conflicts with a committed entry at this index: a peer
    /// broke Raft's guarantees (e.g. restarted with a wiped disk under the
    /// same id). Refused, so this node stays safe.
    CommittedConflict(LogIndex),
}

#[derive(Debug)]
pub(crate) struct RaftLog {
    offset: LogIndex,
    offset_term: Term,
    entries: VecDeque<Entry>,
    pub(crate) committed: LogIndex,
    pub(crate) applied: LogIndex,
    unstable: LogIndex,
    handed: LogIndex,
    entry_bytes: u64,
    /// The latest snapshot, kept to send to followers that are behind;
    /// its data may have been released ([`RaftLog::release_snapshot_data`]).
    snapshot: Option<Snapshot>,
    /// The length of the latest snapshot's data, released or not.
    snapshot_len: u64,
    pub(crate) pending_snapshot: Option<PendingSnapshot>,
}

impl RaftLog {
    pub(crate) fn new(init: &InitialState) -> RaftLog {
        let (offset, offset_term) = init
            .snapshot
            .as_ref()
            .map_or((LogIndex(0), Term(0)), |s| (s.meta.index, s.meta.term));
        let entries: VecDeque<Entry> = init
            .entries
            .iter()
            .filter(|e| e.index > offset)
            .cloned()
            .collect();
        let entry_bytes = entries.iter().map(entry_encoded_len).sum();
        let mut log = RaftLog {
            offset,
            offset_term,
            entries,
            committed: offset,
            applied: offset,
            unstable: LogIndex(0),
            handed: LogIndex(0),
            entry_bytes,
            snapshot: init.snapshot.clone(),
            snapshot_len: init.snapshot.as_ref().map_or(0, |s| s.data.len() as u64),
            pending_snapshot: None,
        };
        log.unstable = log.last_index().next();
        log.handed = log.unstable;
        log.committed = init.hard_state.commit.clamp(offset, log.last_index());
        log
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        self.offset.next()
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.offset.plus(self.entries.len() as u64)
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.back().map_or(self.offset_term, |e| e.term)
    }

    pub(crate) fn snapshot_meta_index(&self) -> LogIndex {
        self.offset
    }

    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// The length of the latest snapshot's data, even once released.
    pub(crate) fn snapshot_len(&self) -> u64 {
        self.snapshot_len
    }

    /// Drops the latest snapshot's data from memory if it is the snapshot
    /// `meta` describes (durable by then: its bytes can be read back from
    /// storage).
    pub(crate) fn release_snapshot_data(&mut self, meta: &SnapshotMeta) {
        if let Some(s) = self.snapshot.as_mut().filter(|s| s.meta == *meta) {
            s.data = bytes::Bytes::new();
        }
    }

    /// Bytes of the entries held, as storage would encode them.
    pub(crate) fn entry_bytes(&self) -> u64 {
        self.entry_bytes
    }

    /// The term at `i`, if known (at the snapshot boundary or in memory).
    pub(crate) fn term(&self, i: LogIndex) -> Option<Term> {
        if i == self.offset {
            return Some(self.offset_term);
        }
        self.entry(i).map(|e| e.term)
    }

    pub(crate) fn entry(&self, i: LogIndex) -> Option<&Entry> {
        if i <= self.offset {
            return None;
        }
        self.entries.get((i.0 - self.offset.0 - 1) as usize)
    }

    pub(crate) fn match_term(&self, i: LogIndex, t: Term) -> bool {
        self.term(i) == Some(t)
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as ours.
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries `lo..=hi`, at most `max_bytes` of payload but at least one.
    pub(crate) fn slice(&self, lo: LogIndex, hi: LogIndex, max_bytes: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut i = lo;
        while i <= hi {
            let Some(e) = self.entry(i) else { break };
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
            i = i.next();
        }
        out
    }

    /// Leader path: entries continue the log.
    pub(crate) fn append(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            debug_assert_eq!(
                e.index,
                self.last_index().next(),
                "leader append must be contiguous"
            );
            self.entry_bytes += entry_encoded_len(&e);
            self.entries.push_back(e);
        }
    }

    /// Follower path (§5.3): if our log matches at `prev`, merge `entries`
    /// (skipping those we have, truncating at the first conflict).
    ///
    /// Entries at or below the snapshot are committed, so they match the
    /// leader's by Leader Completeness; they are skipped rather than checked.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: &[Entry],
    ) -> AppendOutcome {
        if prev_index >= self.offset && !self.match_term(prev_index, prev_term) {
            return AppendOutcome::Mismatch;
        }
        let last_new = prev_index.plus(entries.len() as u64);
        let fresh = entries
            .iter()
            .position(|e| e.index > self.offset && !self.match_term(e.index, e.term));
        if let Some(pos) = fresh {
            let at = entries[pos].index;
            if at <= self.committed {
                return AppendOutcome::CommittedConflict(at);
            }
            self.truncate_and_append(&entries[pos..]);
        }
        AppendOutcome::Appended(last_new)
    }

    fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(head) = entries.first() else { return };
        debug_assert!(head.index > self.committed, "truncating committed entries");
        let keep = (head.index.0 - self.offset.0 - 1) as usize;
        for e in self.entries.drain(keep..) {
            self.entry_bytes -= entry_encoded_len(&e);
        }
        self.unstable = self.unstable.min(head.index);
        self.handed = self.handed.min(head.index);
        self.append(entries.iter().cloned());
    }

    pub(crate) fn commit_to(&mut self, i: LogIndex) {
        let i = i.min(self.last_index());
        if i > self.committed {
            self.committed = i;
        }
    }

    /// Entries not yet handed out to persist.
    pub(crate) fn unhanded_entries(&self) -> Vec<Entry> {
        let from = self.handed.max(self.first_index());
        if from > self.last_index() {
            return Vec::new();
        }
        self.entries
            .range((from.0 - self.offset.0 - 1) as usize..)
            .cloned()
            .collect()
    }

    pub(crate) fn has_unhanded(&self) -> bool {
        self.handed <= self.last_index()
    }

    /// Records that entries up to `(i, t)` were handed out to persist,
    /// unless they were replaced meanwhile.
    pub(crate) fn handed_to(&mut self, i: LogIndex, t: Term) {
        if self.match_term(i, t) && i >= self.handed {
            self.handed = i.next();
        }
    }

    /// The last index known durable on this node.
    pub(crate) fn stable_index(&self) -> LogIndex {
        self.unstable.prev()
    }

    /// Records that entries up to `(i, t)` are durable, unless they were
    /// replaced meanwhile.
    pub(crate) fn stable_to(&mut self, i: LogIndex, t: Term) {
        if self.match_term(i, t) && i >= self.unstable {
            self.unstable = i.next();
            self.handed = self.handed.max(self.unstable);
        }
    }

    pub(crate) fn has_next_committed(&self) -> bool {
        self.pending_snapshot.as_ref().is_none_or(|p| !p.restore)
            && self.committed > self.applied
            && self.applied >= self.offset
    }

    /// Committed entries not yet handed out, up to `max_bytes` (at least one).
    pub(crate) fn next_committed(&self, max_bytes: u64) -> Vec<Entry> {
        if !self.has_next_committed() {
            return Vec::new();
        }
        self.slice(self.applied.next(), self.committed, max_bytes)
    }

    pub(crate) fn applied_to(&mut self, i: LogIndex) {
        debug_assert!(
            i <= self.committed,
            "applied {i} beyond commit {}",
            self.committed
        );
        if i > self.applied {
            self.applied = i;
        }
    }

    /// Replaces the log by a snapshot received from the leader.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot.meta.index;
        self.offset_term = snapshot.meta.term;
        self.entries.clear();
        self.entry_bytes = 0;
        self.committed = snapshot.meta.index;
        self.unstable = snapshot.meta.index.next();
        self.handed = self.unstable;
        self.snapshot_len = snapshot.data.len() as u64;
        self.snapshot = Some(snapshot.clone());
        self.pending_snapshot = Some(PendingSnapshot {
            snapshot,
            restore: true,
        });
    }

    /// Drops the entries up to `index`, covered by the application's
    /// snapshot `data` (taken at `index`, with membership `conf_state`).
    pub(crate) fn compact(&mut self, index: LogIndex, conf_state: ConfState, data: bytes::Bytes) {
        let term = self.term(index).expect("compaction index is in the log");
        let drop = (index.0 - self.offset.0) as usize;
        for e in self.entries.drain(..drop) {
            self.entry_bytes -= entry_encoded_len(&e);
        }
        self.offset = index;
        self.offset_term = term;
        self.unstable = self.unstable.max(index.next());
        self.handed = self.handed.max(self.unstable);
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                conf_state,
            },
            data,
        };
        self.snapshot_len = snapshot.data.len() as u64;
        self.snapshot = Some(snapshot.clone());
        self.pending_snapshot = Some(PendingSnapshot {
            snapshot,
            restore: false,
        });
    }

    /// The largest index `j <= index` whose term is at most `term`: where a
    /// leader should probe next after a rejection (fast backtracking).
    pub(crate) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut j = index.min(self.last_index());
        while j > self.offset {
            match self.term(j) {
                Some(t) if t <= term => return (j, t),
                _ => j = j.prev(),
            }
        }
        (self.offset, self.offset_term)
    }

    /// Asserts the invariants listed in the module docs.
    pub(crate) fn check(&self) {
        let mut expect = self.offset.next();
        let mut term = self.offset_term;
        for e in &self.entries {
            assert_eq!(e.index, expect, "log entries are not consecutive");
            assert!(e.term >= term, "log terms decrease at {}", e.index);
            expect = expect.next();
            term = e.term;
        }
        assert!(self.committed <= self.last_index(), "commit beyond the log");
        assert!(self.applied <= self.committed, "applied beyond commit");
        assert!(self.committed >= self.offset, "commit below the snapshot");
        let restoring = self.pending_snapshot.as_ref().is_some_and(|p| p.restore);
        assert!(
            restoring || self.applied >= self.offset,
            "applied below the snapshot"
        );
        assert!(
            self.unstable > self.offset,
            "unstable mark inside the snapshot"
        );
        assert!(
            self.unstable <= self.handed,
            "unstable mark beyond the handed one"
        );
        assert!(
            self.handed <= self.last_index().next(),
            "handed mark beyond the log"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::entry;

    fn log_of(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| entry(t, i as u64 + 1))
            .collect();
        RaftLog::new(&InitialState {
            entries,
            ..InitialState::default()
        })
    }

    #[test]
    fn maybe_append_skips_matching_entries_and_truncates_at_conflict() {
        // Raft §5.3: a stale, shorter append must not truncate newer entries.
        let mut log = log_of(&[1, 1, 2, 2]);
        let ok = |i| AppendOutcome::Appended(LogIndex(i));
        assert_eq!(
            log.maybe_append(LogIndex(1), Term(1), &[entry(1, 2)]),
            ok(2)
        );
        assert_eq!(log.last_index(), LogIndex(4));
        assert_eq!(
            log.maybe_append(LogIndex(2), Term(1), &[entry(3, 3)]),
            ok(3)
        );
        assert_eq!(log.last_index(), LogIndex(3));
        assert_eq!(log.term(LogIndex(3)), Some(Term(3)));
        assert_eq!(
            log.maybe_append(LogIndex(3), Term(2), &[]),
            AppendOutcome::Mismatch
        );
        log.commit_to(LogIndex(3));
        let conflict = log.maybe_append(LogIndex(2), Term(1), &[entry(4, 3)]);
        assert_eq!(conflict, AppendOutcome::CommittedConflict(LogIndex(3)));
        log.check();
    }

    #[test]
    fn conflict_search_skips_whole_terms() {
        let log = log_of(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6]);
        assert_eq!(
            log.find_conflict_by_term(LogIndex(10), Term(3)),
            (LogIndex(3), Term(1))
        );
        assert_eq!(
            log.find_conflict_by_term(LogIndex(10), Term(6)),
            (LogIndex(10), Term(6))
        );
        assert_eq!(
            log.find_conflict_by_term(LogIndex(50), Term(5)),
            (LogIndex(7), Term(5))
        );
        assert_eq!(
            log.find_conflict_by_term(LogIndex(10), Term(0)),
            (LogIndex(0), Term(0))
        );
    }

    #[test]
    fn compaction_keeps_terms_at_the_boundary_and_byte_count() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        log.commit_to(LogIndex(4));
        log.applied_to(LogIndex(4));
        log.stable_to(LogIndex(5), Term(3));
        let before = log.entry_bytes();
        log.compact(LogIndex(3), ConfState::default(), bytes::Bytes::new());
        assert_eq!(log.first_index(), LogIndex(4));
        assert_eq!(log.term(LogIndex(3)), Some(Term(2)));
        assert_eq!(log.term(LogIndex(2)), None);
        assert!(log.entry_bytes() < before);
        assert_eq!(
            log.entry_bytes(),
            log.entries.iter().map(entry_encoded_len).sum::<u64>()
        );
        log.check();
    }
}
