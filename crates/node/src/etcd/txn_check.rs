//! etcd's checks of a transaction request, made before it is proposed so a
//! bad one is refused with etcd's error instead of reaching the log:
//! at most [`MAX_TXN_OPS`] compares and ops per branch (etcd's
//! `--max-txn-ops`), at most [`MAX_TXN_DEPTH`] transactions deep (the
//! store's bound; etcd has none but its request size), and no key written
//! twice (etcd's `checkIntervals`: two puts of one key, or a put inside a
//! delete range, in what could run together; the two branches of a nested
//! transaction never run together, so they may put the same key).

use std::collections::BTreeSet;

use bytes::Bytes;
use flotilla_kv::MAX_TXN_DEPTH;
use flotilla_proto::etcdserverpb as pb;
use pb::request_op::Request as R;
use tonic::Status;

use super::convert::range_end;

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

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

fn duplicate() -> Status {
    Status::invalid_argument("etcdserver: duplicate key given in txn request")
}

/// Checks `r` as etcd does before applying it.
pub fn check(r: &pb::TxnRequest) -> Result<(), Status> {
    check_at(r, 1).map(|_| ())
}

fn check_at(r: &pb::TxnRequest, depth: usize) -> Result<(Writes, Writes), Status> {
    if depth > MAX_TXN_DEPTH {
        return Err(Status::invalid_argument(format!(
            "flotilla: transactions nested more than {MAX_TXN_DEPTH} deep"
        )));
    }
    if [r.compare.len(), r.success.len(), r.failure.len()]
        .iter()
        .any(|&n| n > MAX_TXN_OPS)
    {
        return Err(Status::invalid_argument(
            "etcdserver: too many operations in txn request",
        ));
    }
    Ok((writes(&r.success, depth)?, writes(&r.failure, depth)?))
}

/// The writes of one branch, refused if a key is written twice.
fn writes(ops: &[pb::RequestOp], depth: usize) -> Result<Writes, Status> {
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
        let (then, otherwise) = check_at(t, depth + 1)?;
        for k in &then.puts {
            if w.puts.contains(k) || w.deletes(k) {
                return Err(duplicate());
            }
        }
        for k in &otherwise.puts {
            if (w.puts.contains(k) && !then.puts.contains(k)) || w.deletes(k) {
                return Err(duplicate());
            }
        }
        w.puts.extend(then.puts.into_iter().chain(otherwise.puts));
        w.dels.extend(then.dels.into_iter().chain(otherwise.dels));
    }
    for op in ops {
        if let Some(R::RequestPut(p)) = &op.request {
            if w.puts.contains(&p.key) || w.deletes(&p.key) {
                return Err(duplicate());
            }
            w.puts.insert(p.key.clone());
        }
    }
    Ok(w)
}

/// The first key after `key` (the end of the range of `key` alone).
fn successor(key: &Bytes) -> Bytes {
    let mut k = key.to_vec();
    k.push(0);
    Bytes::from(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(R::RequestPut(pb::PutRequest {
                key: Bytes::from(k.to_string()),
                ..Default::default()
            })),
        }
    }

    fn del(k: &str, end: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(R::RequestDeleteRange(pb::DeleteRangeRequest {
                key: Bytes::from(k.to_string()),
                range_end: Bytes::from(end.to_string()),
                ..Default::default()
            })),
        }
    }

    fn txn(success: Vec<pb::RequestOp>, failure: Vec<pb::RequestOp>) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    fn nested(t: pb::TxnRequest) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(R::RequestTxn(t)),
        }
    }

    fn refused(t: &pb::TxnRequest) -> String {
        check(t).unwrap_err().message().to_string()
    }

    #[test]
    fn a_key_written_twice_where_both_may_run_is_refused() {
        let dup = "etcdserver: duplicate key given in txn request";
        assert_eq!(refused(&txn(vec![put("a"), put("a")], vec![])), dup);
        assert_eq!(refused(&txn(vec![del("a", "c"), put("b")], vec![])), dup);
        assert_eq!(refused(&txn(vec![del("b", ""), put("b")], vec![])), dup);
        assert_eq!(refused(&txn(vec![del("a", "\0"), put("z")], vec![])), dup);
        let inner = txn(vec![put("a")], vec![]);
        assert_eq!(refused(&txn(vec![put("a"), nested(inner)], vec![])), dup);
        let inner = txn(vec![del("a", "b")], vec![]);
        assert_eq!(refused(&txn(vec![put("a"), nested(inner)], vec![])), dup);
    }

    #[test]
    fn writes_that_never_run_together_or_do_not_overlap_pass() {
        // The two branches of one transaction.
        check(&txn(vec![put("a")], vec![put("a")])).unwrap();
        // The two branches of a nested one.
        let inner = txn(vec![put("a")], vec![put("a")]);
        check(&txn(vec![nested(inner)], vec![])).unwrap();
        // Deletes may overlap each other; a put just past a range is fine.
        check(&txn(vec![del("a", "c"), del("b", "d"), put("d")], vec![])).unwrap();
        check(&txn(vec![del("b", ""), put("b0")], vec![])).unwrap();
    }

    #[test]
    fn too_many_ops_or_too_deep_a_nesting_is_refused() {
        let many = txn(
            (0..=MAX_TXN_OPS).map(|i| put(&format!("k{i}"))).collect(),
            vec![],
        );
        assert_eq!(
            refused(&many),
            "etcdserver: too many operations in txn request"
        );
        let deep =
            (1..MAX_TXN_DEPTH).fold(txn(vec![], vec![]), |t, _| txn(vec![nested(t)], vec![]));
        check(&deep).unwrap();
        let too_deep = txn(vec![nested(deep)], vec![]);
        assert!(refused(&too_deep).contains("nested more than"));
    }
}
