//! The MVCC history of the key space, as etcd keeps it: every change of
//! every key since the last compaction, so that a read can be served at
//! any revision not compacted and a watch can replay changes from one.
//!
//! A change is identified by its [`Rev`]: the store revision of the write
//! (`main`) and its place among that write's changes (`sub`, from 0; a
//! transaction or a delete-range changes several keys in one revision).
//! `changes` holds them in revision order (what a watch replays);
//! `by_key` lists each key's change revisions in ascending order (what a
//! read at a revision searches).
//!
//! Compaction at `C` (etcd's `Compact`) logically forgets every change
//! below `C` except, for each key, its last change below `C` when that is
//! a put and the key does not change again up to `C`: what a read at `C`
//! needs. A change that may be forgotten is *obsolete* ([`History::obsolete`]).
//! The forgetting itself is done in small steps ([`History::sweep`], a
//! bounded amount of work each), so no request waits behind a compaction
//! of millions of changes; every answer (reads, replays, the snapshot,
//! equality) looks past obsolete changes not swept yet, so replicas that
//! swept different amounts answer alike.
//!
//! Invariants:
//! - `changes` and `by_key` hold the same revisions; `by_key` holds no
//!   empty list;
//! - every change below `swept` has been examined under the current
//!   `compacted`: of those, only ones a read at `compacted` needs remain,
//!   plus at most one obsolete predecessor per key (removed when the key's
//!   next change is swept);
//! - `compacted` never goes back, and `changes` holds every change at or
//!   after it.

use std::ops::{Bound, RangeBounds};

use bytes::Bytes;

use crate::chunked::ChunkMap;
use crate::command::KeyValue;
use crate::event::{Event, EventKind};
use crate::store::{Slot, pair};

/// Where one change sits in the history: the write's store revision and
/// the change's place within that write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rev {
    pub(crate) main: u64,
    pub(crate) sub: u32,
}

/// One change of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) key: Bytes,
    /// The key's state after the change; `None`: it was deleted.
    pub(crate) slot: Option<Slot>,
}

/// How many changes below a compaction each applied operation examines
/// at most, by default: a compaction of millions of changes is spread over
/// the writes after it (or idle sweeps) instead of stalling one.
pub(crate) const SWEEP_PER_APPLY: usize = 256;

/// The history; see the module docs.
#[derive(Clone, Debug)]
pub(crate) struct History {
    pub(crate) changes: ChunkMap<Rev, Change>,
    by_key: ChunkMap<Bytes, Vec<Rev>>,
    pub(crate) compacted: u64,
    swept: Rev,
    /// How much each applied operation sweeps (no part of the state).
    pub(crate) sweep_per_apply: usize,
    /// About how many bytes the changes held take ([`change_bytes`]),
    /// swept or not: what a quota measures. Not part of the state.
    pub(crate) bytes: u64,
}

/// What one change costs in memory, about: its key and value, and the
/// entries of the two indexes that point at it.
pub(crate) fn change_bytes(c: &Change) -> u64 {
    let value = c.slot.as_ref().map_or(0, |s| s.value.len());
    (c.key.len() + value) as u64 + 96
}

impl Default for History {
    fn default() -> History {
        History {
            changes: ChunkMap::default(),
            by_key: ChunkMap::default(),
            compacted: 0,
            swept: Rev::default(),
            sweep_per_apply: SWEEP_PER_APPLY,
            bytes: 0,
        }
    }
}

/// What a replay step read: the events of whole revisions, and the first
/// revision it did not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    /// The events, in revision order and, within a revision, in the order
    /// the write made them.
    pub events: Vec<Event>,
    /// The first revision not read: the next step starts there.
    pub next: u64,
}

impl History {
    /// A history compacted at `compacted` that holds `changes` (in
    /// revision order, none obsolete): what a snapshot restores.
    pub(crate) fn from_changes(
        compacted: u64,
        changes: impl IntoIterator<Item = (Rev, Change)>,
    ) -> History {
        let mut h = History {
            compacted,
            swept: Rev {
                main: compacted,
                sub: 0,
            },
            ..History::default()
        };
        for (rev, change) in changes {
            h.insert(rev, change);
        }
        h
    }

