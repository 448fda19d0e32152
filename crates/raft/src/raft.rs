//! The Raft state machine: its state, role transitions, timers and the
//! central `step` that checks terms and dispatches by message kind to the
//! handlers in `election.rs`, `leader.rs` and `follower.rs` ("push ifs up,
//! fors down").
//!
//! Invariants (checked by [`Raft::check`] after every simulated step):
//! - the log invariants of [`RaftLog`];
//! - a leader holds a progress entry for every member, nobody else holds any;
//! - a leader's own entry in `progress` matches its durable log;
//! - `vote`, if set, is for the current term (it is cleared on a new term).

use std::collections::BTreeMap;

use bytes::Bytes;
use thiserror::Error;

use crate::codec::Decode;
use crate::confchange::{self, ConfChange};
use crate::config::Config;
use crate::forward::Forwarding;
use crate::log::RaftLog;
use crate::message::{Message, MessageBody};
use crate::progress::Progress;
use crate::read_only::{ReadOnly, ReadState};
use crate::rng::SplitMix64;
use crate::storage::InitialState;
use crate::types::{ConfState, EntryKind, LogIndex, NodeId, Role, Term};

/// Why a message was refused. The message is dropped; the node is fine.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum StepError {
    /// The message is addressed to another node.
    #[error("message for node {to} delivered to node {me}")]
    WrongRecipient {
        /// The addressee.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The sender id is 0.
    #[error("message from node 0 (not a valid id)")]
    ZeroSender,
    /// A term so far past this node's own that no run of elections could
    /// have reached it: a corrupt or hostile peer. Adopting it would bring
    /// the group's terms toward `u64::MAX`, past which no node could
    /// campaign again.
    #[error("node {from} sent term {term}, more than 2^32 past this node's term {ours}")]
    TermTooFar {
        /// The sender.
        from: NodeId,
        /// The term it sent.
        term: Term,
        /// This node's term.
        ours: Term,
    },
    /// An append answer that answers nothing this leader sent: an index
    /// past its log, or a rejection hint past the rejected index.
    #[error("malformed append answer from node {from}: {what}")]
    MalformedAppendAnswer {
        /// The sender.
        from: NodeId,
        /// What is wrong.
        what: &'static str,
    },
    /// A log index no log reaches (over 2^62).
    #[error("node {from} sent log index {index}, past any log's reach (2^62)")]
    IndexOutOfRange {
        /// The sender.
        from: NodeId,
        /// The index.
        index: LogIndex,
    },
    /// An entry's term later than the term of the message reporting it.
    #[error("node {from} reported an entry of term {term} in a message of term {message_term}")]
    TermPastMessage {
        /// The sender.
        from: NodeId,
        /// The entry's term.
        term: Term,
        /// The message's term.
        message_term: Term,
    },
    /// A message claiming to come from this node itself.
    #[error("message from node {me} to itself over the network")]
    FromSelf {
        /// This node.
        me: NodeId,
    },
    /// An append whose entries do not follow its previous entry: indices
    /// not consecutive from `prev_index + 1`, or terms that decrease, fall
    /// below `prev_term` or exceed the message's term.
    #[error("malformed append from node {from}: {what}")]
    MalformedAppend {
        /// The sender.
        from: NodeId,
        /// What is wrong.
        what: &'static str,
    },
    /// A second leader in this node's own term: a broken peer.
    #[error("node {from} claims to lead term {term}, which this node leads")]
    TwoLeaders {
        /// The sender.
        from: NodeId,
        /// The term.
        term: Term,
    },
    /// An append that would overwrite committed entries: the sender broke
    /// Raft's guarantees (e.g. it lost its disk and rejoined under its old id).
    #[error("node {from} sent entries conflicting with committed index {index}")]
    CommittedConflict {
        /// The sender.
        from: NodeId,
        /// The first conflicting committed index.
        index: LogIndex,
    },
    /// A snapshot chunk whose bounds do not add up.
    #[error("malformed snapshot chunk from node {from}: {what}")]
    MalformedSnapshot {
        /// The sender.
        from: NodeId,
        /// What is wrong.
        what: &'static str,
    },
}

