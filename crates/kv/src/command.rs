//! What clients ask of the store and what it answers: [`Request`] (a
//! client's numbered [`Op`]), [`Response`], and the envelopes that travel
//! in log entries ([`Command`]) and between clients and servers
//! ([`ClientMsg`], [`Reply`]). Their binary encoding is in `codec.rs`.
//!
//! Invariants:
//! - ranges ([`Op::Range`], [`Op::DeleteRange`]) are `[start, end)` with
//!   `end: None` meaning "to the last key" (etcd's `range_end = "\0"`);
//! - keys are non-empty byte strings: checked before a command is
//!   applied (`check.rs`), where one that is not is refused;
//! - transactions nest at most [`crate::MAX_TXN_DEPTH`] deep (etcd sets no
//!   limit but its request size; the bound keeps decoding, applying and
//!   answering from recursing without end);
//! - a `seq` numbers a client's requests from 1, one at a time: a client
//!   sends request `n + 1` only after request `n` was answered.

use bytes::Bytes;

use crate::auth::AuthOp;
use crate::check::Refusal;

/// A key/value pair with its revisions, as etcd's `mvccpb.KeyValue`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// The store revision at which the key was (last) created.
    pub create_rev: u64,
    /// The store revision of the key's last change.
    pub mod_rev: u64,
    /// Changes since the key was created (1 after the creating write).
    pub version: u64,
    /// The lease the key is attached to (0: none), as etcd's.
    pub lease: i64,
}

/// The first key after every key that starts with `prefix`, or `None` if
/// no such key exists (the prefix is empty or all `0xff`): etcd's
/// `GetPrefixRangeEnd`.
pub fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(Bytes::from(end));
        }
    }
    None
}

/// One operation on the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Reads one key.
    Get {
        /// The key.
        key: Bytes,
    },
    /// Sets a key.
    Put {
        /// The key.
        key: Bytes,
        /// Its new value.
        value: Bytes,
        /// The lease the key is attached to from now on (0: none). A
        /// lease that does not exist refuses the put.
        lease: i64,
    },
    /// Appends to a key's value (creating the key if absent): the course's.
    Append {
        /// The key.
        key: Bytes,
        /// What to append.
        value: Bytes,
    },
    /// Removes a key (nothing happens if it is absent).
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Reads the keys in `[start, end)`, in key order, at most `limit` of
    /// them (0: no limit), as they were at store revision `revision` (0:
    /// the current one).
    Range {
        /// The first key.
        start: Bytes,
        /// The first key past the range; `None`: to the end of the keys.
        end: Option<Bytes>,
        /// The largest number of pairs returned (0: all).
        limit: u64,
        /// The revision read at (0: the current one). A store that keeps
        /// history serves any revision from its last compaction on; one
        /// that keeps none serves only the current one.
        revision: u64,
    },
    /// Removes the keys in `[start, end)` (the range of [`Op::Range`]),
    /// as etcd's DeleteRange: one store revision if at least one key was
    /// removed, none otherwise.
    DeleteRange {
        /// The first key.
        start: Bytes,
        /// The first key past the range; `None`: to the end of the keys.
        end: Option<Bytes>,
        /// Whether to answer with the removed pairs (etcd's `prev_kv`).
        prev_kv: bool,
    },
    /// If every comparison holds apply `success`, else `failure`; atomic.
    Txn(Txn),
    /// Writes a key again keeping its value, its lease, or both (etcd's
    /// put with `ignore_value` or `ignore_lease`): a new revision and
    /// version. Refused, with nothing applied, if the key is absent.
    Rewrite {
        /// The key.
        key: Bytes,
        /// Its new value; `None`: the one it has.
        value: Option<Bytes>,
        /// Its new lease (0: none); `None`: the one it has.
        lease: Option<i64>,
    },
    /// Grants lease `id` with a time-to-live of `ttl` seconds (etcd's
    /// LeaseGrant). Refused if the lease exists, or `id` is 0 (no lease).
    /// It changes no key and takes no revision.
    LeaseGrant {
        /// The lease's id (never 0).
        id: i64,
        /// Its time-to-live, in seconds.
        ttl: i64,
    },
    /// Revokes lease `id` and deletes every key attached to it, all in
    /// one revision (none if it had no key): etcd's LeaseRevoke, and what
    /// the leader proposes when a lease expires. Refused if the lease
    /// does not exist.
    LeaseRevoke {
        /// The lease.
        id: i64,
    },
    /// Raises or clears an alarm of a member (etcd's Alarm): while a
    /// NOSPACE alarm is raised, writes that add data (puts, transactions
    /// with puts, lease grants) are refused; deletes and compactions go
    /// on, so that room can be freed.
    Alarm {
        /// Raise (true) or clear (false).
        raise: bool,
        /// The member the alarm is about.
        member: u64,
        /// Which alarm.
        kind: AlarmKind,
    },
    /// Records that a member added to the cluster has started (etcd's
    /// member attribute publication): member lists show it started from
    /// then on.
    MemberStarted {
        /// The member.
        member: u64,
    },
    /// Records how long leases had left, so that a new leader resumes
    /// their countdowns instead of restarting them (etcd's lease
    /// checkpoints); a remaining 0 means the whole time-to-live. Leases
    /// that no longer exist are skipped.
    LeaseCheckpoint {
        /// `(lease, remaining seconds)` pairs.
        checkpoints: Vec<(i64, i64)>,
    },
    /// Forgets the history before store revision `revision` (etcd's
    /// `Compact`): reads and watches before it are refused from then on.
    /// It changes no key and takes no revision.
    Compact {
        /// The revision compacted at.
        revision: u64,
    },
    /// Changes the auth store (etcd's Auth service): see [`AuthOp`].
    /// It changes no key and takes no revision.
    Auth(AuthOp),
    /// `op` on behalf of `user`: with auth on, refused unless the user may
    /// run it ([`crate::Auth::permits`]), checked as it is applied (or
    /// read), so a permission change holds from the next request on.
    AsUser {
        /// The user.
        user: String,
        /// What it asks.
        op: Box<Op>,
    },
}

