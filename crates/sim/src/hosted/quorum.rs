//! The write-acknowledgement check against the configuration in force:
//! an acknowledged entry must be durable on a quorum of the
//! configuration its leader committed it under.
//!
//! The Raft core puts a conf change in force when it commits it (not
//! when it appends it), and a leader decides a commit with the
//! configuration of the changes up to its commit index at that moment;
//! so an entry just after a change may be committed together with the
//! change, under the configuration before it (this is safe: joint
//! consensus makes consecutive configurations' quorums overlap). The
//! configuration that decided index `i` is thus one of those in force
//! between the leader's commit index before the step that committed `i`
//! (its *floor*) and `i - 1`. The world watches every member's commit
//! index after each event; the first member whose commit passes `i` is
//! the leader that decided it (followers only learn commits from it), and
//! its commit index before that event is `i`'s floor.
//!
//! Invariant checked: at each acknowledgement of a write at `i`, the
//! members whose WAL holds `i` durably make a quorum (a majority of the
//! voters, and while joint a majority of the outgoing voters too) of
//! some configuration in force between `i`'s floor and `i - 1`, as the
//! ledger builds them from the applied conf changes, of which the member
//! that acknowledges is a member (its leader, or a voter or learner that
//! forwarded the write to the leader and answers once it applied it). Members removed or not yet added count in no
//! such configuration; a member removed answers no write decided after
//! its removal was in force. (A leader whose removal commits together
//! with later entries applies the removal and then acknowledges them:
//! they were decided under the joint configuration it still led, so
//! the acknowledgement is true, and allowed.)

use std::collections::BTreeMap;

use flotilla_raft::{ConfState, LogIndex, NodeId};

use super::ledger::{Ledger, is_quorum};

/// Every member's commit index as last seen, and each index's floor.
#[derive(Debug, Default)]
pub(crate) struct CommitWatch {
    /// Per member (by id), its commit index after its last event.
    seen: BTreeMap<u64, LogIndex>,
    /// The highest commit index any member reached.
    max: LogIndex,
    /// Per committed index: the deciding leader's commit index before
    /// the event that committed it.
    floor: BTreeMap<LogIndex, LogIndex>,
}

impl CommitWatch {
    /// Member `m`'s commit index is `commit` after an event.
    pub(crate) fn observe(&mut self, m: u64, commit: LogIndex) {
        let before = self.seen.insert(m, commit).unwrap_or_default();
        let mut i = self.max.next();
        while i <= commit {
            self.floor.insert(i, before.min(i));
            i = i.next();
        }
        self.max = self.max.max(commit);
    }

    /// Member `m`'s commit index as last seen.
    pub(crate) fn seen(&self, m: u64) -> LogIndex {
        self.seen.get(&m).copied().unwrap_or_default()
    }

    /// The highest commit index any member reached.
    pub(crate) fn max(&self) -> LogIndex {
        self.max
    }

    /// Member `m` (re)started with the commit index its disk held.
    pub(crate) fn started(&mut self, m: u64, commit: LogIndex) {
        self.seen.insert(m, commit);
    }

    /// The floor of `index`, once some member committed it.
    pub(crate) fn floor(&self, index: LogIndex) -> Option<LogIndex> {
        self.floor.get(&index).copied()
    }
}

/// Why the write at `index`, durable on `holders`, may not be
/// acknowledged by member `acker`; `None` if a configuration that may
/// have decided it has `holders` as a quorum and, when `member` is set,
/// `acker` as a member (the leader that decided it, or a member that
/// forwarded the write to it; a member removed before the decision no
/// longer answers for the group). A leader deciding a commit needs no
/// membership: one that applied its own removal leads on for an election
/// timeout (to tell the rest the removal committed) and may decide, by
/// the new configuration's quorum, the entries it appended before.
pub(crate) fn ack_violation(
    ledger: &Ledger,
    watch: &CommitWatch,
    index: LogIndex,
    holders: &[NodeId],
    (acker, member): (NodeId, bool),
) -> Option<String> {
    let Some(floor) = watch.floor(index) else {
        return Some(format!("no member was seen committing {index}"));
    };
    let last = LogIndex(index.get().saturating_sub(1));
    let confs = ledger.confs_between(floor.min(last), last);
    let deciding =
        |cs: &&ConfState| (!member || cs.members().contains(&acker)) && is_quorum(cs, holders);
    if confs.iter().any(deciding) {
        return None;
    }
    Some(format!(
        "durable on {holders:?}, not a quorum{} in any configuration in force from {floor} to {last}: {confs:?}",
        if member {
            format!(" with {acker} a member")
        } else {
            String::new()
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_member_past_an_index_sets_its_floor() {
        let mut w = CommitWatch::default();
        w.observe(1, LogIndex(3));
        w.observe(1, LogIndex(7));
        w.observe(2, LogIndex(7));
        assert_eq!(w.floor(LogIndex(2)), Some(LogIndex(0)));
        assert_eq!(w.floor(LogIndex(5)), Some(LogIndex(3)));
        assert_eq!(w.floor(LogIndex(8)), None);
        w.started(1, LogIndex(2));
        w.observe(1, LogIndex(9));
        assert_eq!(w.floor(LogIndex(8)), Some(LogIndex(2)));
    }
}