/// How far past its own term a node takes a message's term: 2^32
/// elections, more than a century at one a second, so no real group gets
/// there, while a forged term cannot exhaust the term space.
const MAX_TERM_JUMP: u64 = 1 << 32;

/// The largest log index a message may carry: no log reaches 2^62
/// entries, and staying far below `u64::MAX` keeps `index + 1` sound.
const MAX_INDEX: u64 = 1 << 62;

/// Checks that a message's indices are below [`MAX_INDEX`] and that the
/// terms it reports of log entries (its previous entry's, a snapshot's, a
/// candidate's last, a rejection hint's) are no later than the message's
/// own term, as Raft guarantees of any honest sender.
fn check_numbers(m: &Message) -> Result<(), StepError> {
    // Fixed-size, on the stack: this runs for every peer message. Index 0
    // and term 0 stand for "none" and never fail a check.
    let none = LogIndex(0);
    let (indices, term): ([LogIndex; 3], Term) = match &m.body {
        MessageBody::Append(a) => {
            let last = a.entries.last().map_or(none, |e| e.index);
            ([a.prev_index, a.commit, last], a.prev_term)
        }
        MessageBody::AppendResp(r) => {
            let hint = r.reject.map_or(none, |h| h.index);
            let hint_term = r.reject.map_or(Term(0), |h| h.term);
            ([r.index, hint, none], hint_term)
        }
        MessageBody::Heartbeat { commit, .. } => ([*commit, none, none], Term(0)),
        MessageBody::Vote(v) => ([v.last_index, none, none], v.last_term),
        MessageBody::Snapshot(c) => ([c.meta.index, none, none], c.meta.term),
        MessageBody::SnapshotResp { index, .. } => ([*index, none, none], Term(0)),
        MessageBody::ReadIndexResp { index, .. } => ([index.unwrap_or(none), none, none], Term(0)),
        MessageBody::ProposeResp { first, .. } => ([first.unwrap_or(none), none, none], Term(0)),
        MessageBody::HeartbeatResp { .. }
        | MessageBody::VoteResp { .. }
        | MessageBody::TimeoutNow
        | MessageBody::ReadIndex { .. }
        | MessageBody::Propose { .. } => ([none; 3], Term(0)),
    };
    if let Some(index) = indices.into_iter().find(|i| i.get() > MAX_INDEX) {
        return Err(StepError::IndexOutOfRange {
            from: m.from,
            index,
        });
    }
    // A pre-vote asks about the term after the candidate's own, and
    // carries that term; its last entry's term is at most the one before.
    if term > m.term {
        return Err(StepError::TermPastMessage {
            from: m.from,
            term,
            message_term: m.term,
        });
    }
    Ok(())
}

/// Checks that an append's entries follow its previous entry, as every
/// leader sends them (the log's append trusts this).
fn check_append(from: NodeId, term: Term, a: &crate::message::Append) -> Result<(), StepError> {
    let bad = |what| Err(StepError::MalformedAppend { from, what });
    let mut want = a.prev_index.get().checked_add(1);
    let mut prev_term = a.prev_term;
    for e in &a.entries {
        if Some(e.index.get()) != want {
            return bad("entry indices do not run on from prev_index + 1");
        }
        if e.term < prev_term {
            return bad("entry terms decrease");
        }
        if e.term > term {
            return bad("an entry's term is past the message's term");
        }
        want = e.index.get().checked_add(1);
        prev_term = e.term;
    }
    Ok(())
}

/// Why a campaign starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CampaignKind {
    /// A pre-vote round first (when enabled).
    PreVote,
    /// A real election.
    Election,
    /// A real election on a leadership transfer (voters ignore leases).
    Transfer,
}

