//! The task that drives one Raft group: it owns the I/O-free
//! [`RawNode`], the group's WAL handle and the application's state
//! machine, and does the duties of each `Ready` in the order the Raft
//! crate requires, with asynchronous writes (the crate docs' path of that
//! name): the task goes on while a Ready's writes sync.
//!
//! ```text
//!  tick (timer) ──┐
//!  peer messages ─┼─► step/tick/propose ─► ready() ─► 1. send `messages`
//!  requests ──────┤   (all that is queued,            2. write to the WAL (memory)
//!  sync done ─────┘    one batch)                     3. apply committed entries,
//!        │                                               answer their proposals
//!        │                                            4. queue the Ready for the
//!        │                                               next sync; advance_handed
//!        │                                            5. answer reads, publish
//!        │                                               status, maybe snapshot
//!        │                                  then, if no sync runs: start one
//!        │                                  for every queued Ready (blocking pool)
//!        └─► the Readys it covered: send their `persisted_messages`,
//!            on_persisted, in order
//!  snapshot done ─► compact the log
//! ```
//!
//! One sync runs at a time; Readys handed out meanwhile wait for the next,
//! which starts as soon as it ends, so one `fdatasync` covers everything
//! queued while the previous one ran (group commit). The task never waits
//! for the disk: a leader steps its followers' acks, commits, applies and
//! answers while its own sync runs, and its own log counts toward
//! commitment only from `on_persisted` (the simulator checks this before
//! every Ready's writes: `invariants::durable_commit`). So committed
//! entries, durable on a quorum, are applied before this node's sync of
//! them may have ended.
//!
//! A Ready with a snapshot takes the synchronous path: it syncs at once,
//! which covers every Ready queued or syncing before it, then restores a
//! snapshot from the leader and applies.
//!
//! Log compaction: when enough entries are applied past the last snapshot,
//! the state machine hands over a [`super::app::SnapshotJob`] (a copy of
//! its state, cheap to take) that encodes on the blocking pool while the
//! task goes on, and the snapshot's file is written and synced there too
//! ([`Wal::prepare_snapshot`]); the encoded snapshot comes back through a
//! channel and compacts the log at the index it was taken at, which only
//! adds a small record to the next sync. One job runs at a time.
//!
//! Invariant: nothing that reports durable state (a vote, an appended
//! entry) leaves before the WAL has synced it and every write before it;
//! a client's proposal is answered only once its entry is committed, hence
//! durable on a quorum, and applied here.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flotilla_raft::{
    Config, ConfigError, Entry, EntryKind, LogIndex, Message, NodeId, PersistMark, RawNode, Ready,
    Role, Storage, Term,
};
use flotilla_wal::{GroupHandle, Lsn, Wal, WalError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::app::{ApplyError, RestoreError, StateMachine};
use super::handle::{
    Applied, ConfReply, NodeError, NodeHandle, NodeStatus, ProposeReply, ReadReply, Request,
};
use super::transport::Transport;
use crate::metrics::Metrics;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The Raft core's configuration (its ticks are `tick` long).
    pub raft: Config,
    /// The tick interval.
    pub tick: Duration,
    /// Compact the log once this many entries are applied past the last
    /// snapshot.
    pub snapshot_entries: u64,
    /// Requests queued for the node beyond which callers wait.
    pub request_queue: usize,
    /// Proposals waiting for their outcome beyond which more are refused
    /// as [`NodeError::Overloaded`] ([`PROPOSALS_PENDING_MAX`] in a server).
    pub proposals_pending_max: usize,
    /// ReadIndex requests waiting beyond which more are refused as
    /// [`NodeError::Overloaded`] ([`READS_PENDING_MAX`] in a server).
    pub reads_pending_max: usize,
    /// Where the node records what it does.
    pub metrics: Arc<Metrics>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The WAL could not be read.
    #[error("reading the write-ahead log")]
    Wal(#[from] WalError),
    /// The Raft configuration is invalid.
    #[error("invalid Raft configuration")]
    Config(#[from] ConfigError),
    /// The saved snapshot could not be restored.
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

/// Why a running node stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// Writing or syncing the WAL failed: the node cannot keep its promises.
    #[error("write-ahead log failure")]
    Wal(#[from] WalError),
    /// A snapshot from the leader could not be restored.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A committed entry could not be applied.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The blocking sync task panicked or was cancelled.
    #[error("the WAL sync task failed: {0}")]
    SyncTask(#[from] tokio::task::JoinError),
}

/// A running node: its handle and its task.
pub struct RaftNode<SM: StateMachine> {
    /// Sends requests to the node.
    pub handle: NodeHandle<SM::Output>,
    /// The node's task; ends with `Ok` on shutdown.
    pub task: JoinHandle<Result<(), FatalError>>,
}

struct Driver<SM: StateMachine> {
    raw: RawNode,
    storage: GroupHandle,
    wal: Wal,
    sm: Arc<Mutex<SM>>,
    transport: Transport,
    snapshot_entries: u64,
    /// See [`NodeOptions::proposals_pending_max`].
    proposals_pending_max: usize,
    /// See [`NodeOptions::reads_pending_max`].
    reads_pending_max: usize,
    /// Commands proposed here, by index, until applied (answered) or
    /// this node stops leading (failed with `Retry`). Bound:
    /// `proposals_pending_max`; more are refused as `Overloaded`.
    proposals: BTreeMap<LogIndex, (Term, ProposeReply<SM::Output>)>,
    /// Membership changes proposed here, by index, until applied. Bound:
    /// one (the core refuses a change while one is pending).
    conf_proposals: BTreeMap<LogIndex, (Term, ConfReply)>,
    /// Membership changes applied, waiting for the joint configuration
    /// they entered to be left. Bound: as `conf_proposals`.
    conf_applied: Vec<(LogIndex, ConfReply)>,
    /// The node applied its own removal.
    removed: bool,
    /// ReadIndex requests, by context, until the core confirms or drops
    /// them. Expiry: at the first tick after the caller gave up (its
    /// request deadline). Bound: with `confirmed`, at most
    /// `reads_pending_max`; more are refused as `Overloaded`.
    reads: HashMap<u64, ReadReply>,
    /// Confirmed reads waiting for this node to apply their index. Expiry
    /// and bound: as `reads`.
    confirmed: Vec<(LogIndex, ReadReply)>,
    next_ctx: u64,
    status: watch::Sender<NodeStatus>,
    metrics: Arc<Metrics>,
    /// Where snapshot jobs send their result: the index they were taken
    /// at, and the encoded state (`None` if the job panicked). Unbounded,
    /// but one job runs at a time, so at most one result waits.
    snapshots: mpsc::UnboundedSender<(LogIndex, Option<bytes::Bytes>)>,
    /// A snapshot job is running.
    snapshotting: bool,
    /// Readys handed out that wait for the next sync. Expiry: all of
    /// them go to the sync that starts when the running one ends, so
    /// they are what one `fdatasync`'s time brings.
    queued: Vec<Unsynced>,
    /// Readys that the running sync covers.
    syncing: Vec<Unsynced>,
}

/// A Ready handed out whose writes are not yet known durable.
struct Unsynced {
    lsn: Lsn,
    must_sync: bool,
    persisted_messages: Vec<Message>,
    mark: PersistMark,
}

/// The sync that runs on the blocking pool.
struct SyncTask {
    handle: JoinHandle<Result<Lsn, WalError>>,
    started: std::time::Instant,
}

/// Whether a member that has applied `applied` and last snapshotted at
/// `snap_index` should snapshot, with one every `every` entries.
///
/// Each member snapshots when the applied index crosses a multiple of
/// `every` shifted by a phase of its own (its id times the golden ratio,
/// modulo `every`), so the members of a group do not all encode and write
/// their snapshots at the same index and compete for CPU and disk (under
/// load that showed as a writes p999 of ~30 ms). Two snapshots are at most
/// `every` entries apart (exactly that in steady state; a snapshot restored
/// from the leader may bring the next one closer).
fn snapshot_due(id: NodeId, applied: LogIndex, snap_index: LogIndex, every: u64) -> bool {
    let every = every.max(1);
    let phase = ((u128::from(id.get().wrapping_mul(0x9E37_79B9_7F4A_7C15)) * u128::from(every))
        >> 64) as u64;
    (applied.0 + phase) / every > (snap_index.0 + phase) / every
}

/// Locks the state machine. Nothing awaits under this lock; a panic while
/// holding it is a bug, so a poisoned lock is used as is.
pub(crate) fn lock<SM>(sm: &Mutex<SM>) -> MutexGuard<'_, SM> {
    sm.lock().unwrap_or_else(|p| p.into_inner())
}

impl<SM: StateMachine> RaftNode<SM> {
    /// Recovers the node from `storage` (restoring `sm` from the saved
    /// snapshot) and starts its task. The task runs until `shutdown`
    /// becomes true or the WAL fails.
    pub fn start(
        opts: NodeOptions,
        mut storage: GroupHandle,
        sm: Arc<Mutex<SM>>,
        transport: Transport,
        inbound: mpsc::Receiver<Message>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<RaftNode<SM>, StartError> {
        let init = storage.initial_state()?;
        if let Some(snap) = &init.snapshot {
            lock(&sm).restore(&snap.data)?;
        }
        let raw = RawNode::new(opts.raft.clone(), init)?;
        // A member that applied its own removal before a restart knows at
        // once (a snapshot carries the table).
        let mut removed = false;
        if let Some(table) = lock(&sm).peer_table() {
            transport.set_peers(&table.addrs, &table.removed);
            removed = table.removed.contains(&opts.raft.id);
        }
        let (status_tx, status_rx) = watch::channel(status_of(&raw, removed));
        let (req_tx, req_rx) = mpsc::channel(opts.request_queue);
        let (snap_tx, snap_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            raw,
            wal: storage.wal(),
            storage,
            sm,
            transport,
            snapshot_entries: opts.snapshot_entries,
            proposals_pending_max: opts.proposals_pending_max,
            reads_pending_max: opts.reads_pending_max,
            proposals: BTreeMap::new(),
            conf_proposals: BTreeMap::new(),
            conf_applied: Vec::new(),
            removed,
            reads: HashMap::new(),
            confirmed: Vec::new(),
            next_ctx: 1,
            status: status_tx,
            metrics: opts.metrics.clone(),
            snapshots: snap_tx,
            snapshotting: false,
            queued: Vec::new(),
            syncing: Vec::new(),
        };
        let queues = Queues {
            inbound,
            requests: req_rx,
            snapshots: snap_rx,
        };
        let task = tokio::spawn(driver.run(opts.tick, queues, shutdown));
        let handle = NodeHandle {
            requests: req_tx,
            status: status_rx,
        };
        Ok(RaftNode { handle, task })
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

fn status_of(raw: &RawNode, removed: bool) -> NodeStatus {
    let s = raw.status();
    NodeStatus {
        id: s.id,
        role: s.role,
        term: s.term,
        leader: s.leader,
        commit: s.commit,
        applied: s.applied,
        last_index: s.last_index,
        log_bytes: s.log_bytes,
        voters: s.conf_state.voters.to_vec(),
        learners: s.conf_state.learners.to_vec(),
        removed,
        active: raw.recently_active().unwrap_or_default(),
    }
}

/// Most queued items taken per loop iteration, so a flood of one kind
/// cannot starve the timer.
const DRAIN_MAX: usize = 4096;
/// Most proposals waiting for their entry to apply (etcd refuses writes
/// with "too many requests" once 5,000 committed entries wait to apply;
/// this counts what waits for commitment too). Each holds its command
/// until applied, so this, times the request size limit, bounds them.
pub const PROPOSALS_PENDING_MAX: usize = 32_768;
/// Most ReadIndex requests waiting to be confirmed and applied.
pub const READS_PENDING_MAX: usize = 32_768;

/// What the driver's task receives.
struct Queues<Output> {
    inbound: mpsc::Receiver<Message>,
    requests: mpsc::Receiver<Request<Output>>,
    snapshots: mpsc::UnboundedReceiver<(LogIndex, Option<bytes::Bytes>)>,
}

impl<SM: StateMachine> Driver<SM> {
    async fn run(
        mut self,
        tick: Duration,
        queues: Queues<SM::Output>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), FatalError> {
        let Queues {
            mut inbound,
            mut requests,
            mut snapshots,
        } = queues;
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::new();
        let mut sync: Option<SyncTask> = None;
        loop {
            tokio::select! {
                done = async { (&mut sync.as_mut().expect("guarded").handle).await }, if sync.is_some() => {
                    done??;
                    if let Some(task) = sync.take() {
                        self.synced(task.started);
                    }
                }
                _ = ticker.tick() => self.tick(),
                Some(m) = inbound.recv() => self.step(m),
                Some(r) = requests.recv() => self.request(r, &mut batch),
                Some((index, data)) = snapshots.recv() => self.compact(index, data),
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            for _ in 0..DRAIN_MAX {
                match inbound.try_recv() {
                    Ok(m) => self.step(m),
                    Err(_) => break,
                }
            }
            for _ in 0..DRAIN_MAX {
                match requests.try_recv() {
                    Ok(r) => self.request(r, &mut batch),
                    Err(_) => break,
                }
            }
            self.propose_batch(&mut batch);
            loop {
                while self.raw.has_ready() {
                    self.handle_ready().await?;
                }
                if sync.is_none() {
                    sync = self.start_sync();
                }
                // Readys with nothing to sync may have been persisted
                // just now, and a leader's own log counted.
                if !self.raw.has_ready() {
                    break;
                }
            }
        }
        // Everything written so far becomes durable before the task ends.
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.sync()).await??;
        Ok(())
    }

    fn tick(&mut self) {
        self.raw.tick();
        // Forget reads whose caller gave up (its deadline passed): Raft
        // may never answer a read whose forwarded request was lost.
        self.reads.retain(|_, tx| !tx.is_closed());
        self.confirmed.retain(|(_, tx)| !tx.is_closed());
    }

    fn step(&mut self, m: Message) {
        // A message the core refuses (malformed, impossible for an honest
        // peer) is dropped and counted: peers are untrusted input, and
        // Raft tolerates lost messages. The log line comes at the 1st,
        // 2nd, 4th, 8th... refusal, so a flooding peer cannot flood the
        // log too.
        let from = m.from;
        if let Err(e) = self.raw.step(m) {
            let n = self
                .metrics
                .peer_messages_refused
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            if n.is_power_of_two() {
                tracing::warn!(%from, refused = n, "dropped a peer message: {e}");
            }
        }
    }

    fn request(
        &mut self,
        r: Request<SM::Output>,
        batch: &mut Vec<(bytes::Bytes, ProposeReply<SM::Output>)>,
    ) {
        match r {
            Request::Propose(data, tx) => {
                let pending = self.proposals.len() + batch.len();
                if pending >= self.proposals_pending_max {
                    let _ = tx.send(Err(NodeError::Overloaded { pending }));
                } else {
                    batch.push((data, tx));
                }
            }
            Request::ReadIndex(tx)
                if self.reads.len() + self.confirmed.len() >= self.reads_pending_max =>
            {
                let pending = self.reads.len() + self.confirmed.len();
                let _ = tx.send(Err(NodeError::Overloaded { pending }));
            }
            Request::ReadIndex(tx) => {
                let ctx = self.next_ctx;
                self.next_ctx += 1;
                self.reads.insert(ctx, tx);
                self.raw.read_index(ctx);
            }
            Request::ConfChange(cc, tx) => match self.raw.propose_conf_change(&cc) {
                Ok(index) => {
                    let term = self.raw.status().term;
                    self.conf_proposals.insert(index, (term, tx));
                }
                Err(e) => {
                    let _ = tx.send(Err(conf_error(e)));
                }
            },
        }
    }

    fn propose_batch(&mut self, batch: &mut Vec<(bytes::Bytes, ProposeReply<SM::Output>)>) {
        if batch.is_empty() {
            return;
        }
        let commands: Vec<bytes::Bytes> = batch.iter().map(|(d, _)| d.clone()).collect();
        match self.raw.propose_batch(commands) {
            Ok(first) => {
                self.metrics
                    .proposals
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                let term = self.raw.status().term;
                for (i, (_, tx)) in batch.drain(..).enumerate() {
                    let index = LogIndex(first.0 + i as u64);
                    self.proposals.insert(index, (term, tx));
                }
            }
            Err(flotilla_raft::ProposeError::NotLeader { leader_hint }) => {
                self.metrics
                    .proposals_refused
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for (_, tx) in batch.drain(..) {
                    let _ = tx.send(Err(NodeError::NotLeader { leader_hint }));
                }
            }
            Err(_) => {
                for (_, tx) in batch.drain(..) {
                    let _ = tx.send(Err(NodeError::Retry));
                }
            }
        }
    }

    async fn handle_ready(&mut self) -> Result<(), FatalError> {
        let mut rd = self.raw.ready();
        self.transport.send(std::mem::take(&mut rd.messages));
        let lsn = self.storage.write(rd.writes())?;
        self.note_soft_state(&rd);
        if rd.snapshot.is_some() {
            self.ready_with_snapshot(&mut rd, lsn).await?;
        } else {
            self.apply(&rd)?;
            let unsynced = Unsynced {
                lsn,
                must_sync: rd.must_sync,
                persisted_messages: std::mem::take(&mut rd.persisted_messages),
                mark: rd.persist_mark(),
            };
            self.raw.advance_handed(&rd);
            if !unsynced.must_sync && self.queued.is_empty() && self.syncing.is_empty() {
                // Nothing written before it waits for the disk.
                self.persisted(vec![unsynced]);
            } else {
                self.queued.push(unsynced);
            }
        }
        self.finish_reads(&rd);
        if rd.soft_state.is_some_and(|s| s.role != Role::Leader) {
            // Proposals made as leader may still commit, but nothing here
            // would tell: the client retries through the new leader.
            for (_, (_, tx)) in std::mem::take(&mut self.proposals) {
                let _ = tx.send(Err(NodeError::Retry));
            }
            for (_, (_, tx)) in std::mem::take(&mut self.conf_proposals) {
                let _ = tx.send(Err(NodeError::Retry));
            }
        }
        self.finish_conf_changes();
        self.maybe_compact();
        self.status.send_replace(status_of(&self.raw, self.removed));
        Ok(())
    }

    /// The synchronous path, for a Ready that carries a snapshot (the
    /// leader's, to restore, or a local compaction): its sync also covers
    /// every Ready queued or syncing before it, which are persisted after
    /// it. The running sync, when it ends, finds nothing left to report.
    async fn ready_with_snapshot(&mut self, rd: &mut Ready, lsn: Lsn) -> Result<(), FatalError> {
        let restore = rd.restore_snapshot;
        if !restore {
            self.apply(rd)?;
        }
        let task = self.spawn_sync(lsn);
        task.handle.await??;
        self.metrics.fsync.observe(task.started.elapsed());
        self.transport
            .send(std::mem::take(&mut rd.persisted_messages));
        if let Some(snap) = rd.snapshot.as_ref().filter(|_| restore) {
            tracing::info!(index = %snap.meta.index, term = %snap.meta.term, "restoring a snapshot from the leader");
            lock(&self.sm).restore(&snap.data)?;
            self.fail_proposals_up_to(snap.meta.index);
            self.peers_changed();
            self.apply(rd)?;
        }
        self.raw.advance(rd);
        let mut covered = std::mem::take(&mut self.syncing);
        covered.append(&mut self.queued);
        self.persisted(covered);
        Ok(())
    }

    /// Starts a sync of every queued Ready, unless none needs one (then
    /// they are persisted at once).
    fn start_sync(&mut self) -> Option<SyncTask> {
        if self.queued.is_empty() {
            return None;
        }
        let batch = std::mem::take(&mut self.queued);
        let Some(lsn) = batch.iter().filter(|u| u.must_sync).map(|u| u.lsn).max() else {
            self.persisted(batch);
            return None;
        };
        self.syncing = batch;
        Some(self.spawn_sync(lsn))
    }

    /// Syncs the WAL up to `lsn` on the blocking pool, never on a runtime
    /// worker.
    fn spawn_sync(&self, lsn: Lsn) -> SyncTask {
        let wal = self.wal.clone();
        SyncTask {
            handle: tokio::task::spawn_blocking(move || wal.sync_to(lsn)),
            started: std::time::Instant::now(),
        }
    }

    /// The running sync, begun at `started`, ended well.
    fn synced(&mut self, started: std::time::Instant) {
        self.metrics.fsync.observe(started.elapsed());
        let batch = std::mem::take(&mut self.syncing);
        self.persisted(batch);
    }

    /// Readys whose writes are durable, in the order they were handed out:
    /// their messages leave and the core hears of each.
    fn persisted(&mut self, batch: Vec<Unsynced>) {
        for u in batch {
            self.transport.send(u.persisted_messages);
            self.raw.on_persisted(u.mark);
        }
    }

    fn note_soft_state(&self, rd: &Ready) {
        let Some(soft) = rd.soft_state else { return };
        let before = self.status.borrow().clone();
        if soft.leader != before.leader {
            self.metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        let term = rd.hard_state.map_or(before.term, |h| h.term);
        tracing::info!(role = ?soft.role, leader = ?soft.leader, term = %term, "raft state changed");
    }

    fn apply(&mut self, rd: &Ready) -> Result<(), ApplyError> {
        if rd.committed_entries.is_empty() {
            return Ok(());
        }
        self.metrics
            .applied_entries
            .fetch_add(rd.committed_entries.len() as u64, Ordering::Relaxed);
        let sm = Arc::clone(&self.sm);
        let mut sm = lock(&sm);
        let mut conf_changed = false;
        for e in &rd.committed_entries {
            let output = sm.apply(e)?;
            if e.kind == EntryKind::ConfChange {
                conf_changed = true;
                self.conf_applied_at(e);
            }
            self.answer(e, (e.kind == EntryKind::Command).then_some(output));
        }
        drop(sm);
        if conf_changed {
            self.peers_changed();
        }
        Ok(())
    }

    /// A conf change at `e` was applied: its proposer waits for the joint
    /// configuration to be left, unless the entry is not the one proposed.
    fn conf_applied_at(&mut self, e: &Entry) {
        if let Some((term, tx)) = self.conf_proposals.remove(&e.index) {
            if term == e.term {
                self.conf_applied.push((e.index, tx));
            } else {
                let _ = tx.send(Err(NodeError::Retry));
            }
        }
    }

    /// Answers applied membership changes once the group is out of joint
    /// consensus (or this node no longer leads, so cannot leave it).
    fn finish_conf_changes(&mut self) {
        let s = self.raw.status();
        if s.conf_state.is_joint() && s.role == Role::Leader {
            return;
        }
        for (index, tx) in self.conf_applied.drain(..) {
            let _ = tx.send(Ok(index));
        }
    }

    /// The member table changed: point the transport at it, and note
    /// whether this node was removed.
    fn peers_changed(&mut self) {
        let Some(table) = lock(&self.sm).peer_table() else {
            return;
        };
        self.transport.set_peers(&table.addrs, &table.removed);
        let me = self.raw.status().id;
        if table.removed.contains(&me) && !self.removed {
            tracing::warn!(member = %me, "this member was removed from the cluster");
            self.removed = true;
        }
    }

    fn answer(&mut self, e: &Entry, output: Option<SM::Output>) {
        let Some((term, tx)) = self.proposals.remove(&e.index) else {
            return;
        };
        let reply = match output {
            Some(output) if term == e.term => Ok(Applied {
                index: e.index,
                term: e.term,
                output,
            }),
            _ => Err(NodeError::Retry),
        };
        let _ = tx.send(reply);
    }

    fn fail_proposals_up_to(&mut self, index: LogIndex) {
        let keep = self.proposals.split_off(&index.next());
        for (_, (_, tx)) in std::mem::replace(&mut self.proposals, keep) {
            let _ = tx.send(Err(NodeError::Retry));
        }
    }

    fn finish_reads(&mut self, rd: &Ready) {
        for rs in &rd.read_states {
            if let Some(tx) = self.reads.remove(&rs.ctx) {
                self.confirmed.push((rs.index, tx));
            }
        }
        for ctx in &rd.dropped_reads {
            if let Some(tx) = self.reads.remove(ctx) {
                let _ = tx.send(Err(NodeError::Retry));
            }
        }
        let applied = self.raw.status().applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.confirmed)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.confirmed = waiting;
        for (index, tx) in ready {
            let _ = tx.send(Ok(index));
        }
    }

    /// Starts a snapshot job once enough entries are applied past the last
    /// snapshot and none is running.
    fn maybe_compact(&mut self) {
        if self.snapshotting {
            return;
        }
        let status = self.raw.status();
        let snap_index = self.raw.snapshot().map_or(LogIndex(0), |s| s.meta.index);
        if !snapshot_due(status.id, status.applied, snap_index, self.snapshot_entries) {
            return;
        }
        // The machine has applied exactly `status.applied` (apply runs
        // before advance), so the job captures the state at that index.
        let index = status.applied;
        let job = lock(&self.sm).snapshot_job();
        let (wal, group) = (self.wal.clone(), self.storage.id());
        let meta = self.raw.snapshot_meta_at(index);
        let done = self.snapshots.clone();
        self.snapshotting = true;
        tokio::spawn(async move {
            let encode_and_write = move || {
                let data = job();
                // The file is written here, off the group commit, so the
                // sync that writes the compaction record stays small.
                if let Some(meta) = meta {
                    let snap = flotilla_raft::Snapshot {
                        meta,
                        data: data.clone(),
                    };
                    if let Err(e) = wal.prepare_snapshot(group, &snap) {
                        tracing::warn!(error = %e, "writing the snapshot file ahead failed; the next sync writes it");
                    }
                }
                data
            };
            let data = tokio::task::spawn_blocking(encode_and_write).await.ok();
            let _ = done.send((index, data));
        });
    }

    /// Compacts the log with a finished snapshot job's result.
    fn compact(&mut self, index: LogIndex, data: Option<bytes::Bytes>) {
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
                self.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(index = %index, error = %e, "snapshot not used"),
        }
    }
}

#[cfg(test)]
mod tests;
