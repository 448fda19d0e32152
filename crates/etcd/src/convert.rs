//! Translation between etcd's v3 messages and the KV crate's operations.
//!
//! Each etcd request becomes one [`Op`] (a put with `prev_kv` becomes a
//! transaction "get, then put", so the old pair is read atomically with
//! the write; a delete with `range_end` becomes one [`Op::DeleteRange`]),
//! and each [`Response`] is mapped back. A put with `ignore_value` or
//! `ignore_lease` is the store's [`Op::Rewrite`]; a put's lease must
//! exist when it is applied. Compares over a range of keys hold when they hold on
//! every key there (on none: as for an absent key), as in etcd. Sorting,
//! revision filters and reads at a revision are in [`super::range`].

use bytes::Bytes;
use flotilla_kv::{CmpOp, Compare, CompareSpan, KeyValue, Op, Response, Target, Txn};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::mvccpb;
use tonic::Status;

use super::range::RangeView;

/// How the answers of an etcd operation are read back from the KV ops it
/// became.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A range: one read, shaped by the view.
    Range(RangeView),
    /// A put; `prev_kv`: preceded by a get.
    Put { prev_kv: bool },
    /// A single-key delete, always preceded by a get (for `deleted` and
    /// `prev_kvs`).
    Delete { prev_kv: bool },
    /// A delete with a `range_end`: one delete-range (which answers with
    /// `prev_kvs` itself when asked).
    DeleteRange,
    /// A nested transaction: one transaction op, with the shapes of its
    /// branches.
    Txn {
        /// The shapes of the ops run when the compares hold.
        success: Vec<Shape>,
        /// The shapes of the ops run otherwise.
        failure: Vec<Shape>,
    },
}

/// The read op of a range request, at its `revision` (which the replica
/// checks against its compaction and its revision as it reads).
pub fn range_op(r: &pb::RangeRequest) -> Result<(Op, Shape), Status> {
    let view = RangeView::of(r)?;
    let revision =
        u64::try_from(r.revision).map_err(|_| Status::invalid_argument("negative revision"))?;
    let end = match range_end(&r.range_end) {
        None if revision == 0 => return Ok((Op::get(r.key.clone()), Shape::Range(view))),
        // One key at a revision: the range of that key alone.
        None => Some(super::validate::successor(&r.key)),
        Some(end) => end,
    };
    let op = Op::range_at(r.key.clone(), end, view.fetch_limit(), revision);
    Ok((op, Shape::Range(view)))
}

/// The ops of a put request.
pub fn put_ops(r: &pb::PutRequest) -> Result<(Vec<Op>, Shape), Status> {
    // `validate::check_put` refused a value with `ignore_value` and a
    // lease with `ignore_lease`.
    let put = if r.ignore_value || r.ignore_lease {
        Op::Rewrite {
            key: r.key.clone(),
            value: (!r.ignore_value).then(|| r.value.clone()),
            lease: (!r.ignore_lease).then_some(r.lease),
        }
    } else {
        Op::put_leased(r.key.clone(), r.value.clone(), r.lease)
    };
    let ops = if r.prev_kv {
        vec![Op::get(r.key.clone()), put]
    } else {
        vec![put]
    };
    Ok((ops, Shape::Put { prev_kv: r.prev_kv }))
}

/// etcd's `range_end`: empty for one key (`None`), `"\0"` for every key
/// from `key` on (`Some(None)`), else the first key past the range.
pub(crate) fn range_end(range_end: &Bytes) -> Option<Option<Bytes>> {
    match range_end.as_ref() {
        b"" => None,
        b"\0" => Some(None),
        _ => Some(Some(range_end.clone())),
    }
}

