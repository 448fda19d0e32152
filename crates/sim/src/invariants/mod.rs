//! Raft's safety properties as executable checks (openraft's
//! `invariants/` idea), run by the hosted world after every event. A
//! broken property becomes a [`Violation`] naming the property, the paper
//! section, the virtual time and what was seen.
//!
//! One module per property here; the properties whose checks need the
//! hosted world's own records live beside them: state-machine safety and
//! in-order application in `hosted::machine` (the ledger every member's
//! chain records into), durable commit in `hosted::quorum`, monotonic
//! term and commit in `hosted::safety`, linearizable reads in
//! `hosted::clients`.

pub mod election_safety;
pub mod leader_completeness;
pub mod log_matching;

use std::fmt;

use flotilla_raft::{Entry, EntryKind, Term};

/// A broken safety property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which property (with its paper section).
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.invariant, self.detail)
    }
}

/// An entry's identity: its term, kind and a hash of its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId {
    /// The entry's term.
    pub term: Term,
    /// What it carries.
    pub kind: EntryKind,
    /// FNV-1a 64 of the payload.
    pub hash: u64,
}

/// FNV-1a, 64-bit: a stable hash (unlike std's, which is seeded per process).
pub fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl EntryId {
    /// The identity of `e`.
    pub fn of(e: &Entry) -> EntryId {
        EntryId {
            term: e.term,
            kind: e.kind,
            hash: fnv1a64(&e.data),
        }
    }
}
