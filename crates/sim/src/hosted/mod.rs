//! The production replica host ([`flotilla_host::Host`]) on virtual time:
//! the same code the tokio executor runs in a server, with the real WAL
//! on [`flotilla_wal::MemFs`] (a crash loses what was not synced and may
//! tear the tail), the simulator's network ([`crate::net`]: loss, delay,
//! duplication, reordering, partitions), syncs that take a random while,
//! and snapshot jobs that finish while new writes go on.
//!
//! Clients propose commands and ask for linearizable reads at the member
//! they believe leads, follow `NotLeader` hints, and give up after a
//! deadline (the host then forgets the read). Every answer is checked as
//! it leaves the host:
//!
//! - a proposal's `Ok` comes only once its entry is durable on a quorum
//!   (synced in the WAL, or under a durable snapshot, of a majority, the
//!   crashed members' disks as the crash left them included), and names
//!   the index its own command was applied at;
//! - a read's `Ok(index)` comes only once this member applied `index`,
//!   and `index` covers every write acknowledged before the read began;
//! - every member applies the same entry at each index, in order, and a
//!   restored snapshot matches the log ([`machine`]).
//!
//! After the faults stop, the group must serve writes again (liveness).

pub mod machine;
mod member;
mod world;

pub use world::{HostedConfig, HostedReport, run};
