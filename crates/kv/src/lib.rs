//! The state machine of a linearizable key/value service replicated with
//! Raft (the course's Lab 3, with the key space of etcd's v3 API), I/O-free:
//! a [`Replica`] (a [`Store`] and its [`Sessions`]) applies committed
//! commands in log order. The replica host (`flotilla-host`'s
//! `kv_app::KvMachine`) runs it on every member, in production and in
//! the simulator alike.
//!
//! - [`command`]: requests ([`Op`]: get, put, append, delete, range,
//!   delete-range, compare-and-swap transactions), responses, and the
//!   envelopes of log entries and client messages; [`codec`]: their
//!   versioned encoding; [`check`]: what a replica checks of a command
//!   before applying it, and the refusal it answers instead.
//! - [`store`]: the key space with etcd's create/mod revisions and
//!   versions, and a store revision that each write increments;
//!   [`history`]: its MVCC history (reads at a revision, watch replays,
//!   compaction), for a store that keeps one;
//!   [`event`]: the changes a write made, for etcd's watch;
//!   [`auth`]: etcd's users, roles and permissions, and which user may
//!   run which operation.
//! - [`session`]: exactly-once: per client, the last request applied and its
//!   answer, expired on the replicated clock carried by the log.
//! - [`replica`]: the state machine fed committed entries; `snapshot` and
//!   `restore` with the versioned, checksummed format of [`snapshot`].
//!
//! Nothing here reads a clock or touches the network or a disk: the
//! simulator (`flotilla-kvsim`) and the runtime drive the same code.

pub mod auth;
pub mod check;
mod chunked;
pub mod codec;
pub mod command;
pub mod event;
pub mod history;
pub mod lease;
pub mod replica;
pub mod session;
pub mod snapshot;
pub mod store;

pub use auth::{Auth, AuthError, AuthOp, PermKind, Permission, ROOT, Role, User};
pub use check::{KeyRole, Refusal, check_op};
pub use codec::{COMMAND_FORMAT_VERSION, CodecError, FORMAT_VERSION, MAX_TXN_DEPTH};
pub use command::{
    AlarmKind, ClientMsg, CmpOp, Command, Compare, CompareSpan, KeyValue, Op, Outcome,
    ReadConsistency, Reply, Request, Response, Target, Txn, prefix_end,
};
pub use event::{Event, EventKind};
pub use history::Replay;
pub use lease::{Lease, Leases};
pub use replica::{Applied, ApplyError, Replica};
pub use session::{Admission, SERVER_MINTED, SessionLimits, Sessions, minted_by_server};
pub use snapshot::SnapshotError;
pub use store::Store;
