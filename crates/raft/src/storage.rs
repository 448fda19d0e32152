//! Durable storage of Raft's persistent state, as the driver sees it.
//!
//! The core never reads storage while it runs (STYLE.md, "what not to
//! copy" 3): it keeps the log since the last snapshot in memory and hands
//! the driver, in each [`crate::Ready`], what to write. Storage is read once,
//! at start, through [`Storage::initial_state`].
//!
//! Contract for implementations:
//! 1. Calls take effect in the order made. [`Storage::sync`] makes every
//!    earlier call durable; after a crash, the state read back is that of
//!    some prefix of the calls that includes every call before the last
//!    completed `sync`.
//! 2. [`Storage::append`] writes consecutive entries; an entry at an index
//!    already stored replaces it and everything after it (the conflicting
//!    suffix is truncated).
//! 3. [`Storage::save_snapshot`] drops every entry up to the snapshot's
//!    index. Entries after it are kept if the stored entry at that index has
//!    the snapshot's term (a local compaction); otherwise the whole log is
//!    dropped (a snapshot from the leader replaces a log that diverged).
//!
//! [`persist`] applies a Ready's writes in the required order; drivers call
//! it rather than the methods one by one.

use std::convert::Infallible;

use crate::types::{Entry, HardState, LogIndex, Snapshot};

/// What a node restarts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitialState {
    /// The last saved hard state (all zero for a new node).
    pub hard_state: HardState,
    /// The latest snapshot, if one was saved.
    pub snapshot: Option<Snapshot>,
    /// The entries after the snapshot, consecutive.
    pub entries: Vec<Entry>,
}

/// Durable storage for one Raft node. See the module docs for the contract.
pub trait Storage {
    /// What can go wrong (an I/O error, a corrupt file).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads the state to restart from.
    fn initial_state(&mut self) -> Result<InitialState, Self::Error>;
    /// Saves a snapshot and drops the log it covers (rule 3).
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Self::Error>;
    /// Appends entries, truncating any conflicting suffix (rule 2).
    fn append(&mut self, entries: &[Entry]) -> Result<(), Self::Error>;
    /// Saves the hard state.
    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), Self::Error>;
    /// Makes every earlier call durable.
    fn sync(&mut self) -> Result<(), Self::Error>;
}

/// The writes of one Ready, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct Writes<'a> {
    /// A snapshot to save first.
    pub snapshot: Option<&'a Snapshot>,
    /// Entries to append after it.
    pub entries: &'a [Entry],
    /// A hard state to save last.
    pub hard_state: Option<&'a HardState>,
    /// Whether the writes must be durable before the Ready's
    /// `persisted_messages` may be sent.
    pub must_sync: bool,
}

/// Applies `writes` to `storage` in the order the contract needs: snapshot,
/// entries, hard state, then a sync if required.
pub fn persist<S: Storage + ?Sized>(storage: &mut S, writes: Writes<'_>) -> Result<(), S::Error> {
    if let Some(snap) = writes.snapshot {
        storage.save_snapshot(snap)?;
    }
    if !writes.entries.is_empty() {
        storage.append(writes.entries)?;
    }
    if let Some(hs) = writes.hard_state {
        storage.save_hard_state(hs)?;
    }
    if writes.must_sync {
        storage.sync()?;
    }
    Ok(())
}

/// Storage in memory: everything is "durable" as soon as it is written.
/// Used by unit tests and as the reference model for the conformance suite.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemStorage {
    state: InitialState,
}

impl MemStorage {
    /// An empty store.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// What is stored.
    pub fn state(&self) -> &InitialState {
        &self.state
    }

    fn first_index(&self) -> LogIndex {
        self.state
            .snapshot
            .as_ref()
            .map_or(LogIndex(1), |s| s.meta.index.next())
    }
}

impl Storage for MemStorage {
    type Error = Infallible;

