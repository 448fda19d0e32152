//! The application's handle on a Raft node: feed it events, then drain a
//! [`Ready`] of work and [`RawNode::advance`] past it. The duties that come
//! with a Ready are listed in the crate docs.

use bytes::Bytes;
use thiserror::Error;

use crate::confchange::ConfChange;
use crate::config::{Config, ConfigError};
use crate::forward::ForwardOutcome;
use crate::leader::{ProposeError, TransferError};
use crate::message::Message;
use crate::raft::{CampaignKind, Raft, StepError};
use crate::read_only::ReadState;
use crate::storage::{InitialState, Writes};
use crate::types::{
    ConfState, Entry, HardState, LogIndex, NodeId, Role, Snapshot, SnapshotMeta, Term,
};

/// Who leads, as this node sees it. Not persisted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SoftState {
    /// This node's role.
    pub role: Role,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
}

/// A batch of work for the application. See the crate docs for the order
/// in which it must be done.
#[derive(Debug, Default)]
pub struct Ready {
    /// The role or leader changed (`None`: unchanged).
    pub soft_state: Option<SoftState>,
    /// The hard state to persist (`None`: unchanged).
    pub hard_state: Option<HardState>,
    /// A snapshot to persist before `entries`.
    pub snapshot: Option<Snapshot>,
    /// Whether `snapshot` came from the leader and the application must
    /// restore its state machine from it (before applying
    /// `committed_entries`); false for a local compaction.
    pub restore_snapshot: bool,
    /// Entries to append to storage (truncating any conflicting suffix).
    pub entries: Vec<Entry>,
    /// Whether the writes must be synced before `persisted_messages` leave.
    pub must_sync: bool,
    /// Messages that may be sent now, before the writes are durable.
    pub messages: Vec<Message>,
    /// Messages to send only once the writes are durable.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Reads whose index is confirmed.
    pub read_states: Vec<ReadState>,
    /// Reads that cannot complete (`ctx`s); the application should retry.
    pub dropped_reads: Vec<u64>,
    /// Outcomes of proposals forwarded with [`RawNode::forward_proposals`].
    pub forwarded: Vec<ForwardOutcome>,
}

/// What a Ready's writes make durable, for [`RawNode::on_persisted`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PersistMark {
    /// The last entry the Ready appended, if any.
    pub last_entry: Option<(LogIndex, Term)>,
    /// The term of the hard state the Ready saved, if any.
    pub term: Option<Term>,
}

impl Ready {
    /// What this Ready's writes make durable.
    pub fn persist_mark(&self) -> PersistMark {
        PersistMark {
            last_entry: self.entries.last().map(|e| (e.index, e.term)),
            term: self.hard_state.map(|h| h.term),
        }
    }

    /// The writes to hand to [`crate::persist`].
    pub fn writes(&self) -> Writes<'_> {
        Writes {
            snapshot: self.snapshot.as_ref(),
            entries: &self.entries,
            hard_state: self.hard_state.as_ref(),
            must_sync: self.must_sync,
        }
    }
}

/// Why the application's snapshot was refused.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum CompactError {
    /// The index was not applied yet.
    #[error("cannot snapshot at {index}: only {applied} is applied")]
    NotApplied {
        /// The requested index.
        index: LogIndex,
        /// The applied index.
        applied: LogIndex,
    },
    /// The log is already compacted up to there.
    #[error("cannot snapshot at {index}: the log is already compacted to {compacted}")]
    AlreadyCompacted {
        /// The requested index.
        index: LogIndex,
        /// The current snapshot index.
        compacted: LogIndex,
    },
    /// A snapshot from the leader is waiting to be restored.
    #[error("a snapshot from the leader is being installed")]
    RestorePending,
}

/// A read-only view of a node, for tests, metrics and `status` commands.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Status {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// Whom it voted for in `term`.
    pub vote: Option<NodeId>,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: LogIndex,
    /// The index applied (handed out in a Ready and advanced past).
    pub applied: LogIndex,
    /// The first index in memory.
    pub first_index: LogIndex,
    /// The last index.
    pub last_index: LogIndex,
    /// The membership in force.
    pub conf_state: ConfState,
    /// Bytes of log held since the snapshot (as storage encodes them).
    pub log_bytes: u64,
}

/// A Raft node driven by the application. See the crate docs.
#[derive(Debug)]
pub struct RawNode {
    raft: Raft,
    prev_soft: SoftState,
    prev_hard: HardState,
}

