//! The checks of every client request, made where it comes in, before
//! anything is proposed, stored or forwarded: etcd's (its v3rpc `key.go`:
//! `checkRangeRequest`, `checkPutRequest`, `checkDeleteRequest`,
//! `checkTxnRequest`, `checkRequestOp`, `checkIntervals`), refused with
//! etcd's gRPC code and message, and Flotilla's own where its store is
//! stricter than etcd's (negative numbers, unknown enum values, a nesting
//! bound) and for Flotilla's own session writes, refused with a message
//! that starts `flotilla:`. The README's
//! "Requests refused" table lists every refusal.
//!
//! Invariants:
//! - a request that passes becomes log commands the replicas apply
//!   without refusing them for their form: the [`flotilla_kv::Refusal`]
//!   of a malformed command (an empty key) is covered here, and is mapped
//!   to the same etcd error by `From<Refusal> for EtcdError`, should one
//!   still come back from apply (the other refusals are about the store's
//!   state, a compacted or future revision, which only apply can judge);
//! - the checks bound their own work: the op count of each list is checked
//!   before the ops, nesting before recursion, so a huge or deep request
//!   costs no more than its size (etcd's note: "check for forbidden put/del
//!   overlaps after checking request to avoid quadratic blowup");
//! - errors are a typed [`Invalid`], turned into a `tonic::Status` at the
//!   service's edge.

use std::collections::BTreeSet;

use bytes::Bytes;
use flotilla_kv::MAX_TXN_DEPTH;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::kv::v1 as kvpb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::request_op::Request as R;
use tonic::{Code, Status};

use super::convert::range_end;

/// etcd's default `--max-txn-ops`: the most compares, or ops in a branch,
/// of one transaction (a nested one gets what its parent left).
pub const MAX_TXN_OPS: usize = 128;

/// Why a request is refused before it goes anywhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A key that must be given is empty (etcd's `ErrGRPCEmptyKey`).
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// A transaction op holds no request (etcd's answer,
    /// `ErrGRPCKeyNotFound`).
    #[error("etcdserver: key not found")]
    EmptyOp,
    /// A put asks to keep the old value and gives a new one.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// A put asks to keep the old lease and gives a new one.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A transaction list is longer than its budget.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A transaction writes a key twice where both writes may run.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A range's sort order or target is not one etcd defines.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// A number that must not be negative is.
    #[error("flotilla: negative {field}: {value}")]
    Negative {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// Transactions nest deeper than the store allows.
    #[error("flotilla: transactions nested more than {MAX_TXN_DEPTH} deep")]
    TooDeep,
    /// A compare's result is not one etcd defines.
    #[error("flotilla: unknown compare result {0}")]
    UnknownCompareResult(i32),
    /// A compare's target is not one etcd defines.
    #[error("flotilla: unknown compare target {0}")]
    UnknownCompareTarget(i32),
    /// A compare's value is missing or of another kind than its target.
    #[error("flotilla: a compare on {target} needs a {target} value")]
    CompareValueMismatch {
        /// The target's name.
        target: &'static str,
    },
    /// A watch filter is not one etcd defines.
    #[error("flotilla: unknown watch filter {0}")]
    UnknownWatchFilter(i32),
    /// A session write's client id is 0 or has the top bit (the servers'
    /// own ids) set.
    #[error("flotilla: client_id {0:#x} must be nonzero with the top bit clear")]
    BadClientId(u64),
    /// A session write's seq is 0.
    #[error("flotilla: seq starts at 1")]
    ZeroSeq,
    /// A session write holds no operation.
    #[error("flotilla: a session write without an operation")]
    NoSessionOp,
}

impl Invalid {
    /// The gRPC code etcd answers with: all of these are the client's
    /// mistakes.
    pub fn code(&self) -> Code {
        Code::InvalidArgument
    }
}

