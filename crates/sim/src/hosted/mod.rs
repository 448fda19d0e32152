//! The production replica host ([`flotilla_host::Host`]) on virtual time:
//! the same code the tokio executor runs in a server, with the real WAL
//! on [`flotilla_wal::MemFs`] (a crash loses what was not synced and may
//! tear the tail), the simulator's network ([`crate::net`]: loss, delay,
//! duplication, reordering, partitions), syncs that take a random while,
//! and snapshot jobs that finish while new writes go on.
//!
//! What the members replicate and what clients ask is an [`App`]'s
//! ([`app`]): [`Bare`], an empty machine under the chain's checks, or
//! etcd's KV machine with its session requests, checked histories and
//! watchers (`flotilla_kvsim::hosted`, `flotilla sim hosted --kv`).
//!
//! Clients propose commands and ask for linearizable reads at any member
//! (they start spread over the members and now and then move on); a
//! follower forwards both to the leader it knows and answers itself, so
//! writes cross leader changes on their way. Clients follow `NotLeader`
//! hints and give up after a deadline (the host then forgets the read).
//! Every answer is checked as
//! it leaves the host:
//!
//! - a proposal's `Ok` comes only once its entry is durable on a quorum
//!   (synced in the WAL, or under a durable snapshot, of a majority of the
//!   voters, the crashed members' disks as the crash left them included), and names
//!   the index its own command was applied at;
//! - a read's `Ok(index)` comes only once this member applied `index`,
//!   and `index` covers every entry committed before the read began (every
//!   write acknowledged, every entry applied anywhere);
//! - every member applies the same entry at each index, in order, and a
//!   restored snapshot matches the log ([`machine`]).
//!
//! With `membership` on, some members start as spares outside the
//! configuration and an operator (`admin.rs`) adds, promotes, removes and
//! replaces members through the host while the faults run. Then:
//!
//! - "a quorum" is the configuration's in force at that entry: a
//!   majority of its voters, and of the outgoing voters too while joint
//!   (`quorum.rs` says which configurations may have decided an entry,
//!   given that the core puts a change in force when it commits it);
//! - every member (its state machine as it applies, its core at its
//!   commit index, a restored snapshot) has the configuration the one
//!   history gives at that index ([`ledger`]);
//! - a write is acknowledged only by a voter of the configuration that
//!   decided it, and a member that applied its own removal answers no
//!   read; it then shuts down for good, and the transports refuse its
//!   messages (each member's transport links to the members of the table
//!   its host last gave it, and answers any peer that reached it:
//!   `Member::reaches` in `member.rs`);
//! - a change is answered with the index of its own entry, and by a
//!   leader only once the joint configuration is left.
//!
//! After every event, Raft's safety properties are checked from what each
//! member's core and WAL hold (`safety.rs`: log matching over the durable
//! logs, leader completeness, durable commit at each commit decision,
//! monotonic commit and term, the core's own invariants; election safety
//! here). With `transfers` on, the nemesis (`faults.rs`) also moves the
//! leadership through the host.
//!
//! After the faults stop, the group must serve writes again (liveness),
//! in whatever configuration the changes left, every member of which has
//! it and has applied what was acknowledged halfway through the calm.

mod admin;
pub mod app;
mod clients;
mod config;
mod faults;
mod lab;
pub mod ledger;
pub mod machine;
mod member;
mod quorum;
mod safety;
mod service;
mod trace;
mod world;

pub use app::{App, Bare, Padded, Request};
pub use config::HostedConfig;
pub use lab::{HostedActor, HostedCluster, LabApp};
pub use service::{Costs, Cpus, ServiceModel};
pub use world::{Answered, HostedReport, Output, TestAnswer, run, run_app};
