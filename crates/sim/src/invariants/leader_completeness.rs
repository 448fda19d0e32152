//! Leader Completeness (§5.4, Figure 3): if an entry is committed in a
//! term, it is present in the logs of the leaders of all higher terms.
//!
//! Checked when a node becomes leader: its log must hold every entry of the
//! committed log (as observed through applications) from its first
//! in-memory index on that was committed before its term; earlier ones are
//! inside its snapshot, which only ever covers committed entries. "Before
//! its term" uses an upper bound of the entry's commit term (the term of
//! the first node seen applying it), so the check never blames a leader
//! for an entry committed in its own term or later.

use bytes::Bytes;
use flotilla_raft::{Entry, EntryKind, LogIndex, RawNode, Term};

use super::Violation;

/// One committed entry as the applications saw it: its term, its data
/// (empty for a no-op), and an upper bound of the term it was committed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The entry's term.
    pub term: Term,
    /// Its data; empty for a no-op.
    pub data: Bytes,
    /// An upper bound of the term in which it was committed.
    pub learned_in: Term,
}

/// An entry's term and data as [`Committed`] records them.
fn as_committed(e: &Entry) -> (Term, Bytes) {
    match e.kind {
        EntryKind::Command | EntryKind::ConfChange => (e.term, e.data.clone()),
        EntryKind::Noop => (e.term, Bytes::new()),
    }
}

/// Checks a newly elected leader against the committed log, given as
/// `(index, entry)` in index order.
pub fn check_new_leader<'a>(
    node: &RawNode,
    committed: impl IntoIterator<Item = (LogIndex, &'a Committed)>,
) -> Result<(), Violation> {
    let status = node.status();
    let from = status.first_index.max(LogIndex(1));
    for (i, c) in committed.into_iter().filter(|(i, _)| *i >= from) {
        // §5.4 binds the leaders of terms after the commit only: a leader
        // elected late in a term others have left (its votes were in
        // flight while a later term committed entries) may lack them.
        if c.learned_in >= status.term {
            continue;
        }
        let have = node.entry(i).map(as_committed);
        if have.as_ref() != Some(&(c.term, c.data.clone())) {
            return Err(Violation {
                invariant: "leader completeness (§5.4)",
                detail: format!(
                    "node {} leads term {} but has {have:?} at {i}, where term {} {:?} is committed",
                    status.id, status.term, c.term, c.data
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use flotilla_raft::storage::conformance::entry;
    use flotilla_raft::{Config, HardState, InitialState, NodeId};

    use super::*;

    fn committed(term: u64, index: u64, learned_in: u64) -> (LogIndex, Committed) {
        let e = entry(term, index);
        let c = Committed {
            term: e.term,
            data: e.data,
            learned_in: Term(learned_in),
        };
        (LogIndex(index), c)
    }

    /// A node in term 3 whose log holds (1, 1) and (2, 2).
    fn node() -> RawNode {
        let init = InitialState {
            hard_state: HardState {
                term: Term(3),
                vote: None,
                commit: LogIndex(0),
            },
            snapshot: None,
            entries: vec![entry(1, 1), entry(2, 2)],
        };
        RawNode::new(Config::new(NodeId(1), vec![NodeId(1)]), init).unwrap()
    }

    #[test]
    fn a_leader_must_hold_what_was_committed_before_its_term() {
        let node = node();
        let log = [committed(1, 1, 1), committed(2, 2, 2)];
        check_new_leader(&node, log.iter().map(|(i, c)| (*i, c))).unwrap();
        let other = [committed(1, 1, 1), committed(3, 2, 2)];
        let v = check_new_leader(&node, other.iter().map(|(i, c)| (*i, c))).unwrap_err();
        assert_eq!(v.invariant, "leader completeness (§5.4)");
        let beyond = [committed(1, 1, 1), committed(2, 2, 2), committed(2, 3, 2)];
        assert!(check_new_leader(&node, beyond.iter().map(|(i, c)| (*i, c))).is_err());
    }

    #[test]
    fn an_entry_committed_in_the_leader_s_term_or_later_does_not_bind_it() {
        let node = node();
        let later = [committed(1, 1, 1), committed(2, 2, 2), committed(3, 3, 3)];
        check_new_leader(&node, later.iter().map(|(i, c)| (*i, c))).unwrap();
    }
}
