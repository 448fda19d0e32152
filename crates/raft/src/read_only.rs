//! Linearizable reads without log writes: ReadIndex and lease reads (§6.4
//! of the thesis).
//!
//! ReadIndex: the leader notes its commit index for the read, then confirms
//! it still leads by a heartbeat round acknowledged by a quorum; once the
//! application has applied up to that index it may answer. Rounds are
//! numbered (`read_seq`, carried by heartbeats): every read waits for a
//! round opened *after* it arrived, and all reads that arrive before the
//! next round opens share it, so a burst of reads costs one round.
//!
//! A new leader does not know the commit index of the previous term until
//! it commits an entry of its own (its no-op); reads wait for that first.
//!
//! Lease reads ([`ReadMode::Lease`]) skip the round while the leader's lease
//! holds: a quorum acknowledged a round sent at tick `t`, so none of them
//! will vote for another leader before `t + election_ticks` (check-quorum),
//! minus the clock-drift allowance. A leader that sent TimeoutNow has no
//! lease for the rest of its term: a transfer's votes ignore leases.
//!
//! Followers forward reads to the leader and get the index back. A
//! forwarded read travels under an id of the core's own, not the
//! application's `ctx`: ids start at a number drawn from the node's seed,
//! which differs on every start ([`crate::Config::seed`]), so an answer
//! sent to an earlier incarnation of this node, delayed or duplicated by
//! the network, matches no read of this one and is dropped. (With the
//! application's `ctx` on the wire, a restarted node counting its reads
//! from 1 again took such an answer, an old read index, for a new read and
//! served a value deleted since.) An answer is taken only from the node
//! the read was sent to, and only once.
//!
//! Reads that cannot complete (the leader stepped down, no leader known,
//! no answer within an election timeout) are reported as dropped, so the
//! application can retry at once. Every map here is bounded that way: a
//! read leaves it when answered, when this node's role or term changes, or
//! when it times out.

use std::collections::{BTreeMap, VecDeque};

use crate::config::ReadMode;
use crate::message::MessageBody;
use crate::quorum::quorum_value;
use crate::raft::Raft;
use crate::types::{LogIndex, NodeId, Role};

/// A read whose index is confirmed: the application may answer it once it
/// has applied up to `index`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadState {
    /// The application's request id.
    pub ctx: u64,
    /// The index to wait for.
    pub index: LogIndex,
}

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    ctx: u64,
    from: NodeId,
    index: LogIndex,
    seq: u64,
}

/// A read this node forwarded to the leader, waiting for its index.
#[derive(Clone, Copy, Debug)]
struct ForwardedRead {
    /// The application's request id.
    ctx: u64,
    /// The node it was sent to: only it may answer.
    to: NodeId,
    /// When it was sent, in ticks.
    sent_tick: u64,
}

/// The bookkeeping of reads: the leader's rounds and pending reads, and a
/// follower's forwarded reads.
#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    /// The last round opened.
    seq: u64,
    /// Recent rounds with the tick they were sent at, oldest first.
    sent: VecDeque<(u64, u64)>,
    pending: VecDeque<PendingRead>,
    /// Reads that arrived before the leader committed in its term.
    waiting: Vec<(u64, NodeId)>,
    /// Reads arrived that need a round not yet opened.
    pub(crate) round_wanted: bool,
    /// Leader: it sent TimeoutNow in this term, so it holds no lease
    /// (see `Raft::send_timeout_now`).
    pub(crate) lease_void: bool,
    /// Reads forwarded to the leader, by the id they travel under.
    forwarded: BTreeMap<u64, ForwardedRead>,
    /// The id of the next forwarded read (starts at a per-start random
    /// number, see the module docs).
    next_forward_id: u64,
}

/// How many rounds' send ticks are kept for leases.
const SENT_ROUNDS_KEPT: usize = 64;

/// Mixed into the seed for the forwarded reads' ids (any constant works;
/// it keeps their generator apart from the election timeouts').
const FORWARD_ID_SALT: u64 = 0x7265_6164_6964_7321;

impl ReadOnly {
    /// Bookkeeping for a node started with PRNG seed `seed`. The forwarded
    /// reads' ids come from a generator of their own, so that drawing them
    /// leaves the election timeouts' sequence as it was.
    pub(crate) fn new(seed: u64) -> ReadOnly {
        let mut ids = crate::rng::SplitMix64::new(seed ^ FORWARD_ID_SALT);
        ReadOnly {
            next_forward_id: ids.next_u64(),
            ..ReadOnly::default()
        }
    }

    /// Opens a new round at `tick` and returns its number.
    pub(crate) fn open_round(&mut self, tick: u64) -> u64 {
        self.seq += 1;
        self.round_wanted = false;
        self.sent.push_back((self.seq, tick));
        if self.sent.len() > SENT_ROUNDS_KEPT {
            self.sent.pop_front();
        }
        self.seq
    }

    fn sent_tick(&self, seq: u64) -> Option<u64> {
        self.sent.iter().find(|(s, _)| *s == seq).map(|(_, t)| *t)
    }
}

impl Raft {
    /// Asks for a read index on behalf of the application's request `ctx`.
    pub(crate) fn read_index(&mut self, ctx: u64) {
        match (self.role, self.leader) {
            (Role::Leader, _) => self.leader_read(ctx, self.id),
            (_, Some(leader)) => self.forward_read(ctx, leader),
            (_, None) => self.dropped_reads.push(ctx),
        }
    }

    fn forward_read(&mut self, ctx: u64, leader: NodeId) {
        let ro = &mut self.read_only;
        let id = ro.next_forward_id;
        ro.next_forward_id = id.wrapping_add(1);
        let read = ForwardedRead {
            ctx,
            to: leader,
            sent_tick: self.ticks,
        };
        ro.forwarded.insert(id, read);
        self.send(leader, MessageBody::ReadIndex { ctx: id });
    }