/// A snapshot being received in chunks.
#[derive(Debug)]
pub(crate) struct IncomingSnapshot {
    pub(crate) meta: crate::types::SnapshotMeta,
    pub(crate) total_len: u64,
    pub(crate) data: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Raft {
    pub(crate) id: NodeId,
    pub(crate) cfg: Config,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) log: RaftLog,
    pub(crate) conf: ConfState,
    /// Configurations applied after the snapshot, with the index of the
    /// entry that made each: a snapshot at index `i` needs the one in force
    /// at `i`, not the latest.
    conf_history: Vec<(LogIndex, ConfState)>,
    /// The last index whose conf change (if any) has been applied.
    conf_applied: LogIndex,
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// The running campaign is a leadership transfer (voters ignore leases).
    pub(crate) campaign_transfer: bool,
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    randomized_timeout: u32,
    rng: SplitMix64,
    /// Messages that may leave at once.
    pub(crate) msgs: Vec<Message>,
    /// Messages that may leave only once the Ready's writes are durable.
    pub(crate) msgs_after_persist: Vec<Message>,
    pub(crate) pending_conf_index: LogIndex,
    pub(crate) lead_transferee: Option<NodeId>,
    /// Leader: the tick at which it steps down, having applied a
    /// configuration without it (see `leader_conf_changed`).
    pub(crate) retiring_at: Option<u64>,
    pub(crate) read_only: ReadOnly,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) dropped_reads: Vec<u64>,
    pub(crate) forwarding: Forwarding,
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// Ticks since the node started (for lease reads).
    pub(crate) ticks: u64,
    /// The highest term known durable here (what storage held at start,
    /// then what the application reports persisted).
    pub(crate) durable_term: Term,
    /// Leader: entries were appended since appends were last sent.
    pub(crate) needs_bcast: bool,
    /// Leader: a follower may wait for a commit index it was not told
    /// (the commit index moved, or a follower started waiting).
    pub(crate) commit_to_tell: bool,
}

impl Raft {
    pub(crate) fn new(cfg: Config, init: &InitialState) -> Raft {
        let log = RaftLog::new(init);
        let conf = match &init.snapshot {
            Some(s) => s.meta.conf_state.clone(),
            None => {
                let mut cs = ConfState::with_voters(cfg.voters.iter().copied());
                cs.learners = cfg.learners.clone();
                cs.learners.sort_unstable();
                cs
            }
        };
        let conf_applied = log.snapshot_meta_index();
        let mut raft = Raft {
            id: cfg.id,
            rng: SplitMix64::new(cfg.seed),
            term: init.hard_state.term,
            vote: init.hard_state.vote,
            role: Role::Follower,
            leader: None,
            log,
            conf,
            conf_history: Vec::new(),
            conf_applied,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            campaign_transfer: false,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: cfg.election_ticks,
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            pending_conf_index: LogIndex(0),
            lead_transferee: None,
            retiring_at: None,
            read_only: ReadOnly::new(cfg.seed),
            read_states: Vec::new(),
            dropped_reads: Vec::new(),
            forwarding: Forwarding::new(cfg.seed),
            incoming_snapshot: None,
            ticks: 0,
            durable_term: init.hard_state.term,
            needs_bcast: false,
            commit_to_tell: false,
            cfg,
        };
        raft.apply_committed_conf_changes();
        raft.reset_timers();
        raft
    }

    /// Whether this node may campaign: it votes, and is not waiting to
    /// restore a snapshot.
    pub(crate) fn promotable(&self) -> bool {
        self.conf.is_voter(self.id)
            && self
                .log
                .pending_snapshot
                .as_ref()
                .is_none_or(|p| !p.restore)
    }

