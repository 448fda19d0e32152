//! Recovery at open: replays every segment in order, checking every
//! checksum, and rebuilds each group's state.
//!
//! Rules:
//! 1. Segments are numbered without gaps and each starts at the LSN where
//!    the previous one ended; anything else is an error.
//! 2. Only the last segment may end in a torn write (see
//!    [`crate::format::looks_torn`]); it is cut off, durably, before
//!    anything new is written. A bad record anywhere else, or one in the
//!    last segment that does not look torn, is an error naming the file and
//!    offset: the engine refuses to start rather than skip it.
//! 3. After replay each group's log must start right after its snapshot,
//!    and its snapshot file must exist and match its record.
//! 4. Temporary files and snapshot files no record names (left by a crash
//!    between writing a file and making its record durable) are deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::engine::{Options, segment_name};
use crate::error::{Corruption, WalError};
use crate::format::{
    FRAME_HEADER_LEN, HeaderError, SEGMENT_HEADER_LEN, SegmentHeader, check_frame, looks_torn,
};
use crate::fs::Fs;
use crate::group::GroupLog;
use crate::ids::{GroupId, Lsn};
use crate::record::Record;
use crate::snapfile;
use crate::state::SegInfo;

/// What recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments replayed.
    pub segments: usize,
    /// Records replayed.
    pub records: u64,
    /// Segment bytes read.
    pub bytes: u64,
    /// A torn write cut from the end of the last segment: file and offset.
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Files deleted: temporary and unreferenced snapshot files, or a last
    /// segment whose header was never completely written.
    pub removed: Vec<String>,
}

/// The state recovery rebuilt.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub groups: BTreeMap<GroupId, GroupLog>,
    pub segments: Vec<SegInfo>,
    pub next_seq: u64,
    pub end: Lsn,
    pub snap_files: BTreeMap<GroupId, BTreeSet<Lsn>>,
    pub report: RecoveryReport,
}

/// Maps a file header error to the engine's error for `path`.
pub(crate) fn file_error(path: &Path, e: HeaderError) -> WalError {
    match e {
        HeaderError::Version(found) => WalError::Version {
            path: path.to_path_buf(),
            found,
            supported: crate::format::FORMAT_VERSION,
        },
        HeaderError::Corrupt(offset, what) => WalError::corrupt(path, offset, what),
    }
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

struct Replay<'a> {
    fs: &'a dyn Fs,
    dir: &'a Path,
    groups: BTreeMap<GroupId, GroupLog>,
    segments: Vec<SegInfo>,
    end: Option<Lsn>,
    report: RecoveryReport,
    /// Where to cut the last segment (offset), if its tail is torn.
    cut: Option<(PathBuf, u64)>,
    /// A last segment to delete whole (its header never got written).
    drop_last: Option<PathBuf>,
}

pub(crate) fn recover(fs: &dyn Fs, dir: &Path, options: &Options) -> Result<Recovered, WalError> {
    let names = fs.list(dir).map_err(|e| WalError::io("list", dir, e))?;
    let mut seqs: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    seqs.sort_unstable();
    for pair in seqs.windows(2) {
        if pair[1] != pair[0] + 1 {
            let path = dir.join(segment_name(pair[1]));
            let what = Corruption::MissingSegment {
                missing: pair[0] + 1,
                next: pair[1],
            };
            return Err(WalError::corrupt(path, 0, what));
        }
    }
    let mut r = Replay {
        fs,
        dir,
        groups: BTreeMap::new(),
        segments: Vec::new(),
        end: None,
        report: RecoveryReport::default(),
        cut: None,
        drop_last: None,
    };
    replay_all(&mut r, &seqs)?;
    // A dropped last segment's number is reused: numbers stay gapless.
    let next_seq = r
        .segments
        .last()
        .map_or(seqs.first().copied().unwrap_or(1), |s| s.seq + 1);
    r.repair()?;
    let snap_files = r.check_snapshots(&names, options)?;
    Ok(Recovered {
        groups: r.groups,
        segments: r.segments,
        next_seq,
        end: r.end.unwrap_or_default(),
        snap_files,
        report: r.report,
    })
}

