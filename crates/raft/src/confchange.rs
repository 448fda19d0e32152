//! Membership changes: what a conf-change entry asks for, and how it turns
//! one [`ConfState`] into the next.
//!
//! Changes that alter the voters always go through joint consensus (§6 of
//! the paper, §4.3 of the thesis): the entry moves the group to a joint
//! configuration (old voters as `outgoing`, new voters as `voters`), and the
//! leader proposes an empty change to leave it once that entry is committed.
//! Changes that only add or remove learners need no quorum overlap argument
//! and take effect directly. Joint consensus, rather than one-server-at-a-time
//! changes, is chosen because it allows any change (replacing a node in one
//! step, or several), and because its safety does not hinge on the subtle
//! "commit an entry in the new term before a change" rule; we apply that rule
//! as well (see `Raft::propose_conf_change`) since it costs nothing.
//!
//! Invariants of the result (checked by [`apply`]): the incoming voters are
//! not empty, no node is both voter and learner, lists are sorted.

use bytes::Bytes;
use thiserror::Error;

use crate::types::{ConfState, NodeId};

/// One membership edit.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ConfChangeOp {
    /// Make `node` a voter (adding it, or promoting a learner).
    AddVoter(NodeId),
    /// Add `node` as a learner (it must not already vote).
    AddLearner(NodeId),
    /// Remove `node` entirely.
    Remove(NodeId),
}

/// The payload of a conf-change entry: a list of edits applied together,
/// or an empty list, which means "leave the joint configuration".
#[derive(Clone, PartialEq, Eq, Debug, Default, Hash)]
pub struct ConfChange {
    /// The edits, in order.
    pub ops: Vec<ConfChangeOp>,
    /// Opaque to Raft: what the application needs to know about the change
    /// (etcd's `ConfChange.Context`; Flotilla puts new members' addresses
    /// here so that every replica learns them from the same entry).
    pub context: Bytes,
}

impl ConfChange {
    /// The change that leaves a joint configuration.
    pub fn leave_joint() -> ConfChange {
        ConfChange::default()
    }

    /// The change made of `ops`, with no context.
    pub fn new(ops: Vec<ConfChangeOp>) -> ConfChange {
        ConfChange {
            ops,
            context: Bytes::new(),
        }
    }

    /// Whether this is the leave-joint change.
    pub fn is_leave_joint(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Why a membership change cannot be applied.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum ConfChangeError {
    /// Node id 0 is reserved.
    #[error("node id 0 is not a valid member id")]
    ZeroId,
    /// A change was proposed while a joint configuration is still in force.
    #[error("the group is in a joint configuration; it must leave it before another change")]
    InJoint,
    /// A leave-joint change arrived outside a joint configuration.
    #[error("the group is not in a joint configuration, there is nothing to leave")]
    NotJoint,
    /// Demoting a voter straight to learner is not supported.
    #[error("node {0} is a voter; remove it before adding it back as a learner")]
    DemoteVoter(NodeId),
    /// Removing a node that is not a member.
    #[error("node {0} is not a member of the group")]
    NotMember(NodeId),
    /// The change would leave the group without voters.
    #[error("the change would leave no voters")]
    NoVoters,
}

/// Applies `cc` to `cs`, returning the next configuration.
pub fn apply(cs: &ConfState, cc: &ConfChange) -> Result<ConfState, ConfChangeError> {
    if cc.is_leave_joint() {
        if !cs.is_joint() {
            return Err(ConfChangeError::NotJoint);
        }
        return Ok(ConfState {
            voters: cs.voters.clone(),
            outgoing: Vec::new(),
            learners: cs.learners.clone(),
        });
    }
    if cs.is_joint() {
        return Err(ConfChangeError::InJoint);
    }
    let mut voters = cs.voters.clone();
    let mut learners = cs.learners.clone();
    for op in &cc.ops {
        match *op {
            ConfChangeOp::AddVoter(id) => {
                check_id(id)?;
                learners.retain(|&l| l != id);
                if !voters.contains(&id) {
                    voters.push(id);
                }
            }
            ConfChangeOp::AddLearner(id) => {
                check_id(id)?;
                if voters.contains(&id) {
                    return Err(ConfChangeError::DemoteVoter(id));
                }
                if !learners.contains(&id) {
                    learners.push(id);
                }
            }
            ConfChangeOp::Remove(id) => {
                let before = voters.len() + learners.len();
                voters.retain(|&v| v != id);
                learners.retain(|&l| l != id);
                if voters.len() + learners.len() == before {
                    return Err(ConfChangeError::NotMember(id));
                }
            }
        }
    }
    if voters.is_empty() {
        return Err(ConfChangeError::NoVoters);
    }
    voters.sort_unstable();
    learners.sort_unstable();
    let outgoing = if voters == cs.voters {
        Vec::new()
    } else {
        cs.voters.clone()
    };
    Ok(ConfState {
        voters,
        outgoing,
        learners,
    })
}

fn check_id(id: NodeId) -> Result<(), ConfChangeError> {
    if id.get() == 0 {
        Err(ConfChangeError::ZeroId)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn voter_changes_enter_joint_and_leave_it() {
        let cs = ConfState::with_voters(ids(&[1, 2, 3]));
        let cc = ConfChange::new(vec![ConfChangeOp::AddVoter(NodeId(4))]);
        let joint = apply(&cs, &cc).unwrap();
        assert_eq!(joint.voters, ids(&[1, 2, 3, 4]));
        assert_eq!(joint.outgoing, ids(&[1, 2, 3]));
        assert_eq!(apply(&joint, &cc), Err(ConfChangeError::InJoint));
        let left = apply(&joint, &ConfChange::leave_joint()).unwrap();
        assert_eq!(left, ConfState::with_voters(ids(&[1, 2, 3, 4])));
    }

    #[test]
    fn learner_changes_apply_directly_and_promotion_is_a_voter_change() {
        let cs = ConfState::with_voters(ids(&[1, 2, 3]));
        let with_learner = apply(
            &cs,
            &ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(9))]),
        )
        .unwrap();
        assert!(!with_learner.is_joint());
        assert_eq!(with_learner.learners, ids(&[9]));
        let promoted = apply(
            &with_learner,
            &ConfChange::new(vec![ConfChangeOp::AddVoter(NodeId(9))]),
        )
        .unwrap();
        assert!(promoted.is_joint());
        assert!(promoted.learners.is_empty());
    }

    #[test]
    fn invalid_changes_are_refused_with_a_reason() {
        let cs = ConfState::with_voters(ids(&[1]));
        let remove_last = ConfChange::new(vec![ConfChangeOp::Remove(NodeId(1))]);
        assert_eq!(apply(&cs, &remove_last), Err(ConfChangeError::NoVoters));
        let remove_stranger = ConfChange::new(vec![ConfChangeOp::Remove(NodeId(7))]);
        assert_eq!(
            apply(&cs, &remove_stranger),
            Err(ConfChangeError::NotMember(NodeId(7)))
        );
        let demote = ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(1))]);
        assert_eq!(
            apply(&cs, &demote),
            Err(ConfChangeError::DemoteVoter(NodeId(1)))
        );
        assert_eq!(
            apply(&cs, &ConfChange::leave_joint()),
            Err(ConfChangeError::NotJoint)
        );
    }
}