    fn insert(&mut self, rev: Rev, change: Change) {
        match self.by_key.get_mut(&change.key) {
            Some(revs) => revs.push(rev),
            None => {
                self.by_key.insert(change.key.clone(), vec![rev]);
            }
        }
        self.bytes += change_bytes(&change);
        self.changes.insert(rev, change);
    }

    /// Records a change of `key` by the write at revision `main`, after
    /// the changes that write already made.
    pub(crate) fn record(&mut self, key: &Bytes, main: u64, slot: Option<Slot>) {
        let sub = match self.changes.last_key_value() {
            Some((last, _)) if last.main == main => last.sub + 1,
            _ => 0,
        };
        let change = Change {
            key: key.clone(),
            slot,
        };
        self.insert(Rev { main, sub }, change);
    }

    /// Compacts at `revision`; the caller checked that it is above the
    /// last compaction and at most the store revision.
    pub(crate) fn compact(&mut self, revision: u64) {
        self.compacted = revision;
    }

    /// Whether the change at `rev` (of `change`) is forgotten by the
    /// compaction, swept or not.
    pub(crate) fn obsolete(&self, rev: Rev, change: &Change) -> bool {
        if rev.main >= self.compacted {
            return false;
        }
        if change.slot.is_none() {
            return true;
        }
        self.successor(&change.key, rev)
            .is_some_and(|next| next.main <= self.compacted)
    }

    /// The revision of `key`'s change after the one at `rev`.
    fn successor(&self, key: &Bytes, rev: Rev) -> Option<Rev> {
        let revs = self.by_key.get(key)?;
        let i = revs.partition_point(|r| *r <= rev);
        revs.get(i).copied()
    }

    /// The changes not forgotten, in revision order.
    pub(crate) fn live(&self) -> impl Iterator<Item = (&Rev, &Change)> {
        self.changes.iter().filter(|(r, c)| !self.obsolete(**r, c))
    }

    /// Forgets obsolete changes below the compaction, examining at most
    /// about `budget` changes. Returns whether some remain to examine.
    pub(crate) fn sweep(&mut self, budget: usize) -> bool {
        let mut work = 0;
        while work < budget {
            let next = self
                .changes
                .range(Bound::Included(&self.swept), Bound::Unbounded)
                .next()
                .map(|(r, c)| (*r, c.key.clone()));
            let Some((rev, key)) = next else {
                return false;
            };
            if rev.main >= self.compacted {
                return false;
            }
            work += 1 + self.sweep_one(rev, &key);
            self.swept = Rev {
                main: rev.main,
                sub: rev.sub + 1,
            };
        }
        true
    }

    /// Examines the change at `rev` of `key`: forgets the key's earlier
    /// changes (a kept predecessor from an earlier compaction), and this
    /// one if it is obsolete. Returns how many it forgot.
    fn sweep_one(&mut self, rev: Rev, key: &Bytes) -> usize {
        let compacted = self.compacted;
        let Some(revs) = self.by_key.get_mut(key) else {
            return 0;
        };
        let at = revs.partition_point(|r| *r < rev);
        let mut gone: Vec<Rev> = revs.drain(..at).collect();
        let tombstone = self.changes.get(&rev).is_some_and(|c| c.slot.is_none());
        let superseded = revs.get(1).is_some_and(|next| next.main <= compacted);
        if tombstone || superseded {
            gone.push(revs.remove(0));
        }
        if revs.is_empty() {
            self.by_key.remove(key);
        }
        for r in &gone {
            if let Some(c) = self.changes.remove(r) {
                self.bytes = self.bytes.saturating_sub(change_bytes(&c));
            }
        }
        gone.len()
    }

    /// `key`'s state at revision `main` (at or after the compaction).
    fn at(&self, key: &Bytes, revs: &[Rev], main: u64) -> Option<KeyValue> {
        let i = revs.partition_point(|r| r.main <= main);
        let rev = revs.get(i.checked_sub(1)?)?;
        let slot = self.changes.get(rev)?.slot.as_ref()?;
        Some(pair(key, slot))
    }