    fn initial_state(&mut self) -> Result<InitialState, Infallible> {
        Ok(self.state.clone())
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Infallible> {
        let first = self.first_index();
        let at = snapshot
            .meta
            .index
            .0
            .checked_sub(first.0)
            .map(|o| o as usize);
        let keep_suffix = at
            .and_then(|o| self.state.entries.get(o))
            .is_some_and(|e| e.term == snapshot.meta.term);
        match at {
            Some(o) if keep_suffix => {
                self.state.entries.drain(..=o);
            }
            _ => self.state.entries.clear(),
        }
        self.state.snapshot = Some(snapshot.clone());
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), Infallible> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        let first = self.first_index();
        if head.index < first {
            // Entries the snapshot already covers: keep only the rest.
            let skip = (first.0 - head.index.0) as usize;
            return self.append(entries.get(skip..).unwrap_or(&[]));
        }
        let offset = (head.index.0 - first.0) as usize;
        assert!(
            offset <= self.state.entries.len(),
            "append at {} leaves a gap after {}",
            head.index,
            first.0 + self.state.entries.len() as u64 - 1
        );
        self.state.entries.truncate(offset);
        self.state.entries.extend_from_slice(entries);
        Ok(())
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), Infallible> {
        self.state.hard_state = *hard_state;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

pub mod conformance {
    //! A suite every [`Storage`] must pass (openraft's `Suite::test_all`
    //! idea): the in-memory store and the on-disk WAL run the same checks.

    use bytes::Bytes;

    use super::{InitialState, Storage};
    use crate::types::{
        ConfState, Entry, EntryKind, HardState, LogIndex, NodeId, Snapshot, SnapshotMeta, Term,
    };

    /// How the suite gets storage to test.
    pub trait Harness {
        /// The storage under test.
        type S: Storage;
        /// A new, empty store.
        fn fresh(&mut self) -> Self::S;
        /// Closes `s` (after a sync) and opens the same store again.
        fn reopen(&mut self, s: Self::S) -> Self::S;
    }

    /// An entry for tests: `data` names its term and index.
    pub fn entry(term: u64, index: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            kind: EntryKind::Command,
            data: Bytes::from(format!("t{term}i{index}")),
        }
    }

    fn snapshot(term: u64, index: u64) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index: LogIndex(index),
                term: Term(term),
                conf_state: ConfState::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
            },
            data: Bytes::from(format!("state at {index}")),
        }
    }

    fn reopened<H: Harness>(h: &mut H, mut s: H::S) -> (H::S, InitialState) {
        s.sync().expect("sync");
        let mut s = h.reopen(s);
        let state = s.initial_state().expect("initial state after reopen");
        (s, state)
    }

    /// Runs every check of the suite.
    pub fn run_all<H: Harness>(h: &mut H) {
        empty_store_has_default_state(h);
        entries_and_hard_state_survive_reopen(h);
        append_truncates_conflicting_suffix(h);
        compaction_keeps_the_suffix(h);
        diverging_snapshot_replaces_the_log(h);
        append_after_snapshot_continues_the_log(h);
        append_skips_entries_the_snapshot_covers(h);
        latest_hard_state_wins(h);
        writes_read_back_before_reopen(h);
    }

    fn empty_store_has_default_state<H: Harness>(h: &mut H) {
        let mut s = h.fresh();
        assert_eq!(
            s.initial_state().expect("initial state"),
            InitialState::default()
        );
    }

    fn entries_and_hard_state_survive_reopen<H: Harness>(h: &mut H) {
        let mut s = h.fresh();
        let entries: Vec<Entry> = (1..=5).map(|i| entry(1, i)).collect();
        s.append(&entries).expect("append");
        let hs = HardState {
            term: Term(2),
            vote: Some(NodeId(3)),
            commit: LogIndex(4),
        };
        s.save_hard_state(&hs).expect("save hard state");
        let (_, state) = reopened(h, s);
        assert_eq!(state.entries, entries);
        assert_eq!(state.hard_state, hs);
        assert_eq!(state.snapshot, None);
    }

    fn append_truncates_conflicting_suffix<H: Harness>(h: &mut H) {
        let mut s = h.fresh();
        let entries: Vec<Entry> = (1..=5).map(|i| entry(1, i)).collect();
        s.append(&entries).expect("append");
        s.append(&[entry(2, 3)]).expect("append conflicting");
        let (_, state) = reopened(h, s);
        assert_eq!(state.entries, vec![entry(1, 1), entry(1, 2), entry(2, 3)]);
    }

    fn compaction_keeps_the_suffix<H: Harness>(h: &mut H) {
        let mut s = h.fresh();
        let entries: Vec<Entry> = (1..=6).map(|i| entry(1, i)).collect();
        s.append(&entries).expect("append");
        let snap = snapshot(1, 4);
        s.save_snapshot(&snap).expect("save snapshot");
        let (_, state) = reopened(h, s);
        assert_eq!(state.snapshot, Some(snap));
        assert_eq!(state.entries, vec![entry(1, 5), entry(1, 6)]);
    }

    fn diverging_snapshot_replaces_the_log<H: Harness>(h: &mut H) {
        let mut s = h.fresh();
        let entries: Vec<Entry> = (1..=6).map(|i| entry(1, i)).collect();
        s.append(&entries).expect("append");
        let snap = snapshot(3, 4);
        s.save_snapshot(&snap).expect("save snapshot");
        let (_, state) = reopened(h, s);
        assert_eq!(state.snapshot, Some(snap.clone()));
        assert!(state.entries.is_empty(), "a diverging log must be dropped");
        // A snapshot past the end of the log drops it too.
        let mut s = h.fresh();
        s.append(&[entry(1, 1)]).expect("append");
        s.save_snapshot(&snapshot(2, 10)).expect("save snapshot");
        let (_, state) = reopened(h, s);
        assert!(state.entries.is_empty());
    }

    fn append_after_snapshot_continues_the_log<H: Harness>(h: &mut H) {
        let mut s = h.fresh();
        s.save_snapshot(&snapshot(2, 10)).expect("save snapshot");
        s.append(&[entry(2, 11), entry(3, 12)]).expect("append");
        let (mut s, state) = reopened(h, s);
        assert_eq!(state.entries, vec![entry(2, 11), entry(3, 12)]);
        s.append(&[entry(4, 12)]).expect("append after reopen");
        let (_, state) = reopened(h, s);
        assert_eq!(state.entries, vec![entry(2, 11), entry(4, 12)]);
        assert_eq!(state.snapshot.map(|s| s.meta.index), Some(LogIndex(10)));
    }

    fn append_skips_entries_the_snapshot_covers<H: Harness>(h: &mut H) {
        let mut s = h.fresh();
        s.save_snapshot(&snapshot(1, 5)).expect("save snapshot");
        let entries: Vec<Entry> = (4..=7).map(|i| entry(1, i)).collect();
        s.append(&entries).expect("append overlapping the snapshot");
        let (_, state) = reopened(h, s);
        assert_eq!(state.entries, vec![entry(1, 6), entry(1, 7)]);
    }

    fn latest_hard_state_wins<H: Harness>(h: &mut H) {
        let mut s = h.fresh();
        for term in 1..=3 {
            let hs = HardState {
                term: Term(term),
                vote: Some(NodeId(term)),
                commit: LogIndex(0),
            };
            s.save_hard_state(&hs).expect("save hard state");
        }
        let (_, state) = reopened(h, s);
        assert_eq!(state.hard_state.term, Term(3));
        assert_eq!(state.hard_state.vote, Some(NodeId(3)));
    }

    fn writes_read_back_before_reopen<H: Harness>(h: &mut H) {
        let mut s = h.fresh();
        s.append(&[entry(1, 1), entry(1, 2), entry(2, 3)])
            .expect("append");
        s.save_snapshot(&snapshot(1, 2)).expect("save snapshot");
        let before = s.initial_state().expect("initial state before reopen");
        assert_eq!(before.entries, vec![entry(2, 3)]);
        let (_, after) = reopened(h, s);
        assert_eq!(before, after);
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::{Harness, run_all};
    use super::*;

    struct Mem;

    impl Harness for Mem {
        type S = MemStorage;
        fn fresh(&mut self) -> MemStorage {
            MemStorage::new()
        }
        fn reopen(&mut self, s: MemStorage) -> MemStorage {
            s
        }
    }

    #[test]
    fn mem_storage_passes_the_conformance_suite() {
        run_all(&mut Mem);
    }
}
