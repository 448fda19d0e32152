//! The host's Ready loop: each Ready's duties in the order the Raft crate
//! requires, with asynchronous writes (group commit), and the answers
//! that applied entries and confirmed reads release.
//!
//! Invariant: a Ready's `persisted_messages` leave, and the core hears
//! `on_persisted`, only once a sync covering its writes and every write
//! before it has ended; Readys are reported persisted in the order they
//! were handed out.

use flotilla_raft::{Entry, EntryKind, LogIndex, RawNode, Ready, Role};

use crate::app::{ApplyError, StateMachine};
use crate::counters;
use crate::error::FatalError;
use crate::host::{Action, Host, Pump, Unsynced, lock};
use crate::reply::{Applied, NodeError, NodeStatus, Waiter, Waiters};

/// The status a Ready leaves.
pub(crate) fn status_of(raw: &RawNode, removed: bool) -> NodeStatus {
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

impl<SM: StateMachine, W: Waiters<SM::Output>> Host<SM, W> {
    /// Does everything the events so far call for: proposes the batch,
    /// handles every Ready, starts a sync if none runs. Stops early with
    /// [`Pump::SyncNow`] when a Ready must be durable before the host
    /// can go on (it carries a snapshot).
    pub fn pump(&mut self) -> Result<Pump, FatalError> {
        if let Some((_, lsn)) = &self.blocked {
            return Ok(Pump::SyncNow(*lsn));
        }
        self.propose_batch();
        loop {
            while self.raw.has_ready() {
                if let Some(lsn) = self.handle_ready()? {
                    return Ok(Pump::SyncNow(lsn));
                }
            }
            if !self.sync_running {
                self.start_sync();
            }
            // Readys with nothing to sync may have been persisted just
            // now, and a leader's own log counted.
            if !self.raw.has_ready() {
                return Ok(Pump::Quiet);
            }
        }
    }

    fn propose_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let n = self.batch.len() as u64;
        match self
            .raw
            .propose_batch(self.batch.iter().map(|(d, _)| d.clone()))
        {
            Ok(first) => {
                counters::add(&self.counters.proposals, n);
                let term = self.raw.status().term;
                for (i, (_, w)) in std::mem::take(&mut self.batch).into_iter().enumerate() {
                    let index = LogIndex(first.0 + i as u64);
                    self.proposals.insert(index, (term, w));
                }
            }
            Err(flotilla_raft::ProposeError::NotLeader {
                leader_hint: Some(_),
            }) => {
                let commands = self.batch.iter().map(|(d, _)| d.clone()).collect();
                self.forward_batch(commands);
            }
            Err(flotilla_raft::ProposeError::NotLeader { leader_hint }) => {
                counters::add(&self.counters.proposals_refused, n);
                for (_, w) in self.batch.drain(..) {
                    w.answer(Err(NodeError::NotLeader { leader_hint }));
                }
            }
            Err(_) => {
                for (_, w) in self.batch.drain(..) {
                    w.answer(Err(NodeError::Retry));
                }
            }
        }
    }

    /// Forwards the batch to the leader (the core just said it follows
    /// one, so it takes the batch).
    fn forward_batch(&mut self, commands: Vec<bytes::Bytes>) {
        let n = commands.len();
        let ctx = self.next_ctx;
        self.next_ctx += 1;
        let waiters: Vec<W::Propose> = self.batch.drain(..).map(|(_, w)| w).collect();
        if self.raw.forward_proposals(ctx, commands).is_err() {
            for w in waiters {
                w.answer(Err(NodeError::Retry));
            }
            return;
        }
        counters::add(&self.counters.proposals_forwarded, n as u64);
        self.forwarded_commands += n;
        self.forwarded.insert(ctx, waiters);
    }

    /// Where the leader placed batches this node forwarded: each command
    /// waits for its index to be applied here with the leader's term.
    /// One whose index is already applied (the answer came late) can no
    /// longer learn its outcome, and is told to retry.
    fn note_forwarded(&mut self, rd: &Ready) {
        if rd.forwarded.is_empty() {
            return;
        }
        let applied = self.raw.status().applied;
        for outcome in &rd.forwarded {
            let Some(waiters) = self.forwarded.remove(&outcome.ctx) else {
                continue;
            };
            self.forwarded_commands -= waiters.len();
            let Some((first, term)) = outcome.placed else {
                for w in waiters {
                    w.answer(Err(NodeError::Retry));
                }
                continue;
            };
            for (i, w) in waiters.into_iter().enumerate() {
                let index = LogIndex(first.0 + i as u64);
                if index <= applied {
                    counters::add(&self.counters.proposals_forwarded_late, 1);
                    w.answer(Err(NodeError::Retry));
                } else if let Some((_, earlier)) = self.proposals.insert(index, (term, w)) {
                    earlier.answer(Err(NodeError::Retry));
                }
            }
        }
    }

    /// Handles one Ready; `Some(lsn)` when it carries a snapshot and the
    /// WAL must be synced to `lsn` before [`Host::resume`].
    fn handle_ready(&mut self) -> Result<Option<flotilla_wal::Lsn>, FatalError> {
        let mut rd = self.raw.ready();
        let messages = std::mem::take(&mut rd.messages);
        self.send(messages);
        let lsn = self.storage.write(rd.writes())?;
        self.note_soft_state(&rd);
        self.note_forwarded(&rd);
        if rd.snapshot.is_some() {
            if !rd.restore_snapshot {
                self.apply(&rd)?;
            }
            self.blocked = Some((rd, lsn));
            return Ok(Some(lsn));
        }
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
        self.after_ready(&rd);
        Ok(None)
    }

    /// The sync that [`Pump::SyncNow`] asked for ended well: the Ready
    /// with a snapshot goes on (the leader's snapshot is restored), and
    /// every Ready queued or syncing before it is persisted too. The
    /// running asynchronous sync, when it ends, finds nothing left to
    /// report. Call [`Host::pump`] next.
    pub fn resume(&mut self) -> Result<(), FatalError> {
        let Some((mut rd, _)) = self.blocked.take() else {
            return Ok(());
        };
        let messages = std::mem::take(&mut rd.persisted_messages);
        self.send(messages);
        if let Some(snap) = rd.snapshot.as_ref().filter(|_| rd.restore_snapshot) {
            tracing::info!(index = %snap.meta.index, term = %snap.meta.term, "restoring a snapshot from the leader");
            lock(&self.sm).restore(&snap.data)?;
            self.fail_proposals_up_to(snap.meta.index);
            self.peers_changed();
            self.apply(&rd)?;
        }
        self.raw.advance(&rd);
        let mut covered = std::mem::take(&mut self.syncing);
        covered.append(&mut self.queued);
        self.persisted(covered);
        self.after_ready(&rd);
        Ok(())
    }

    /// What every Ready ends with: reads answered, proposals failed if
    /// this member stopped leading, membership changes finished, a
    /// snapshot maybe started, the status refreshed.
    fn after_ready(&mut self, rd: &Ready) {
        self.finish_reads(rd);
        if rd.soft_state.is_some_and(|s| s.role != Role::Leader) {
            // Proposals made as leader may still commit, but nothing here
            // would tell: the client retries through the new leader.
            for (_, (_, w)) in std::mem::take(&mut self.proposals) {
                w.answer(Err(NodeError::Retry));
            }
            for (_, (_, w)) in std::mem::take(&mut self.conf_proposals) {
                w.answer(Err(NodeError::Retry));
            }
        }
        self.finish_conf_changes();
        self.maybe_compact();
        self.status = status_of(&self.raw, self.removed);
        let in_flight = self.proposals.len() + self.batch.len() + self.forwarded_commands;
        (self.counters.proposals_in_flight)
            .store(in_flight as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts a sync of every queued Ready, unless none needs one (then
    /// they are persisted at once).
    fn start_sync(&mut self) {
        if self.queued.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.queued);
        let Some(lsn) = batch.iter().filter(|u| u.must_sync).map(|u| u.lsn).max() else {
            self.persisted(batch);
            return;
        };
        self.syncing = batch;
        self.sync_running = true;
        self.actions.push(Action::Sync(lsn));
    }

    fn note_soft_state(&self, rd: &Ready) {
        let Some(soft) = rd.soft_state else { return };
        if soft.leader != self.status.leader {
            counters::add(&self.counters.leader_changes, 1);
        }
        let term = rd.hard_state.map_or(self.status.term, |h| h.term);
        tracing::info!(role = ?soft.role, leader = ?soft.leader, term = %term, "raft state changed");
    }

    fn apply(&mut self, rd: &Ready) -> Result<(), ApplyError> {
        if rd.committed_entries.is_empty() {
            return Ok(());
        }
        counters::add(
            &self.counters.applied_entries,
            rd.committed_entries.len() as u64,
        );
        let sm = std::sync::Arc::clone(&self.sm);
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
        if let Some((term, w)) = self.conf_proposals.remove(&e.index) {
            if term == e.term {
                self.conf_applied.push((e.index, w));
            } else {
                w.answer(Err(NodeError::Retry));
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
        for (index, w) in self.conf_applied.drain(..) {
            w.answer(Ok(index));
        }
    }

    fn answer(&mut self, e: &Entry, output: Option<SM::Output>) {
        let Some((term, w)) = self.proposals.remove(&e.index) else {
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
        w.answer(reply);
    }

    fn fail_proposals_up_to(&mut self, index: LogIndex) {
        let keep = self.proposals.split_off(&index.next());
        for (_, (_, w)) in std::mem::replace(&mut self.proposals, keep) {
            w.answer(Err(NodeError::Retry));
        }
    }

    fn finish_reads(&mut self, rd: &Ready) {
        for rs in &rd.read_states {
            if let Some(w) = self.reads.remove(&rs.ctx) {
                self.confirmed.push((rs.index, w));
            }
        }
        for ctx in &rd.dropped_reads {
            if let Some(w) = self.reads.remove(ctx) {
                w.answer(Err(NodeError::Retry));
            }
        }
        let applied = self.raw.status().applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.confirmed)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.confirmed = waiting;
        for (index, w) in ready {
            w.answer(Ok(index));
        }
    }
}
