//! The application a Raft node replicates: a deterministic state machine
//! that applies committed commands in log order, and can be saved to and
//! restored from a snapshot.
//!
//! Invariants the driver keeps: `apply` sees every committed command
//! exactly once, in index order, after `restore` of any snapshot that
//! precedes it; `snapshot` and `snapshot_job` are only called between
//! applies, so they capture the state at the last applied index. A
//! [`SnapshotJob`] runs on a blocking thread while the machine goes on
//! applying, so it owns what it encodes.

use bytes::Bytes;
use flotilla_raft::Entry;

/// A replicated state machine, driven by [`super::RaftNode`].
pub trait StateMachine: Send + 'static {
    /// What applying one command yields for the client that proposed it.
    type Output: Send + 'static;

    /// Applies the committed entry `entry` (every entry, in index order,
    /// no-ops and membership changes included, so the machine can track
    /// its applied index). A command the machine cannot decode must yield
    /// an error output, never a panic: every replica sees the same bytes.
    fn apply(&mut self, entry: &Entry) -> Self::Output;

    /// The machine's state, encoded.
    fn snapshot(&self) -> Bytes;

    /// The machine's state as a job that encodes it, taken when the log is
    /// compacted. The driver runs the job on a blocking thread so that the
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
}

/// Encodes a snapshot of a state captured earlier; runs off the Raft task.
pub type SnapshotJob = Box<dyn FnOnce() -> Bytes + Send>;

/// A snapshot the state machine cannot read.
#[derive(Debug, thiserror::Error)]
#[error("cannot restore the state machine from a snapshot")]
pub struct RestoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);