impl From<Invalid> for Status {
    fn from(e: Invalid) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

fn key(k: &[u8]) -> Result<(), Invalid> {
    if k.is_empty() {
        Err(Invalid::EmptyKey)
    } else {
        Ok(())
    }
}

fn non_negative(field: &'static str, value: i64) -> Result<(), Invalid> {
    if value < 0 {
        Err(Invalid::Negative { field, value })
    } else {
        Ok(())
    }
}

/// A range request: etcd's `checkRangeRequest`, then no negative limit,
/// revision or revision filter.
pub fn check_range(r: &pb::RangeRequest) -> Result<(), Invalid> {
    key(&r.key)?;
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(Invalid::InvalidSortOption);
    }
    non_negative("limit", r.limit)?;
    non_negative("revision", r.revision)?;
    non_negative("min_mod_revision", r.min_mod_revision)?;
    non_negative("max_mod_revision", r.max_mod_revision)?;
    non_negative("min_create_revision", r.min_create_revision)?;
    non_negative("max_create_revision", r.max_create_revision)
}

/// A put request: etcd's `checkPutRequest`, then no negative lease.
pub fn check_put(r: &pb::PutRequest) -> Result<(), Invalid> {
    key(&r.key)?;
    if r.ignore_value && !r.value.is_empty() {
        return Err(Invalid::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Invalid::LeaseProvided);
    }
    non_negative("lease", r.lease)
}

/// A lease grant: no negative id (a put names its lease with a
/// non-negative id, so a negative one could never be used).
pub fn check_lease_grant(r: &pb::LeaseGrantRequest) -> Result<(), Invalid> {
    non_negative("lease id", r.id)
}

/// A delete request: etcd's `checkDeleteRequest`.
pub fn check_delete(r: &pb::DeleteRangeRequest) -> Result<(), Invalid> {
    key(&r.key)
}

/// A compaction request: no negative revision.
pub fn check_compact(r: &pb::CompactionRequest) -> Result<(), Invalid> {
    non_negative("revision", r.revision)
}

/// A HashKV request: no negative revision (etcd takes one as the
/// current revision).
pub fn check_hash_kv(r: &pb::HashKvRequest) -> Result<(), Invalid> {
    non_negative("revision", r.revision)
}

/// A watch creation: etcd refuses none (an empty key watches `"\0"`, a
/// negative start revision is answered as compacted, an unknown filter is
/// ignored); Flotilla refuses an unknown filter, which it cannot apply.
pub fn check_watch(r: &pb::WatchCreateRequest) -> Result<(), Invalid> {
    use pb::watch_create_request::FilterType;
    match r
        .filters
        .iter()
        .find(|&&f| FilterType::try_from(f).is_err())
    {
        Some(&f) => Err(Invalid::UnknownWatchFilter(f)),
        None => Ok(()),
    }
}

/// A write of `flotilla.kv.v1.Kv`: its session (`client_id` nonzero with
/// the top bit clear, `seq` from 1), then its operation as the plain
/// request of its kind (an append as a put).
pub fn check_session(w: &kvpb::SessionWrite) -> Result<(), Invalid> {
    use kvpb::session_write::Op;
    if w.client_id == 0 || flotilla_kv::minted_by_server(w.client_id) {
        return Err(Invalid::BadClientId(w.client_id));
    }
    if w.seq == 0 {
        return Err(Invalid::ZeroSeq);
    }
    match &w.op {
        Some(Op::Put(p)) => check_put(p),
        Some(Op::DeleteRange(d)) => check_delete(d),
        Some(Op::Txn(t)) => check_txn(t),
        Some(Op::Append(a)) => key(&a.key),
        None => Err(Invalid::NoSessionOp),
    }
}

/// A transaction: etcd's `checkTxnRequest` (with its default
/// `--max-txn-ops`), then `checkIntervals` on each branch.
pub fn check_txn(r: &pb::TxnRequest) -> Result<(), Invalid> {
    check_txn_ops(r, MAX_TXN_OPS, 1)?;
    writes(&r.success)?;
    writes(&r.failure)?;
    Ok(())
}

/// etcd's `checkTxnRequest` at nesting `depth`, with `budget` ops per list.
fn check_txn_ops(r: &pb::TxnRequest, budget: usize, depth: usize) -> Result<(), Invalid> {
    if depth > MAX_TXN_DEPTH {
        return Err(Invalid::TooDeep);
    }
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > budget {
        return Err(Invalid::TooManyOps);
    }
    for c in &r.compare {
        check_compare(c)?;
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(R::RequestRange(r)) => check_range(r)?,
            Some(R::RequestPut(r)) => check_put(r)?,
            Some(R::RequestDeleteRange(r)) => check_delete(r)?,
            Some(R::RequestTxn(t)) => check_txn_ops(t, budget - opc, depth + 1)?,
            None => return Err(Invalid::EmptyOp),
        }
    }
    Ok(())
}

