//! One group's state in memory: hard state, snapshot reference, where each
//! live entry's record is, a cache of recent entries, and how far the log
//! is durable. Live writes and recovery replay go through the same methods,
//! so the state a record produces when written is the state it produces
//! when replayed.
//!
//! Invariants:
//! - `locs` holds one location per live entry, consecutive from `first`.
//!   Live writes keep `first == snapshot index + 1`; replay may start after
//!   segments were deleted and see a later `first` for a while (a "hole"),
//!   which must be gone by the end of recovery ([`GroupLog::check_no_hole`]).
//! - `cache` is a suffix of the live log (possibly empty).
//! - `durable_index` never exceeds the last index, and every entry of the
//!   current log at or below it is on disk.

use std::collections::VecDeque;

use bytes::Bytes;
use flotilla_raft::{Entry, HardState, LogIndex, SnapshotMeta, Term};

use crate::error::{Corruption, WalError};
use crate::ids::{GroupId, Lsn};

/// Where a live entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub term: Term,
    /// The LSN of the record holding it.
    pub rec: Lsn,
}

/// The group's current snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapRef {
    pub meta: SnapshotMeta,
    /// Names its file.
    pub file: Lsn,
}

/// What recovery read that `initial_state` can hand out without reading
/// the disk again.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub entries: Vec<Entry>,
    pub snapshot_data: Option<Bytes>,
}

#[derive(Debug)]
pub(crate) struct GroupLog {
    pub hard_state: HardState,
    pub snapshot: Option<SnapRef>,
    first: LogIndex,
    locs: VecDeque<Loc>,
    cache: VecDeque<Entry>,
    cache_bytes: usize,
    cache_max: usize,
    durable_index: LogIndex,
    /// Writes not known durable: (end LSN, last index after the write).
    unsynced: VecDeque<(Lsn, LogIndex)>,
    pub recovered: Option<Recovered>,
}

impl GroupLog {
    pub fn new(cache_max: usize) -> GroupLog {
        GroupLog {
            hard_state: HardState::default(),
            snapshot: None,
            first: LogIndex(1),
            locs: VecDeque::new(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_max,
            durable_index: LogIndex(0),
            unsynced: VecDeque::new(),
            recovered: None,
        }
    }

    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(LogIndex(0), |s| s.meta.index)
    }

    pub fn first_index(&self) -> LogIndex {
        self.snapshot_index().next()
    }

    pub fn last_index(&self) -> LogIndex {
        if self.locs.is_empty() {
            self.snapshot_index()
        } else {
            self.first.plus(self.locs.len() as u64 - 1)
        }
    }

    /// Whether the group holds nothing worth a checkpoint.
    pub fn is_blank(&self) -> bool {
        self.snapshot.is_none() && self.locs.is_empty() && self.hard_state == HardState::default()
    }

    pub fn loc(&self, index: LogIndex) -> Option<Loc> {
        let offset = index.0.checked_sub(self.first.0)?;
        self.locs.get(usize::try_from(offset).ok()?).copied()
    }

