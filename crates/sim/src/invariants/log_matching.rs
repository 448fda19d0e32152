//! Log Matching (§5.3, Figure 3): if two logs contain an entry with the
//! same index and term, the logs are identical in all entries up through
//! that index.
//!
//! Checked by induction as entries are written: every `(index, term)` ever
//! written anywhere is recorded with its payload hash and the term of the
//! entry before it. Two writes of the same `(index, term)` must agree on
//! both; by induction on the index, equal `(index, term)` pairs then imply
//! equal prefixes.

use std::collections::BTreeMap;

use flotilla_raft::{Entry, LogIndex, NodeId, Term};

use super::{EntryId, Violation};

/// What was written at each `(index, term)`.
#[derive(Debug, Default)]
pub struct LogMatching {
    seen: BTreeMap<(LogIndex, Term), (EntryId, Term)>,
}

impl LogMatching {
    /// Records entry `e`, written by `node` after an entry of `prev_term`.
    pub fn observe(&mut self, node: NodeId, e: &Entry, prev_term: Term) -> Result<(), Violation> {
        let id = EntryId::of(e);
        match self.seen.get(&(e.index, e.term)) {
            Some(&(other, other_prev)) if other != id || other_prev != prev_term => {
                Err(Violation {
                    invariant: "log matching (§5.3)",
                    detail: format!(
                        "node {node} wrote {e:?} ({id:?}, previous term {prev_term}) where another node \
                     has {other:?} with previous term {other_prev}"
                    ),
                })
            }
            Some(_) => Ok(()),
            None => {
                self.seen.insert((e.index, e.term), (id, prev_term));
                Ok(())
            }
        }
    }

    /// Forgets entries at or below `index` (all nodes have compacted them).
    pub fn forget_through(&mut self, index: LogIndex) {
        self.seen = self.seen.split_off(&(index.next(), Term(0)));
    }
}
