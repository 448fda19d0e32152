//! What only a leader does on behalf of the application: accept proposals
//! and membership changes, transfer leadership, and react when the commit
//! index or the membership moves.
//!
//! Proposals are appended at once but sent when the next Ready is built
//! ([`Raft::flush`]), so every proposal made between two Readies travels in
//! the same append messages (batching).

use bytes::Bytes;
use thiserror::Error;

use crate::codec::Encode;
use crate::confchange::{self, ConfChange, ConfChangeError};
use crate::message::MessageBody;
use crate::progress::Progress;
use crate::raft::Raft;
use crate::types::{EntryKind, LogIndex, NodeId, Role};

/// Why a proposal was refused.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum ProposeError {
    /// This node does not lead; `leader_hint` is the leader it knows of.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The current leader, if known.
        leader_hint: Option<NodeId>,
    },
    /// A leadership transfer is under way; retry at the new leader.
    #[error("leadership transfer to {to} in progress")]
    TransferInProgress {
        /// The transferee.
        to: NodeId,
    },
    /// An earlier membership change is not committed yet, or the leader has
    /// not yet committed an entry of its term.
    #[error("a membership change is already in progress")]
    ConfChangePending,
    /// The membership change is invalid for the current membership.
    #[error("invalid membership change: {0}")]
    InvalidConfChange(#[from] ConfChangeError),
}

/// Why a leadership transfer was refused.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum TransferError {
    /// Only a leader can transfer leadership.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The current leader, if known.
        leader_hint: Option<NodeId>,
    },
    /// The target does not vote.
    #[error("node {0} is not a voter of the group")]
    NotVoter(NodeId),
}

impl Raft {
    fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        // A removed leader only tells the commit of its removal while it
        // leads on; what it appended now no configuration it is in
        // would decide.
        if self.retiring_at.is_some() {
            return Err(ProposeError::NotLeader { leader_hint: None });
        }
        if let Some(to) = self.lead_transferee {
            return Err(ProposeError::TransferInProgress { to });
        }
        Ok(())
    }

    /// Appends application commands; returns the index of the first.
    pub(crate) fn propose(
        &mut self,
        commands: impl IntoIterator<Item = Bytes>,
    ) -> Result<LogIndex, ProposeError> {
        self.check_can_propose()?;
        let first = self.log.last_index().next();
        for data in commands {
            self.append_entry(EntryKind::Command, data);
        }
        Ok(first)
    }

    /// Appends a membership change. One change at a time, and only once
    /// this leader has committed an entry of its own term (the fix to the
    /// single-server change bug, cheap to apply to joint changes too).
    pub(crate) fn propose_conf_change(
        &mut self,
        cc: &ConfChange,
    ) -> Result<LogIndex, ProposeError> {
        self.check_can_propose()?;
        let committed_in_term = self.log.term(self.log.committed) == Some(self.term);
        if self.pending_conf_index > self.log.committed || !committed_in_term {
            return Err(ProposeError::ConfChangePending);
        }
        confchange::apply(&self.conf, cc)?;
        let index = self.append_entry(EntryKind::ConfChange, cc.to_bytes());
        self.pending_conf_index = index;
        Ok(index)
    }

    /// Starts handing leadership to `to` (§3.10): bring it up to date, then
    /// tell it to campaign at once. Proposals are refused meanwhile.
    pub(crate) fn transfer_leader(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if to == self.id || self.lead_transferee == Some(to) {
            return Ok(());
        }
        if !self.conf.is_voter(to) {
            return Err(TransferError::NotVoter(to));
        }
        self.lead_transferee = Some(to);
        self.election_elapsed = 0;
        let caught_up = self
            .progress
            .get(&to)
            .is_some_and(|pr| pr.matched == self.log.last_index());
        if caught_up {
            self.send_timeout_now(to);
        } else {
            self.send_appends(to);
        }
        Ok(())
    }

    /// Tells `to` to campaign at once. From here to the end of the term
    /// this leader serves no lease read: `to`'s campaign is a transfer,
    /// which voters grant whatever lease they gave (a lease only stops
    /// the votes check-quorum guards), and a TimeoutNow delayed in the
    /// network may start it at any time in this term. Reads go through
    /// ReadIndex rounds instead, which a quorum that moved on refuses.
    /// (Seeds 5246 and 14058 of `flotilla sim raft` served a read from a
    /// lease after the transferee had won and committed past it.)
    pub(crate) fn send_timeout_now(&mut self, to: NodeId) {
        self.read_only.lease_void = true;
        self.send(to, MessageBody::TimeoutNow);
    }

    /// Sends what is waiting to be sent: appends for new proposals and a
    /// heartbeat round for new reads.
    pub(crate) fn flush(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        if self.needs_bcast {
            self.bcast_append();
        }
        if self.commit_to_tell {
            self.tell_commit();
        }
        self.flush_read_round();
    }

    /// The commit index moved on a leader.
    pub(crate) fn leader_commit_advanced(&mut self) {
        self.commit_to_tell = true;
        self.release_waiting_reads();
        // Auto-leave: once the joint configuration is committed, move to
        // the new one (§6: C_old,new then C_new).
        if self.conf.is_joint() && self.pending_conf_index <= self.log.committed {
            let index =
                self.append_entry(EntryKind::ConfChange, ConfChange::leave_joint().to_bytes());
            self.pending_conf_index = index;
        }
    }

    /// The membership changed on a leader: track new members, forget
    /// removed ones, and step down an election timeout after it is no
    /// longer a voter.
    pub(crate) fn leader_conf_changed(&mut self) {
        let members = self.conf.members();
        self.progress.retain(|id, _| members.contains(id));
        let next = self.log.last_index().next();
        for id in members {
            let learner = self.conf.is_learner(id);
            let (msgs, bytes) = (self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes);
            self.progress
                .entry(id)
                .or_insert_with(|| Progress::new(next, msgs, bytes, learner))
                .learner = learner;
        }
        if !self.conf.is_voter(self.id) && !self.conf.is_joint() && self.retiring_at.is_none() {
            // Removed: lead on for one election timeout, heartbeating, and
            // only then step down. The members learn from this leader
            // alone that the configuration without it committed; a
            // member that does not (the old voters that knew may be gone
            // too) stays joint and needs the old voters to elect.
            self.retiring_at = Some(self.ticks + u64::from(self.cfg.election_ticks));
            // Tell everyone the commit now, not at the next heartbeat.
            let committed = self.log.committed;
            for pr in self.progress.values_mut() {
                pr.awaits_commit = pr.awaits_commit.max(committed);
            }
            self.commit_to_tell = true;
        }
        self.needs_bcast = true;
        self.maybe_commit();
    }
}
