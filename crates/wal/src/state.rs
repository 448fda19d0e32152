//! The engine's in-memory side: every group's state, the record stream not
//! yet handed to the OS (as a list of file operations), segment rotation
//! with its checkpoint, and the plan of what compaction may delete.
//!
//! Invariants:
//! - `ops`, then `buf`, is the exact byte stream after the flushed LSN:
//!   `next_lsn` is the flushed LSN plus the bytes they hold.
//! - Every segment begins with a checkpoint: the hard state and snapshot
//!   record of every group that has one. So replay may begin at any
//!   segment's start, and a segment is deletable once no group's live
//!   entries lie in it or before it ([`State::plan_purge`]).
//! - A snapshot file's operation comes before the record naming it, or the
//!   file was written and synced ahead ([`State::prepared`]).
//! - Snapshot file ids are unique: each is above every id given before
//!   (and every id on disk at open).

use std::collections::{BTreeMap, BTreeSet};

use flotilla_raft::{Snapshot, SnapshotMeta};

use crate::format::SegmentHeader;
use crate::group::GroupLog;
use crate::ids::{GroupId, Lsn};
use crate::record::{put_hard_state, put_snapshot};
use crate::stream::{Sink, Stream};

/// A file operation waiting for the next flush, in stream order.
#[derive(Debug)]
pub(crate) enum Op {
    /// Sync the current segment, then create segment `seq`.
    Create { seq: u64 },
    /// Append bytes to the current segment.
    Write { bytes: Stream },
    /// Write a snapshot file durably.
    SnapFile {
        group: GroupId,
        file: Lsn,
        snapshot: Snapshot,
    },
}

/// A segment of the log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegInfo {
    pub seq: u64,
    pub base: Lsn,
    /// Where its checkpoint ends: once durable, the segments before it may go.
    pub checkpoint_end: Lsn,
}

/// Snapshot files of `group` older than `below` may be deleted once the
/// stream is durable up to `after`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Doom {
    pub after: Lsn,
    pub group: GroupId,
    pub below: Lsn,
}

/// What [`State::plan_purge`] decided to delete.
#[derive(Debug, Default)]
pub(crate) struct Purge {
    pub segments: Vec<u64>,
    pub snapshots: Vec<(GroupId, Lsn)>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub groups: BTreeMap<GroupId, GroupLog>,
    pub handles: BTreeSet<GroupId>,
    pub segments: Vec<SegInfo>,
    /// Whether the last segment takes appends (false after open: each open
    /// starts a new segment rather than append after a cut tail).
    pub active_open: bool,
    pub next_seq: u64,
    pub next_lsn: Lsn,
    pub ops: Vec<Op>,
    pub buf: Stream,
    /// A written buffer kept for reuse, so a steady stream of batches does
    /// not allocate (and page-fault) a fresh buffer each time.
    pub spare: Stream,
    pub snap_files: BTreeMap<GroupId, BTreeSet<Lsn>>,
    pub dooms: Vec<Doom>,
    pub segment_bytes: u64,
    /// Per group, a snapshot file already durable that no record names
    /// yet: the next `save_snapshot` of the same snapshot names it.
    pub prepared: BTreeMap<GroupId, Prepared>,
    /// The highest snapshot file id given so far.
    pub last_snap_file: Lsn,
}

/// A snapshot file written ahead of its record.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub file: Lsn,
    pub meta: SnapshotMeta,
}

