//! The application a Raft node replicates: a deterministic state machine
//! that applies committed commands in log order, and can be saved to and
//! restored from a snapshot.
//!
//! Invariants the host keeps: `apply` sees every committed command
//! exactly once, in index order, after `restore` of any snapshot that
//! precedes it; `snapshot` and `snapshot_job` are only called between
//! applies, so they capture the state at the last applied index. A
//! [`SnapshotJob`] runs on a blocking thread while the machine goes on
//! applying, so it owns what it encodes.

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

/// A replicated state machine, driven by a [`crate::Host`].
pub trait StateMachine: Send + 'static {
    /// What applying one command yields for the client that proposed it.
    type Output: Send + 'static;

    /// Applies the committed entry `entry` (every entry, in index order,
    /// no-ops and membership changes included, so the machine can track
    /// its applied index).
    ///
    /// A committed command the machine cannot apply (one written by a
    /// newer version during a rolling upgrade, say) is an [`ApplyError`]:
    /// the node stops rather than skip it, since replicas that can apply
    /// it would diverge from this one (etcd panics likewise). Never a
    /// panic: the operator gets the error and can upgrade the member, which
    /// then replays the entry from its log.
    fn apply(&mut self, entry: &Entry) -> Result<Self::Output, ApplyError>;

    /// The machine's state, encoded.
    fn snapshot(&self) -> Bytes;

    /// The machine's state as a job that encodes it, taken when the log is
    /// compacted. The host's executor runs the job on a blocking thread so that the
    /// Raft task does not stall for the encoding of a large state: the
    /// machine should capture a cheap copy here (reference-counted data)
    /// and leave the encoding to the job. The default encodes at once.
    fn snapshot_job(&self) -> SnapshotJob {
        let data = self.snapshot();
        Box::new(move || data)
    }

    /// Replaces the state with a snapshot's. An error is fatal to the
    /// node: the snapshot came from a peer and passed Raft's checks, so a
    /// machine that cannot read it is a bug or a version mismatch.
    fn restore(&mut self, data: &Bytes) -> Result<(), RestoreError>;

    /// The member addresses this machine replicates, if it does. The host
    /// asks after a conf change is applied or a snapshot restored,
    /// and points the transport at them.
    fn peer_table(&self) -> Option<PeerTable> {
        None
    }
}

/// Encodes a snapshot of a state captured earlier; runs off the Raft task.
pub type SnapshotJob = Box<dyn FnOnce() -> Bytes + Send>;

/// A committed entry the state machine cannot apply.
#[derive(Debug, thiserror::Error)]
#[error("cannot apply committed entry {index}")]
pub struct ApplyError {
    /// The entry's index.
    pub index: flotilla_raft::LogIndex,
    /// Why.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// A snapshot the state machine cannot read.
#[derive(Debug, thiserror::Error)]
#[error("cannot restore the state machine from a snapshot")]
pub struct RestoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);
