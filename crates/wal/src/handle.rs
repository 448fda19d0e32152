//! A group's handle: its writes (which only fill memory; the next sync
//! makes them durable), its reads (from the cache, or the segment files for
//! older entries), and its [`Storage`] implementation.
//!
//! Invariants: one handle per group at a time, so a group's writes arrive
//! in one order; writes take `&mut self` and reads `&self`, so a handle is
//! never read and written at once. An entry read from disk is checked
//! against the index's term and position before it is returned.

use std::sync::Arc;

use bytes::Bytes;
use flotilla_raft::storage::{InitialState, Writes};
use flotilla_raft::{Entry, HardState, LogIndex, Snapshot, SnapshotMeta, Storage, Term};

use crate::engine::{Shared, Wal, segment_name};
use crate::error::{Corruption, WalError};
use crate::format::{FRAME_HEADER_LEN, RECORD_BODY_MAX, check_frame};
use crate::ids::{GroupId, Lsn};
use crate::record::{Record, entries_record_len, put_entries, put_hard_state, put_snapshot};
use crate::snapfile;
use crate::state::{Doom, Op};

/// Writes and reads one group's part of the log; implements
/// [`flotilla_raft::Storage`] (where `sync` is a group commit of the whole
/// engine). Dropping it lets [`Wal::group`] hand out a new one.
#[derive(Debug)]
pub struct GroupHandle {
    shared: Arc<Shared>,
    group: GroupId,
}

/// Entries to read from disk: (index, term, record LSN), by index.
type DiskPlan = Vec<(LogIndex, Term, Lsn)>;

impl GroupHandle {
    pub(crate) fn new(shared: Arc<Shared>, group: GroupId) -> GroupHandle {
        GroupHandle { shared, group }
    }

    /// The group.
    pub fn id(&self) -> GroupId {
        self.group
    }

    /// The engine (to sync, or to share with a writer thread).
    pub fn wal(&self) -> Wal {
        Wal {
            shared: self.shared.clone(),
        }
    }

    /// Appends entries, replacing any stored at or after the first one
    /// (rule 2); returns the LSN that must be durable for them to be.
    pub fn append(&mut self, entries: &[Entry]) -> Result<Lsn, WalError> {
        self.shared.check_poisoned()?;
        let (end, pending) = {
            let mut st = self.shared.state();
            let log = self.log_mut(&mut st);
            let rest = log.uncovered(self.group, entries)?;
            if rest.is_empty() {
                return Ok(st.next_lsn);
            }
            let bytes = entries_record_len(rest);
            if bytes > RECORD_BODY_MAX {
                let max = RECORD_BODY_MAX;
                let group = self.group;
                return Err(WalError::TooLarge { group, bytes, max });
            }
            let (start, end) = st.write(|b| put_entries(b, self.group, rest));
            let log = st.groups.get_mut(&self.group).expect("inserted above");
            log.append(rest, start);
            log.note_write(end, self.shared.durable());
            (end, st.pending_bytes())
        };
        self.shared.flush_if_big(pending)?;
        Ok(end)
    }

    /// Saves the hard state; returns the LSN that must be durable for it
    /// to be.
    pub fn save_hard_state(&mut self, hard_state: &HardState) -> Result<Lsn, WalError> {
        self.shared.check_poisoned()?;
        let (end, pending) = {
            let mut st = self.shared.state();
            let (_, end) = st.write(|b| put_hard_state(b, self.group, hard_state));
            let log = self.log_mut(&mut st);
            log.hard_state = *hard_state;
            log.note_write(end, self.shared.durable());
            (end, st.pending_bytes())
        };
        self.shared.flush_if_big(pending)?;
        Ok(end)
    }