/// Segments at least this large are read ahead on a second thread.
const READ_AHEAD_MIN: usize = 1 << 20;

/// Replays the segments in order. When they are large, a second thread
/// reads the next one while this one is decoded, so a cold recovery costs
/// about the larger of reading and decoding rather than their sum.
fn replay_all(r: &mut Replay<'_>, seqs: &[u64]) -> Result<(), WalError> {
    let read = |seq: u64| {
        let path = r.dir.join(segment_name(seq));
        r.fs.read(&path).map_err(|e| WalError::io("read", &path, e))
    };
    let Some((&first, rest)) = seqs.split_first() else {
        return Ok(());
    };
    let bytes = read(first)?;
    let ahead = bytes.len() >= READ_AHEAD_MIN;
    r.segment(first, rest.is_empty(), Bytes::from(bytes))?;
    if !ahead {
        for (k, &seq) in rest.iter().enumerate() {
            let bytes = read(seq)?;
            r.segment(seq, k + 1 == rest.len(), Bytes::from(bytes))?;
        }
        return Ok(());
    }
    let (fs, dir) = (r.fs, r.dir);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || {
            for &seq in rest {
                let path = dir.join(segment_name(seq));
                let read = fs.read(&path).map_err(|e| WalError::io("read", &path, e));
                // A closed channel means replay stopped at an error.
                if tx.send(read).is_err() {
                    break;
                }
            }
        });
        for (k, &seq) in rest.iter().enumerate() {
            let bytes = rx
                .recv()
                .expect("the reader sends one result per segment")?;
            r.segment(seq, k + 1 == rest.len(), Bytes::from(bytes))?;
        }
        Ok(())
    })
}

