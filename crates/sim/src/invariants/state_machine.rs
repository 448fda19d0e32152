//! State Machine Safety (§5.4.3, Figure 3): if a node has applied an entry
//! at an index, no other node ever applies a different entry at that index.
//! Also: entries are applied in order, each exactly at last-applied + 1.
//!
//! The first application of each index anywhere fixes the *committed log*;
//! every later application must match it. A digest chain over it lets a
//! node that restores a snapshot prove its state equals the committed
//! prefix without storing the prefix.

use flotilla_raft::{Entry, LogIndex, NodeId, Term};

use super::{EntryId, Violation, chain_digest};

/// The committed log as observed through applications.
#[derive(Debug, Default)]
pub struct CommittedLog {
    ids: Vec<EntryId>,
    digests: Vec<u64>,
    commands: Vec<Option<bytes::Bytes>>,
    /// Per index, the term of the first node seen applying it: an upper
    /// bound of the term in which it was committed (the applier learned of
    /// the commit from a leader of that term or a later one).
    learned_in: Vec<Term>,
}

impl CommittedLog {
    /// The highest index applied anywhere.
    pub fn len(&self) -> LogIndex {
        LogIndex(self.ids.len() as u64)
    }

    /// Whether nothing was applied yet.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The committed entry at `index`.
    pub fn id(&self, index: LogIndex) -> Option<EntryId> {
        self.ids
            .get((index.get() as usize).checked_sub(1)?)
            .copied()
    }

    /// An upper bound of the term in which the entry at `index` was
    /// committed (see the field).
    pub fn learned_in(&self, index: LogIndex) -> Option<Term> {
        self.learned_in
            .get((index.get() as usize).checked_sub(1)?)
            .copied()
    }

    /// The command committed at `index` (`None` for a no-op or conf change,
    /// or if unknown).
    pub fn command(&self, index: LogIndex) -> Option<&bytes::Bytes> {
        self.commands
            .get((index.get() as usize).checked_sub(1)?)?
            .as_ref()
    }

    /// The digest of entries `1..=index` (0 for index 0).
    pub fn digest(&self, index: LogIndex) -> Option<u64> {
        match index.get() {
            0 => Some(0),
            i => self.digests.get(i as usize - 1).copied(),
        }
    }

    /// Records that `node`, in `term`, whose state machine digest is
    /// `digest` after `last_applied`, applies `e`. Returns the new digest.
    pub fn observe_apply(
        &mut self,
        (node, term): (NodeId, Term),
        last_applied: LogIndex,
        digest: u64,
        e: &Entry,
    ) -> Result<u64, Violation> {
        if e.index != last_applied.next() {
            return Err(Violation {
                invariant: "apply order",
                detail: format!("node {node} applied {} right after {last_applied}", e.index),
            });
        }
        let id = EntryId::of(e);
        let next = chain_digest(digest, &id);
        let k = e.index.get() as usize;
        if k <= self.ids.len() {
            if self.ids[k - 1] != id {
                return Err(Violation {
                    invariant: "state machine safety (§5.4.3)",
                    detail: format!(
                        "node {node} applied {e:?} ({id:?}) at {} where {:?} was applied",
                        e.index,
                        self.ids[k - 1]
                    ),
                });
            }
        } else if k == self.ids.len() + 1 {
            self.ids.push(id);
            self.digests.push(next);
            let cmd = (e.kind == flotilla_raft::EntryKind::Command).then(|| e.data.clone());
            self.commands.push(cmd);
            self.learned_in.push(term);
        } else {
            return Err(Violation {
                invariant: "state machine safety (§5.4.3)",
                detail: format!(
                    "node {node} applied {} before anyone applied {}",
                    e.index,
                    k - 1
                ),
            });
        }
        Ok(next)
    }

    /// Checks a restored snapshot state: digest `digest` at `index`.
    pub fn check_restore(
        &self,
        node: NodeId,
        index: LogIndex,
        digest: u64,
    ) -> Result<(), Violation> {
        match self.digest(index) {
            Some(d) if d == digest => Ok(()),
            expected => Err(Violation {
                invariant: "state machine safety (§5.4.3, snapshot)",
                detail: format!(
                    "node {node} restored a snapshot at {index} with digest {digest:x}, \
                     committed log digest there is {expected:x?}"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use flotilla_raft::storage::conformance::entry;

    use super::*;

    #[test]
    fn different_entries_at_one_index_are_a_violation() {
        let mut c = CommittedLog::default();
        let d1 = c
            .observe_apply((NodeId(1), Term(1)), LogIndex(0), 0, &entry(1, 1))
            .unwrap();
        let d2 = c
            .observe_apply((NodeId(2), Term(1)), LogIndex(0), 0, &entry(1, 1))
            .unwrap();
        assert_eq!(d1, d2);
        assert!(
            c.observe_apply((NodeId(3), Term(1)), LogIndex(0), 0, &entry(2, 1))
                .is_err()
        );
        assert!(
            c.observe_apply((NodeId(1), Term(1)), LogIndex(1), d1, &entry(1, 3))
                .is_err(),
            "gap"
        );
        assert!(c.check_restore(NodeId(4), LogIndex(1), d1).is_ok());
        assert!(c.check_restore(NodeId(4), LogIndex(1), d1 ^ 1).is_err());
    }
}