    /// Queues a message carrying the current term.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    /// Queues a message. A leader's replication traffic may leave before
    /// its own writes are durable (§10.2.1 of the thesis: the leader counts
    /// itself only once durable), once its term is: a lone voter leads
    /// without asking anyone, and a crash before its term is synced could
    /// bring it back to win the same term again and send its learners
    /// other entries under the same index and term. Everything else
    /// reports state that must be durable first.
    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let immediate = self.role == Role::Leader
            && self.durable_term >= self.term
            && matches!(
                body,
                MessageBody::Append(_)
                    | MessageBody::Heartbeat { .. }
                    | MessageBody::Snapshot(_)
                    | MessageBody::TimeoutNow
                    | MessageBody::ReadIndexResp { .. }
            );
        let m = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if immediate {
            self.msgs.push(m)
        } else {
            self.msgs_after_persist.push(m)
        }
    }

    fn reset_timers(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = u64::from(self.cfg.election_ticks);
        self.randomized_timeout = self.rng.range(base, 2 * base) as u32;
    }

    /// Clears per-term state on any role change.
    fn reset(&mut self, term: Term) {
        if self.term != term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.reset_timers();
        self.votes.clear();
        self.progress.clear();
        self.lead_transferee = None;
        self.retiring_at = None;
        self.needs_bcast = false;
        self.commit_to_tell = false;
        self.fail_pending_reads();
        self.fail_forwarded_proposals();
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    pub(crate) fn become_pre_candidate(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
    }

    pub(crate) fn become_candidate(&mut self) {
        let term = self.term.next();
        self.reset(term);
        self.role = Role::Candidate;
        self.vote = Some(self.id);
    }

    pub(crate) fn become_leader(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        let next = self.log.last_index().next();
        for id in self.conf.members() {
            let learner = self.conf.is_learner(id);
            let pr = Progress::new(
                next,
                self.cfg.max_inflight_msgs,
                self.cfg.max_inflight_bytes,
                learner,
            );
            self.progress.insert(id, pr);
        }
        self.update_self_progress();
        self.pending_conf_index = self.log.last_index();
        // §8: a leader commits an entry of its own term to learn what is
        // committed; it also makes ReadIndex and conf changes safe.
        self.append_entry(EntryKind::Noop, Bytes::new());
    }

    /// Leader: its own durable log counts as its acknowledgement.
    pub(crate) fn update_self_progress(&mut self) {
        let stable = self.log.stable_index();
        if let Some(pr) = self.progress.get_mut(&self.id) {
            pr.maybe_update(stable);
            pr.heard(self.ticks);
        }
    }

    /// Leader: appends one entry of the current term and schedules
    /// replication.
    pub(crate) fn append_entry(&mut self, kind: EntryKind, data: Bytes) -> LogIndex {
        let index = self.log.last_index().next();
        let entry = crate::types::Entry {
            term: self.term,
            index,
            kind,
            data,
        };
        self.log.append([entry]);
        self.needs_bcast = true;
        index
    }

    pub(crate) fn tick(&mut self) {
        self.ticks += 1;
        self.expire_forwarded_reads();
        self.expire_forwarded_proposals();
        if self.role == Role::Leader {
            self.tick_leader()
        } else {
            self.tick_election()
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if matches!(self.role, Role::Candidate | Role::PreCandidate) {
            self.heartbeat_elapsed += 1;
            if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
                self.heartbeat_elapsed = 0;
                self.request_votes();
            }
        }
        if self.promotable() && self.election_elapsed >= self.randomized_timeout {
            self.election_elapsed = 0;
            let kind = if self.cfg.pre_vote {
                CampaignKind::PreVote
            } else {
                CampaignKind::Election
            };
            self.campaign(kind);
        }
    }

    fn tick_leader(&mut self) {
        if self.retiring_at.is_some_and(|at| self.ticks >= at) {
            let term = self.term;
            self.become_follower(term, None);
            return;
        }
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_recently_active() {
                let term = self.term;
                self.become_follower(term, None);
                return;
            }
            // A transfer that has not finished within an election timeout
            // is abandoned (§3.10), so proposals flow again.
            self.lead_transferee = None;
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
    }

    /// Leader: the members heard from within the last election timeout,
    /// itself included, in id order.
    pub(crate) fn recently_active(&self) -> Vec<NodeId> {
        let window = u64::from(self.cfg.election_ticks);
        self.progress
            .iter()
            .filter(|&(&id, pr)| {
                id == self.id || pr.heard_at.is_some_and(|t| self.ticks - t <= window)
            })
            .map(|(&id, _)| id)
            .collect()
    }

    /// Check-quorum: whether a quorum was heard from since the last check;
    /// clears the marks for the next round.
    fn quorum_recently_active(&mut self) -> bool {
        let me = self.id;
        let votes: BTreeMap<NodeId, bool> = self
            .progress
            .iter()
            .filter(|(_, pr)| !pr.learner)
            .map(|(&id, pr)| (id, id == me || pr.recent_active))
            .collect();
        for (&id, pr) in self.progress.iter_mut() {
            pr.recent_active = id == me;
        }
        crate::quorum::vote_result(&self.conf, &votes) == crate::quorum::VoteResult::Won
    }

    /// Handles one message. See the module docs for the dispatch.
    pub(crate) fn step(&mut self, m: Message) -> Result<(), StepError> {
        if m.to != self.id {
            return Err(StepError::WrongRecipient {
                to: m.to,
                me: self.id,
            });
        }
        if m.from.get() == 0 {
            return Err(StepError::ZeroSender);
        }
        if m.from == self.id {
            return Err(StepError::FromSelf { me: self.id });
        }
        check_numbers(&m)?;
        if let MessageBody::Append(a) = &m.body {
            check_append(m.from, m.term, a)?;
        }
        if m.term.get() > self.term.get().saturating_add(MAX_TERM_JUMP) {
            return Err(StepError::TermTooFar {
                from: m.from,
                term: m.term,
                ours: self.term,
            });
        }
        if m.term > self.term {
            if !self.step_higher_term(&m) {
                return Ok(());
            }
        } else if m.term < self.term {
            self.step_lower_term(&m);
            return Ok(());
        }
        self.dispatch(m)
    }

    /// A message from a newer term: adopt the term unless the message is a
    /// pre-vote (or a granted pre-vote answer), or a vote request arriving
    /// while this node still hears from a leader (check-quorum's lease,
    /// §9.6). Returns whether to go on handling the message.
    fn step_higher_term(&mut self, m: &Message) -> bool {
        if let MessageBody::Vote(req) = &m.body {
            let in_lease = self.cfg.check_quorum
                && self.leader.is_some()
                && self.election_elapsed < self.cfg.election_ticks;
            if in_lease && !req.transfer {
                return false;
            }
        }
        match &m.body {
            MessageBody::Vote(req) if req.pre => {}
            MessageBody::VoteResp {
                pre: true,
                granted: true,
            } => {}
            MessageBody::Append(_) | MessageBody::Heartbeat { .. } | MessageBody::Snapshot(_) => {
                self.become_follower(m.term, Some(m.from));
            }
            _ => self.become_follower(m.term, None),
        }
        true
    }

    /// A message from an older term is dropped, but its sender is told our
    /// term when that helps it: a stale leader (which check-quorum or
    /// pre-vote would otherwise leave stuck) and a pre-candidate.
    fn step_lower_term(&mut self, m: &Message) {
        let stale_leader = matches!(
            m.body,
            MessageBody::Append(_) | MessageBody::Heartbeat { .. }
        );
        if stale_leader && (self.cfg.check_quorum || self.cfg.pre_vote) {
            let body = MessageBody::AppendResp(crate::message::AppendResp {
                index: LogIndex(0),
                reject: None,
            });
            self.send(m.from, body);
        } else if let MessageBody::Vote(req) = &m.body
            && req.pre
        {
            self.send(
                m.from,
                MessageBody::VoteResp {
                    pre: true,
                    granted: false,
                },
            );
        }
    }

    fn dispatch(&mut self, m: Message) -> Result<(), StepError> {
        let from = m.from;
        let m_term = m.term;
        match m.body {
            MessageBody::Vote(req) => self.handle_vote_request(from, m.term, &req),
            MessageBody::VoteResp { pre, granted } => self.handle_vote_response(from, pre, granted),
            MessageBody::Append(a) => {
                self.follow(from, m.term)?;
                return self.handle_append(from, a);
            }
            MessageBody::Heartbeat { commit, read_seq } => {
                self.follow(from, m.term)?;
                self.handle_heartbeat(from, commit, read_seq);
            }
            MessageBody::Snapshot(chunk) => {
                self.follow(from, m.term)?;
                return self.handle_snapshot_chunk(from, chunk);
            }
            MessageBody::AppendResp(r) => {
                // A leader's log only grows within its term, and a follower
                // answers only appends of this term, hinting at or before
                // the index it rejects.
                let what = if self.role == Role::Leader && r.index > self.log.last_index() {
                    Some("index past this leader's last index")
                } else if r.reject.is_some_and(|h| h.index > r.index) {
                    Some("rejection hint past the rejected index")
                } else {
                    None
                };
                if let Some(what) = what {
                    return Err(StepError::MalformedAppendAnswer { from, what });
                }
                self.handle_append_resp(from, &r)
            }
            MessageBody::HeartbeatResp { read_seq } => self.handle_heartbeat_resp(from, read_seq),
            MessageBody::SnapshotResp { index, next_offset } => {
                self.handle_snapshot_resp(from, index, next_offset);
            }
            MessageBody::TimeoutNow => {
                if self.promotable() {
                    self.campaign(CampaignKind::Transfer);
                }
            }
            MessageBody::ReadIndex { ctx } => self.handle_read_index_request(from, ctx),
            MessageBody::ReadIndexResp { ctx, index } => {
                self.handle_read_index_resp(from, ctx, index)
            }
            MessageBody::Propose { ctx, commands } => self.handle_propose(from, ctx, commands),
            MessageBody::ProposeResp { ctx, first } => {
                self.handle_propose_resp(from, ctx, first, m_term)
            }
        }
        Ok(())
    }

    /// A message from this term's leader: follow it.
    fn follow(&mut self, from: NodeId, term: Term) -> Result<(), StepError> {
        match self.role {
            Role::Leader => return Err(StepError::TwoLeaders { from, term }),
            Role::Follower if self.leader == Some(from) => {}
            _ => self.become_follower(term, Some(from)),
        }
        self.election_elapsed = 0;
        Ok(())
    }

    /// Applies every committed conf change not yet applied, in log order,
    /// and lets a leader react (new progress entries, auto-leave, step down).
    pub(crate) fn apply_committed_conf_changes(&mut self) {
        while self.conf_applied < self.log.committed {
            let index = self.conf_applied.next();
            self.conf_applied = index;
            let Some(entry) = self.log.entry(index) else {
                continue;
            };
            if entry.kind != EntryKind::ConfChange {
                continue;
            }
            // A change that does not decode or apply is skipped by every node
            // alike (they all see the same bytes), so replicas stay in step.
            let Ok(cc) = ConfChange::from_bytes(&entry.data) else {
                continue;
            };
            let Ok(next) = confchange::apply(&self.conf, &cc) else {
                continue;
            };
            self.conf = next.clone();
            self.conf_history.push((index, next));
            if self.role == Role::Leader {
                self.leader_conf_changed();
            }
        }
    }

    /// The membership in force at `index` (at or after the snapshot).
    pub(crate) fn conf_at(&self, index: LogIndex) -> ConfState {
        let snapshot_conf = self.log.snapshot().map(|s| s.meta.conf_state.clone());
        self.conf_history
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, cs)| cs.clone())
            .or(snapshot_conf)
            .unwrap_or_else(|| {
                let mut cs = ConfState::with_voters(self.cfg.voters.iter().copied());
                cs.learners = self.cfg.learners.clone();
                cs.learners.sort_unstable();
                cs
            })
    }

    /// Forgets configuration history covered by a snapshot at `index`.
    pub(crate) fn prune_conf_history(&mut self, index: LogIndex) {
        let keep_from = self
            .conf_history
            .iter()
            .rposition(|(i, _)| *i <= index)
            .unwrap_or(0);
        self.conf_history.drain(..keep_from);
    }

    /// Replaces the membership after installing a snapshot.
    pub(crate) fn reset_conf(&mut self, conf: ConfState, index: LogIndex) {
        self.conf = conf;
        self.conf_history.clear();
        self.conf_applied = index;
    }

    /// Commit moved: apply conf changes, and let a leader release reads.
    pub(crate) fn commit_advanced(&mut self) {
        self.apply_committed_conf_changes();
        if self.role == Role::Leader {
            self.leader_commit_advanced();
        }
    }

    /// Asserts the invariants in the module docs.
    pub(crate) fn check(&self) {
        self.log.check();
        if self.role == Role::Leader {
            for id in self.conf.members() {
                assert!(
                    self.progress.contains_key(&id),
                    "leader {} lacks progress for {id}",
                    self.id
                );
            }
            if let Some(pr) = self.progress.get(&self.id) {
                assert!(
                    pr.matched <= self.log.stable_index(),
                    "leader counts undurable entries"
                );
            }
        } else {
            assert!(
                self.progress.is_empty(),
                "non-leader {} holds progress",
                self.id
            );
        }
    }
}
