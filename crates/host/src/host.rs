//! The host of one Raft group on one member: it owns the I/O-free
//! [`RawNode`], the group's WAL handle and the application's state
//! machine, and decides everything the member does with them. Events come
//! in as method calls (a tick, a peer message, a request, a sync ended, a
//! snapshot built); what the executor must do comes out as [`Action`]s
//! (send, sync, build a snapshot, point the transport at new peers).
//!
//! ```text
//!  tick ──────────┐
//!  peer message ──┼─► tick/step/propose ─► pump(): for each Ready
//!  request ───────┤                          1. Send `messages`
//!  synced ────────┤                          2. write to the WAL (memory)
//!  snapshot built ┘                          3. apply committed entries,
//!                                               answer their proposals
//!                                            4. queue the Ready for the
//!                                               next sync; advance_handed
//!                                            5. answer reads, maybe
//!                                               start a snapshot job
//!                                          then, if no sync runs:
//!                                          Sync(lsn) for every queued Ready
//!  synced ─► the Readys it covered: Send their `persisted_messages`,
//!            on_persisted, in order
//! ```
//!
//! One sync runs at a time; Readys handed out meanwhile wait for the next,
//! which starts as soon as it ends, so one `fdatasync` covers everything
//! queued while the previous one ran (group commit). The host never waits
//! for the disk: a leader steps its followers' acks, commits, applies and
//! answers while its own sync runs, and its own log counts toward
//! commitment only from `on_persisted`. So committed entries, durable on a
//! quorum, are applied before this member's sync of them may have ended.
//!
//! A Ready with a snapshot takes the synchronous path: [`Host::pump`]
//! stops with [`Pump::SyncNow`], the executor syncs the WAL (which covers
//! every Ready queued or syncing before it) and calls [`Host::resume`],
//! which restores a snapshot from the leader and applies.
//!
//! Invariant: nothing that reports durable state (a vote, an appended
//! entry) leaves before the WAL has synced it and every write before it;
//! a client's proposal is answered only once its entry is committed, hence
//! durable on a quorum, and applied here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use flotilla_raft::{
    Config, LogIndex, Message, NodeId, RawNode, Ready, StepError, Storage, Term, TransferError,
};
use flotilla_wal::{GroupHandle, Lsn, Wal};

use crate::app::{PeerTable, StateMachine};
use crate::counters::{self, Counters};
use crate::error::StartError;
use crate::reply::{NodeError, NodeStatus, Waiter, Waiters};
use crate::snapshot::SnapshotTask;

/// How a host runs.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// The Raft core's configuration.
    pub raft: Config,
    /// Compact the log once this many entries are applied past the last
    /// snapshot.
    pub snapshot_entries: u64,
    /// Compact the log also once the entries it holds past the last
    /// snapshot take this many bytes (the course's `maxraftstate`;
    /// `None`: entries decide alone).
    pub snapshot_log_bytes: Option<u64>,
    /// Proposals waiting for their outcome beyond which more are refused
    /// as [`NodeError::Overloaded`].
    pub proposals_pending_max: usize,
    /// ReadIndex requests waiting beyond which more are refused as
    /// [`NodeError::Overloaded`].
    pub reads_pending_max: usize,
}

/// What the executor must do, in the order given.
#[derive(Debug)]
pub enum Action {
    /// Send these messages to their peers (best effort: Raft tolerates
    /// loss).
    Send(Vec<Message>),
    /// Point the transport at this member table.
    SetPeers(PeerTable),
    /// Start syncing the WAL up to this LSN, off the host's thread, and
    /// call [`Host::synced`] when it ends. At most one runs at a time.
    Sync(Lsn),
    /// Build this snapshot off the host's thread and hand the result to
    /// [`Host::snapshot_built`]. At most one runs at a time.
    Snapshot(SnapshotTask),
}

/// How [`Host::pump`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Pump {
    /// Nothing is left to do until the next event.
    Quiet,
    /// Sync the WAL up to this LSN now, then call [`Host::resume`] before
    /// anything else.
    SyncNow(Lsn),
}

/// A Ready handed out whose writes are not yet known durable.
pub(crate) struct Unsynced {
    pub(crate) lsn: Lsn,
    pub(crate) must_sync: bool,
    pub(crate) persisted_messages: Vec<Message>,
    pub(crate) mark: flotilla_raft::PersistMark,
}

