//! What every replica checks of a committed command before it applies it,
//! and the [`Refusal`] it answers instead when a check fails.
//!
//! The services check each request at the boundary (the node's
//! `etcd::validate`), so in a cluster of one build nothing here should
//! ever fail. It is the second line: a gap at the boundary, a client
//! that speaks to the log through another path, or a log written by an
//! older build that checked less (issue 19: `put ""` reached the log and
//! every member stopped on it) must not stop a member. A command that
//! fails a check is answered with a [`Refusal`] on every replica, at the
//! same index, in the same way: the store and its revision are
//! untouched, and the session table records the refusal like any answer
//! (so a retry gets the same one).
//!
//! Invariants:
//! - the checks are a pure function of the command's bytes: every replica
//!   of every build that knows a check decides alike. A check is part of
//!   the replicated format: adding one refuses, on replay, a command an
//!   older build may have applied, so a new check may only refuse what no
//!   older build could apply (as here: an empty key stopped the old
//!   decoder);
//! - only what breaks the store's own invariants is checked here (a key
//!   is a non-empty byte string). Revisions a read or a compaction names
//!   are checked against the store's state as it is applied
//!   ([`crate::Store::check_state`]), alike on every replica, and
//!   refused with the same [`Refusal`] kind. etcd's API rules that the store can
//!   apply consistently either way (at most 128 ops per list, no key
//!   written twice in one transaction) are the boundary's alone, so that
//!   histories the simulator's clients make stay valid;
//! - recursion is bounded: transactions nest at most
//!   [`crate::MAX_TXN_DEPTH`] deep, which the decoder enforces.

use thiserror::Error;

use crate::command::{Op, Txn};

/// Which key of an operation was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRole {
    /// The key of a get.
    Get,
    /// The key of a put or an append.
    Write,
    /// The key of a single-key delete.
    Delete,
    /// The key of a transaction's compare.
    Compare,
}

impl KeyRole {
    /// The role's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            KeyRole::Get => "get",
            KeyRole::Write => "put",
            KeyRole::Delete => "delete",
            KeyRole::Compare => "compare",
        }
    }
}

/// Why a replica refused a committed command instead of applying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum Refusal {
    /// A key that must name one key is empty (etcd's
    /// `etcdserver: key is not provided`).
    #[error("the key of a {} is empty", role.name())]
    EmptyKey {
        /// Which key.
        role: KeyRole,
    },
    /// A read or a compaction at a revision the store has compacted
    /// (etcd's `mvcc: required revision has been compacted`).
    #[error("revision {requested} has been compacted (compacted at {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: u64,
        /// The last compaction.
        compacted: u64,
    },
    /// A put keeping its value (etcd's `ignore_value`) of a key that does
    /// not exist (etcd's `etcdserver: key not found`).
    #[error("the key of a put that keeps its value does not exist")]
    KeyNotFound,
    /// A put with a lease, or a revoke of a lease, that does not exist; a
    /// grant of lease 0 (etcd's `etcdserver: requested lease not found`).
    #[error("lease {id:016x} not found")]
    LeaseNotFound {
        /// The lease.
        id: i64,
    },
    /// A grant of a lease that exists (etcd's `etcdserver: lease already
    /// exists`).
    #[error("lease {id:016x} already exists")]
    LeaseExists {
        /// The lease.
        id: i64,
    },
    /// A write that adds data while a NOSPACE alarm is raised (etcd's
    /// `etcdserver: mvcc: database space exceeded`).
    #[error("the store is over its quota (a NOSPACE alarm is raised)")]
    NoSpace,
    /// A write while a CORRUPT alarm is raised (etcd's `etcdserver:
    /// corrupt cluster`): members' data differed, and until an operator
    /// clears the alarm no write may build on it.
    #[error("the cluster is marked corrupt (a CORRUPT alarm is raised)")]
    Corrupt,
    /// A read or a compaction at a revision the store has not reached
    /// (etcd's `mvcc: required revision is a future revision`).
    #[error("revision {requested} is a future revision (the store is at {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: u64,
        /// The store revision.
        current: u64,
    },
    /// The auth store refused: a user that may not run the operation, or
    /// an auth change its state does not allow (etcd's auth errors).
    #[error("{0}")]
    Auth(crate::auth::AuthError),
}

