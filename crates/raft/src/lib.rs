//! An I/O-free Raft consensus core.
//!
//! The core is a deterministic state machine: it never reads a clock,
//! spawns a thread, touches a socket or a file, or draws from a global
//! random source. The application (a *driver*: the simulator in tests, the
//! tokio runtime in production) feeds it events and carries out the work it
//! asks for:
//!
//! ```text
//!            tick() / step(msg) / propose(cmd) / read_index(ctx)
//!   driver ─────────────────────────────────────────────────────► RawNode
//!     ▲                                                              │
//!     │   ready(): writes, messages, committed entries, reads        │
//!     └──────────────────────────────────────────────────────────────┘
//!                     ... do the work, then advance(&ready)
//! ```
//!
//! # The duties that come with a [`Ready`]
//!
//! Do them in this order, then call [`RawNode::advance`]. Do not step or tick
//! the node between `ready()` and `advance()`.
//!
//! 1. Send `messages` (they may leave before anything is durable: they are
//!    the leader's replication traffic, §10.2.1 of the thesis).
//! 2. Persist `snapshot`, then `entries`, then `hard_state`, with
//!    [`persist`] (which follows the storage contract), and sync them if
//!    `must_sync`.
//! 3. Only then send `persisted_messages`: they report state (a vote, a
//!    term, an appended entry) that must survive a crash.
//! 4. If `restore_snapshot`, restore the state machine from `snapshot`.
//! 5. Apply `committed_entries` in order (skip [`EntryKind::Noop`]; conf
//!    changes are applied by the core itself when committed).
//! 6. Answer the reads in `read_states` once the state machine has applied
//!    up to their index; retry those in `dropped_reads`. Note where the
//!    proposals in `forwarded` were placed, to answer them once applied.
//!
//! # Asynchronous writes
//!
//! A driver may instead let a Ready's writes sync while the node goes on
//! (etcd's raft calls this asynchronous storage writes): do steps 1, 2
//! without waiting for the sync, 4–6, then call
//! [`RawNode::advance_handed`]; the node may now be stepped and ticked and
//! give further Readys. Once the writes are durable (a sync covers every
//! write handed out before it), send the Ready's `persisted_messages` and
//! call [`RawNode::on_persisted`] with its [`Ready::persist_mark`], Ready
//! after Ready in order. Committed entries may be applied before the
//! Ready's own writes are durable: a leader counts its own log toward
//! commitment only from `on_persisted`, so what it hands out to apply is
//! durable on a quorum already. A Ready with a `snapshot` takes the
//! synchronous path: wait until every earlier Ready is persisted, then
//! sync it and [`RawNode::advance`].
//!
//! # Example: a one-node group
//!
//! ```
//! use bytes::Bytes;
//! use flotilla_raft::{Config, EntryKind, InitialState, MemStorage, NodeId, RawNode, persist};
//!
//! let mut node = RawNode::new(Config::new(NodeId(1), vec![NodeId(1)]), InitialState::default())?;
//! let mut storage = MemStorage::new();
//! node.campaign();
//! let mut applied = Vec::new();
//! let mut proposed = false;
//! for _ in 0..10 {
//!     if node.status().role == flotilla_raft::Role::Leader && !proposed {
//!         node.propose(Bytes::from_static(b"x=1"))?;
//!         proposed = true;
//!     }
//!     while node.has_ready() {
//!         let rd = node.ready();
//!         persist(&mut storage, rd.writes()).expect("memory storage cannot fail");
//!         for e in &rd.committed_entries {
//!             if e.kind == EntryKind::Command {
//!                 applied.push(e.data.clone());
//!             }
//!         }
//!         node.advance(&rd);
//!     }
//! }
//! assert_eq!(applied, vec![Bytes::from_static(b"x=1")]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it implements
//!
//! Leader election with randomized timeouts from a seeded PRNG (§5.2),
//! pre-vote and check-quorum (§9.6), log replication with fast backtracking
//! (§5.3), commitment by counting replicas of current-term entries only
//! (§5.4.2, Figure 8), a no-op entry at the start of each term, snapshots
//! sent in chunks (§7), batching and pipelining with per-follower flow
//! control, ReadIndex and lease reads (§6.4 of the thesis), leadership
//! transfer (§3.10) and membership changes by joint consensus (§6), with
//! learners.

#![deny(missing_docs)]

pub mod codec;
pub mod confchange;
mod config;
mod election;
mod follower;
mod forward;
mod leader;
mod log;
pub mod message;
mod progress;
#[cfg(test)]
mod props;
mod quorum;
mod raft;
mod raw_node;
mod read_only;
mod replication;
pub mod rng;
pub mod storage;
pub mod types;

pub use codec::{Decode, DecodeError, Encode};
pub use confchange::{ConfChange, ConfChangeError, ConfChangeOp};
pub use config::{Config, ConfigError, ReadMode};
pub use forward::ForwardOutcome;
pub use leader::{ProposeError, TransferError};
pub use message::{
    Append, AppendResp, Message, MessageBody, RejectHint, SnapshotChunk, VoteRequest,
};
pub use raft::StepError;
pub use raw_node::{CompactError, PersistMark, RawNode, Ready, SoftState, Status};
pub use read_only::ReadState;
pub use storage::{InitialState, MemStorage, Storage, Writes, persist};
pub use types::{
    ConfState, Entry, EntryKind, HardState, LogIndex, NodeId, Role, Snapshot, SnapshotMeta, Term,
};