impl RawNode {
    /// Creates a node from its configuration and what storage holds.
    pub fn new(config: Config, init: InitialState) -> Result<RawNode, ConfigError> {
        config.validate()?;
        let mut raft = Raft::new(config, &init);
        // The snapshot storage recovered is durable.
        if let Some(snap) = init
            .snapshot
            .as_ref()
            .filter(|_| raft.cfg.snapshot_data_in_storage)
        {
            raft.log.release_snapshot_data(&snap.meta);
        }
        let prev_soft = SoftState {
            role: raft.role,
            leader: raft.leader,
        };
        let prev_hard = HardState {
            term: raft.term,
            vote: raft.vote,
            commit: raft.log.committed,
        };
        Ok(RawNode {
            raft,
            prev_soft,
            prev_hard,
        })
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Handles a message from a peer. An error means the message was
    /// dropped; the node itself is fine.
    pub fn step(&mut self, m: Message) -> Result<(), StepError> {
        self.raft.step(m)
    }

    /// Proposes one command; returns its log index.
    pub fn propose(&mut self, data: Bytes) -> Result<LogIndex, ProposeError> {
        self.raft.propose([data])
    }

    /// Proposes several commands at once; returns the index of the first.
    pub fn propose_batch(
        &mut self,
        commands: impl IntoIterator<Item = Bytes>,
    ) -> Result<LogIndex, ProposeError> {
        self.raft.propose(commands)
    }

    /// Proposes `commands` through the leader, on behalf of the
    /// application's `ctx`: at once on a leader, otherwise forwarded to the
    /// leader this node knows (refused when it knows none). The outcome
    /// comes in a later Ready's `forwarded`: the index of the first
    /// command and its term once the leader appended them. Answer each
    /// command once that index is applied with that term.
    pub fn forward_proposals(
        &mut self,
        ctx: u64,
        commands: Vec<Bytes>,
    ) -> Result<(), ProposeError> {
        self.raft.forward_proposals(ctx, commands)
    }

    /// Proposes a membership change; returns its log index. It takes effect
    /// when committed.
    pub fn propose_conf_change(&mut self, cc: &ConfChange) -> Result<LogIndex, ProposeError> {
        self.raft.propose_conf_change(cc)
    }

    /// Requests a linearizable read index for the request `ctx`; the answer
    /// comes in a later Ready's `read_states` or `dropped_reads`.
    pub fn read_index(&mut self, ctx: u64) {
        self.raft.read_index(ctx);
    }

    /// Starts transferring leadership to `to`.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), TransferError> {
        self.raft.transfer_leader(to)
    }

    /// Starts an election now (if this node may).
    pub fn campaign(&mut self) {
        if self.raft.promotable() && self.raft.role != Role::Leader {
            let kind = if self.raft.cfg.pre_vote {
                CampaignKind::PreVote
            } else {
                CampaignKind::Election
            };
            self.raft.campaign(kind);
        }
    }

