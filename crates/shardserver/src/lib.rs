//! The sharded store as a server: one process hosts a replica of the
//! shard controller's Raft group and of every data group (multi-Raft, as
//! TiKV and CockroachDB host many regions or ranges per process), and
//! serves the Shard gRPC service (`flotilla.shard.v1`).
//!
//! - [`hosted`]: the groups this server hosts, each a production replica
//!   host ([`flotilla_runtime::RaftNode`]) over its own state machine
//!   ([`flotilla_shardkv::Ctrler`] or [`flotilla_shardkv::ShardKv`]):
//!   one WAL for all of them, one set of peer links carrying every
//!   group's messages, tagged ([`flotilla_runtime::Transport::for_group`]).
//! - [`mover`]: each data group's background work at the member that
//!   leads it: the next configuration, shard pulls, deletes and settles,
//!   each proposed through a group's log.
//! - [`service`]: the gRPC service: the controller's requests, and keys
//!   routed to the group that owns their shard now.
//! - [`server`]: the process: data directory, WAL, groups, serving.
//!
//! Layout invariant: every server of a sharded cluster hosts every group
//! (the controller and the data groups named by `--groups`), so a pull
//! from a shard's old owner is a linearizable read (a read index) at the
//! local replica of that group, and a delete a proposal to it; the Raft
//! messages those cause travel between servers on the shared links.

pub mod console;
pub mod hosted;
pub mod mover;
pub mod server;
pub mod service;

pub use server::{ServerError, ShardServerConfig, ShardTls, run};

/// The transport tag and WAL group of the controller's group. Data group
/// `gid` uses tag `gid` and WAL group `gid + 1`.
pub const CTRL_TAG: u64 = 0;

/// The highest data group id a server hosts (ids are small numbers
/// chosen by the operator; the bound keeps the WAL's group ids apart).
pub const GID_MAX: u64 = 1_000_000;