    /// Saves a snapshot and drops the log it covers (rule 3). Its file is
    /// the one [`Wal::prepare_snapshot`] wrote for it, if any; otherwise it
    /// is written (and synced) by the next flush, before the record naming
    /// it.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<Lsn, WalError> {
        self.shared.check_poisoned()?;
        let mut st = self.shared.state();
        let keep = self.log_mut(&mut st).keeps_log(&snapshot.meta);
        st.rotate_if_full();
        let file = match st.take_prepared(self.group, &snapshot.meta) {
            Some(file) => file,
            None => {
                let file = st.new_snap_file();
                st.push_op(Op::SnapFile {
                    group: self.group,
                    file,
                    snapshot: snapshot.clone(),
                });
                file
            }
        };
        st.snap_files.entry(self.group).or_default().insert(file);
        let meta = &snapshot.meta;
        let (_, end) = st.write(|b| put_snapshot(b, self.group, file, keep, meta));
        st.dooms.push(Doom {
            after: end,
            group: self.group,
            below: file,
        });
        let log = self.log_mut(&mut st);
        log.apply_snapshot(snapshot.meta.clone(), file, keep);
        log.note_write(end, self.shared.durable());
        Ok(end)
    }

    /// Applies a Ready's writes in order without syncing; returns the LSN
    /// to pass to [`Wal::sync_to`] before the Ready's persisted messages
    /// may leave (when `must_sync`).
    pub fn write(&mut self, writes: Writes<'_>) -> Result<Lsn, WalError> {
        let mut end = self.shared.state().next_lsn;
        if let Some(snap) = writes.snapshot {
            end = self.save_snapshot(snap)?;
        }
        if !writes.entries.is_empty() {
            end = self.append(writes.entries)?;
        }
        if let Some(hs) = writes.hard_state {
            end = self.save_hard_state(hs)?;
        }
        Ok(end)
    }

    fn log_mut<'s>(&self, st: &'s mut crate::state::State) -> &'s mut crate::group::GroupLog {
        st.groups
            .entry(self.group)
            .or_insert_with(|| self.shared.new_group_log())
    }

    /// The first index stored (after the snapshot).
    pub fn first_index(&self) -> LogIndex {
        self.read(|log| log.first_index())
    }

    /// The last index stored (the snapshot's if the log is empty).
    pub fn last_index(&self) -> LogIndex {
        self.read(|log| log.last_index())
    }

    /// The term at `index`, if stored (or the snapshot's index).
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        self.read(|log| log.term(index))
    }

    /// The saved hard state.
    pub fn hard_state(&self) -> HardState {
        self.read(|log| log.hard_state)
    }

    /// The current snapshot's metadata.
    pub fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.read(|log| log.snapshot.as_ref().map(|s| s.meta.clone()))
    }

    /// Every entry of the current log at or below this index (and the
    /// snapshot, if it covers it) is on disk.
    pub fn durable_index(&self) -> LogIndex {
        let durable = self.shared.durable();
        let mut st = self.shared.state();
        match st.groups.get_mut(&self.group) {
            Some(log) => log.durable_index(durable),
            None => LogIndex(0),
        }
    }

    /// `len` bytes of the current snapshot's data from `offset`, read back
    /// from its file: what a member that keeps no snapshot data in memory
    /// sends a follower. `None` if the current snapshot is no longer
    /// `meta` (a newer one replaced it). A range past the data's end is
    /// refused. The bytes are not checked against the file's checksum
    /// (that covers the whole file, checked when it was read whole): the
    /// receiver checks the state it assembles against the state's own.
    pub fn read_snapshot_data(
        &self,
        meta: &SnapshotMeta,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, WalError> {
        let Some(snap) = self.read(|log| log.snapshot.clone()) else {
            return Ok(None);
        };
        if snap.meta != *meta {
            return Ok(None);
        }
        // Its file is written ahead, or by the flush that writes its record.
        self.shared.flush_to(snap.file.plus(1))?;
        let path = self
            .shared
            .path(&snapfile::file_name(self.group, snap.file));
        let fs = &self.shared.fs;
        let mut head = [0u8; snapfile::HEAD_LEN];
        fs.read_at(&path, 0, &mut head)
            .map_err(|e| WalError::io("read", &path, e))?;
        let (start, data_len) =
            snapfile::data_extent(&head).map_err(|e| crate::recover::file_error(&path, e))?;
        let end = offset.checked_add(len).filter(|&end| end <= data_len);
        let Some(end) = end else {
            let what = Corruption::Truncated {
                needed: offset.saturating_add(len),
                available: data_len,
            };
            return Err(WalError::corrupt(&path, start, what));
        };
        let mut buf = vec![0u8; (end - offset) as usize];
        fs.read_at(&path, start + offset, &mut buf)
            .map_err(|e| WalError::io("read", &path, e))?;
        Ok(Some(Bytes::from(buf)))
    }

    fn read<T>(&self, f: impl FnOnce(&crate::group::GroupLog) -> T) -> T {
        let st = self.shared.state();
        match st.groups.get(&self.group) {
            Some(log) => f(log),
            None => f(&self.shared.new_group_log()),
        }
    }

    /// The entries in `lo..hi`: recent ones from the cache, older ones
    /// read back from the segment files.
    pub fn entries(&self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, WalError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        let (disk, cached) = self.plan_read(lo, hi)?;
        let mut out = Vec::with_capacity((hi.0 - lo.0) as usize);
        if let Some(&(_, _, last_rec)) = disk.last() {
            self.shared.flush_to(last_rec.plus(1))?;
            self.read_disk(&disk, &mut out)?;
        }
        out.extend(cached);
        Ok(out)
    }

    fn plan_read(&self, lo: LogIndex, hi: LogIndex) -> Result<(DiskPlan, Vec<Entry>), WalError> {
        let st = self.shared.state();
        let blank;
        let log = match st.groups.get(&self.group) {
            Some(log) => log,
            None => {
                blank = self.shared.new_group_log();
                &blank
            }
        };
        let (first, last) = (log.first_index(), log.last_index());
        if lo < first || hi > last.next() {
            let group = self.group;
            return Err(WalError::OutOfRange {
                group,
                lo,
                hi,
                first,
                last,
            });
        }
        let split = log.cache_first().clamp(lo, hi);
        let disk = (lo.0..split.0)
            .map(LogIndex)
            .filter_map(|i| log.loc(i).map(|l| (i, l.term, l.rec)))
            .collect();
        let cached = (split.0..hi.0)
            .filter_map(|i| log.cached(LogIndex(i)).cloned())
            .collect();
        Ok((disk, cached))
    }

    fn read_disk(&self, plan: &DiskPlan, out: &mut Vec<Entry>) -> Result<(), WalError> {
        let mut current: Option<(Lsn, Vec<Entry>, String, u64)> = None;
        for &(index, term, rec) in plan {
            if current.as_ref().is_none_or(|c| c.0 != rec) {
                let (entries, name, offset) = self.read_record(rec)?;
                current = Some((rec, entries, name, offset));
            }
            let (_, entries, name, offset) = current.as_ref().expect("just read");
            let found = entries.iter().find(|e| e.index == index);
            match found {
                Some(e) if e.term == term => out.push(e.clone()),
                _ => {
                    let (found_index, found_term) = found.map_or((0, 0), |e| (e.index.0, e.term.0));
                    let what = Corruption::WrongEntry {
                        index: index.0,
                        term: term.0,
                        found_index,
                        found_term,
                    };
                    return Err(WalError::corrupt(self.shared.path(name), *offset, what));
                }
            }
        }
        Ok(())
    }

    /// Reads the Entries record at `rec`, checking both checksums again.
    fn read_record(&self, rec: Lsn) -> Result<(Vec<Entry>, String, u64), WalError> {
        let seg = self
            .shared
            .state()
            .segment_of(rec)
            .expect("a live entry's segment is never deleted");
        let name = segment_name(seg.seq);
        let path = self.shared.path(&name);
        let offset = rec.0 - seg.base.0;
        let fs = &self.shared.fs;
        let mut head = [0u8; FRAME_HEADER_LEN];
        fs.read_at(&path, offset, &mut head)
            .map_err(|e| WalError::io("read", &path, e))?;
        let len = check_frame(&head, 0).or_else(|err| match err {
            Corruption::Truncated { needed, .. } => Ok(needed as usize - FRAME_HEADER_LEN),
            other => Err(WalError::corrupt(&path, offset, other)),
        })?;
        let mut frame = vec![0u8; FRAME_HEADER_LEN + len];
        fs.read_at(&path, offset, &mut frame)
            .map_err(|e| WalError::io("read", &path, e))?;
        let check = check_frame(&frame, 0).map_err(|c| WalError::corrupt(&path, offset, c));
        let body = Bytes::from(frame).slice(FRAME_HEADER_LEN..FRAME_HEADER_LEN + check?);
        match Record::decode(body) {
            Ok(Record::Entries { group, entries }) if group == self.group => {
                Ok((entries, name, offset))
            }
            Ok(_) => Err(WalError::corrupt(&path, offset, Corruption::BadEntries)),
            Err(c) => Err(WalError::corrupt(&path, offset, c)),
        }
    }

    /// The current snapshot: the data recovery read if it is still
    /// unchanged, else read back from its file.
    fn read_snapshot(&self, recovered: Option<Bytes>) -> Result<Option<Snapshot>, WalError> {
        let Some(snap) = self.read(|log| log.snapshot.clone()) else {
            return Ok(None);
        };
        if let Some(data) = recovered {
            let meta = snap.meta;
            return Ok(Some(Snapshot { meta, data }));
        }
        // Its file is written ahead, or by the flush that writes its record.
        self.shared.flush_to(snap.file.plus(1))?;
        let path = self
            .shared
            .path(&snapfile::file_name(self.group, snap.file));
        let bytes = self
            .shared
            .fs
            .read(&path)
            .map_err(|e| WalError::io("read", &path, e))?;
        let (group, file, snapshot) = snapfile::decode(&Bytes::from(bytes))
            .map_err(|e| crate::recover::file_error(&path, e))?;
        if group != self.group || file != snap.file || snapshot.meta != snap.meta {
            return Err(WalError::corrupt(&path, 0, Corruption::SnapshotMismatch));
        }
        Ok(Some(snapshot))
    }
}

