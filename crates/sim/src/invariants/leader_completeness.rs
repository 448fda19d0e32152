//! Leader Completeness (§5.4, Figure 3): if an entry is committed in a
//! term, it is present in the logs of the leaders of all higher terms.
//!
//! Checked when a node becomes leader: its log must hold every entry of the
//! committed log (as observed through applications) from its first
//! in-memory index on that was committed before its term; earlier ones are
//! inside its snapshot, which only ever covers committed entries. "Before
//! its term" uses the term in which the entry was first seen applied, an
//! upper bound of its commit term, so the check never blames a leader for
//! an entry committed in its own term or later.

use flotilla_raft::{LogIndex, RawNode, Term};

use super::state_machine::CommittedLog;
use super::{EntryId, Violation};

/// Checks a newly elected leader against the committed log.
pub fn check_new_leader(node: &RawNode, committed: &CommittedLog) -> Result<(), Violation> {
    let status = node.status();
    let mut i = status.first_index.max(LogIndex(1));
    while i <= committed.len() {
        let have = node.entry(i).map(EntryId::of);
        // §5.4 binds the leaders of terms after the commit only: a leader
        // elected late in a term others have left (its votes were in
        // flight while a later term committed entries) may lack them.
        let bound = committed.learned_in(i).unwrap_or(Term(0));
        if bound < status.term && have != committed.id(i) {
            return Err(Violation {
                invariant: "leader completeness (§5.4)",
                detail: format!(
                    "node {} leads term {} but has {have:?} at {i}, where {:?} is committed",
                    status.id,
                    status.term,
                    committed.id(i)
                ),
            });
        }
        i = i.next();
    }
    Ok(())
}