    /// The term of the entry at `index`, the snapshot's at its index.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        match &self.snapshot {
            Some(s) if s.meta.index == index => Some(s.meta.term),
            None if index == LogIndex(0) => Some(Term(0)),
            _ => self.loc(index).map(|l| l.term),
        }
    }

    /// The record of the first live entry: segments before its segment
    /// hold nothing this group still needs.
    pub fn first_record(&self) -> Option<Lsn> {
        self.locs.front().map(|l| l.rec)
    }

    /// The first index held in the cache.
    pub fn cache_first(&self) -> LogIndex {
        self.cache
            .front()
            .map_or(self.last_index().next(), |e| e.index)
    }

    pub fn cached(&self, index: LogIndex) -> Option<&Entry> {
        let offset = index.0.checked_sub(self.cache.front()?.index.0)?;
        self.cache.get(usize::try_from(offset).ok()?)
    }

    /// The part of `entries` not covered by the snapshot, checked to be
    /// consecutive and to leave no gap (live writes only).
    pub fn uncovered<'e>(
        &self,
        group: GroupId,
        entries: &'e [Entry],
    ) -> Result<&'e [Entry], WalError> {
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index.next() {
                return Err(WalError::NotConsecutive {
                    group,
                    index: pair[1].index,
                });
            }
        }
        let covered = self.snapshot_index();
        let skip = entries.iter().take_while(|e| e.index <= covered).count();
        let rest = &entries[skip..];
        if let Some(head) = rest.first() {
            let last = self.last_index();
            if head.index > last.next() {
                return Err(WalError::Gap {
                    group,
                    index: head.index,
                    last,
                });
            }
        }
        Ok(rest)
    }

    /// Applies an Entries record at `rec` (rule 2: replaces the log from
    /// the first index on). Entries the snapshot covers are skipped.
    pub fn append(&mut self, entries: &[Entry], rec: Lsn) {
        let skip = self.covered(entries);
        let Some(head) = entries.get(skip) else {
            return;
        };
        self.start_append(head.index, entries.len() - skip);
        for e in &entries[skip..] {
            self.push(e.clone(), rec);
        }
        self.finish_append(head.index);
    }

    /// [`GroupLog::append`] taking the entries (replay: no refcount churn).
    pub fn append_owned(&mut self, mut entries: Vec<Entry>, rec: Lsn) {
        let skip = self.covered(&entries);
        entries.drain(..skip);
        let Some(i) = entries.first().map(|e| e.index) else {
            return;
        };
        self.start_append(i, entries.len());
        for e in entries {
            self.push(e, rec);
        }
        self.finish_append(i);
    }

    fn covered(&self, entries: &[Entry]) -> usize {
        let covered = self.snapshot_index();
        entries.iter().take_while(|e| e.index <= covered).count()
    }

    fn start_append(&mut self, i: LogIndex, n: usize) {
        if self.locs.is_empty() || i < self.first || i > self.last_index().next() {
            // Only replay gets here with a non-empty log: it may have begun
            // after deleted segments, so this record starts the known log.
            self.locs.clear();
            self.clear_cache();
            self.first = i;
        } else {
            self.locs.truncate((i.0 - self.first.0) as usize);
            while self.cache.back().is_some_and(|e| e.index >= i) {
                self.pop_cache_back();
            }
        }
        self.locs.reserve(n);
    }

    fn push(&mut self, e: Entry, rec: Lsn) {
        self.locs.push_back(Loc { term: e.term, rec });
        self.cache_bytes += e.data.len();
        self.cache.push_back(e);
    }

    fn finish_append(&mut self, i: LogIndex) {
        self.evict();
        self.durable_clamp(i.prev());
    }

    /// Rule 3: whether saving `meta` keeps the log after its index.
    pub fn keeps_log(&self, meta: &SnapshotMeta) -> bool {
        self.loc(meta.index).is_some_and(|l| l.term == meta.term)
    }

    /// Applies a Snapshot record.
    pub fn apply_snapshot(&mut self, meta: SnapshotMeta, file: Lsn, keep_log: bool) {
        let s = meta.index;
        if keep_log {
            if !self.locs.is_empty() && s >= self.first {
                let n = ((s.0 - self.first.0 + 1) as usize).min(self.locs.len());
                self.locs.drain(..n);
                self.first = s.next();
            }
            while self.cache.front().is_some_and(|e| e.index <= s) {
                self.pop_cache_front();
            }
        } else {
            self.locs.clear();
            self.clear_cache();
            self.durable_clamp(self.snapshot_index());
        }
        if self.locs.is_empty() {
            self.first = s.next();
        }
        self.snapshot = Some(SnapRef { meta, file });
    }

    pub fn check_no_hole(&self, group: GroupId) -> Result<(), Corruption> {
        if !self.locs.is_empty() && self.first != self.first_index() {
            return Err(Corruption::Hole {
                group,
                first: self.first,
                snapshot: self.snapshot_index(),
            });
        }
        Ok(())
    }

    fn clear_cache(&mut self) {
        self.cache.clear();
        self.cache_bytes = 0;
    }

    fn pop_cache_back(&mut self) {
        if let Some(e) = self.cache.pop_back() {
            self.cache_bytes -= e.data.len();
        }
    }

    fn pop_cache_front(&mut self) {
        if let Some(e) = self.cache.pop_front() {
            self.cache_bytes -= e.data.len();
        }
    }

    fn evict(&mut self) {
        while self.cache_bytes > self.cache_max && !self.cache.is_empty() {
            self.pop_cache_front();
        }
    }

    /// Ends recovery: hands the replayed entries to `initial_state`, keeps
    /// a bounded cache of copies (so it does not pin segment buffers), and
    /// marks everything durable.
    pub fn finish_recovery(&mut self, cache_max: usize, snapshot_data: Option<Bytes>) {
        let entries: Vec<Entry> = std::mem::take(&mut self.cache).into();
        self.cache_bytes = 0;
        self.cache_max = cache_max;
        for e in entries.iter().rev() {
            if self.cache_bytes + e.data.len() > cache_max {
                break;
            }
            self.cache_bytes += e.data.len();
            self.cache.push_front(Entry {
                data: Bytes::copy_from_slice(&e.data),
                ..e.clone()
            });
        }
        self.durable_index = self.last_index();
        self.recovered = Some(Recovered {
            entries,
            snapshot_data,
        });
    }

    /// Notes a write ending at `end`; the durable index reaches the log's
    /// last index once the write is durable. `durable` (the watermark now)
    /// retires older writes, so the queue stays as short as the unsynced
    /// writes even if nobody asks for the durable index.
    pub fn note_write(&mut self, end: Lsn, durable: Lsn) {
        self.durable_index(durable);
        self.unsynced.push_back((end, self.last_index()));
        self.recovered = None;
    }

    /// Entries above `index` changed: none of them counts as durable.
    fn durable_clamp(&mut self, index: LogIndex) {
        self.durable_index = self.durable_index.min(index);
        for w in &mut self.unsynced {
            w.1 = w.1.min(index);
        }
    }

    /// Every entry of the current log at or below the returned index is on
    /// disk, given that everything up to `durable` is.
    pub fn durable_index(&mut self, durable: Lsn) -> LogIndex {
        while let Some(&(end, last)) = self.unsynced.front() {
            if end > durable {
                break;
            }
            self.durable_index = last;
            self.unsynced.pop_front();
        }
        self.durable_index
    }
}

