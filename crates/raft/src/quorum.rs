//! Quorum arithmetic over a (possibly joint) configuration: the index a
//! quorum has reached, and the outcome of a vote.
//!
//! In a joint configuration every decision needs a majority of *both*
//! halves (§6): an index is reached when both majorities reached it, a vote
//! is won when both majorities granted it, lost when either half can no
//! longer grant it.

use std::collections::BTreeMap;

use crate::types::{ConfState, NodeId};

/// The outcome of counting votes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum VoteResult {
    /// A quorum granted.
    Won,
    /// A quorum can no longer grant.
    Lost,
    /// Undecided: waiting for more answers.
    Pending,
}

/// The largest value that a majority of `ids` has reached. An empty
/// configuration places no constraint (so a joint minimum ignores it).
pub(crate) fn majority_value(ids: &[NodeId], value: impl Fn(NodeId) -> u64) -> u64 {
    if ids.is_empty() {
        return u64::MAX;
    }
    let mut values: Vec<u64> = ids.iter().map(|&id| value(id)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[ids.len() / 2]
}

/// The largest value a quorum of the whole (joint) configuration reached.
pub(crate) fn quorum_value(cs: &ConfState, value: impl Fn(NodeId) -> u64) -> u64 {
    let incoming = majority_value(&cs.voters, &value);
    let outgoing = majority_value(&cs.outgoing, &value);
    incoming.min(outgoing)
}

fn majority_vote(ids: &[NodeId], votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    if ids.is_empty() {
        return VoteResult::Won;
    }
    let granted = ids.iter().filter(|id| votes.get(id) == Some(&true)).count();
    let missing = ids.iter().filter(|id| !votes.contains_key(id)).count();
    let quorum = ids.len() / 2 + 1;
    if granted >= quorum {
        VoteResult::Won
    } else if granted + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// Counts `votes` (granted or rejected, by voter) against `cs`.
pub(crate) fn vote_result(cs: &ConfState, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    match (
        majority_vote(&cs.voters, votes),
        majority_vote(&cs.outgoing, votes),
    ) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn majority_value_is_the_median_reached_by_a_quorum() {
        let matched = |id: NodeId| [0, 5, 3, 9, 1, 7][id.get() as usize];
        assert_eq!(majority_value(&ids(&[1, 2, 3]), matched), 5);
        assert_eq!(majority_value(&ids(&[1, 2, 3, 4]), matched), 3);
        assert_eq!(majority_value(&ids(&[1, 2, 3, 4, 5]), matched), 5);
        assert_eq!(majority_value(&ids(&[4]), matched), 1);
    }

    #[test]
    fn joint_quorum_needs_both_majorities() {
        let matched = |id: NodeId| [0, 5, 5, 5, 1, 1][id.get() as usize];
        let joint = ConfState {
            voters: ids(&[3, 4, 5]),
            outgoing: ids(&[1, 2, 3]),
            learners: vec![],
        };
        assert_eq!(quorum_value(&joint, matched), 1);
        let votes: BTreeMap<NodeId, bool> =
            [(NodeId(1), true), (NodeId(2), true), (NodeId(3), true)]
                .into_iter()
                .collect();
        assert_eq!(vote_result(&joint, &votes), VoteResult::Pending);
        let mut lost = votes.clone();
        lost.insert(NodeId(4), false);
        lost.insert(NodeId(5), false);
        assert_eq!(vote_result(&joint, &lost), VoteResult::Lost);
        let mut won = votes;
        won.insert(NodeId(4), true);
        assert_eq!(vote_result(&joint, &won), VoteResult::Won);
    }
}
