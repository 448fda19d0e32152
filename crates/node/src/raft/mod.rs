//! The Raft runtime: a tokio task per Raft group drives the I/O-free
//! [`flotilla_raft::RawNode`] with a timer, peer messages over gRPC
//! streams, the durable WAL ([`flotilla_wal`]) with group commit, and the
//! application's [`StateMachine`].
//!
//! - [`driver`]: the node's task and its Ready loop (the durability order).
//! - [`handle`]: how services propose commands and ask for read indexes.
//! - [`transport`] / [`inbound`]: peer messages out and in.
//! - [`app`]: the trait the replicated application implements.
//! - [`owned`]: wire bytes copied out of their receive buffer before
//!   anything keeps them.

pub mod app;
pub mod driver;
pub mod handle;
pub mod inbound;
pub(crate) mod owned;
pub mod transport;

pub use app::{ApplyError, PeerTable, RestoreError, SnapshotJob, StateMachine};
pub use driver::{FatalError, NodeOptions, RaftNode, StartError};
pub use handle::{Applied, NodeError, NodeHandle, NodeStatus};
pub use inbound::InboundService;
pub use transport::Transport;