/// One Raft group on one member, with no I/O but its WAL's memory.
pub struct Host<SM: StateMachine, W: Waiters<SM::Output>> {
    pub(crate) raw: RawNode,
    pub(crate) storage: GroupHandle,
    pub(crate) sm: Arc<Mutex<SM>>,
    pub(crate) opts: HostOptions,
    pub(crate) counters: Arc<Counters>,
    /// Proposals taken since the last pump, proposed together.
    pub(crate) batch: Vec<(Bytes, W::Propose)>,
    /// Commands proposed here (or forwarded from here and placed by the
    /// leader), by index, until applied (answered) or this node's role or
    /// leader changes (failed with `Retry`). Bound, with `forwarded`:
    /// `proposals_pending_max`; more are refused as `Overloaded`.
    pub(crate) proposals: BTreeMap<LogIndex, (Term, W::Propose)>,
    /// Batches forwarded to the leader, by context, until the core reports
    /// where they were placed (then they join `proposals`) or that they
    /// were not (failed with `Retry`); the core gives each up after an
    /// election timeout at the latest.
    pub(crate) forwarded: BTreeMap<u64, Vec<W::Propose>>,
    /// The commands in `forwarded`.
    pub(crate) forwarded_commands: usize,
    /// Membership changes proposed here, by index, until applied. Bound:
    /// one (the core refuses a change while one is pending).
    pub(crate) conf_proposals: BTreeMap<LogIndex, (Term, W::Index)>,
    /// Membership changes applied, waiting for the joint configuration
    /// they entered to be left. Bound: as `conf_proposals`.
    pub(crate) conf_applied: Vec<(LogIndex, W::Index)>,
    /// The node applied its own removal, and the grace after it
    /// ([`RETIRE_HEARTBEATS`]) is over: it may stop.
    pub(crate) removed: bool,
    /// Ticks left of the grace a member that applied its own removal
    /// keeps running for, so the rest learn that the change committed.
    pub(crate) retire_in: Option<u32>,
    /// ReadIndex requests, by context, until the core confirms or drops
    /// them. Expiry: at the first tick after the caller gave up. Bound:
    /// with `confirmed`, at most `reads_pending_max`.
    pub(crate) reads: BTreeMap<u64, W::Index>,
    /// Confirmed reads waiting for this node to apply their index. Expiry
    /// and bound: as `reads`.
    pub(crate) confirmed: Vec<(LogIndex, W::Index)>,
    pub(crate) next_ctx: u64,
    /// A snapshot job is running.
    pub(crate) snapshotting: bool,
    /// A sync runs ([`Action::Sync`] given, [`Host::synced`] not yet).
    pub(crate) sync_running: bool,
    /// Readys handed out that wait for the next sync. Expiry: all of
    /// them go to the sync that starts when the running one ends.
    pub(crate) queued: Vec<Unsynced>,
    /// Readys that the running sync covers.
    pub(crate) syncing: Vec<Unsynced>,
    /// The Ready with a snapshot whose sync the executor runs now
    /// ([`Pump::SyncNow`]), with the LSN its writes ended at.
    pub(crate) blocked: Option<(Ready, Lsn)>,
    /// What the executor must do next.
    pub(crate) actions: Vec<Action>,
    /// The status as of the last Ready.
    pub(crate) status: NodeStatus,
}

/// Heartbeat intervals a member keeps running for after it applied its
/// own removal (see [`Host::tick`]).
pub const RETIRE_HEARTBEATS: u32 = 10;

/// Locks the state machine. Nothing waits under this lock; a panic while
/// holding it is a bug, so a poisoned lock is used as is.
pub fn lock<SM>(sm: &Mutex<SM>) -> MutexGuard<'_, SM> {
    sm.lock().unwrap_or_else(|p| p.into_inner())
}

impl<SM: StateMachine, W: Waiters<SM::Output>> Host<SM, W> {
    /// Recovers the group from `storage`, restoring `sm` from the saved
    /// snapshot. The first actions point the transport at the member
    /// table the state holds, if any.
    pub fn new(
        opts: HostOptions,
        mut storage: GroupHandle,
        sm: Arc<Mutex<SM>>,
        counters: Arc<Counters>,
    ) -> Result<Self, StartError> {
        let init = storage.initial_state()?;
        if let Some(snap) = &init.snapshot {
            lock(&sm).restore(&snap.data)?;
        }
        let mut cfg = opts.raft.clone();
        // Chunks are read back from the WAL as they leave (`fill_chunks`).
        cfg.snapshot_data_in_storage = true;
        let raw = RawNode::new(cfg, init)?;
        let mut host = Host {
            status: crate::ready::status_of(&raw, false),
            raw,
            storage,
            sm,
            opts,
            counters,
            batch: Vec::new(),
            proposals: BTreeMap::new(),
            forwarded: BTreeMap::new(),
            forwarded_commands: 0,
            conf_proposals: BTreeMap::new(),
            conf_applied: Vec::new(),
            removed: false,
            retire_in: None,
            reads: BTreeMap::new(),
            confirmed: Vec::new(),
            next_ctx: 1,
            snapshotting: false,
            sync_running: false,
            queued: Vec::new(),
            syncing: Vec::new(),
            blocked: None,
            actions: Vec::new(),
        };
        // A member that applied its own removal before a restart knows at
        // once (a snapshot carries the table), and has had its grace.
        host.peers_changed();
        if host.retire_in.take().is_some() {
            host.removed = true;
        }
        host.status = crate::ready::status_of(&host.raw, host.removed);
        Ok(host)
    }

