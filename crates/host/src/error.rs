//! Why a host could not start, and why a running host stops on its own.

use flotilla_raft::ConfigError;
use flotilla_wal::WalError;

use crate::app::{ApplyError, RestoreError};

/// Why a host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The WAL could not be read.
    #[error("reading the write-ahead log")]
    Wal(#[from] WalError),
    /// The Raft configuration is invalid.
    #[error("invalid Raft configuration")]
    Config(#[from] ConfigError),
    /// The saved snapshot could not be restored.
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

/// Why a running host stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// Writing or syncing the WAL failed: the node cannot keep its promises.
    #[error("write-ahead log failure")]
    Wal(#[from] WalError),
    /// A snapshot from the leader could not be restored.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A committed entry could not be applied.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The executor's sync task panicked or was cancelled.
    #[error("the WAL sync task failed: {0}")]
    SyncTask(String),
}