impl Op {
    /// `get(key)`.
    pub fn get(key: impl Into<Bytes>) -> Op {
        Op::Get { key: key.into() }
    }
    /// `put(key, value)`.
    pub fn put(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Op {
        Op::put_leased(key, value, 0)
    }
    /// `put(key, value)` attaching the key to `lease` (0: none).
    pub fn put_leased(key: impl Into<Bytes>, value: impl Into<Bytes>, lease: i64) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease,
        }
    }
    /// `key` written again with its value, attached to `lease` (etcd's
    /// put with `ignore_value`).
    pub fn rewrite(key: impl Into<Bytes>, lease: i64) -> Op {
        Op::Rewrite {
            key: key.into(),
            value: None,
            lease: Some(lease),
        }
    }
    /// `append(key, value)`.
    pub fn append(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Op {
        Op::Append {
            key: key.into(),
            value: value.into(),
        }
    }
    /// `delete(key)`.
    pub fn delete(key: impl Into<Bytes>) -> Op {
        Op::Delete { key: key.into() }
    }
    /// The keys that start with `prefix`, at most `limit` (0: all).
    pub fn prefix(prefix: impl Into<Bytes>, limit: u64) -> Op {
        let start: Bytes = prefix.into();
        let end = prefix_end(&start);
        Op::Range {
            start,
            end,
            limit,
            revision: 0,
        }
    }
    /// The keys in `[start, end)`, at most `limit` (0: all).
    pub fn range(start: impl Into<Bytes>, end: Option<Bytes>, limit: u64) -> Op {
        Op::range_at(start, end, limit, 0)
    }
    /// The keys in `[start, end)` as they were at `revision` (0: the
    /// current one), at most `limit` (0: all).
    pub fn range_at(start: impl Into<Bytes>, end: Option<Bytes>, limit: u64, revision: u64) -> Op {
        Op::Range {
            start: start.into(),
            end,
            limit,
            revision,
        }
    }
    /// Removes the keys in `[start, end)`; `prev_kv`: answer with them.
    pub fn delete_range(start: impl Into<Bytes>, end: Option<Bytes>, prev_kv: bool) -> Op {
        Op::DeleteRange {
            start: start.into(),
            end,
            prev_kv,
        }
    }
    /// Removes the keys that start with `prefix`; `prev_kv`: answer with
    /// them.
    pub fn delete_prefix(prefix: impl Into<Bytes>, prev_kv: bool) -> Op {
        let start: Bytes = prefix.into();
        let end = prefix_end(&start);
        Op::DeleteRange {
            start,
            end,
            prev_kv,
        }
    }

    /// Whether the operation adds data: a put, an append, a rewrite, a
    /// lease grant, or a transaction with one of those in either branch
    /// (what a NOSPACE alarm refuses, as etcd's capped applier does).
    pub fn adds_data(&self) -> bool {
        match self {
            Op::Put { .. } | Op::Append { .. } | Op::Rewrite { .. } | Op::LeaseGrant { .. } => true,
            Op::Txn(t) => t.success.iter().chain(&t.failure).any(Op::adds_data),
            Op::AsUser { op, .. } => op.adds_data(),
            _ => false,
        }
    }

    /// Whether a CORRUPT alarm refuses the operation, as etcd's corrupt
    /// applier refuses it: every change of keys, a transaction that may
    /// write, a compaction, a lease grant or revoke. Reads go on, and so
    /// do what only records the cluster's own state (alarms, so that one
    /// can be cleared; members' starts; lease checkpoints).
    pub fn refused_when_corrupt(&self) -> bool {
        match self {
            Op::Put { .. }
            | Op::Append { .. }
            | Op::Rewrite { .. }
            | Op::Delete { .. }
            | Op::DeleteRange { .. }
            | Op::Compact { .. }
            | Op::LeaseGrant { .. }
            | Op::LeaseRevoke { .. } => true,
            Op::Txn(_) => !self.is_read_only(),
            Op::AsUser { op, .. } => op.refused_when_corrupt(),
            Op::Get { .. }
            | Op::Auth(_)
            | Op::Range { .. }
            | Op::LeaseCheckpoint { .. }
            | Op::Alarm { .. }
            | Op::MemberStarted { .. } => false,
        }
    }

    /// Whether the operation never changes the store (it may then be served
    /// by a read index instead of a log entry).
    pub fn is_read_only(&self) -> bool {
        match self {
            Op::Get { .. } | Op::Range { .. } => true,
            Op::Put { .. }
            | Op::Append { .. }
            | Op::Delete { .. }
            | Op::DeleteRange { .. }
            | Op::Rewrite { .. }
            | Op::Compact { .. }
            | Op::LeaseGrant { .. }
            | Op::LeaseRevoke { .. }
            | Op::LeaseCheckpoint { .. }
            | Op::Alarm { .. }
            | Op::Auth(_)
            | Op::MemberStarted { .. } => false,
            Op::Txn(t) => t.success.iter().chain(&t.failure).all(Op::is_read_only),
            Op::AsUser { op, .. } => op.is_read_only(),
        }
    }
}