/// The ops of a delete request. A single-key delete keeps the encoding
/// it had before delete-ranges existed (a get, then a delete).
pub fn delete_ops(r: &pb::DeleteRangeRequest) -> Result<(Vec<Op>, Shape), Status> {
    if r.key.is_empty() {
        return Err(crate::validate::Invalid::EmptyKey.into());
    }
    match range_end(&r.range_end) {
        None => {
            let ops = vec![Op::get(r.key.clone()), Op::delete(r.key.clone())];
            Ok((ops, Shape::Delete { prev_kv: r.prev_kv }))
        }
        Some(end) => {
            let op = Op::delete_range(r.key.clone(), end, r.prev_kv);
            Ok((vec![op], Shape::DeleteRange))
        }
    }
}

/// Wraps a list of ops as one op (a transaction without compares when
/// there are several).
pub fn one_op(mut ops: Vec<Op>) -> Op {
    if ops.len() == 1
        && let Some(op) = ops.pop()
    {
        return op;
    }
    Op::Txn(Txn {
        compares: Vec::new(),
        success: ops,
        failure: Vec::new(),
    })
}

/// A transaction request as one op, with the shapes of each branch,
/// after the checks of [`super::validate::check_txn`].
pub fn txn_op(r: &pb::TxnRequest) -> Result<(Op, Vec<Shape>, Vec<Shape>), Status> {
    super::validate::check_txn(r)?;
    nested_txn_op(r)
}

fn nested_txn_op(r: &pb::TxnRequest) -> Result<(Op, Vec<Shape>, Vec<Shape>), Status> {
    let compares = r.compare.iter().map(compare).collect::<Result<_, _>>()?;
    let (success, s_shapes) = branch(&r.success)?;
    let (failure, f_shapes) = branch(&r.failure)?;
    let txn = Txn {
        compares,
        success,
        failure,
    };
    Ok((Op::Txn(txn), s_shapes, f_shapes))
}

fn branch(ops: &[pb::RequestOp]) -> Result<(Vec<Op>, Vec<Shape>), Status> {
    let mut out = Vec::new();
    let mut shapes = Vec::new();
    for op in ops {
        let (mut kv_ops, shape) = match &op.request {
            Some(pb::request_op::Request::RequestRange(r)) => {
                let (op, shape) = range_op(r)?;
                (vec![op], shape)
            }
            Some(pb::request_op::Request::RequestPut(r)) => put_ops(r)?,
            Some(pb::request_op::Request::RequestDeleteRange(r)) => delete_ops(r)?,
            Some(pb::request_op::Request::RequestTxn(t)) => {
                let (op, success, failure) = nested_txn_op(t)?;
                (vec![op], Shape::Txn { success, failure })
            }
            None => return Err(Status::invalid_argument("empty operation in a transaction")),
        };
        out.append(&mut kv_ops);
        shapes.push(shape);
    }
    Ok((out, shapes))
}

fn compare(c: &pb::Compare) -> Result<Compare, Status> {
    use pb::compare::{CompareResult, TargetUnion};
    let op = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => CmpOp::Equal,
        Ok(CompareResult::Greater) => CmpOp::Greater,
        Ok(CompareResult::Less) => CmpOp::Less,
        Ok(CompareResult::NotEqual) => CmpOp::NotEqual,
        Err(_) => return Err(Status::invalid_argument("unknown compare result")),
    };
    let rev = |v: i64| u64::try_from(v).map_err(|_| Status::invalid_argument("negative revision"));
    let target = match &c.target_union {
        Some(TargetUnion::Version(v)) => Target::Version(rev(*v)?),
        Some(TargetUnion::CreateRevision(v)) => Target::CreateRev(rev(*v)?),
        Some(TargetUnion::ModRevision(v)) => Target::ModRev(rev(*v)?),
        Some(TargetUnion::Value(v)) => Target::Value(v.clone()),
        Some(TargetUnion::Lease(v)) => Target::Lease(*v),
        None => return Err(Status::invalid_argument("compare without a target value")),
    };
    let span = match range_end(&c.range_end) {
        None => CompareSpan::Key,
        Some(end) => CompareSpan::Range(end),
    };
    Ok(Compare {
        key: c.key.clone(),
        op,
        target,
        span,
    })
}

