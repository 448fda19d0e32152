//! The KV application the host replicates for etcd's API: the KV replica
//! ([`flotilla_kv::Replica`]) and the member table ([`members::Members`])
//! as one [`crate::StateMachine`] ([`KvMachine`]), its snapshot format,
//! and where the changes it applies are published ([`Publish`]).
//!
//! It lives in the host, not in the etcd crate, so that the simulator
//! runs the same machine the servers run. It is deterministic and does
//! no I/O: a command's time is the stamp its proposer put in it (the
//! replicated clock session expiry reads), and publication goes through
//! [`Publish`], which the server implements with its watch hub (tokio
//! broadcast) and a simulator with a recorder.

pub mod machine;
pub mod members;

use flotilla_kv::Event;

pub use machine::{KvMachine, KvOutput, UnreadableCommand, encode_snapshot};

/// What the machine publishes.
#[derive(Debug)]
pub enum Batch {
    /// The changes of one applied entry, all at `revision`.
    Events {
        /// The store revision the entry wrote.
        revision: u64,
        /// Its changes, in order.
        events: Vec<Event>,
    },
    /// A snapshot replaced the state; the store is now at `revision` and
    /// the changes in between are unknown.
    Reset {
        /// The store revision after the restore.
        revision: u64,
    },
}

/// Where the changes the machine applies go.
///
/// Invariants the machine keeps: it calls [`Publish::publish`] under its
/// own lock (whoever holds the machine), once per entry that changed the
/// store, in apply order, and once per restore that moved the revision;
/// it records changes only while [`Publish::active`] says someone listens,
/// so with no listener the write path does no extra work.
pub trait Publish: Send + Sync + std::fmt::Debug + 'static {
    /// Whether anyone listens (changes are recorded only then).
    fn active(&self) -> bool;
    /// One batch, in apply order.
    fn publish(&self, batch: Batch);
}

/// Nobody listens: a machine without watches.
#[derive(Debug, Default)]
pub struct NoWatch;

impl Publish for NoWatch {
    fn active(&self) -> bool {
        false
    }
    fn publish(&self, _batch: Batch) {}
}