/// An alarm a member raises (etcd's `AlarmType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlarmKind {
    /// The store outgrew its quota (etcd's `NOSPACE`).
    NoSpace,
    /// A member's data differs from the others' (etcd's `CORRUPT`).
    Corrupt,
}

/// An etcd-style transaction: `if compares { success } else { failure }`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Txn {
    /// Conditions that must all hold.
    pub compares: Vec<Compare>,
    /// Applied, in order, if they do.
    pub success: Vec<Op>,
    /// Applied, in order, if one does not.
    pub failure: Vec<Op>,
}

/// What a comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The value (an absent key matches no value, as in etcd).
    Value(Bytes),
    /// The version (0: absent).
    Version(u64),
    /// The create revision (0: absent).
    CreateRev(u64),
    /// The modification revision (0: absent).
    ModRev(u64),
    /// The lease (0: none or absent).
    Lease(i64),
}

/// How a comparison compares the key's field with the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// Field == target.
    Equal,
    /// Field != target.
    NotEqual,
    /// Field < target.
    Less,
    /// Field > target.
    Greater,
}

/// The keys a [`Compare`] looks at, from its `key` on.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum CompareSpan {
    /// The key alone.
    #[default]
    Key,
    /// Every key in `[key, end)`; `None`: to the last key (etcd's
    /// `range_end`). The comparison holds if it holds for every key there;
    /// with no key there, as for an absent key.
    Range(Option<Bytes>),
}

/// One condition of a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The (first) key looked at.
    pub key: Bytes,
    /// The comparison.
    pub op: CmpOp,
    /// The field and the value to compare it with.
    pub target: Target,
    /// The key alone, or a range of keys from it.
    pub span: CompareSpan,
}

impl Compare {
    /// The key's value equals `value` (false if the key is absent).
    pub fn value_is(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Compare {
        Compare {
            key: key.into(),
            op: CmpOp::Equal,
            target: Target::Value(value.into()),
            span: CompareSpan::Key,
        }
    }
    /// The key's version equals `version` (0: the key is absent).
    pub fn version_is(key: impl Into<Bytes>, version: u64) -> Compare {
        Compare {
            key: key.into(),
            op: CmpOp::Equal,
            target: Target::Version(version),
            span: CompareSpan::Key,
        }
    }
    /// The key is absent.
    pub fn absent(key: impl Into<Bytes>) -> Compare {
        Compare::version_is(key, 0)
    }
    /// The key exists.
    pub fn exists(key: impl Into<Bytes>) -> Compare {
        Compare {
            key: key.into(),
            op: CmpOp::Greater,
            target: Target::Version(0),
            span: CompareSpan::Key,
        }
    }
}

/// How a read may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadConsistency {
    /// Linearizable, through a ReadIndex round (no log write).
    #[default]
    Linearizable,
    /// From the replica's current state, possibly stale; any replica may
    /// answer.
    Serializable,
}