/// etcd's form of a pair.
pub fn key_value(kv: &KeyValue, keys_only: bool) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key.clone(),
        create_revision: kv.create_rev as i64,
        mod_revision: kv.mod_rev as i64,
        version: kv.version as i64,
        value: if keys_only {
            Bytes::new()
        } else {
            kv.value.clone()
        },
        lease: kv.lease,
    }
}

/// Reads the answer of one etcd operation off the front of `responses`.
pub fn response_op(
    shape: Shape,
    responses: &mut impl Iterator<Item = Response>,
) -> Result<pb::response_op::Response, Status> {
    use pb::response_op::Response as R;
    let mut next = || {
        responses
            .next()
            .ok_or_else(|| Status::internal("store answered fewer operations than sent"))
    };
    Ok(match shape {
        Shape::Range(view) => R::ResponseRange(range_response(next()?, &view)),
        Shape::Put { prev_kv } => {
            let prev = if prev_kv { got(next()?) } else { None };
            next()?;
            R::ResponsePut(pb::PutResponse {
                header: None,
                prev_kv: prev.map(|kv| key_value(&kv, false)),
            })
        }
        Shape::Delete { prev_kv } => {
            let prev = got(next()?);
            next()?;
            R::ResponseDeleteRange(pb::DeleteRangeResponse {
                header: None,
                deleted: i64::from(prev.is_some()),
                prev_kvs: prev
                    .filter(|_| prev_kv)
                    .map(|kv| key_value(&kv, false))
                    .into_iter()
                    .collect(),
            })
        }
        Shape::Txn { success, failure } => R::ResponseTxn(txn_response(next()?, success, failure)?),
        Shape::DeleteRange => {
            let Response::DeletedRange { deleted, prev_kvs } = next()? else {
                return Err(Status::internal(
                    "a delete-range answered as something else",
                ));
            };
            R::ResponseDeleteRange(pb::DeleteRangeResponse {
                header: None,
                deleted: i64::try_from(deleted).unwrap_or(i64::MAX),
                prev_kvs: prev_kvs.iter().map(|kv| key_value(kv, false)).collect(),
            })
        }
    })
}

