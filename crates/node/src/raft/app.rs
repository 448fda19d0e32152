//! The application a Raft node replicates: a deterministic state machine
//! that applies committed commands in log order, and can be saved to and
//! restored from a snapshot.
//!
//! Invariants the driver keeps: `apply` sees every committed command
//! exactly once, in index order, after `restore` of any snapshot that
//! precedes it; `snapshot` is only called between applies, so it captures
//! the state at the last applied index.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use flotilla_raft::{Entry, NodeId};

/// Where a group's members are, as its replicated state says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerTable {
    /// Each member's `host:port`.
    pub addrs: BTreeMap<NodeId, String>,
    /// Members removed from the group.
    pub removed: BTreeSet<NodeId>,
}

/// A replicated state machine, driven by [`super::RaftNode`].
pub trait StateMachine: Send + 'static {
    /// What applying one command yields for the client that proposed it.
    type Output: Send + 'static;

    /// Applies the committed entry `entry` (every entry, in index order,
    /// no-ops and membership changes included, so the machine can track
    /// its applied index). A command the machine cannot decode must yield
    /// an error output, never a panic: every replica sees the same bytes.
    fn apply(&mut self, entry: &Entry) -> Self::Output;

    /// The machine's state, encoded (taken when the log is compacted).
    fn snapshot(&self) -> Bytes;

    /// Replaces the state with a snapshot's. An error is fatal to the
    /// node: the snapshot came from a peer and passed Raft's checks, so a
    /// machine that cannot read it is a bug or a version mismatch.
    fn restore(&mut self, data: &Bytes) -> Result<(), RestoreError>;

    /// The member addresses this machine replicates, if it does. The
    /// driver asks after a conf change is applied or a snapshot restored,
    /// and points the transport at them.
    fn peer_table(&self) -> Option<PeerTable> {
        None
    }
}

/// A snapshot the state machine cannot read.
#[derive(Debug, thiserror::Error)]
#[error("cannot restore the state machine from a snapshot")]
pub struct RestoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);