/// A client's request: its `seq`-th operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The client (its session).
    pub client: u64,
    /// The request's number, from 1.
    pub seq: u64,
    /// How a read-only `op` may be served (ignored for writes).
    pub read: ReadConsistency,
    /// Whether a write of this client was answered before: the servers
    /// then must know its session, and if they do not (it expired) they
    /// refuse the request rather than risk applying a retry twice.
    pub resumed: bool,
    /// The operation.
    pub op: Op,
}

/// What the store answered to one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A get: the pair, or `None` if the key is absent.
    Get(Option<KeyValue>),
    /// A put or an append.
    Written,
    /// A delete: whether the key existed.
    Deleted(bool),
    /// A delete-range: how many keys it removed, and (if asked) their
    /// pairs as they were, in key order.
    DeletedRange {
        /// The number of keys removed.
        deleted: u64,
        /// The removed pairs (empty unless `prev_kv` was asked).
        prev_kvs: Vec<KeyValue>,
    },
    /// A range: the pairs (at most the limit), and how many matched.
    Range {
        /// The pairs, in key order.
        kvs: Vec<KeyValue>,
        /// How many keys were in the range (may exceed `kvs.len()`).
        count: u64,
    },
    /// A transaction: which branch ran, and its operations' answers.
    Txn {
        /// Whether every comparison held.
        succeeded: bool,
        /// The answers of the branch's operations, in order.
        responses: Vec<Response>,
    },
    /// A compaction.
    Compacted,
    /// A lease was granted, revoked or checkpointed.
    Leased,
    /// An alarm was raised or cleared.
    Alarmed,
    /// A member's start was recorded.
    Started,
    /// The auth store changed.
    Authed,
}

impl Response {
    /// The value a get read (`""` for an absent key, as the course's KV).
    pub fn value(&self) -> Option<&Bytes> {
        match self {
            Response::Get(Some(kv)) => Some(&kv.value),
            _ => None,
        }
    }
}

/// The outcome of a request, as a server reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the store's revision after it, and the answer.
    Ok {
        /// The store revision once the request took effect (or was read).
        revision: u64,
        /// The answer.
        response: Response,
    },
    /// This server cannot serve the request (not the leader, leadership
    /// lost, or another entry took the request's log slot): try another,
    /// `leader` if it is known.
    WrongLeader {
        /// The leader this server knows of.
        leader: Option<u64>,
    },
    /// The client's session expired (or this request is older than one
    /// already answered): the outcome of the request is unknown and the
    /// client must start a new session.
    SessionExpired,
    /// The replicas refused the request as invalid (see `check.rs`): it
    /// changed nothing, and a retry gets the same answer.
    Refused(Refusal),
}

/// A server's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The client it answers.
    pub client: u64,
    /// The request it answers.
    pub seq: u64,
    /// The outcome.
    pub outcome: Outcome,
}

/// What a client sends to a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMsg {
    /// A request.
    Request(Request),
}

/// The payload of a log entry written by the KV service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The proposing leader's clock, in ms: the replicated clock that
    /// expires idle sessions (replicas take the maximum seen, so it never
    /// goes back).
    pub stamp_ms: u64,
    /// The request to apply.
    pub request: Request,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"ab"), Some(Bytes::from_static(b"ac")));
        assert_eq!(prefix_end(b"a\xff"), Some(Bytes::from_static(b"b")));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn read_only_ops_and_txns() {
        assert!(Op::get("k").is_read_only());
        assert!(Op::prefix("k", 0).is_read_only());
        assert!(!Op::put("k", "v").is_read_only());
        assert!(!Op::delete_prefix("k", false).is_read_only());
        assert_eq!(
            Op::delete_prefix("ab", true),
            Op::delete_range("ab", Some(Bytes::from_static(b"ac")), true)
        );
        let t = Txn {
            compares: vec![Compare::exists("k")],
            success: vec![Op::get("k")],
            failure: vec![Op::put("k", "v")],
        };
        assert!(!Op::Txn(t).is_read_only());
    }
}