    /// Takes the application's snapshot of its state at `index` (which it
    /// has applied) and drops the log it covers. The snapshot is persisted
    /// through the next Ready.
    pub fn compact(&mut self, index: LogIndex, data: Bytes) -> Result<(), CompactError> {
        let log = &self.raft.log;
        if log.pending_snapshot.as_ref().is_some_and(|p| p.restore) {
            return Err(CompactError::RestorePending);
        }
        if index > log.applied {
            return Err(CompactError::NotApplied {
                index,
                applied: log.applied,
            });
        }
        if index <= log.snapshot_meta_index() {
            return Err(CompactError::AlreadyCompacted {
                index,
                compacted: log.snapshot_meta_index(),
            });
        }
        let conf = self.raft.conf_at(index);
        self.raft.log.compact(index, conf, data);
        self.raft.prune_conf_history(index);
        Ok(())
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.raft.term,
            vote: self.raft.vote,
            commit: self.raft.log.committed,
        }
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.raft.role,
            leader: self.raft.leader,
        }
    }

    /// Whether there is work for a Ready.
    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        self.soft_state() != self.prev_soft
            || self.hard_state() != self.prev_hard
            || r.log.pending_snapshot.is_some()
            || r.log.has_unhanded()
            || !r.msgs.is_empty()
            || !r.msgs_after_persist.is_empty()
            || r.log.has_next_committed()
            || !r.read_states.is_empty()
            || !r.dropped_reads.is_empty()
            || !r.forwarding.outcomes.is_empty()
            || (r.role == Role::Leader
                && (r.needs_bcast || r.commit_to_tell || r.read_only.round_wanted))
    }

    /// Collects the work to do. Do it, then call [`RawNode::advance`]
    /// before stepping the node again.
    pub fn ready(&mut self) -> Ready {
        self.raft.flush();
        let soft = self.soft_state();
        let hard = self.hard_state();
        let pending = self.raft.log.pending_snapshot.clone();
        let entries = self.raft.log.unhanded_entries();
        let hard_changed = hard != self.prev_hard;
        let vote_changed = hard.term != self.prev_hard.term || hard.vote != self.prev_hard.vote;
        Ready {
            soft_state: (soft != self.prev_soft).then_some(soft),
            hard_state: hard_changed.then_some(hard),
            must_sync: !entries.is_empty() || pending.is_some() || vote_changed,
            restore_snapshot: pending.as_ref().is_some_and(|p| p.restore),
            snapshot: pending.map(|p| p.snapshot),
            entries,
            messages: std::mem::take(&mut self.raft.msgs),
            persisted_messages: std::mem::take(&mut self.raft.msgs_after_persist),
            committed_entries: self.raft.log.next_committed(self.raft.cfg.max_apply_bytes),
            read_states: std::mem::take(&mut self.raft.read_states),
            dropped_reads: std::mem::take(&mut self.raft.dropped_reads),
            forwarded: std::mem::take(&mut self.raft.forwarding.outcomes),
        }
    }

    /// Records that the Ready's writes are durable and its committed entries
    /// applied: [`RawNode::advance_handed`] then [`RawNode::on_persisted`].
    pub fn advance(&mut self, rd: &Ready) {
        self.advance_handed(rd);
        self.on_persisted(rd.persist_mark());
    }

    /// Asynchronous writes: records that the Ready's writes were handed to
    /// storage (not yet durable) and its committed entries applied. The
    /// node may then be stepped, ticked and asked for further Readys while
    /// the writes sync; once they are durable, call
    /// [`RawNode::on_persisted`] with the Ready's [`Ready::persist_mark`]
    /// and send its `persisted_messages`, in the order the Readys came.
    ///
    /// A Ready that carries a snapshot is not for this path: wait until
    /// every earlier write is durable, sync it, then [`RawNode::advance`].
    pub fn advance_handed(&mut self, rd: &Ready) {
        if let Some(soft) = rd.soft_state {
            self.prev_soft = soft;
        }
        if let Some(hard) = rd.hard_state {
            self.prev_hard = hard;
        }
        let log = &mut self.raft.log;
        if let Some(snap) = &rd.snapshot {
            let same = log
                .pending_snapshot
                .as_ref()
                .is_some_and(|p| p.snapshot.meta == snap.meta);
            if same {
                log.pending_snapshot = None;
            }
            // `advance_handed` takes a snapshot's Ready only once it is
            // durable (see above), so its bytes are in storage now.
            if self.raft.cfg.snapshot_data_in_storage {
                log.release_snapshot_data(&snap.meta);
            }
            if rd.restore_snapshot {
                log.applied = log.applied.max(snap.meta.index);
            }
        }
        if let Some(last) = rd.entries.last() {
            log.handed_to(last.index, last.term);
        }
        if let Some(last) = rd.committed_entries.last() {
            log.applied_to(last.index);
        }
    }

    /// Records that the writes of a Ready handed out earlier are durable
    /// (with every write handed out before them). A leader counts its own
    /// log toward commitment only from here.
    pub fn on_persisted(&mut self, mark: PersistMark) {
        if let Some((index, term)) = mark.last_entry {
            self.raft.log.stable_to(index, term);
        }
        if let Some(term) = mark.term {
            self.raft.durable_term = self.raft.durable_term.max(term);
        }
        if self.raft.role == Role::Leader {
            self.raft.update_self_progress();
            self.raft.maybe_commit();
        }
    }

    /// The node's state at a glance.
    pub fn status(&self) -> Status {
        let r = &self.raft;
        Status {
            id: r.id,
            role: r.role,
            term: r.term,
            vote: r.vote,
            leader: r.leader,
            commit: r.log.committed,
            applied: r.log.applied,
            first_index: r.log.first_index(),
            last_index: r.log.last_index(),
            conf_state: r.conf.clone(),
            log_bytes: r.log.entry_bytes(),
        }
    }

    /// The term of the entry at `index`, if it is in memory (or at the
    /// snapshot boundary).
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.raft.log.term(index)
    }

    /// The membership in force once the entries up to `index` are committed
    /// (`index` at or after the applied index; older history is pruned).
    pub fn conf_at(&self, index: LogIndex) -> ConfState {
        self.raft.conf_at(index)
    }

    /// On a leader, the members (voters and learners) it heard from within
    /// the last election timeout, itself included; `None` elsewhere. An
    /// operator's pre-check uses it, as etcd's strict reconfiguration
    /// check uses its transport's "active since".
    pub fn recently_active(&self) -> Option<Vec<NodeId>> {
        (self.raft.role == Role::Leader).then(|| self.raft.recently_active())
    }

    /// The metadata that [`RawNode::compact`] at `index` would give its
    /// snapshot, if `index` is still in the log: a driver can write the
    /// snapshot's file before it compacts.
    pub fn snapshot_meta_at(&self, index: LogIndex) -> Option<SnapshotMeta> {
        let term = self.raft.log.term(index)?;
        Some(SnapshotMeta {
            index,
            term,
            conf_state: self.raft.conf_at(index),
        })
    }

    /// The entry at `index`, if it is in memory.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.raft.log.entry(index)
    }

    /// The latest snapshot (local or received), if any. With
    /// [`Config::snapshot_data_in_storage`] its `data` is empty once it is
    /// durable.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.raft.log.snapshot()
    }

    /// Asserts the core's internal invariants; the simulator calls it after
    /// every step. Panics with the broken invariant.
    pub fn check_invariants(&self) {
        self.raft.check();
    }
}