impl Replay<'_> {
    fn segment(&mut self, seq: u64, last: bool, bytes: Bytes) -> Result<(), WalError> {
        let path = self.dir.join(segment_name(seq));
        self.report.bytes += bytes.len() as u64;
        let header = match SegmentHeader::decode(&bytes) {
            Ok(h) => h,
            Err(HeaderError::Corrupt(..)) if last && header_torn(&bytes) => {
                self.drop_last = Some(path);
                return Ok(());
            }
            Err(e) => return Err(file_error(&path, e)),
        };
        self.check_header(&path, seq, header)?;
        let mut at = SEGMENT_HEADER_LEN;
        while at < bytes.len() {
            let len = match check_frame(&bytes, at) {
                Ok(len) => len,
                Err(c) if last && looks_torn(&bytes, at, &c) => {
                    self.cut = Some((path.clone(), at as u64));
                    break;
                }
                Err(c) => return Err(WalError::corrupt(&path, at as u64, c)),
            };
            let body = bytes.slice(at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len);
            let record =
                Record::decode(body).map_err(|c| WalError::corrupt(&path, at as u64, c))?;
            self.apply(record, header.base.plus(at as u64));
            self.report.records += 1;
            at += FRAME_HEADER_LEN + len;
        }
        self.segments.push(SegInfo {
            seq,
            base: header.base,
            checkpoint_end: header.base,
        });
        self.end = Some(header.base.plus(at as u64));
        self.report.segments += 1;
        Ok(())
    }

    fn check_header(&self, path: &Path, seq: u64, h: SegmentHeader) -> Result<(), WalError> {
        if h.seq != seq {
            let what = Corruption::WrongSegment {
                expected: seq,
                found: h.seq,
            };
            return Err(WalError::corrupt(path, 12, what));
        }
        if let Some(expected) = self.end
            && expected != h.base
        {
            let what = Corruption::LsnGap {
                seq,
                expected: expected.0,
                found: h.base.0,
            };
            return Err(WalError::corrupt(path, 20, what));
        }
        Ok(())
    }

    fn apply(&mut self, record: Record, lsn: Lsn) {
        let group = record.group();
        if let Record::Clear { .. } = record {
            self.groups.remove(&group);
            return;
        }
        // Unbounded while replaying: the entries go to `initial_state`.
        let log = self
            .groups
            .entry(group)
            .or_insert_with(|| GroupLog::new(usize::MAX));
        match record {
            Record::Entries { entries, .. } => log.append_owned(entries, lsn),
            Record::HardState { hard_state, .. } => log.hard_state = hard_state,
            Record::Snapshot {
                file,
                keep_log,
                meta,
                ..
            } => log.apply_snapshot(meta, file, keep_log),
            Record::Clear { .. } => {}
        }
    }

    /// Cuts a torn tail (durably) or deletes a last segment without a
    /// complete header, before anything new is written after it.
    fn repair(&mut self) -> Result<(), WalError> {
        if let Some((path, offset)) = &self.cut {
            self.fs
                .truncate(path, *offset)
                .map_err(|e| WalError::io("truncate", path, e))?;
            self.report.torn_tail = Some((path.clone(), *offset));
        }
        if let Some(path) = self.drop_last.take() {
            self.fs
                .remove(&path)
                .map_err(|e| WalError::io("delete", &path, e))?;
            self.fs
                .sync_dir(self.dir)
                .map_err(|e| WalError::io("fsync directory", self.dir, e))?;
            self.report.removed.push(path.display().to_string());
        }
        Ok(())
    }

    /// Checks each group's log and snapshot file, deletes files no record
    /// names, and returns the snapshot files kept.
    fn check_snapshots(
        &mut self,
        names: &[String],
        options: &Options,
    ) -> Result<BTreeMap<GroupId, BTreeSet<Lsn>>, WalError> {
        let mut unused: Vec<&String> = names.iter().filter(|n| n.ends_with(".tmp")).collect();
        let mut on_disk = BTreeSet::new();
        for name in names {
            if let Some(id) = snapfile::parse_name(name) {
                on_disk.insert(id);
            }
        }
        let mut kept: BTreeMap<GroupId, BTreeSet<Lsn>> = BTreeMap::new();
        for (&group, log) in &mut self.groups {
            let first_path = || self.dir.join(segment_name(self.segments[0].seq));
            log.check_no_hole(group)
                .map_err(|c| WalError::corrupt(first_path(), 0, c))?;
            let data = match &log.snapshot {
                None => None,
                Some(s) => {
                    let path = self.dir.join(snapfile::file_name(group, s.file));
                    if !on_disk.contains(&(group, s.file)) {
                        return Err(WalError::corrupt(path, 0, Corruption::MissingSnapshot));
                    }
                    kept.entry(group).or_default().insert(s.file);
                    Some(read_snapshot_file(self.fs, &path, group, s)?)
                }
            };
            log.finish_recovery(options.cache_bytes_per_group, data);
        }
        for name in names {
            if let Some((g, f)) = snapfile::parse_name(name)
                && !kept.get(&g).is_some_and(|k| k.contains(&f))
            {
                unused.push(name);
            }
        }
        for name in &unused {
            let path = self.dir.join(name);
            self.fs
                .remove(&path)
                .map_err(|e| WalError::io("delete", &path, e))?;
            self.report.removed.push(name.to_string());
        }
        if !unused.is_empty() {
            self.fs
                .sync_dir(self.dir)
                .map_err(|e| WalError::io("fsync directory", self.dir, e))?;
        }
        Ok(kept)
    }
}

fn read_snapshot_file(
    fs: &dyn Fs,
    path: &Path,
    group: GroupId,
    s: &crate::group::SnapRef,
) -> Result<Bytes, WalError> {
    let bytes = fs.read(path).map_err(|e| WalError::io("read", path, e))?;
    let (g, file, snapshot) =
        snapfile::decode(&Bytes::from(bytes)).map_err(|e| file_error(path, e))?;
    if g != group || file != s.file || snapshot.meta != s.meta {
        return Err(WalError::corrupt(path, 0, Corruption::SnapshotMismatch));
    }
    Ok(snapshot.data)
}

/// A last segment whose header never fully reached the disk: shorter than
/// a header, or a header that reads as zeros.
fn header_torn(bytes: &[u8]) -> bool {
    bytes.len() < SEGMENT_HEADER_LEN || bytes[..SEGMENT_HEADER_LEN].iter().all(|&b| b == 0)
}
