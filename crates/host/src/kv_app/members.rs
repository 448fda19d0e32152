//! The replicated member table: every member's address, whether it votes,
//! and the ids that were removed.
//!
//! It is state-machine state, not configuration: it starts from the
//! cluster's initial member list (the same on every node, since the
//! cluster id is a hash of it) and changes only by applying committed
//! conf-change entries, whose context carries new members' addresses
//! ([`encode_context`]). Every replica applies the same entries in the
//! same order, so every replica holds the same table at the same index;
//! it is saved in the state machine's snapshot, so it survives restarts
//! and log compaction.
//!
//! Invariants: the table's `conf` is the Raft configuration in force at
//! the last applied index (it is computed by the same
//! [`flotilla_raft::confchange::apply`] the Raft core uses, and a change
//! the core skips as invalid is skipped here too); every member of `conf`
//! has an address unless its add carried none, and only members have one
//! (a removed voter keeps it until the joint configuration is left); a
//! removed id is never a member again.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use flotilla_raft::codec::{Decoder, put_bytes, put_u64};
use flotilla_raft::{ConfChange, ConfChangeOp, ConfState, Decode, DecodeError, Encode, NodeId};

/// The tag that opens a context written by [`encode_context`].
const CONTEXT_V1: u8 = 1;

/// The member table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    /// The configuration in force.
    pub conf: ConfState,
    /// Each member's `host:port`.
    pub addrs: BTreeMap<NodeId, String>,
    /// Ids removed from the cluster; they may not join again.
    pub removed: BTreeSet<NodeId>,
}

/// One member as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its id.
    pub id: NodeId,
    /// Its `host:port` (empty if unknown).
    pub addr: String,
    /// Whether it is a learner.
    pub learner: bool,
}

impl Members {
    /// The table of a cluster that started with `initial` as its voters.
    pub fn bootstrap(initial: &BTreeMap<NodeId, String>) -> Members {
        Members {
            conf: ConfState::with_voters(initial.keys().copied()),
            addrs: initial.clone(),
            removed: BTreeSet::new(),
        }
    }

    /// Every member of the configuration in force (incoming and outgoing
    /// voters, and learners), sorted by id.
    pub fn list(&self) -> Vec<MemberInfo> {
        let ids: BTreeSet<NodeId> = self.conf.members().into_iter().collect();
        ids.into_iter()
            .map(|id| MemberInfo {
                id,
                addr: self.addrs.get(&id).cloned().unwrap_or_default(),
                learner: self.conf.is_learner(id),
            })
            .collect()
    }

    /// The member that serves `addr`, if any.
    pub fn by_addr(&self, addr: &str) -> Option<NodeId> {
        self.addrs
            .iter()
            .find(|(id, a)| a.as_str() == addr && self.is_member(**id))
            .map(|(id, _)| *id)
    }

    /// Whether `id` is in the configuration in force.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.conf.members().contains(&id)
    }

    /// Applies a committed conf change, as the Raft core does; a change
    /// the core skips (invalid) leaves the table unchanged.
    pub fn apply(&mut self, cc: &ConfChange) {
        let Ok(next) = flotilla_raft::confchange::apply(&self.conf, cc) else {
            return;
        };
        let addrs = decode_context(&cc.context).unwrap_or_default();
        for op in &cc.ops {
            match *op {
                ConfChangeOp::AddVoter(id) | ConfChangeOp::AddLearner(id) => {
                    if let Some(addr) = addrs.get(&id) {
                        self.addrs.insert(id, addr.clone());
                    }
                }
                ConfChangeOp::Remove(id) => {
                    self.removed.insert(id);
                }
            }
        }
        // A removed voter keeps its address while it is in the outgoing
        // half of a joint configuration: the leader still needs its vote.
        let members = next.members();
        self.addrs.retain(|id, _| members.contains(id));
        self.conf = next;
    }

    /// Appends the table's encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.conf.encode(out);
        put_u64(out, self.addrs.len() as u64);
        for (id, addr) in &self.addrs {
            put_u64(out, id.get());
            put_bytes(out, addr.as_bytes());
        }
        put_u64(out, self.removed.len() as u64);
        for id in &self.removed {
            put_u64(out, id.get());
        }
    }

    /// Reads a table written by [`Members::encode`].
    pub fn decode(d: &mut Decoder) -> Result<Members, DecodeError> {
        let conf = ConfState::decode(d)?;
        let addrs = decode_addrs(d)?;
        let n = d.count("removed members")?;
        let mut removed = BTreeSet::new();
        for _ in 0..n {
            removed.insert(NodeId(d.u64("removed member")?));
        }
        Ok(Members {
            conf,
            addrs,
            removed,
        })
    }
}