    /// The state machine, shared with the executor (which reads it to
    /// answer reads at an applied index).
    pub fn machine(&self) -> &Arc<Mutex<SM>> {
        &self.sm
    }

    /// The WAL the group lives in (the executor syncs it).
    pub fn wal(&self) -> Wal {
        self.storage.wal()
    }

    /// The status as of the last Ready.
    pub fn status(&self) -> &NodeStatus {
        &self.status
    }

    /// The group's WAL handle, for inspection (what is durable).
    pub fn storage(&self) -> &GroupHandle {
        &self.storage
    }

    /// The Raft core, for inspection.
    pub fn raw(&self) -> &RawNode {
        &self.raw
    }

    /// What the executor must do now, in order.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// One tick of logical time.
    pub fn tick(&mut self) {
        self.raw.tick();
        match self.retire_in {
            Some(n) if n <= 1 => {
                self.retire_in = None;
                self.removed = true;
                self.status = crate::ready::status_of(&self.raw, true);
            }
            Some(n) => self.retire_in = Some(n - 1),
            None => {}
        }
        // Forget reads whose caller gave up (its deadline passed): Raft
        // may never answer a read whose forwarded request was lost.
        self.reads.retain(|_, w| !w.gave_up());
        self.confirmed.retain(|(_, w)| !w.gave_up());
    }

    /// Steps a peer's message. A message the core refuses (malformed,
    /// impossible for an honest peer) is dropped and counted: peers are
    /// untrusted input, and Raft tolerates lost messages. The error
    /// comes back with the running count of refusals, for the log.
    pub fn step(&mut self, m: Message) -> Result<(), (StepError, u64)> {
        self.raw.step(m).map_err(|e| {
            let n = counters::add(&self.counters.peer_messages_refused, 1);
            (e, n)
        })
    }

    /// A client's command, proposed with the others taken before the
    /// next [`Host::pump`]: by this node if it leads, otherwise forwarded
    /// to the leader it knows, and answered here once applied here.
    pub fn propose(&mut self, data: Bytes, reply: W::Propose) {
        let pending = self.proposals.len() + self.batch.len() + self.forwarded_commands;
        if self.leaving() {
            reply.answer(Err(NodeError::NotLeader { leader_hint: None }));
        } else if pending >= self.opts.proposals_pending_max {
            reply.answer(Err(NodeError::Overloaded { pending }));
        } else {
            self.batch.push((data, reply));
        }
    }

    /// A linearizable read: answered with the index to read at once this
    /// member has applied it.
    pub fn read_index(&mut self, reply: W::Index) {
        if self.leaving() {
            reply.answer(Err(NodeError::NotLeader { leader_hint: None }));
            return;
        }
        let pending = self.reads.len() + self.confirmed.len();
        if pending >= self.opts.reads_pending_max {
            reply.answer(Err(NodeError::Overloaded { pending }));
            return;
        }
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        self.reads.insert(ctx, reply);
        self.raw.read_index(ctx);
    }