    /// The pairs of `[lo, hi)` at revision `main`, at most `limit` (0:
    /// all), and how many keys the range held then.
    pub(crate) fn range_at(
        &self,
        lo: Bound<&Bytes>,
        hi: Bound<&Bytes>,
        main: u64,
        limit: u64,
    ) -> (Vec<KeyValue>, u64) {
        let mut kvs = Vec::new();
        let mut count = 0;
        for (key, revs) in self.by_key.range(lo, hi) {
            if let Some(kv) = self.at(key, revs, main) {
                count += 1;
                if limit == 0 || (kvs.len() as u64) < limit {
                    kvs.push(kv);
                }
            }
        }
        (kvs, count)
    }

    /// The events of the changes to keys in `[lo, hi)` from revision
    /// `from` through `to` (`from` at or after the compaction), reading
    /// whole revisions until about `budget` changes were read.
    pub(crate) fn replay(
        &self,
        from: u64,
        to: u64,
        lo: Bound<&Bytes>,
        hi: Bound<&Bytes>,
        budget: usize,
    ) -> Replay {
        let start = Rev { main: from, sub: 0 };
        let mut events = Vec::new();
        let changes = self
            .changes
            .range(Bound::Included(&start), Bound::Unbounded);
        for (read, (rev, change)) in changes.enumerate() {
            if rev.main > to {
                break;
            }
            if read >= budget && rev.sub == 0 {
                return Replay {
                    events,
                    next: rev.main,
                };
            }
            if RangeBounds::<Bytes>::contains(&(lo, hi), &change.key) {
                events.push(self.event(*rev, change));
            }
        }
        Replay {
            events,
            next: to + 1,
        }
    }

    /// The watch event of one change, with the key's state before it
    /// unless the compaction forgot that.
    fn event(&self, rev: Rev, change: &Change) -> Event {
        let prev = self.by_key.get(&change.key).and_then(|revs| {
            let i = revs.partition_point(|r| *r < rev);
            let before = *revs.get(i.checked_sub(1)?)?;
            let c = self.changes.get(&before)?;
            if self.obsolete(before, c) {
                return None;
            }
            c.slot.as_ref().map(|s| pair(&c.key, s))
        });
        match &change.slot {
            Some(s) => Event {
                kind: EventKind::Put,
                kv: pair(&change.key, s),
                prev,
            },
            None => Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: change.key.clone(),
                    mod_rev: rev.main,
                    ..KeyValue::default()
                },
                prev,
            },
        }
    }

    /// A checksum of every change not forgotten up to revision `main`
    /// (etcd's HashKV): equal on replicas that applied the same log,
    /// however much each has swept.
    pub(crate) fn hash(&self, main: u64) -> u32 {
        self.live()
            .take_while(|(rev, _)| rev.main <= main)
            .fold(0, |crc, (rev, c)| {
                hash_change(crc, *rev, &c.key, c.slot.as_ref())
            })
    }
}

/// `crc` extended with one change: its revision, key and, for a put, the
/// key's state after it (every field length-prefixed or fixed).
pub(crate) fn hash_change(crc: u32, rev: Rev, key: &[u8], slot: Option<&Slot>) -> u32 {
    let mut crc = crc32c::crc32c_append(crc, &rev.main.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &rev.sub.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &(key.len() as u64).to_le_bytes());
    crc = crc32c::crc32c_append(crc, key);
    if let Some(s) = slot {
        crc = crc32c::crc32c_append(crc, &s.create_rev.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &s.version.to_le_bytes());
        crc = crc32c::crc32c_append(crc, &(s.value.len() as u64).to_le_bytes());
        crc = crc32c::crc32c_append(crc, &s.value);
        // Only a leased key hashes its lease, so hashes of stores without
        // leases are those of earlier builds.
        if s.lease != 0 {
            crc = crc32c::crc32c_append(crc, &s.lease.to_le_bytes());
        }
    }
    crc
}

/// Two histories are equal when they answer alike: the same compaction
/// and the same changes not forgotten, however much each has swept.
impl PartialEq for History {
    fn eq(&self, other: &History) -> bool {
        self.compacted == other.compacted && self.live().eq(other.live())
    }
}

impl Eq for History {}
