//! The hosted simulation's record of the one history: every entry the
//! members applied, index by index, as the first to apply it recorded,
//! and the group's configuration at every index, built from the
//! conf-change entries in that history exactly as the Raft core builds
//! its own (`flotilla_raft::confchange::apply`, a change that does not
//! decode or apply is skipped by every member alike).
//!
//! Invariants: `entries` holds every index up to the highest any member
//! applied (a snapshot is only ever taken of applied entries); `confs`
//! holds the configuration after each conf change in `entries`, so
//! [`Ledger::conf_at`] is the configuration every member must see at
//! that index once it has applied it. The first rule broken is kept in
//! `violation` for the world to report.

use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_raft::{ConfChange, ConfState, Decode, LogIndex, NodeId, Term};

/// What every member applied, and the first disagreement seen.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Per index: the term and data of the entry, and the digest after it.
    pub entries: BTreeMap<LogIndex, (Term, Bytes, u64)>,
    /// The configuration at bootstrap (index 0).
    pub initial: ConfState,
    /// The configuration after each conf change, by the change's index.
    pub confs: BTreeMap<LogIndex, ConfState>,
    /// Per member: the index of its own removal, as it first applied it.
    pub removed_at: BTreeMap<u64, LogIndex>,
    /// The first rule broken, if any.
    pub violation: Option<String>,
}

impl Ledger {
    /// A ledger for a group whose bootstrap voters are `1..=voters`.
    pub fn new(voters: u64) -> Ledger {
        Ledger {
            initial: ConfState::with_voters((1..=voters).map(NodeId)),
            ..Ledger::default()
        }
    }

    /// Keeps the first rule broken.
    pub(crate) fn violate(&mut self, what: String) {
        self.violation.get_or_insert(what);
    }

    /// The highest index any member applied: the ledger knows entries and
    /// configurations up to it (0 before any).
    pub fn last_known(&self) -> LogIndex {
        self.entries.keys().next_back().copied().unwrap_or_default()
    }

    /// The configuration in force once every entry up to `index` applied.
    pub fn conf_at(&self, index: LogIndex) -> &ConfState {
        self.confs
            .range(..=index)
            .next_back()
            .map_or(&self.initial, |(_, cs)| cs)
    }

    /// Every configuration in force at some index in `from..=to`, oldest
    /// first: the one at `from`, then each change's after it.
    pub fn confs_between(&self, from: LogIndex, to: LogIndex) -> Vec<&ConfState> {
        let mut all = vec![self.conf_at(from)];
        if from < to {
            all.extend(self.confs.range(from.next()..=to).map(|(_, cs)| cs));
        }
        all
    }

    /// The configuration the conf-change entry `data` at `index` leads to
    /// from the one before it (`None`: skipped, as the core skips it).
    pub fn next_conf(before: &ConfState, data: &Bytes) -> Option<ConfState> {
        let cc = ConfChange::from_bytes(data).ok()?;
        flotilla_raft::confchange::apply(before, &cc).ok()
    }

    /// Member `member` computed `conf` at the conf change at `index`:
    /// the first to apply it records it, the others must agree.
    pub(crate) fn record_conf(&mut self, member: u64, index: LogIndex, conf: &ConfState) {
        match self.confs.get(&index) {
            Some(known) if known != conf => {
                let what = format!(
                    "member {member} has configuration {conf:?} at {index}, another member {known:?}"
                );
                self.violate(what);
            }
            Some(_) => {}
            None => {
                self.confs.insert(index, conf.clone());
            }
        }
    }
}

/// Whether the members in `holders` make a quorum of `conf`: a majority
/// of its voters and, while joint, a majority of its outgoing voters too
/// (§6: decisions of C_old,new need both).
pub fn is_quorum(conf: &ConfState, holders: &[NodeId]) -> bool {
    let majority = |voters: &[NodeId]| {
        let held = voters.iter().filter(|v| holders.contains(v)).count();
        held > voters.len() / 2
    };
    majority(&conf.voters) && (conf.outgoing.is_empty() || majority(&conf.outgoing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_raft::{ConfChangeOp, Encode};

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn a_joint_quorum_needs_a_majority_of_both_halves() {
        let joint = ConfState {
            voters: ids(&[1, 2, 4]),
            outgoing: ids(&[1, 2, 3]),
            learners: Vec::new(),
        };
        assert!(is_quorum(&joint, &ids(&[1, 2])));
        assert!(!is_quorum(&joint, &ids(&[1, 4])), "1 of 3 outgoing");
        assert!(!is_quorum(&joint, &ids(&[2, 3])), "1 of 3 incoming");
        assert!(is_quorum(&joint, &ids(&[2, 3, 4])));
    }

    #[test]
    fn the_configuration_at_an_index_is_the_last_change_at_or_before_it() {
        let mut ledger = Ledger::new(3);
        let add = ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(4))]).to_bytes();
        let next = Ledger::next_conf(&ledger.initial, &add).unwrap();
        ledger.record_conf(1, LogIndex(5), &next);
        assert_eq!(ledger.conf_at(LogIndex(4)).learners, Vec::<NodeId>::new());
        assert_eq!(ledger.conf_at(LogIndex(5)).learners, ids(&[4]));
        assert_eq!(ledger.confs_between(LogIndex(3), LogIndex(9)).len(), 2);
        assert_eq!(ledger.confs_between(LogIndex(5), LogIndex(9)).len(), 1);
        ledger.record_conf(2, LogIndex(5), &ledger.initial.clone());
        assert!(ledger.violation.is_some(), "members disagree at 5");
    }
}
