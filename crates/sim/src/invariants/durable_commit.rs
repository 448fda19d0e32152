//! Durable commit (§5.4, §10.2.1 of the thesis): an entry is handed out to
//! be applied only once it is durable on a majority of the voters (of both
//! halves while joint) of a membership that could have committed it,
//! counting none of the writes of the Ready that hands it out.
//!
//! A membership change takes effect when committed, so the entries of one
//! Ready may have been committed under the membership before its first
//! entry or under one that a change among them brought in: any of those
//! majorities will do.
//!
//! This is what lets the production driver apply committed entries and
//! answer their clients while the same Ready's new writes are still being
//! synced: whatever it answers would survive the crash of every member
//! outside that majority, this one included.

use flotilla_raft::{ConfState, Entry, NodeId};

use super::Violation;
use crate::disk::SimDisk;

/// Checks that `last`, the last committed entry of a Ready of `node`, is
/// durable on a majority of one of `confs` (the memberships that may have
/// committed it). `disk(id)` gives a member's disk (`None` for an id the
/// simulation does not know).
pub fn check<'a>(
    node: NodeId,
    last: &Entry,
    confs: &[ConfState],
    disk: impl Fn(NodeId) -> Option<&'a SimDisk>,
) -> Result<(), Violation> {
    let holds = |v: &NodeId| disk(*v).is_some_and(|d| d.durably_holds(last.index, last.term));
    let majority = |voters: &[NodeId]| {
        voters.is_empty() || voters.iter().filter(|v| holds(v)).count() * 2 > voters.len()
    };
    if confs
        .iter()
        .any(|c| majority(&c.voters) && majority(&c.outgoing))
    {
        return Ok(());
    }
    let holding: Vec<NodeId> = confs
        .iter()
        .flat_map(|c| c.voters.iter().chain(&c.outgoing))
        .filter(|v| holds(v))
        .copied()
        .collect();
    Err(Violation {
        invariant: "durable commit (§5.4)",
        detail: format!(
            "node {node} would apply {} (term {}) while only {holding:?} hold it durably, \
             no majority of any of {confs:?}",
            last.index, last.term
        ),
    })
}

#[cfg(test)]
mod tests {
    use flotilla_raft::{EntryKind, LogIndex, Storage, Term};

    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(1),
            kind: EntryKind::Command,
            data: bytes::Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn an_entry_synced_on_a_minority_is_not_durably_committed() {
        let mut disks = vec![SimDisk::new(), SimDisk::new(), SimDisk::new()];
        for d in &mut disks {
            d.append(&[entry(1)]).unwrap();
        }
        disks[0].sync().unwrap();
        let conf = ConfState::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
        let disk = |id: NodeId| disks.get(id.get() as usize - 1);
        assert!(check(NodeId(1), &entry(1), std::slice::from_ref(&conf), disk).is_err());
        disks[2].sync().unwrap();
        let disk = |id: NodeId| disks.get(id.get() as usize - 1);
        check(NodeId(1), &entry(1), &[conf], disk).unwrap();
    }
}