/// etcd's answer to a transaction, from the store's and the shapes of
/// each branch's operations (header left empty).
pub fn txn_response(
    resp: Response,
    success: Vec<Shape>,
    failure: Vec<Shape>,
) -> Result<pb::TxnResponse, Status> {
    let Response::Txn {
        succeeded,
        responses,
    } = resp
    else {
        return Err(Status::internal("a transaction answered as something else"));
    };
    let shapes = if succeeded { success } else { failure };
    let mut it = responses.into_iter();
    let responses = shapes
        .into_iter()
        .map(|s| response_op(s, &mut it).map(|r| pb::ResponseOp { response: Some(r) }))
        .collect::<Result<_, _>>()?;
    Ok(pb::TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}

/// Fills in the headers of a transaction's answers as etcd does, given
/// the store revision after it (`revision`): a range's is the revision it
/// read at (the one before the transaction, or its own once an earlier
/// operation changed something), a put's the transaction's, a
/// delete-range's the transaction's if anything changed by then (else the
/// one before), and a nested transaction's is empty (etcd sets only the
/// outer header's other fields).
pub fn fill_txn_headers(t: &mut pb::TxnResponse, revision: i64) {
    let before = if txn_changed(t) {
        revision - 1
    } else {
        revision
    };
    let mut changed = false;
    fill_nested(t, before, &mut changed);
}

/// Whether the answers of `t` changed the store (a put, or a delete that
/// deleted), nested ones included.
fn txn_changed(t: &pb::TxnResponse) -> bool {
    use pb::response_op::Response as R;
    t.responses.iter().any(|r| match &r.response {
        Some(R::ResponsePut(_)) => true,
        Some(R::ResponseDeleteRange(d)) => d.deleted > 0,
        Some(R::ResponseTxn(inner)) => txn_changed(inner),
        Some(R::ResponseRange(_)) | None => false,
    })
}

fn fill_nested(t: &mut pb::TxnResponse, before: i64, changed: &mut bool) {
    use pb::response_op::Response as R;
    let header = |revision| {
        Some(pb::ResponseHeader {
            revision,
            ..pb::ResponseHeader::default()
        })
    };
    for r in &mut t.responses {
        match &mut r.response {
            Some(R::ResponseRange(x)) => x.header = header(before + i64::from(*changed)),
            Some(R::ResponsePut(x)) => {
                *changed = true;
                x.header = header(before + 1);
            }
            Some(R::ResponseDeleteRange(x)) => {
                *changed |= x.deleted > 0;
                x.header = header(before + i64::from(*changed));
            }
            Some(R::ResponseTxn(x)) => {
                x.header = Some(pb::ResponseHeader::default());
                fill_nested(x, before, changed);
            }
            None => {}
        }
    }
}

fn got(r: Response) -> Option<KeyValue> {
    match r {
        Response::Get(kv) => kv,
        _ => None,
    }
}

/// The answer of a range.
pub fn range_response(r: Response, view: &RangeView) -> pb::RangeResponse {
    let (kvs, count) = match r {
        Response::Get(kv) => {
            let kvs: Vec<KeyValue> = kv.into_iter().collect();
            let n = kvs.len() as u64;
            (kvs, n)
        }
        Response::Range { kvs, count } => (kvs, count),
        _ => (Vec::new(), 0),
    };
    view.finish(kvs, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    fn op(r: pb::response_op::Response) -> pb::ResponseOp {
        pb::ResponseOp { response: Some(r) }
    }

    /// The headers etcd 3.4.23 gave the answers of this transaction at
    /// revision 13 (a range, a put, a delete that deleted nothing, a
    /// nested transaction with a range), and a read-only one's.
    #[test]
    fn nested_answers_get_etcd_s_headers() {
        use pb::response_op::Response as R;
        let rev = |h: &Option<pb::ResponseHeader>| h.as_ref().map(|h| h.revision);
        let nested = pb::TxnResponse {
            responses: vec![op(R::ResponseRange(pb::RangeResponse::default()))],
            ..Default::default()
        };
        let mut t = pb::TxnResponse {
            responses: vec![
                op(R::ResponseRange(pb::RangeResponse::default())),
                op(R::ResponsePut(pb::PutResponse::default())),
                op(R::ResponseDeleteRange(pb::DeleteRangeResponse::default())),
                op(R::ResponseTxn(nested)),
            ],
            ..Default::default()
        };
        fill_txn_headers(&mut t, 13);
        let got = t
            .responses
            .iter()
            .map(|r| match r.response.as_ref().unwrap() {
                R::ResponseRange(x) => rev(&x.header),
                R::ResponsePut(x) => rev(&x.header),
                R::ResponseDeleteRange(x) => rev(&x.header),
                R::ResponseTxn(x) => rev(&x.header),
            });
        let got: Vec<_> = got.collect();
        assert_eq!(got, [Some(12), Some(13), Some(13), Some(0)]);
        let Some(R::ResponseTxn(inner)) = &t.responses[3].response else {
            panic!()
        };
        let Some(R::ResponseRange(inner)) = &inner.responses[0].response else {
            panic!()
        };
        assert_eq!(
            rev(&inner.header),
            Some(13),
            "after the put, a range reads the txn's revision"
        );
    }

    /// A transaction that changed nothing reads at its revision; one whose
    /// delete deleted moves on from there.
    #[test]
    fn nested_headers_follow_what_changed() {
        use pb::response_op::Response as R;
        let rev = |h: &Option<pb::ResponseHeader>| h.as_ref().map(|h| h.revision);
        let mut read = pb::TxnResponse {
            responses: vec![
                op(R::ResponseRange(pb::RangeResponse::default())),
                op(R::ResponseDeleteRange(pb::DeleteRangeResponse::default())),
            ],
            ..Default::default()
        };
        fill_txn_headers(&mut read, 7);
        let Some(R::ResponseRange(r)) = &read.responses[0].response else {
            panic!()
        };
        let Some(R::ResponseDeleteRange(d)) = &read.responses[1].response else {
            panic!()
        };
        assert_eq!((rev(&r.header), rev(&d.header)), (Some(7), Some(7)));
        // A delete that deleted: the revision moves from there on.
        let mut del = pb::TxnResponse {
            responses: vec![
                op(R::ResponseRange(pb::RangeResponse::default())),
                op(R::ResponseDeleteRange(pb::DeleteRangeResponse {
                    deleted: 2,
                    ..Default::default()
                })),
                op(R::ResponseRange(pb::RangeResponse::default())),
            ],
            ..Default::default()
        };
        fill_txn_headers(&mut del, 9);
        let revs: Vec<_> = del
            .responses
            .iter()
            .map(|r| match r.response.as_ref().unwrap() {
                R::ResponseRange(x) => rev(&x.header),
                R::ResponseDeleteRange(x) => rev(&x.header),
                _ => None,
            })
            .collect();
        assert_eq!(revs, [Some(8), Some(9), Some(9)]);
    }

    #[test]
    fn range_end_selects_get_prefix_or_open_range() {
        let get = pb::RangeRequest {
            key: b("k"),
            ..Default::default()
        };
        assert_eq!(range_op(&get).unwrap().0, Op::get("k"));
        let prefix = pb::RangeRequest {
            key: b("k"),
            range_end: b("l"),
            limit: 5,
            ..Default::default()
        };
        assert_eq!(
            range_op(&prefix).unwrap().0,
            Op::range("k", Some(b("l")), 5)
        );
        let open = pb::RangeRequest {
            key: b("k"),
            range_end: Bytes::from_static(b"\0"),
            ..Default::default()
        };
        assert_eq!(range_op(&open).unwrap().0, Op::range("k", None, 0));
    }

    #[test]
    fn what_the_store_cannot_do_is_refused_not_ignored() {
        // A read at a revision inside a transaction is the store's now:
        // one key becomes the range of that key alone, at that revision.
        let past = pb::TxnRequest {
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                    key: b("k"),
                    revision: 3,
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        let Op::Txn(t) = txn_op(&past).unwrap().0 else {
            panic!("not a txn")
        };
        let at_3 = Op::Range {
            start: b("k"),
            end: Some(b("k\0")),
            limit: 0,
            revision: 3,
        };
        assert_eq!(t.success, vec![at_3]);
        let lease = pb::PutRequest {
            key: b("k"),
            value: b("v"),
            lease: 7,
            ..Default::default()
        };
        assert_eq!(
            put_ops(&lease).unwrap().0,
            vec![Op::put_leased("k", "v", 7)]
        );
        let keep_lease = pb::PutRequest {
            ignore_lease: true,
            lease: 0,
            ..lease.clone()
        };
        let keep = Op::Rewrite {
            key: b("k"),
            value: Some(b("v")),
            lease: None,
        };
        assert_eq!(put_ops(&keep_lease).unwrap().0, vec![keep]);
        let keep_value = pb::PutRequest {
            ignore_value: true,
            value: Bytes::new(),
            ..lease
        };
        assert_eq!(put_ops(&keep_value).unwrap().0, vec![Op::rewrite("k", 7)]);
        let no_key = pb::DeleteRangeRequest {
            range_end: b("b"),
            ..Default::default()
        };
        assert_eq!(
            delete_ops(&no_key).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn a_compare_s_range_end_selects_one_key_a_range_or_all_from_key() {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        let spans: Vec<CompareSpan> = [&b""[..], b"b", b"\0"]
            .iter()
            .map(|end| {
                let c = pb::Compare {
                    result: CompareResult::Greater as i32,
                    target: CompareTarget::Version as i32,
                    key: b("a"),
                    target_union: Some(TargetUnion::Version(0)),
                    range_end: Bytes::from(end.to_vec()),
                };
                compare(&c).unwrap().span
            })
            .collect();
        assert_eq!(
            spans,
            vec![
                CompareSpan::Key,
                CompareSpan::Range(Some(b("b"))),
                CompareSpan::Range(None)
            ]
        );
    }

    #[test]
    fn delete_range_end_selects_one_key_a_range_or_all_from_key() {
        let del = |key: &str, end: &[u8], prev_kv| pb::DeleteRangeRequest {
            key: b(key),
            range_end: Bytes::from(end.to_vec()),
            prev_kv,
        };
        let (ops, shape) = delete_ops(&del("k", b"", false)).unwrap();
        assert_eq!(ops, vec![Op::get("k"), Op::delete("k")]);
        assert_eq!(shape, Shape::Delete { prev_kv: false });
        let (ops, shape) = delete_ops(&del("a", b"c", true)).unwrap();
        assert_eq!(ops, vec![Op::delete_range("a", Some(b("c")), true)]);
        assert_eq!(shape, Shape::DeleteRange);
        let (ops, _) = delete_ops(&del("\0", b"\0", false)).unwrap();
        assert_eq!(ops, vec![Op::delete_range(b("\0"), None, false)]);
        let old = KeyValue {
            key: b("a"),
            value: b("1"),
            create_rev: 2,
            mod_rev: 3,
            version: 2,
            lease: 0,
        };
        let answers = vec![Response::DeletedRange {
            deleted: 2,
            prev_kvs: vec![old.clone(), KeyValue { key: b("b"), ..old }],
        }];
        let r = response_op(Shape::DeleteRange, &mut answers.into_iter()).unwrap();
        let pb::response_op::Response::ResponseDeleteRange(d) = r else {
            panic!("not a delete response: {r:?}")
        };
        assert_eq!(d.deleted, 2);
        let keys: Vec<_> = d.prev_kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, [b("a"), b("b")]);
        assert_eq!(d.prev_kvs[0].mod_revision, 3);
    }

    #[test]
    fn put_with_prev_kv_reads_the_old_pair_in_the_same_transaction() {
        let req = pb::PutRequest {
            key: b("k"),
            value: b("new"),
            prev_kv: true,
            ..Default::default()
        };
        let (ops, shape) = put_ops(&req).unwrap();
        assert_eq!(ops, vec![Op::get("k"), Op::put("k", "new")]);
        let old = KeyValue {
            key: b("k"),
            value: b("old"),
            create_rev: 2,
            mod_rev: 4,
            version: 3,
            lease: 0,
        };
        let answers = vec![Response::Get(Some(old)), Response::Written];
        let r = response_op(shape, &mut answers.into_iter()).unwrap();
        let pb::response_op::Response::ResponsePut(p) = r else {
            panic!("not a put response: {r:?}")
        };
        let prev = p.prev_kv.unwrap();
        assert_eq!(
            (prev.value, prev.mod_revision, prev.version),
            (b("old"), 4, 3)
        );
    }

    #[test]
    fn txn_compares_map_to_the_store_s() {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        let req = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: CompareResult::Greater as i32,
                target: CompareTarget::Mod as i32,
                key: b("k"),
                target_union: Some(TargetUnion::ModRevision(9)),
                range_end: Bytes::new(),
            }],
            success: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestDeleteRange(
                    pb::DeleteRangeRequest {
                        key: b("k"),
                        ..Default::default()
                    },
                )),
            }],
            failure: Vec::new(),
        };
        let (op, success, failure) = txn_op(&req).unwrap();
        let Op::Txn(t) = op else {
            panic!("not a txn: {op:?}")
        };
        assert_eq!(t.compares[0].op, CmpOp::Greater);
        assert_eq!(t.compares[0].target, Target::ModRev(9));
        assert_eq!(t.success, vec![Op::get("k"), Op::delete("k")]);
        assert_eq!(success, vec![Shape::Delete { prev_kv: false }]);
        assert!(failure.is_empty());
    }
}
