//! Raft's safety properties checked on the hosted world after every
//! event, from what each member's core and WAL hold (the properties of
//! [`crate::invariants`], one module each, watched here):
//!
//! - the core's own invariants (`RawNode::check_invariants`);
//! - log matching (§5.3) over what each member holds *durably*: an entry
//!   written but lost in a crash before its sync, with the term it was
//!   written in, never existed for anyone else, so only the WAL's synced
//!   prefix counts;
//! - leader completeness (§5.4): a new leader holds every entry applied
//!   anywhere before its term ([`Safety::learned_in`] bounds the term an
//!   entry was committed in);
//! - monotonic commit (within an incarnation) and monotonic term (across
//!   crashes too, down to no lower than the highest term a member sent in
//!   a message other than a pre-vote's: that term was durable by then);
//! - durable commit (§5.4, §10.2.1 of the thesis): when a leader's commit
//!   index passes `i`, `i` is durable on a quorum of a configuration that
//!   may have decided it ([`super::quorum`]), checked once the ledger
//!   knows the configurations up to `i - 1`.
//!
//! Election safety and state-machine safety are the world's and the
//! chain's ([`super::machine`]).

use std::collections::{BTreeMap, BTreeSet};

use flotilla_raft::message::{MessageBody, VoteRequest};
use flotilla_raft::{LogIndex, Message, NodeId, Role, Status, Term};

use super::app::App;
use super::machine;
use super::quorum;
use super::world::World;
use crate::invariants::leader_completeness::{self, Committed};
use crate::invariants::log_matching::LogMatching;
use crate::invariants::{EntryId, Violation};

/// A commit decided by a leader, waiting for its check.
#[derive(Debug)]
struct Decided {
    index: LogIndex,
    leader: u64,
    /// The members that held `index` durably when it was decided.
    holders: Vec<NodeId>,
}

/// What the checks remember between events.
#[derive(Debug, Default)]
pub(crate) struct Safety {
    log_matching: LogMatching,
    /// Per member: the durable entries of its log already observed, from
    /// its first in-memory index on.
    durable: BTreeMap<u64, BTreeMap<LogIndex, EntryId>>,
    /// Per applied index (from 1): the term of the member that first
    /// applied it, as of the end of that pump; an upper bound of the term
    /// the entry was committed in (the member learned of the commit from
    /// a leader of that term or an earlier one).
    learned_in: Vec<Term>,
    /// Per member: the highest term seen in this incarnation, and the
    /// highest it sent in a message other than a pre-vote's.
    terms: BTreeMap<u64, (Term, Term)>,
    /// Terms whose leader was checked for completeness.
    leaders_checked: BTreeSet<Term>,
    decided: Vec<Decided>,
}

impl Safety {
    /// Member `m` sent `msg`: its term is durable at `m` from now on.
    pub(crate) fn sent(&mut self, m: u64, msg: &Message) {
        let pre = matches!(
            &msg.body,
            MessageBody::Vote(VoteRequest { pre: true, .. })
                | MessageBody::VoteResp { pre: true, .. }
        );
        if !pre {
            let terms = self.terms.entry(m).or_default();
            terms.1 = terms.1.max(msg.term);
        }
    }

    /// Member `m` crashed: a term it took but never sent may be lost.
    pub(crate) fn crashed(&mut self, m: u64) {
        if let Some(terms) = self.terms.get_mut(&m) {
            terms.0 = terms.1;
        }
    }

    /// Member `m`'s term is `term` after an event.
    fn term(&mut self, m: u64, term: Term) -> Result<(), Violation> {
        let terms = self.terms.entry(m).or_default();
        if term < terms.0 {
            return Err(Violation {
                invariant: "monotonic term",
                detail: format!("member {m} term went from {} to {term}", terms.0),
            });
        }
        terms.0 = term;
        Ok(())
    }
}

impl<A: App> World<A> {
    /// The checks of member `m` after a pump, `status` its core's.
    pub(crate) fn check_member(&mut self, m: u64, status: &Status) {
        let Some(host) = self.members[(m - 1) as usize].running() else {
            return;
        };
        host.raw().check_invariants();
        let result = self
            .safety
            .term(m, status.term)
            .and_then(|()| self.check_log_matching(m))
            .and_then(|()| {
                self.note_learned(status.term);
                self.check_new_leader(m, status)
            });
        if let Err(v) = result {
            self.fail(v.to_string());
        }
    }

