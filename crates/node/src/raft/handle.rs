//! The client side of a running [`super::RaftNode`]: proposals and read
//! requests go to the node's task over a bounded channel, each with a
//! oneshot for its answer; the node's status is a `watch` that the task
//! updates after every Ready.
//!
//! Invariant: an `Ok` from [`NodeHandle::propose`] means the command is
//! committed (durable on a quorum) and applied here; an `Ok(index)` from
//! [`NodeHandle::read_index`] means this node has applied at least
//! `index`, which the leader confirmed was its commit index after the read
//! arrived, so reading the local state machine now is linearizable.

use bytes::Bytes;
use flotilla_raft::{ConfChange, ConfChangeError, LogIndex, NodeId, Role, Term};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

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
    /// ([`super::NodeOptions::proposals_pending_max`],
    /// [`super::NodeOptions::reads_pending_max`]): the request was not
    /// taken; retry later (etcd's "too many requests").
    #[error("{pending} requests already wait for an outcome here; retry later")]
    Overloaded {
        /// How many were waiting.
        pending: usize,
    },
}

/// Where a proposal's outcome goes.
pub(crate) type ProposeReply<O> = oneshot::Sender<Result<Applied<O>, NodeError>>;
/// Where a read index goes.
pub(crate) type ReadReply = oneshot::Sender<Result<LogIndex, NodeError>>;

/// Where a membership change's outcome goes.
pub(crate) type ConfReply = oneshot::Sender<Result<LogIndex, NodeError>>;

/// A request for the node's task.
pub(crate) enum Request<O> {
    Propose(Bytes, ProposeReply<O>),
    ReadIndex(ReadReply),
    ConfChange(ConfChange, ConfReply),
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

/// A cheap, cloneable handle on a running node.
pub struct NodeHandle<O> {
    pub(crate) requests: mpsc::Sender<Request<O>>,
    pub(crate) status: watch::Receiver<NodeStatus>,
}

impl<O> Clone for NodeHandle<O> {
    fn clone(&self) -> Self {
        NodeHandle {
            requests: self.requests.clone(),
            status: self.status.clone(),
        }
    }
}

impl<O: Send + 'static> NodeHandle<O> {
    /// Proposes `command`; resolves once it is committed and applied here.
    pub async fn propose(&self, command: Bytes) -> Result<Applied<O>, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Propose(command, tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Proposes a membership change (this node must lead); resolves with
    /// its index once it is applied here and, for a change of voters, the
    /// joint configuration it entered has been left (or this node stopped
    /// leading after applying it: the next leader leaves it).
    pub async fn change_membership(&self, cc: ConfChange) -> Result<LogIndex, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::ConfChange(cc, tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Waits until a linearizable read may be served from this node's
    /// state machine; returns the confirmed index.
    pub async fn read_index(&self) -> Result<LogIndex, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::ReadIndex(tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// The node's latest status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// The leader the node knows of. Cheaper than [`NodeHandle::status`],
    /// which copies the member lists: requests ask this on every call.
    pub fn leader(&self) -> Option<NodeId> {
        self.status.borrow().leader
    }

    /// The node's term, without copying the rest of its status.
    pub fn term(&self) -> Term {
        self.status.borrow().term
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }
}
