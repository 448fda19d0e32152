//! The sharded store's state machines (the course's Lab 4), I/O-free like
//! the Raft core and the KV replica: the production host replicates them,
//! in the server and in the simulator alike.
//!
//! - [`config`]: a numbered configuration (shard to group, group to
//!   servers) and the course's key-to-shard rule;
//! - [`balance`]: deterministic, minimal rebalancing when groups join or
//!   leave;
//! - [`command`]: the controller's requests and answers, and their
//!   encoding in log entries;
//! - [`ctrler`]: the shard controller's machine (every configuration kept,
//!   exactly-once clients, checksummed snapshots);
//! - [`group`]: a replica group's machine (the shards it holds, each with
//!   its exactly-once table, and the handover of shards between groups
//!   through each group's log).

pub mod balance;
pub mod command;
pub mod config;
pub mod ctrler;
mod frame;
pub mod group;

pub use command::{CtrlCommand, CtrlError, CtrlOp, CtrlReply};
pub use config::{COURSE_SHARDS, Config, Gid, key2shard};
pub use ctrler::{CtrlApplied, Ctrler};
pub use group::{GroupApplied, GroupCommand, KvOp, KvReply, ShardData, ShardKv, ShardState};