/// A compare: etcd checks its key; Flotilla also its result, its target,
/// and that the value given is the target's (etcd would compare with 0).
fn check_compare(c: &pb::Compare) -> Result<(), Invalid> {
    key(&c.key)?;
    CompareResult::try_from(c.result).map_err(|_| Invalid::UnknownCompareResult(c.result))?;
    let target =
        CompareTarget::try_from(c.target).map_err(|_| Invalid::UnknownCompareTarget(c.target))?;
    let (name, matches) = match (&target, &c.target_union) {
        (CompareTarget::Version, Some(TargetUnion::Version(v))) => ("version", Some(*v)),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => ("create", Some(*v)),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => ("mod", Some(*v)),
        (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => ("lease", Some(*v)),
        (CompareTarget::Value, Some(TargetUnion::Value(_))) => ("value", None),
        (t, _) => {
            return Err(Invalid::CompareValueMismatch {
                target: target_name(*t),
            });
        }
    };
    match matches {
        Some(v) => non_negative(name, v),
        None => Ok(()),
    }
}

fn target_name(t: CompareTarget) -> &'static str {
    match t {
        CompareTarget::Version => "version",
        CompareTarget::Create => "create",
        CompareTarget::Mod => "mod",
        CompareTarget::Value => "value",
        CompareTarget::Lease => "lease",
    }
}

/// A key range `[start, end)`; `end: None`: to the last key.
type Interval = (Bytes, Option<Bytes>);

/// The puts and deletes of a list of ops (with its nested transactions).
#[derive(Default)]
struct Writes {
    puts: BTreeSet<Bytes>,
    dels: Vec<Interval>,
}

impl Writes {
    fn deletes(&self, key: &Bytes) -> bool {
        self.dels
            .iter()
            .any(|(start, end)| start <= key && end.as_ref().is_none_or(|e| key < e))
    }
}

/// etcd's `checkIntervals`: the writes of one list, refused if a key is
/// written twice where both writes may run (the two branches of a nested
/// transaction never run together, so they may put the same key). Runs
/// after [`check_txn_ops`] has bounded the lists and the nesting.
fn writes(ops: &[pb::RequestOp]) -> Result<Writes, Invalid> {
    let mut w = Writes::default();
    for op in ops {
        if let Some(R::RequestDeleteRange(d)) = &op.request {
            let end = match range_end(&d.range_end) {
                None => Some(successor(&d.key)),
                Some(end) => end,
            };
            w.dels.push((d.key.clone(), end));
        }
    }
    for op in ops {
        let Some(R::RequestTxn(t)) = &op.request else {
            continue;
        };
        let then = writes(&t.success)?;
        let otherwise = writes(&t.failure)?;
        for k in &then.puts {
            if w.puts.contains(k) || w.deletes(k) {
                return Err(Invalid::DuplicateKey);
            }
        }
        for k in &otherwise.puts {
            if (w.puts.contains(k) && !then.puts.contains(k)) || w.deletes(k) {
                return Err(Invalid::DuplicateKey);
            }
        }
        w.puts.extend(then.puts.into_iter().chain(otherwise.puts));
        w.dels.extend(then.dels.into_iter().chain(otherwise.dels));
    }
    for op in ops {
        if let Some(R::RequestPut(p)) = &op.request {
            if w.puts.contains(&p.key) || w.deletes(&p.key) {
                return Err(Invalid::DuplicateKey);
            }
            w.puts.insert(p.key.clone());
        }
    }
    Ok(w)
}

/// The first key after `key` (the end of the range of `key` alone).
pub(crate) fn successor(key: &Bytes) -> Bytes {
    let mut k = key.to_vec();
    k.push(0);
    Bytes::from(k)
}

#[cfg(test)]
mod tests;