impl Drop for GroupHandle {
    fn drop(&mut self) {
        self.shared.state().handles.remove(&self.group);
    }
}

impl Storage for GroupHandle {
    type Error = WalError;

    fn initial_state(&mut self) -> Result<InitialState, WalError> {
        let (hard_state, recovered, first, last) = {
            let mut st = self.shared.state();
            match st.groups.get_mut(&self.group) {
                None => return Ok(InitialState::default()),
                Some(log) => {
                    let recovered = log.recovered.take().unwrap_or_default();
                    (
                        log.hard_state,
                        recovered,
                        log.first_index(),
                        log.last_index(),
                    )
                }
            }
        };
        let snapshot = self.read_snapshot(recovered.snapshot_data)?;
        let entries = if recovered.entries.is_empty() && first <= last {
            self.entries(first, last.next())?
        } else {
            recovered.entries
        };
        Ok(InitialState {
            hard_state,
            snapshot,
            entries,
        })
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), WalError> {
        GroupHandle::save_snapshot(self, snapshot).map(drop)
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        GroupHandle::append(self, entries).map(drop)
    }

    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), WalError> {
        GroupHandle::save_hard_state(self, hard_state).map(drop)
    }

    fn sync(&mut self) -> Result<(), WalError> {
        let written = self.shared.state().next_lsn;
        self.shared.sync_to(written).map(drop)
    }
}