#[cfg(test)]
mod tests {
    use flotilla_raft::storage::conformance::entry;

    use super::*;

    fn meta(term: u64, index: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(index),
            term: Term(term),
            conf_state: Default::default(),
        }
    }

    #[test]
    fn append_replaces_the_suffix_and_cache_follows() {
        let mut g = GroupLog::new(1 << 20);
        let es: Vec<Entry> = (1..=5).map(|i| entry(1, i)).collect();
        g.append(&es, Lsn(10));
        g.append(&[entry(2, 3)], Lsn(20));
        assert_eq!(g.last_index(), LogIndex(3));
        assert_eq!(g.term(LogIndex(3)), Some(Term(2)));
        assert_eq!(g.cached(LogIndex(3)), Some(&entry(2, 3)));
        assert_eq!(g.loc(LogIndex(2)).map(|l| l.rec), Some(Lsn(10)));
    }

    #[test]
    fn small_cache_keeps_only_recent_entries() {
        let mut g = GroupLog::new(12);
        let es: Vec<Entry> = (1..=5).map(|i| entry(1, i)).collect();
        g.append(&es, Lsn(10));
        // Each payload ("t1i4") is 4 bytes: three fit in 12.
        assert_eq!(g.cache_first(), LogIndex(3));
        assert!(g.cached(LogIndex(2)).is_none());
    }

    #[test]
    fn durable_index_drops_on_truncation_and_rises_with_the_watermark() {
        let mut g = GroupLog::new(1 << 20);
        let es: Vec<Entry> = (1..=5).map(|i| entry(1, i)).collect();
        g.append(&es, Lsn(0));
        g.note_write(Lsn(100), Lsn(0));
        assert_eq!(g.durable_index(Lsn(100)), LogIndex(5));
        g.append(&[entry(2, 3)], Lsn(100));
        g.note_write(Lsn(200), Lsn(0));
        assert_eq!(g.durable_index(Lsn(150)), LogIndex(2));
        assert_eq!(g.durable_index(Lsn(200)), LogIndex(3));
    }

    #[test]
    fn snapshot_keeps_a_matching_suffix_and_drops_a_diverging_log() {
        let mut g = GroupLog::new(1 << 20);
        let es: Vec<Entry> = (1..=6).map(|i| entry(1, i)).collect();
        g.append(&es, Lsn(0));
        assert!(g.keeps_log(&meta(1, 4)));
        g.apply_snapshot(meta(1, 4), Lsn(50), true);
        assert_eq!(
            (g.first_index(), g.last_index()),
            (LogIndex(5), LogIndex(6))
        );
        assert!(!g.keeps_log(&meta(3, 5)));
        g.apply_snapshot(meta(3, 5), Lsn(60), false);
        assert_eq!(g.last_index(), LogIndex(5));
        assert_eq!(g.term(LogIndex(5)), Some(Term(3)));
    }
}
