//! Leader Completeness (§5.4, Figure 3): if an entry is committed in a
//! term, it is present in the logs of the leaders of all higher terms.
//!
//! Checked when a node becomes leader: its log must hold every entry of the
//! committed log (as observed through applications) from its first
//! in-memory index on; earlier ones are inside its snapshot, which only
//! ever covers committed entries.

use flotilla_raft::{LogIndex, RawNode};

use super::state_machine::CommittedLog;
use super::{EntryId, Violation};

/// Checks a newly elected leader against the committed log.
pub fn check_new_leader(node: &RawNode, committed: &CommittedLog) -> Result<(), Violation> {
    let status = node.status();
    let mut i = status.first_index.max(LogIndex(1));
    while i <= committed.len() {
        let have = node.entry(i).map(EntryId::of);
        if have != committed.id(i) {
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
