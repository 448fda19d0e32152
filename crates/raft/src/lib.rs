//! An I/O-free Raft consensus core (work in progress: the types, the wire
//! and disk encoding, and the storage contract).

#![deny(missing_docs)]

pub mod codec;
pub mod confchange;
pub mod message;
pub mod storage;
pub mod types;

pub use codec::{Decode, DecodeError, Encode};
pub use confchange::{ConfChange, ConfChangeError, ConfChangeOp};
pub use message::{
    Append, AppendResp, Message, MessageBody, RejectHint, SnapshotChunk, VoteRequest,
};
pub use storage::{InitialState, MemStorage, Storage, Writes, persist};
pub use types::{
    ConfState, Entry, EntryKind, HardState, LogIndex, NodeId, Role, Snapshot, SnapshotMeta, Term,
};
