//! The vocabulary of the core: node ids, terms, log indexes, entries, the
//! hard state and the membership (configuration) state.
//!
//! Invariants carried by these types:
//! - `LogIndex(0)` and `Term(0)` mean "before the first entry": the first real
//!   entry has index 1 and term ≥ 1.
//! - A [`ConfState`] lists each node at most once: a voter is never also a
//!   learner, and its lists are sorted (so equal configurations compare equal).

use std::fmt;

use bytes::Bytes;

macro_rules! newtype_u64 {
    ($(#[$doc:meta])* $name:ident, $fmt:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.0)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                Self(v)
            }
        }
    };
}

newtype_u64!(
    /// A node's identity within a Raft group. Ids are chosen by the
    /// application; `NodeId(0)` is not a valid member id.
    NodeId,
    "{}"
);
newtype_u64!(
    /// A Raft term (§5.1): a logical clock that only grows.
    Term,
    "{}"
);
newtype_u64!(
    /// The position of an entry in the log; the first entry is at 1.
    LogIndex,
    "{}"
);

impl LogIndex {
    /// The index after this one.
    pub const fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one (saturating at 0).
    pub const fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// This index moved forward by `n`.
    pub const fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0 + n)
    }
}

impl Term {
    /// The term after this one.
    pub const fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

/// What an entry carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum EntryKind {
    /// The empty entry a new leader appends to commit its predecessors'
    /// entries (§5.4.2, §8). Applications skip it.
    Noop,
    /// An application command.
    Command,
    /// A membership change: `data` is an encoded [`crate::ConfChange`].
    ConfChange,
}

/// One log entry.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The term in which a leader created it.
    pub term: Term,
    /// Its position in the log.
    pub index: LogIndex,
    /// What `data` means.
    pub kind: EntryKind,
    /// The payload (empty for a no-op).
    pub data: Bytes,
}

impl Entry {
    /// The bytes this entry costs in flow control (payload plus a fixed
    /// overhead), used for message and in-flight limits.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + 16
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.term, self.index)?;
        match self.kind {
            EntryKind::Noop => write!(f, " noop"),
            EntryKind::ConfChange => write!(f, " conf({}B)", self.data.len()),
            EntryKind::Command => write!(f, " {}B", self.data.len()),
        }
    }
}

/// The state Raft must persist before it answers any message (Figure 2's
/// "persistent state on all servers", plus the commit index so a restart can
/// re-apply without waiting for the leader).
///
/// Durability contract: `term` and `vote` must be durable before any message
/// that reports them leaves the node (a vote grant, or any message of a new
/// term); `commit` may lag on disk, since losing it only delays re-application.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Hash)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index this node knows to be committed.
    pub commit: LogIndex,
}

/// Group membership: who votes and who only receives the log.
///
/// In a joint configuration (§6, joint consensus), `outgoing` is non-empty
/// and decisions need a majority of `voters` *and* a majority of `outgoing`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Hash)]
pub struct ConfState {
    /// The voters of the (incoming) configuration, sorted.
    pub voters: Vec<NodeId>,
    /// The voters of the outgoing configuration while joint, sorted; empty
    /// otherwise.
    pub outgoing: Vec<NodeId>,
    /// Non-voting members that receive the log, sorted.
    pub learners: Vec<NodeId>,
}

impl ConfState {
    /// A plain configuration of these voters.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> ConfState {
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        ConfState {
            voters,
            outgoing: Vec::new(),
            learners: Vec::new(),
        }
    }

    /// Whether this is a joint configuration.
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok() || self.outgoing.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// Every member (voters of both halves and learners), sorted, once each.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.outgoing)
            .chain(&self.learners)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// What a snapshot stands for: the log up to and including `index`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Hash)]
pub struct SnapshotMeta {
    /// The last index the snapshot covers.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The membership as of `index`.
    pub conf_state: ConfState,
}

/// A snapshot: its metadata and the application's opaque state.
#[derive(Clone, PartialEq, Eq, Default, Hash)]
pub struct Snapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The application's serialized state machine (and whatever it keeps
    /// with it, such as the KV dedup table).
    pub data: Bytes,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Snapshot({}/{} {:?} {}B)",
            self.meta.term,
            self.meta.index,
            self.meta.conf_state,
            self.data.len()
        )
    }
}

/// The role a node plays in its current term.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Runs a pre-vote round (§9.6 of Ongaro's thesis) without raising its term.
    PreCandidate,
    /// Runs an election in its own new term.
    Candidate,
    /// Leads the group in its term.
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        f.write_str(s)
    }
}