impl State {
    /// Bytes written but not yet handed to the OS.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
            + self
                .ops
                .iter()
                .map(|op| match op {
                    Op::Write { bytes } => bytes.len(),
                    _ => 0,
                })
                .sum::<usize>()
    }

    /// A fresh snapshot file id: the current LSN, unless an id at or above
    /// it was given already.
    pub fn new_snap_file(&mut self) -> Lsn {
        let id = self.next_lsn.max(self.last_snap_file.plus(1));
        self.last_snap_file = id;
        id
    }

    /// Takes the file prepared for `group` if it holds exactly `meta` and
    /// is newer than every file the group has; a prepared file that does
    /// not match is handed to the next doom, to be deleted.
    pub fn take_prepared(&mut self, group: GroupId, meta: &SnapshotMeta) -> Option<Lsn> {
        let p = self.prepared.remove(&group)?;
        let files = self.snap_files.entry(group).or_default();
        if p.meta == *meta && files.last().is_none_or(|&newest| newest < p.file) {
            return Some(p.file);
        }
        files.insert(p.file);
        None
    }

    /// Moves `buf` into `ops`.
    pub fn seal(&mut self) {
        if !self.buf.is_empty() {
            let bytes = std::mem::replace(&mut self.buf, std::mem::take(&mut self.spare));
            self.ops.push(Op::Write { bytes });
        }
    }

    /// Takes back a written buffer for reuse.
    pub fn recycle(&mut self, mut bytes: Stream) {
        if bytes.capacity() > self.spare.capacity() {
            bytes.clear();
            self.spare = bytes;
        }
    }

    pub fn push_op(&mut self, op: Op) {
        self.seal();
        self.ops.push(op);
    }

    /// Appends one record, written by `encode` into the stream; returns
    /// its start and end LSNs.
    pub fn write(&mut self, encode: impl FnOnce(&mut Stream)) -> (Lsn, Lsn) {
        self.rotate_if_full();
        let start = self.next_lsn;
        let before = self.buf.len();
        encode(&mut self.buf);
        self.next_lsn = start.plus((self.buf.len() - before) as u64);
        (start, self.next_lsn)
    }

    /// Starts a new segment if there is none open or the open one is full
    /// (and holds more than its checkpoint, so a large checkpoint cannot
    /// make rotation loop).
    pub fn rotate_if_full(&mut self) {
        let full = self.segments.last().is_some_and(|s| {
            self.next_lsn.0 - s.base.0 >= self.segment_bytes && self.next_lsn > s.checkpoint_end
        });
        if !self.active_open || full {
            self.start_segment();
        }
    }

    fn start_segment(&mut self) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let base = self.next_lsn;
        self.push_op(Op::Create { seq });
        self.buf
            .buf()
            .extend_from_slice(&SegmentHeader { seq, base }.encode());
        for (&group, log) in &self.groups {
            if log.hard_state != Default::default() {
                put_hard_state(&mut self.buf, group, &log.hard_state);
            }
            if let Some(s) = &log.snapshot {
                put_snapshot(&mut self.buf, group, s.file, true, &s.meta);
            }
        }
        self.next_lsn = base.plus(self.buf.len() as u64);
        self.segments.push(SegInfo {
            seq,
            base,
            checkpoint_end: self.next_lsn,
        });
        self.active_open = true;
    }

    /// The segment holding `lsn`.
    pub fn segment_of(&self, lsn: Lsn) -> Option<SegInfo> {
        let k = self.segments.partition_point(|s| s.base <= lsn);
        k.checked_sub(1).map(|k| self.segments[k])
    }

    /// Decides what may be deleted now that the stream is durable up to
    /// `durable`, and forgets it. Segment `k` goes when segment `k + 1`'s
    /// checkpoint is durable and no group's first live entry is before
    /// segment `k + 1`.
    pub fn plan_purge(&mut self, durable: Lsn) -> Purge {
        let pin = self
            .groups
            .values()
            .filter_map(GroupLog::first_record)
            .min();
        let mut n = 0;
        while let Some(next) = self.segments.get(n + 1) {
            if next.checkpoint_end > durable || pin.is_some_and(|p| p < next.base) {
                break;
            }
            n += 1;
        }
        let segments = self.segments.drain(..n).map(|s| s.seq).collect();
        let mut snapshots = Vec::new();
        let (due, later): (Vec<Doom>, Vec<Doom>) =
            self.dooms.iter().partition(|d| d.after <= durable);
        self.dooms = later;
        for d in due {
            if let Some(files) = self.snap_files.get_mut(&d.group) {
                let old: Vec<Lsn> = files.range(..d.below).copied().collect();
                for f in old {
                    files.remove(&f);
                    snapshots.push((d.group, f));
                }
            }
        }
        Purge {
            segments,
            snapshots,
        }
    }
}
