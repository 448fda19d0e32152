//! The replica host: everything one member decides about one Raft group,
//! as an I/O-free state machine ([`Host`]) in the shape of
//! `flotilla_mapreduce::Coordinator`: events in (tick, peer message,
//! request, sync ended, snapshot built), [`Action`]s out (send, sync,
//! build a snapshot, point the transport at new peers).
//!
//! The host owns the Raft core ([`flotilla_raft::RawNode`]), the group's
//! handle on the real WAL ([`flotilla_wal`]), and the application's
//! [`StateMachine`]. Writes go to the WAL's memory at once; every wait
//! for the disk (a sync, a snapshot file) is an action its executor
//! carries out off the host's thread. Two executors run it: tokio on real
//! files and sockets (`flotilla_runtime`), and the simulator on
//! virtual time with the WAL on its in-memory file system, so the code
//! that runs in production is the code the seeded tests check.
//!
//! - [`host`]: the host, its events and actions.
//! - [`ready`]: the Ready loop (durability order, group commit, answers).
//! - [`snapshot`]: when to compact, and the job that builds a snapshot.
//! - [`app`]: the trait the replicated application implements.
//! - [`reply`]: what callers get back, and the waiter types that carry it.
//! - [`kv_app`]: the KV application etcd's API serves (the KV replica and
//!   the member table as one machine, and where its changes are published).
//!
//! `docs/data-path.md` (at the repository's root) follows a write and a
//! linearizable read through the host, from the gRPC call to the answer.

pub mod app;
mod counters;
mod error;
pub mod host;
pub mod kv_app;
mod ready;
pub mod reply;
pub mod snapshot;

pub use app::{ApplyError, PeerTable, RestoreError, SnapshotJob, StateMachine};
pub use counters::Counters;
pub use error::{FatalError, StartError};
pub use host::{Action, Host, HostOptions, Pump, RETIRE_HEARTBEATS, lock};
pub use reply::{Applied, NodeError, NodeStatus, Waiter, Waiters};
pub use snapshot::SnapshotTask;