    /// Log matching over the durable part of member `m`'s log: each entry
    /// not observed yet there, from the durable end down to the first one
    /// already observed (entries are replaced only as a suffix).
    fn check_log_matching(&mut self, m: u64) -> Result<(), Violation> {
        let Some(host) = self.members[(m - 1) as usize].running() else {
            return Ok(());
        };
        let raw = host.raw();
        let status = raw.status();
        let durable = host.storage().durable_index().min(status.last_index);
        let first = status.first_index.max(LogIndex(1));
        let seen = self.safety.durable.entry(m).or_default();
        seen.split_off(&durable.next());
        *seen = seen.split_off(&first);
        let mut i = durable;
        while i >= first {
            let Some(e) = raw.entry(i) else { break };
            let id = EntryId::of(e);
            if seen.get(&i) == Some(&id) {
                break;
            }
            let prev = raw.term_at(i.prev()).unwrap_or_default();
            self.safety.log_matching.observe(NodeId(m), e, prev)?;
            seen.insert(i, id);
            self.report.entries_matched += 1;
            i = i.prev();
        }
        Ok(())
    }

    /// Entries applied for the first time in this pump were committed in
    /// `term` or before.
    fn note_learned(&mut self, term: Term) {
        let ledger = machine::lock(&self.ledger);
        let applied = ledger.last_known().get();
        let learned = &mut self.safety.learned_in;
        learned.resize((applied as usize).max(learned.len()), term);
    }

    /// Leader completeness, once per term
    /// ([`crate::invariants::leader_completeness`]), against the ledger.
    fn check_new_leader(&mut self, m: u64, status: &Status) -> Result<(), Violation> {
        if status.role != Role::Leader || !self.safety.leaders_checked.insert(status.term) {
            return Ok(());
        }
        let Some(host) = self.members[(m - 1) as usize].running() else {
            return Ok(());
        };
        self.report.leaders_checked += 1;
        let ledger = machine::lock(&self.ledger);
        let from = status.first_index.max(LogIndex(1));
        let learned = &self.safety.learned_in;
        let committed: Vec<(LogIndex, Committed)> = ledger
            .entries
            .range(from..)
            .filter_map(|(&i, (term, data, _))| {
                let learned_in = *learned.get(i.get() as usize - 1)?;
                let data = data.clone();
                Some((
                    i,
                    Committed {
                        term: *term,
                        data,
                        learned_in,
                    },
                ))
            })
            .collect();
        leader_completeness::check_new_leader(host.raw(), committed.iter().map(|(i, c)| (*i, c)))
    }

    /// Member `m`, leading, decided the commit of everything up to
    /// `index`: who holds it durably now is checked against the
    /// configurations that may have decided it once the ledger knows them.
    pub(crate) fn decided(&mut self, m: u64, index: LogIndex, term: Term) {
        let holders = self
            .members
            .iter()
            .filter(|x| x.holds_durably(index, term))
            .map(|x| NodeId(x.id))
            .collect();
        self.safety.decided.push(Decided {
            index,
            leader: m,
            holders,
        });
    }

    /// Durable commit, for every decision whose configurations the
    /// ledger knows by now.
    pub(crate) fn check_decided(&mut self) {
        if self.safety.decided.is_empty() {
            return;
        }
        let ledger = machine::lock(&self.ledger);
        let known = ledger
            .entries
            .keys()
            .next_back()
            .copied()
            .unwrap_or_default();
        let (ready, waiting) = std::mem::take(&mut self.safety.decided)
            .into_iter()
            .partition(|d: &Decided| d.index.prev() <= known);
        self.safety.decided = waiting;
        let mut broken = None;
        for d in ready {
            self.report.commits_checked += 1;
            let leader = NodeId(d.leader);
            if let Some(why) =
                quorum::ack_violation(&ledger, &self.commits, d.index, &d.holders, (leader, false))
            {
                broken.get_or_insert(Violation {
                    invariant: "durable commit (§5.4)",
                    detail: format!("member {} committed {}: {why}", d.leader, d.index),
                });
            }
        }
        drop(ledger);
        if let Some(v) = broken {
            self.fail(v.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(term: u64, body: MessageBody) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(term),
            body,
        }
    }

    #[test]
    fn a_crash_may_lose_a_term_never_sent_but_not_one_sent() {
        let mut s = Safety::default();
        s.term(1, Term(3)).unwrap();
        s.sent(1, &message(3, MessageBody::HeartbeatResp { read_seq: 0 }));
        s.term(1, Term(5)).unwrap();
        assert!(s.term(1, Term(4)).is_err(), "back within an incarnation");
        s.crashed(1);
        s.term(1, Term(3)).unwrap();
        s.crashed(1);
        assert!(s.term(1, Term(2)).is_err(), "below a term it sent");
        let pre = VoteRequest {
            pre: true,
            last_index: LogIndex(0),
            last_term: Term(0),
            transfer: false,
        };
        s.sent(2, &message(9, MessageBody::Vote(pre)));
        s.term(2, Term(4)).unwrap();
        s.crashed(2);
        s.term(2, Term(1)).unwrap();
    }
}
