//! What can go wrong, each error naming the input it is about (the file and
//! byte offset of a corruption, the group and index of a bad append).
//!
//! Tiers (STYLE.md practice 12): [`WalError::Corrupt`] and the open errors
//! refuse to start; an I/O failure while writing poisons the engine (after a
//! failed `fdatasync` the kernel may have dropped the dirty pages, so a retry
//! could report durability that is not there) and every later write returns
//! [`WalError::Poisoned`]; misuse of the API (a gap, non-consecutive
//! entries) is a typed error and changes nothing.

use std::io;
use std::path::PathBuf;

use flotilla_raft::{DecodeError, LogIndex};
use thiserror::Error;

use crate::ids::GroupId;

/// Why bytes on disk are not a valid log.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Corruption {
    /// A segment or snapshot file that does not start with our magic.
    #[error("bad magic number (not a Flotilla WAL file)")]
    BadMagic,
    /// A file header whose checksum does not match.
    #[error("file header checksum mismatch")]
    BadFileHeader,
    /// A header naming a different segment than its file name.
    #[error("header says segment {found}, file name says {expected}")]
    WrongSegment {
        /// From the file name.
        expected: u64,
        /// From the header.
        found: u64,
    },
    /// The file ends inside a header or record.
    #[error("file ends inside a record ({needed} bytes needed, {available} left)")]
    Truncated {
        /// Bytes the record needs.
        needed: u64,
        /// Bytes the file has left.
        available: u64,
    },
    /// A record header whose own checksum does not match.
    #[error("record header checksum mismatch")]
    BadRecordHeader,
    /// A record length out of range.
    #[error("record length {len} out of range")]
    BadLength {
        /// The length found.
        len: u64,
    },
    /// A record body whose checksum does not match.
    #[error("record checksum mismatch")]
    BadChecksum,
    /// A record with a valid checksum that does not decode.
    #[error("undecodable record: {0}")]
    Decode(#[from] DecodeError),
    /// A record type byte with no meaning.
    #[error("unknown record type {0}")]
    UnknownRecord(u8),
    /// An entries record whose indexes are not consecutive from 1 on.
    #[error("entries record is not a run of consecutive indexes from 1 on")]
    BadEntries,
    /// Segments that do not follow each other.
    #[error("segment {seq} starts at lsn {found} but the previous one ends at lsn {expected}")]
    LsnGap {
        /// The segment.
        seq: u64,
        /// Where the previous segment ended.
        expected: u64,
        /// Where this one says it starts.
        found: u64,
    },
    /// A segment number missing from the sequence.
    #[error("segment {missing} is missing (next present: {next})")]
    MissingSegment {
        /// The absent number.
        missing: u64,
        /// The next one present.
        next: u64,
    },
    /// A group whose log, after replay, does not start right after its
    /// snapshot: records that are still needed are gone.
    #[error(
        "{group}: log starts at {first} but the snapshot ends at {snapshot}: records are missing"
    )]
    Hole {
        /// The group.
        group: GroupId,
        /// First entry recovered.
        first: LogIndex,
        /// Last index covered by its snapshot (0 without one).
        snapshot: LogIndex,
    },
    /// A snapshot file that does not match the record naming it.
    #[error("snapshot file does not match its log record")]
    SnapshotMismatch,
    /// A snapshot record naming a file that does not exist.
    #[error("snapshot file is missing")]
    MissingSnapshot,
    /// An entry read back is not the one the index says is there.
    #[error("entry read back is {found_term}/{found_index}, the index says {term}/{index}")]
    WrongEntry {
        /// Expected index.
        index: u64,
        /// Expected term.
        term: u64,
        /// Index found.
        found_index: u64,
        /// Term found.
        found_term: u64,
    },
}

/// Errors of the WAL engine and its group handles.
#[derive(Debug, Error)]
pub enum WalError {
    /// The data directory does not exist.
    #[error("WAL directory {path} does not exist (create it first)")]
    DirMissing {
        /// The directory.
        path: PathBuf,
    },
    /// The path exists but is not a directory.
    #[error("WAL path {path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// Another process (or another open in this one) holds the directory.
    #[error("WAL directory {path} is locked by another process{holder}")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// ", pid N" when the lock file names its holder.
        holder: String,
    },
    /// A file written by another format version.
    #[error(
        "{path}: format version {found} is not supported (this build reads version {supported})"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// The version in its header.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// Bytes on disk that are not a valid log: the engine refuses to start.
    #[error("corrupt WAL file {path} at byte {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the bad bytes start.
        offset: u64,
        /// What is wrong.
        what: Corruption,
    },
    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An earlier write or sync failed; the engine accepts no more writes.
    #[error("WAL is unusable after an earlier failure: {cause}")]
    Poisoned {
        /// The first failure.
        cause: String,
    },
    /// `append` was given entries whose indexes do not follow each other.
    #[error("{group}: entries to append are not consecutive at index {index}")]
    NotConsecutive {
        /// The group.
        group: GroupId,
        /// The first index out of order.
        index: LogIndex,
    },
    /// `append` would leave a gap after the log's last entry.
    #[error("{group}: append at {index} leaves a gap after the last index {last}")]
    Gap {
        /// The group.
        group: GroupId,
        /// The first index appended.
        index: LogIndex,
        /// The log's last index.
        last: LogIndex,
    },
    /// A record too large for the format.
    #[error("{group}: a record of {bytes} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The group.
        group: GroupId,
        /// The record's size.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// A read of entries outside the stored log.
    #[error("{group}: entries {lo}..{hi} are not stored (log holds {first}..={last})")]
    OutOfRange {
        /// The group.
        group: GroupId,
        /// Requested start.
        lo: LogIndex,
        /// Requested end (exclusive).
        hi: LogIndex,
        /// First stored index.
        first: LogIndex,
        /// Last stored index.
        last: LogIndex,
    },
    /// A second handle for a group that already has one.
    #[error("{0} already has an open handle (one writer per group)")]
    GroupInUse(GroupId),
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> WalError {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, what: Corruption) -> WalError {
        WalError::Corrupt {
            path: path.into(),
            offset,
            what,
        }
    }
}