fn decode_addrs(d: &mut Decoder) -> Result<BTreeMap<NodeId, String>, DecodeError> {
    let n = d.count("member addresses")?;
    let mut addrs = BTreeMap::new();
    for _ in 0..n {
        let id = NodeId(d.u64("member id")?);
        let offset = d.offset();
        let raw = d.bytes("member address")?;
        let addr = String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::BadTag {
            what: "member address (not UTF-8)",
            tag: 0,
            offset,
        })?;
        addrs.insert(id, addr);
    }
    Ok(addrs)
}

/// The context of a conf change that adds the members of `addrs`.
pub fn encode_context(addrs: &BTreeMap<NodeId, String>) -> Bytes {
    let mut out = vec![CONTEXT_V1];
    put_u64(&mut out, addrs.len() as u64);
    for (id, addr) in addrs {
        put_u64(&mut out, id.get());
        put_bytes(&mut out, addr.as_bytes());
    }
    Bytes::from(out)
}

/// Reads a context written by [`encode_context`] (empty: no addresses).
pub fn decode_context(context: &Bytes) -> Result<BTreeMap<NodeId, String>, DecodeError> {
    if context.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut d = Decoder::new(context.clone());
    let tag = d.u8("conf change context version")?;
    if tag != CONTEXT_V1 {
        return Err(DecodeError::BadTag {
            what: "conf change context version",
            tag: u64::from(tag),
            offset: 0,
        });
    }
    let addrs = decode_addrs(&mut d)?;
    d.finish("conf change context")?;
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initial() -> BTreeMap<NodeId, String> {
        (1..=3)
            .map(|i| (NodeId(i), format!("127.0.0.1:{}", 9000 + i)))
            .collect()
    }

    fn add(id: u64, learner: bool, addr: &str) -> ConfChange {
        let op = if learner {
            ConfChangeOp::AddLearner(NodeId(id))
        } else {
            ConfChangeOp::AddVoter(NodeId(id))
        };
        ConfChange {
            ops: vec![op],
            context: encode_context(&BTreeMap::from([(NodeId(id), addr.to_string())])),
        }
    }

    #[test]
    fn adds_promotions_and_removals_follow_the_log() {
        let mut m = Members::bootstrap(&initial());
        m.apply(&add(4, true, "127.0.0.1:9004"));
        let four = m.list().into_iter().find(|i| i.id == NodeId(4)).unwrap();
        assert!(four.learner);
        assert_eq!(four.addr, "127.0.0.1:9004");
        assert_eq!(m.by_addr("127.0.0.1:9004"), Some(NodeId(4)));
        m.apply(&ConfChange::new(vec![ConfChangeOp::AddVoter(NodeId(4))]));
        assert!(m.conf.is_joint());
        m.apply(&ConfChange::leave_joint());
        assert_eq!(m.conf.voters.len(), 4);
        assert!(m.list().iter().all(|i| !i.learner));
        m.apply(&ConfChange::new(vec![ConfChangeOp::Remove(NodeId(1))]));
        assert!(m.addrs.contains_key(&NodeId(1)), "still an outgoing voter");
        m.apply(&ConfChange::leave_joint());
        assert!(!m.is_member(NodeId(1)));
        assert!(m.removed.contains(&NodeId(1)));
        assert!(!m.addrs.contains_key(&NodeId(1)));
        assert_eq!(m.list().len(), 3);
    }

    #[test]
    fn a_change_raft_skips_is_skipped_here() {
        let mut m = Members::bootstrap(&initial());
        let before = m.clone();
        // Removing a stranger is invalid: Raft skips it, so must we.
        m.apply(&ConfChange::new(vec![ConfChangeOp::Remove(NodeId(7))]));
        assert_eq!(m, before);
        // Demoting a voter is invalid too, whatever its context says.
        m.apply(&add(2, true, "10.0.0.1:1"));
        assert_eq!(m, before);
    }

    #[test]
    fn the_table_round_trips_and_refuses_damage() {
        let mut m = Members::bootstrap(&initial());
        m.apply(&add(4, true, "127.0.0.1:9004"));
        m.apply(&ConfChange::new(vec![ConfChangeOp::Remove(NodeId(4))]));
        let mut out = Vec::new();
        m.encode(&mut out);
        let mut d = Decoder::new(Bytes::from(out.clone()));
        assert_eq!(Members::decode(&mut d).unwrap(), m);
        assert_eq!(d.remaining(), 0);
        out.truncate(out.len() - 1);
        assert!(Members::decode(&mut Decoder::new(Bytes::from(out))).is_err());
    }

    #[test]
    fn contexts_round_trip_and_bad_ones_are_errors() {
        let addrs = BTreeMap::from([(NodeId(9), "h:1".to_string())]);
        assert_eq!(decode_context(&encode_context(&addrs)).unwrap(), addrs);
        assert!(decode_context(&Bytes::new()).unwrap().is_empty());
        assert!(matches!(
            decode_context(&Bytes::from_static(&[7, 0])),
            Err(DecodeError::BadTag { tag: 7, .. })
        ));
        let mut long = encode_context(&addrs).to_vec();
        long.push(0);
        assert!(decode_context(&Bytes::from(long)).is_err());
    }
}