    /// Starts handing leadership to `to` (this member must lead, `to`
    /// must vote; Raft's leader transfer: proposals wait meanwhile).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), TransferError> {
        self.raw.transfer_leader(to)
    }

    /// A membership change (this member must lead).
    pub fn change_membership(&mut self, cc: &flotilla_raft::ConfChange, reply: W::Index) {
        match self.raw.propose_conf_change(cc) {
            Ok(index) => {
                let term = self.raw.status().term;
                self.conf_proposals.insert(index, (term, reply));
            }
            Err(e) => reply.answer(Err(conf_error(e))),
        }
    }

    /// The running sync ([`Action::Sync`]) ended well: the Readys it
    /// covers are durable.
    pub fn synced(&mut self) {
        self.sync_running = false;
        let batch = std::mem::take(&mut self.syncing);
        self.persisted(batch);
    }

    /// A snapshot job ([`Action::Snapshot`]) taken at `index` ended, with
    /// the encoded state (`None` if it failed): the log is compacted.
    pub fn snapshot_built(&mut self, index: LogIndex, data: Option<Bytes>) {
        self.snapshotting = false;
        let Some(data) = data else {
            tracing::error!(index = %index, "encoding a snapshot failed (the job panicked); the log is not compacted");
            return;
        };
        // A refusal means a snapshot from the leader was restored (or is
        // pending) in the meantime, covering this one: a later job retries.
        match self.raw.compact(index, data) {
            Ok(()) => {
                tracing::debug!(index = %index, "compacted the log");
                counters::add(&self.counters.snapshots, 1);
            }
            Err(e) => tracing::debug!(index = %index, error = %e, "snapshot not used"),
        }
    }

    /// Readys whose writes are durable, in the order they were handed out:
    /// their messages leave and the core hears of each.
    pub(crate) fn persisted(&mut self, batch: Vec<Unsynced>) {
        for u in batch {
            self.send(u.persisted_messages);
            self.raw.on_persisted(u.mark);
        }
    }

    /// Sends `messages`, their snapshot chunks filled from the WAL.
    pub(crate) fn send(&mut self, mut messages: Vec<Message>) {
        crate::snapshot::fill_chunks(
            &self.storage,
            self.opts.raft.snapshot_chunk_bytes,
            &mut messages,
        );
        if !messages.is_empty() {
            self.actions.push(Action::Send(messages));
        }
    }

    /// Whether this member applied its own removal (in its grace, or
    /// after): it takes no new requests.
    fn leaving(&self) -> bool {
        self.removed || self.retire_in.is_some()
    }

    /// The member table changed: point the transport at it, and note
    /// whether this node was removed.
    pub(crate) fn peers_changed(&mut self) {
        let Some(table) = lock(&self.sm).peer_table() else {
            return;
        };
        let me = self.raw.status().id;
        if table.removed.contains(&me) && !self.removed && self.retire_in.is_none() {
            tracing::warn!(member = %me, "this member was removed from the cluster");
            self.start_retiring();
        }
        self.actions.push(Action::SetPeers(table));
    }

    /// This member applied its own removal: it answers what waits here
    /// and takes nothing new, and says it was removed after a grace.
    fn start_retiring(&mut self) {
        // Not at once: a leader (or the last old voter the new ones
        // hear from) that stops the moment it applies the entry that
        // removes it may leave the new voters never learning that the
        // entry committed; still joint, they need the old voters'
        // majority to elect, which is gone. etcd's server stops after
        // ten ticks for the same reason.
        let grace = RETIRE_HEARTBEATS.saturating_mul(self.opts.raft.heartbeat_ticks.max(1));
        self.retire_in = Some(grace);
        // It serves no one meanwhile: its machine stops where its
        // removal is, so reads go to the members that go on.
        let not_leader = || Err(NodeError::NotLeader { leader_hint: None });
        std::mem::take(&mut self.reads)
            .into_values()
            .for_each(|w| w.answer(not_leader()));
        std::mem::take(&mut self.confirmed)
            .into_iter()
            .for_each(|(_, w)| w.answer(not_leader()));
        // Its proposals past the removal may yet commit, decided by a
        // configuration without it: their outcome is the group's to
        // tell, so they are answered as unknown (retry).
        std::mem::take(&mut self.proposals)
            .into_values()
            .for_each(|p| p.1.answer(Err(NodeError::Retry)));
        std::mem::take(&mut self.forwarded)
            .into_values()
            .flatten()
            .for_each(|w| w.answer(Err(NodeError::Retry)));
        self.forwarded_commands = 0;
    }

    /// Starts a snapshot job once enough entries are applied past the last
    /// snapshot, or the log holds too many bytes, and none is running.
    pub(crate) fn maybe_compact(&mut self) {
        if self.snapshotting {
            return;
        }
        let status = self.raw.status();
        let snap_index = self.raw.snapshot().map_or(LogIndex(0), |s| s.meta.index);
        let due = crate::snapshot::snapshot_due(
            status.id,
            status.applied,
            snap_index,
            self.opts.snapshot_entries,
        );
        let too_big = self
            .opts
            .snapshot_log_bytes
            .is_some_and(|max| status.log_bytes >= max && status.applied > snap_index);
        if !due && !too_big {
            return;
        }
        // The machine has applied exactly `status.applied` (apply runs
        // before advance), so the job captures the state at that index.
        let index = status.applied;
        let job = lock(&self.sm).snapshot_job();
        let meta = self.raw.snapshot_meta_at(index);
        self.snapshotting = true;
        let task = SnapshotTask::new(index, job, meta, self.storage.id());
        self.actions.push(Action::Snapshot(task));
    }
}

/// The node error for a refused membership change.
fn conf_error(e: flotilla_raft::ProposeError) -> NodeError {
    match e {
        flotilla_raft::ProposeError::NotLeader { leader_hint } => {
            NodeError::NotLeader { leader_hint }
        }
        flotilla_raft::ProposeError::ConfChangePending => NodeError::ConfChangePending,
        flotilla_raft::ProposeError::InvalidConfChange(e) => NodeError::InvalidConfChange(e),
        _ => NodeError::Retry,
    }
}
