//! The two numbers the WAL hands out: which Raft group a record belongs
//! to, and where in the log stream a record ends.
//!
//! Invariant: [`Lsn`]s only grow, across segments and across restarts (a
//! segment's header carries the LSN of its first byte), so "durable up to
//! LSN x" is a single watermark that covers every group at once.

use std::fmt;

/// A Raft group sharing the log. The single-group server uses one id
/// (conventionally `GroupId(1)`); a node of the sharded store uses one per
/// shard group it hosts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GroupId(pub u64);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group {}", self.0)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// A log sequence number: the byte position in the engine's record stream
/// (segment headers included). A write returns the LSN just past its
/// record; the write is durable once [`crate::Wal::durable_lsn`] reaches it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// This position moved forward by `bytes`.
    pub const fn plus(self, bytes: u64) -> Lsn {
        Lsn(self.0 + bytes)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lsn {}", self.0)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}