/// Checks `op` (and every operation and compare nested in it) before it
/// is applied.
pub fn check_op(op: &Op) -> Result<(), Refusal> {
    let empty = |key: &[u8], role| {
        if key.is_empty() {
            Err(Refusal::EmptyKey { role })
        } else {
            Ok(())
        }
    };
    match op {
        Op::Get { key } => empty(key, KeyRole::Get),
        Op::Put { key, .. } | Op::Append { key, .. } | Op::Rewrite { key, .. } => {
            empty(key, KeyRole::Write)
        }
        // etcd's lessor: lease 0 is "no lease" and cannot be granted.
        Op::LeaseGrant { id: 0, .. } => Err(Refusal::LeaseNotFound { id: 0 }),
        Op::Delete { key } => empty(key, KeyRole::Delete),
        // An empty start is "from the first key": the store's own form of
        // etcd's `"\0"` start, which reads and deletes well.
        Op::Range { .. }
        | Op::DeleteRange { .. }
        | Op::Compact { .. }
        | Op::LeaseGrant { .. }
        | Op::LeaseRevoke { .. }
        | Op::LeaseCheckpoint { .. }
        | Op::Alarm { .. }
        | Op::Auth(_)
        | Op::MemberStarted { .. } => Ok(()),
        Op::Txn(t) => check_txn(t),
        Op::AsUser { op, .. } => check_op(op),
    }
}

fn check_txn(t: &Txn) -> Result<(), Refusal> {
    for c in &t.compares {
        if c.key.is_empty() {
            return Err(Refusal::EmptyKey {
                role: KeyRole::Compare,
            });
        }
    }
    t.success.iter().chain(&t.failure).try_for_each(check_op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Compare;

    fn refused(op: &Op) -> Option<KeyRole> {
        match check_op(op) {
            Ok(()) => None,
            Err(Refusal::EmptyKey { role }) => Some(role),
            Err(other) => panic!("not a key check: {other}"),
        }
    }

    #[test]
    fn empty_single_keys_are_refused_with_their_role() {
        assert_eq!(refused(&Op::get("")), Some(KeyRole::Get));
        assert_eq!(refused(&Op::put("", "v")), Some(KeyRole::Write));
        assert_eq!(refused(&Op::append("", "v")), Some(KeyRole::Write));
        assert_eq!(refused(&Op::delete("")), Some(KeyRole::Delete));
        assert_eq!(refused(&Op::put("k", "")), None, "an empty value is fine");
    }

    #[test]
    fn ranges_may_start_at_the_first_key() {
        assert_eq!(refused(&Op::prefix("", 0)), None);
        assert_eq!(refused(&Op::delete_prefix("", true)), None);
    }

    #[test]
    fn a_bad_key_anywhere_in_a_transaction_refuses_all_of_it() {
        let txn = |compares, success, failure| {
            Op::Txn(Txn {
                compares,
                success,
                failure,
            })
        };
        let nested = txn(vec![], vec![], vec![Op::put("", "v")]);
        let deep = txn(vec![], vec![Op::put("a", "1"), nested], vec![]);
        assert_eq!(refused(&deep), Some(KeyRole::Write));
        let compare = txn(vec![Compare::exists("")], vec![], vec![]);
        assert_eq!(refused(&compare), Some(KeyRole::Compare));
        let fine = txn(vec![Compare::exists("a")], vec![Op::get("a")], vec![]);
        assert_eq!(refused(&fine), None);
        assert_eq!(
            Refusal::EmptyKey {
                role: KeyRole::Compare
            }
            .to_string(),
            "the key of a compare is empty"
        );
    }
}