    pub(crate) fn handle_read_index_request(&mut self, from: NodeId, ctx: u64) {
        if self.role == Role::Leader {
            self.leader_read(ctx, from);
        } else {
            self.send(from, MessageBody::ReadIndexResp { ctx, index: None });
        }
    }

    /// An answer to a read this node forwarded, travelling under `id`.
    /// One that matches no read waiting for `from`'s answer (sent to an
    /// earlier incarnation, a duplicate, timed out, or from another node)
    /// is dropped: its index may be older than a write acknowledged since.
    pub(crate) fn handle_read_index_resp(
        &mut self,
        from: NodeId,
        id: u64,
        index: Option<LogIndex>,
    ) {
        let forwarded = &mut self.read_only.forwarded;
        let Some(read) = forwarded.get(&id).copied().filter(|r| r.to == from) else {
            return;
        };
        forwarded.remove(&id);
        match index {
            Some(index) => self.read_states.push(ReadState {
                ctx: read.ctx,
                index,
            }),
            None => self.dropped_reads.push(read.ctx),
        }
    }

    /// Drops the forwarded reads that got no answer within an election
    /// timeout (the request or its answer was lost), so the application
    /// retries them instead of waiting for ever.
    pub(crate) fn expire_forwarded_reads(&mut self) {
        let timeout = u64::from(self.cfg.election_ticks);
        let now = self.ticks;
        let forwarded = &mut self.read_only.forwarded;
        let dropped = &mut self.dropped_reads;
        forwarded.retain(|_, r| {
            let live = now.saturating_sub(r.sent_tick) < timeout;
            if !live {
                dropped.push(r.ctx);
            }
            live
        });
    }

    fn committed_in_term(&self) -> bool {
        self.log.term(self.log.committed) == Some(self.term)
    }

    fn leader_read(&mut self, ctx: u64, from: NodeId) {
        if !self.committed_in_term() {
            self.read_only.waiting.push((ctx, from));
            return;
        }
        let index = self.log.committed;
        let alone = self.conf.voters == [self.id] && self.conf.outgoing.is_empty();
        if alone || (self.cfg.read_mode == ReadMode::Lease && self.lease_valid()) {
            self.complete_read(ctx, from, index);
            return;
        }
        let seq = self.read_only.seq + 1;
        self.read_only.pending.push_back(PendingRead {
            ctx,
            from,
            index,
            seq,
        });
        self.read_only.round_wanted = true;
    }

    fn complete_read(&mut self, ctx: u64, from: NodeId, index: LogIndex) {
        if from == self.id {
            self.read_states.push(ReadState { ctx, index });
        } else {
            self.awaits_commit(from, index);
            self.send(
                from,
                MessageBody::ReadIndexResp {
                    ctx,
                    index: Some(index),
                },
            );
        }
    }

    /// The highest round a quorum has acknowledged.
    fn quorum_read_seq(&self) -> u64 {
        let me = self.id;
        let seq = self.read_only.seq;
        let progress = &self.progress;
        quorum_value(&self.conf, |id| {
            if id == me {
                seq
            } else {
                progress.get(&id).map_or(0, |p| p.read_seq)
            }
        })
    }

    fn lease_valid(&self) -> bool {
        if self.read_only.lease_void {
            return false;
        }
        let lease = u64::from(self.cfg.election_ticks - self.cfg.lease_drift_ticks);
        self.read_only
            .sent_tick(self.quorum_read_seq())
            .is_some_and(|sent| self.ticks < sent + lease)
    }

    /// Completes the reads whose round a quorum has acknowledged.
    pub(crate) fn check_read_rounds(&mut self) {
        let acked = self.quorum_read_seq();
        while let Some(r) = self.read_only.pending.front().copied() {
            if r.seq > acked {
                break;
            }
            self.read_only.pending.pop_front();
            self.complete_read(r.ctx, r.from, r.index);
        }
    }

    /// Leader: the commit index moved; reads waiting for the first commit
    /// of the term may proceed.
    pub(crate) fn release_waiting_reads(&mut self) {
        if self.read_only.waiting.is_empty() || !self.committed_in_term() {
            return;
        }
        for (ctx, from) in std::mem::take(&mut self.read_only.waiting) {
            self.leader_read(ctx, from);
        }
    }

    /// Opens a round if reads are waiting for one (called when a Ready is
    /// built, so that all reads of one batch share the round).
    pub(crate) fn flush_read_round(&mut self) {
        if self.role == Role::Leader && self.read_only.round_wanted {
            self.bcast_heartbeat();
        }
    }

    /// The node changes role, term or leader: every read it holds (as a
    /// leader, or forwarded to a leader) fails, so clients retry elsewhere
    /// at once.
    pub(crate) fn fail_pending_reads(&mut self) {
        let forwarded = std::mem::take(&mut self.read_only.forwarded);
        self.dropped_reads
            .extend(forwarded.into_values().map(|r| r.ctx));
        let pending: Vec<(u64, NodeId)> = self
            .read_only
            .pending
            .drain(..)
            .map(|r| (r.ctx, r.from))
            .chain(self.read_only.waiting.drain(..))
            .collect();
        self.read_only.round_wanted = false;
        // A new role, or a new term: no TimeoutNow of it was sent yet.
        self.read_only.lease_void = false;
        for (ctx, from) in pending {
            if from == self.id {
                self.dropped_reads.push(ctx);
            } else {
                self.send(from, MessageBody::ReadIndexResp { ctx, index: None });
            }
        }
    }
}
