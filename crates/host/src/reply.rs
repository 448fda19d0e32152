//! What the host answers its callers, and how: a request carries a
//! [`Waiter`] that the host resolves exactly once (or drops when the
//! caller gave up). The executor picks the waiter type: a tokio oneshot
//! in production, a plain slot in the simulator.
//!
//! Invariant: an `Ok` to a proposal means its command is committed
//! (durable on a quorum) and applied by this host; an `Ok(index)` to a
//! read means this host has applied at least `index`, which the leader
//! confirmed was its commit index after the read arrived.

use flotilla_raft::{ConfChangeError, LogIndex, NodeId, Role, Term};
use thiserror::Error;

/// Why a request to the node failed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NodeError {
    /// This node does not lead; propose at the leader.
    #[error("not the leader (leader: {leader_hint:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader_hint: Option<NodeId>,
    },
    /// The request may or may not have taken effect: leadership changed
    /// before the outcome was known, or the read could not be confirmed.
    /// Retry (idempotently).
    #[error("leadership changed before the request completed; retry")]
    Retry,
    /// The node is shutting down or has stopped after a fatal error.
    #[error("the node has stopped")]
    Stopped,
    /// Another membership change is still in progress.
    #[error("another membership change is in progress")]
    ConfChangePending,
    /// The membership change is invalid for the configuration in force.
    #[error(transparent)]
    InvalidConfChange(#[from] ConfChangeError),
    /// Too many proposals (or reads) wait for an outcome here already
    /// ([`crate::HostOptions::proposals_pending_max`],
    /// [`crate::HostOptions::reads_pending_max`]): the request was not
    /// taken; retry later (etcd's "too many requests").
    #[error("{pending} requests already wait for an outcome here; retry later")]
    Overloaded {
        /// How many were waiting.
        pending: usize,
    },
}

/// A command's outcome once applied.
#[derive(Debug)]
pub struct Applied<O> {
    /// Where it sits in the log.
    pub index: LogIndex,
    /// The term it was committed in.
    pub term: Term,
    /// What the state machine returned.
    pub output: O,
}

/// The node's state as of its last Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: LogIndex,
    /// The index its state machine has applied.
    pub applied: LogIndex,
    /// Its last log index.
    pub last_index: LogIndex,
    /// Bytes of log since the last snapshot.
    pub log_bytes: u64,
    /// The voters of the group.
    pub voters: Vec<NodeId>,
    /// The learners of the group.
    pub learners: Vec<NodeId>,
    /// This node was removed from the group (it applied its removal).
    pub removed: bool,
    /// On a leader, the members it heard from within the last election
    /// timeout, itself included; empty elsewhere.
    pub active: Vec<NodeId>,
}

/// Where one answer goes.
pub trait Waiter<T> {
    /// Delivers the answer (a caller that left is not an error).
    fn answer(self, value: T);
    /// The caller no longer waits (its deadline passed): the host may
    /// forget the request.
    fn gave_up(&self) -> bool;
}

/// The waiter types an executor hands the host.
pub trait Waiters<O> {
    /// For a proposal's outcome.
    type Propose: Waiter<Result<Applied<O>, NodeError>>;
    /// For a read index or a membership change's index.
    type Index: Waiter<Result<LogIndex, NodeError>>;
}
