//! The operator of the hosted simulation: it changes the group's
//! membership through [`flotilla_host::Host::change_membership`] at the
//! member it believes leads, following `NotLeader` hints like a client,
//! while the faults run, and stops when they stop (so the liveness phase
//! runs on the final configuration).
//!
//! What it asks for, from the configuration the target member has:
//! add a spare as a learner, promote a learner, remove a voter or a
//! learner, or replace a voter by a learner in one joint change. Rules:
//!
//! - never below 3 voters (the core refuses 0; with 3 the crash budget
//!   of one member keeps a majority, so the liveness phase can converge
//!   whatever was crashed or partitioned when the faults stopped), and
//!   never above 5;
//! - never re-add an id: a removed member shut down, and the transport
//!   refuses messages from removed ids (as `flotilla_runtime`'s does), so
//!   a spare once asked to be removed is never proposed again, whether
//!   or not that removal was committed.
//!
//! Checked on each answer: an `Ok(index)` names an entry holding the
//! very change asked for, and comes from a leader only once it has left
//! the joint configuration (the host's promise; a member that stopped
//! leading answers as soon as it applied the change).

use std::collections::BTreeSet;

use flotilla_host::NodeError;
use flotilla_raft::{ConfChange, ConfChangeOp, ConfState, Encode, LogIndex, NodeId, Role};

use super::machine;
use super::world::World;
use crate::net::MS;

/// The fewest voters the operator leaves.
pub(crate) const VOTERS_MIN: usize = 3;
/// The most voters the operator makes.
pub(crate) const VOTERS_MAX: usize = 5;

/// The operator's state.
#[derive(Debug, Default)]
pub(crate) struct Admin {
    /// The member it believes leads.
    pub(crate) target: u64,
    /// The token of its latest scheduled turn.
    pub(crate) token: u64,
    /// The change out, with its request id and deadline.
    pub(crate) pending: Option<(u64, u64, ConfChange)>,
    /// Ids it ever asked to remove: never added again.
    pub(crate) asked_removed: BTreeSet<NodeId>,
}

/// A change to ask of a group in `conf`, with `spares` never members so
/// far (and never asked removed), picked by `roll`; `None` if the roll
/// picks nothing possible.
pub(crate) fn choose_change(conf: &ConfState, spares: &[NodeId], roll: u64) -> Option<ConfChange> {
    if conf.is_joint() {
        return None;
    }
    let pick = |v: &[NodeId]| v.get((roll / 8) as usize % v.len().max(1)).copied();
    let voters = conf.voters.len();
    let ops = match roll % 8 {
        0 | 1 => vec![ConfChangeOp::AddLearner(pick(spares)?)],
        2 | 3 if voters < VOTERS_MAX => vec![ConfChangeOp::AddVoter(pick(&conf.learners)?)],
        4 | 5 if voters > VOTERS_MIN => vec![ConfChangeOp::Remove(pick(&conf.voters)?)],
        6 => vec![ConfChangeOp::Remove(pick(&conf.learners)?)],
        7 => {
            let (learner, voter) = (pick(&conf.learners)?, pick(&conf.voters)?);
            vec![ConfChangeOp::AddVoter(learner), ConfChangeOp::Remove(voter)]
        }
        _ => return None,
    };
    Some(ConfChange::new(ops))
}

impl<A: super::app::App> World<A> {
    /// The operator's turn: wait for the change out, or ask for another.
    pub(crate) fn admin_step(&mut self) {
        if let Some((request, deadline, _)) = &self.admin.pending {
            if self.now < *deadline {
                return;
            }
            if let Some(out) = self.out.get(request) {
                *out.gave_up.borrow_mut() = true;
            }
            self.admin.pending = None;
            self.admin_retarget(None);
        }
        if self.now >= self.faults_end {
            return;
        }
        self.admin_issue();
    }

    fn admin_issue(&mut self) {
        let target = self.admin.target;
        let roll = self.rng.next_u64();
        let Some(conf) = self
            .member(target)
            .host()
            .map(|h| h.raw().status().conf_state)
        else {
            self.admin_retarget(None);
            return self.admin_wake(20 * MS);
        };
        let ever = conf.members();
        let spares: Vec<NodeId> = (self.cfg.members + 1..=self.hosts())
            .map(NodeId)
            .filter(|id| !ever.contains(id) && !self.admin.asked_removed.contains(id))
            .collect();
        let Some(mut cc) = choose_change(&conf, &spares, roll) else {
            let later = self.rng.range(20 * MS, 100 * MS);
            return self.admin_wake(later);
        };
        self.app.change_context(&mut cc);
        for op in &cc.ops {
            if let ConfChangeOp::Remove(id) = op {
                self.admin.asked_removed.insert(*id);
            }
        }
        let request = self.next_request;
        self.next_request += 1;
        let waiter = self.waiter(target, request, true);
        self.admin.pending = Some((request, self.now + 1000 * MS, cc.clone()));
        self.admin_wake(1000 * MS);
        self.note(|| format!("the operator asks n{target} for {cc:?}"));
        if let Some(host) = self.member(target).host() {
            host.change_membership(&cc, waiter);
        }
        self.pump(target);
    }

