//! Proposals a follower forwards to its leader (etcd raft's `MsgProp`),
//! so a client may write through any member without a second RPC layer:
//! the commands travel in [`MessageBody::Propose`] on the peer stream,
//! and the leader answers with [`MessageBody::ProposeResp`], naming the
//! index it appended the first of them at, in its term.
//!
//! Invariants:
//! - each batch the application forwards under its `ctx` gets exactly one
//!   [`ForwardOutcome`], in a Ready's `forwarded`: placed at `(first,
//!   term)`, or not placed (`None`) when no leader is known, the leader
//!   refused, no answer came within an election timeout, or this node's
//!   term, role or leader changed first; an answer after that is dropped;
//! - a placement only says where the leader appended the commands. The
//!   application answers each command once it has applied that index with
//!   that term (log matching: the same entry, hence committed and durable
//!   on a quorum), and tells its caller to retry if another entry lands
//!   there;
//! - a leader appends forwarded commands only from a member of its
//!   configuration, and only when it would accept them from its own
//!   clients.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::leader::ProposeError;
use crate::message::MessageBody;
use crate::raft::Raft;
use crate::types::{LogIndex, NodeId, Role, Term};

/// The outcome of a batch forwarded under the application's `ctx`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ForwardOutcome {
    /// The application's id for the batch.
    pub ctx: u64,
    /// Where the leader appended its first command, and the term its
    /// entries carry; `None` if it was not placed (retry).
    pub placed: Option<(LogIndex, Term)>,
}

/// A batch waiting for the leader's answer.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    ctx: u64,
    to: NodeId,
    sent_tick: u64,
}

/// The follower's side: batches in flight, by the id they travel under.
#[derive(Debug)]
pub(crate) struct Forwarding {
    next_id: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Outcomes for the next Ready.
    pub(crate) outcomes: Vec<ForwardOutcome>,
}

/// Mixed into the seed for the batches' ids (any constant works; it keeps
/// their generator apart from the election timeouts' and the reads').
const BATCH_ID_SALT: u64 = 0x7072_6f70_6f73_6521;

impl Forwarding {
    /// Bookkeeping for a node started with PRNG seed `seed`, which the
    /// application draws afresh for every incarnation: ids start at a
    /// random point, so an answer sent to an earlier incarnation of this
    /// node (delayed in the network) matches none of this one's batches.
    /// Otherwise it could place a new batch at the old batch's indexes,
    /// and a client would be told its write is another's entry.
    pub(crate) fn new(seed: u64) -> Forwarding {
        let mut ids = crate::rng::SplitMix64::new(seed ^ BATCH_ID_SALT);
        Forwarding {
            next_id: ids.next_u64(),
            in_flight: BTreeMap::new(),
            outcomes: Vec::new(),
        }
    }
}

impl Raft {
    /// Proposes `commands` through the leader on behalf of the
    /// application's `ctx`: at once when this node leads, otherwise
    /// forwarded to the leader it knows. The outcome comes in a later
    /// Ready's `forwarded`.
    pub(crate) fn forward_proposals(
        &mut self,
        ctx: u64,
        commands: Vec<Bytes>,
    ) -> Result<(), ProposeError> {
        match (self.role, self.leader) {
            (Role::Leader, _) => {
                let first = self.propose(commands)?;
                let placed = Some((first, self.term));
                self.forwarding
                    .outcomes
                    .push(ForwardOutcome { ctx, placed });
            }
            (_, Some(leader)) => {
                let f = &mut self.forwarding;
                let id = f.next_id;
                f.next_id = id.wrapping_add(1);
                let sent_tick = self.ticks;
                let flight = InFlight {
                    ctx,
                    to: leader,
                    sent_tick,
                };
                f.in_flight.insert(id, flight);
                self.send(leader, MessageBody::Propose { ctx: id, commands });
            }
            (_, None) => return Err(ProposeError::NotLeader { leader_hint: None }),
        }
        Ok(())
    }

    /// A follower's batch: appended if this node leads and would accept
    /// it from its own clients, and the sender is a member.
    pub(crate) fn handle_propose(&mut self, from: NodeId, ctx: u64, commands: Vec<Bytes>) {
        let member = self.progress.contains_key(&from);
        let first = if self.role == Role::Leader && member && !commands.is_empty() {
            self.propose(commands).ok()
        } else {
            None
        };
        if first.is_some() {
            self.awaits_commit(from, self.log.last_index());
        }
        self.send(from, MessageBody::ProposeResp { ctx, first });
    }

    /// Follower `id` waits to learn that `index` is committed: it is told
    /// as soon as it is ([`Raft::tell_commit`]).
    pub(crate) fn awaits_commit(&mut self, id: NodeId, index: LogIndex) {
        if let Some(pr) = self.progress.get_mut(&id) {
            pr.awaits_commit = pr.awaits_commit.max(index);
            self.commit_to_tell = true;
        }
    }

    /// The leader's answer to the batch that travelled under `id`, in
    /// `term`. One that matches no batch in flight to `from` is dropped.
    pub(crate) fn handle_propose_resp(
        &mut self,
        from: NodeId,
        id: u64,
        first: Option<LogIndex>,
        term: Term,
    ) {
        let f = &mut self.forwarding;
        let Some(flight) = f.in_flight.get(&id).copied().filter(|b| b.to == from) else {
            return;
        };
        f.in_flight.remove(&id);
        let placed = first.map(|index| (index, term));
        let ctx = flight.ctx;
        f.outcomes.push(ForwardOutcome { ctx, placed });
    }

    /// Batches with no answer within an election timeout are not placed,
    /// as far as the application can tell: it retries them.
    pub(crate) fn expire_forwarded_proposals(&mut self) {
        let timeout = u64::from(self.cfg.election_ticks);
        let now = self.ticks;
        let f = &mut self.forwarding;
        let outcomes = &mut f.outcomes;
        f.in_flight.retain(|_, b| {
            let live = now.saturating_sub(b.sent_tick) < timeout;
            if !live {
                outcomes.push(ForwardOutcome {
                    ctx: b.ctx,
                    placed: None,
                });
            }
            live
        });
    }

    /// The term, role or leader changed: every batch in flight is given
    /// up, so its clients retry through the new leader at once.
    pub(crate) fn fail_forwarded_proposals(&mut self) {
        let f = &mut self.forwarding;
        let given_up = std::mem::take(&mut f.in_flight).into_values();
        f.outcomes.extend(given_up.map(|b| ForwardOutcome {
            ctx: b.ctx,
            placed: None,
        }));
    }
}
