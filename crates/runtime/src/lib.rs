//! Flotilla's Raft runtime: a tokio task per Raft group runs the I/O-free
//! replica host ([`flotilla_host::Host`]: the Raft core, the durable WAL
//! with group commit, the application's [`StateMachine`]) with a timer,
//! peer messages over gRPC streams, and syncs on the blocking pool.
//!
//! - [`driver`]: the node's task, the host's tokio executor.
//! - [`handle`]: how services propose commands and ask for read indexes.
//! - [`transport`] / [`inbound`]: peer messages out and in.
//! - [`owned`]: wire bytes copied out of their receive buffer before
//!   anything keeps them.
//! - [`metrics`]: Prometheus counters and histograms, and their text.
//!
//! `docs/data-path.md` (at the repository's root) follows a write and a
//! linearizable read through this runtime and the host.

pub mod driver;
pub mod handle;
pub mod inbound;
pub mod metrics;
pub mod owned;
pub mod transport;

pub use driver::{FatalError, NodeOptions, RaftNode, StartError};
pub use flotilla_host::{
    ApplyError, HostOptions, PeerTable, RestoreError, SnapshotJob, StateMachine, lock,
};
pub use handle::{Applied, LOG_TAIL_MAX, LogEntryInfo, NodeError, NodeHandle, NodeStatus};
pub use inbound::InboundService;
pub use transport::{PeerTls, Transport};

/// A seed for the Raft core that differs on every start of the process
/// ([`flotilla_raft::Config::seed`]: forwarded reads' ids derive from
/// it, and must not repeat across restarts). std's `RandomState` is
/// keyed from the OS's randomness once per process; the clock and pid
/// are mixed in too.
pub fn start_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(since_epoch.as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}
