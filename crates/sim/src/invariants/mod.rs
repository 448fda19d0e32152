//! Raft's safety properties as executable checks, one module per property
//! (openraft's `invariants/` idea), run by the simulator after every step.
//! A broken property becomes a [`Violation`] naming the property, the paper
//! section, the virtual time and what was seen.

pub mod durable_commit;
pub mod election_safety;
pub mod leader_completeness;
pub mod log_matching;
pub mod state_machine;

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

    /// A number that changes when any field does (for digests).
    pub fn fingerprint(&self) -> u64 {
        let kind = match self.kind {
            EntryKind::Noop => 1,
            EntryKind::Command => 2,
            EntryKind::ConfChange => 3,
        };
        self.hash ^ self.term.get().rotate_left(32) ^ kind
    }
}

/// Extends a state-machine digest by one applied entry: the digest at index
/// `k` fixes the whole sequence of entries `1..=k`.
pub fn chain_digest(prev: u64, id: &EntryId) -> u64 {
    let x = prev.rotate_left(5) ^ id.fingerprint();
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (x >> 29)
}