    /// Checks the answer to the change `request` from member `m`, and
    /// lets the operator go on.
    pub(crate) fn admin_answer(&mut self, m: u64, request: u64, r: Result<LogIndex, NodeError>) {
        self.out.remove(&request);
        let Some((_, _, cc)) = self.admin.pending.take_if(|p| p.0 == request) else {
            return;
        };
        let next = match r {
            Ok(index) => {
                self.check_change_answer(m, index, &cc);
                self.report.membership_changes += 1;
                self.rng.range(100 * MS, 600 * MS)
            }
            Err(NodeError::NotLeader { leader_hint }) => {
                self.admin_retarget(leader_hint);
                self.rng.range(0, 5 * MS)
            }
            Err(_) => self.rng.range(20 * MS, 100 * MS),
        };
        self.admin_wake(next);
    }

    /// A test's membership change was answered: checked as the
    /// operator's are, and passed to the test.
    pub(crate) fn test_change_answer(
        &mut self,
        m: u64,
        request: u64,
        r: Result<LogIndex, NodeError>,
    ) {
        self.out.remove(&request);
        let Some(cc) = self.test_changes.remove(&request) else {
            return;
        };
        if let Ok(index) = r {
            self.check_change_answer(m, index, &cc);
        }
        let answer = r.map(super::world::Answered::Changed);
        self.test_answers.push((request, m, answer));
    }

    fn check_change_answer(&mut self, m: u64, index: LogIndex, cc: &ConfChange) {
        let held = machine::lock(&self.ledger).entries.get(&index).cloned();
        if held.as_ref().map(|(_, data, _)| data) != Some(&cc.to_bytes()) {
            self.fail(format!(
                "member {m} answered the change {cc:?} with {index}, which holds {held:?}"
            ));
        }
        let status = self.member(m).host().map(|h| h.raw().status());
        if let Some(s) = status.filter(|s| s.role == Role::Leader && s.conf_state.is_joint()) {
            self.fail(format!(
                "member {m} answered the change at {index} while it leads in the joint configuration {:?}",
                s.conf_state
            ));
        }
    }

    fn admin_retarget(&mut self, hint: Option<NodeId>) {
        let hosts = self.hosts();
        self.admin.target = match hint {
            Some(leader) if (1..=hosts).contains(&leader.get()) => leader.get(),
            _ => 1 + self.admin.target % hosts,
        };
    }

    /// Schedules the operator's next turn, which replaces any earlier one.
    pub(crate) fn admin_wake(&mut self, after: u64) {
        self.admin.token += 1;
        let token = self.admin.token;
        self.schedule(after, super::world::Event::Admin(token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn the_operator_never_goes_below_three_voters_nor_acts_while_joint() {
        let three = ConfState::with_voters(ids(&[1, 2, 3]));
        for roll in 0..64 {
            let cc = choose_change(&three, &[], roll);
            let removes = cc.iter().flat_map(|c| &c.ops);
            let removes = removes.filter(|op| matches!(op, ConfChangeOp::Remove(_)));
            assert_eq!(removes.count(), 0, "roll {roll}: {cc:?}");
        }
        let mut joint = ConfState::with_voters(ids(&[1, 2, 3, 4]));
        joint.outgoing = ids(&[1, 2, 3]);
        assert!((0..64).all(|roll| choose_change(&joint, &ids(&[5]), roll).is_none()));
    }

    #[test]
    fn the_operator_adds_spares_promotes_learners_and_replaces_voters() {
        let mut conf = ConfState::with_voters(ids(&[1, 2, 3]));
        conf.learners = ids(&[4]);
        let add = choose_change(&conf, &ids(&[5]), 0).unwrap();
        assert_eq!(add.ops, vec![ConfChangeOp::AddLearner(NodeId(5))]);
        let promote = choose_change(&conf, &[], 2).unwrap();
        assert_eq!(promote.ops, vec![ConfChangeOp::AddVoter(NodeId(4))]);
        let replace = choose_change(&conf, &[], 7).unwrap();
        assert_eq!(
            replace.ops,
            vec![
                ConfChangeOp::AddVoter(NodeId(4)),
                ConfChangeOp::Remove(NodeId(1))
            ]
        );
    }
}
