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
pub use flotilla_host::{Applied, NodeError, NodeStatus};
use flotilla_raft::{ConfChange, LogIndex, NodeId, Term, TransferError};
use tokio::sync::{mpsc, oneshot, watch};

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
    TransferLeader(NodeId, oneshot::Sender<Result<(), TransferError>>),
    /// The last `n` entries of the log, payloads included when asked.
    LogTail(usize, bool, oneshot::Sender<Vec<LogEntryInfo>>),
}

/// One entry of the log as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntryInfo {
    /// Its index.
    pub index: LogIndex,
    /// The term it was made in.
    pub term: flotilla_raft::Term,
    /// `noop`, `command` or `conf-change`.
    pub kind: &'static str,
    /// Bytes of payload.
    pub bytes: usize,
    /// The payload, if asked for.
    pub data: Option<Bytes>,
}

/// The most entries [`NodeHandle::log_tail`] returns.
pub const LOG_TAIL_MAX: usize = 1000;

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

    /// Starts handing leadership to `to` (this node must lead, and `to`
    /// must vote): the leader catches `to` up and tells it to campaign.
    /// Resolves once the transfer has started, not when it is done: watch
    /// the status for the new leader.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), TransferError> {
        let (tx, rx) = oneshot::channel();
        let stopped = TransferError::NotLeader { leader_hint: None };
        if self
            .requests
            .send(Request::TransferLeader(to, tx))
            .await
            .is_err()
        {
            return Err(stopped);
        }
        rx.await.unwrap_or(Err(stopped))
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

    /// The last `n` (at most [`LOG_TAIL_MAX`]) entries the log holds
    /// (compacted entries are gone), oldest first; their payloads only
    /// `with_data`.
    pub async fn log_tail(
        &self,
        n: usize,
        with_data: bool,
    ) -> Result<Vec<LogEntryInfo>, NodeError> {
        let (tx, rx) = oneshot::channel();
        let n = n.min(LOG_TAIL_MAX);
        self.requests
            .send(Request::LogTail(n, with_data, tx))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
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
