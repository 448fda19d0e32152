//! One test per check of `validate.rs`: what is refused, with which
//! error, and what just passes.

use super::*;

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

fn put(k: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(R::RequestPut(pb::PutRequest {
            key: b(k),
            ..Default::default()
        })),
    }
}

fn get(k: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(R::RequestRange(pb::RangeRequest {
            key: b(k),
            ..Default::default()
        })),
    }
}

fn del(k: &str, end: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(R::RequestDeleteRange(pb::DeleteRangeRequest {
            key: b(k),
            range_end: b(end),
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

fn cmp(key: &str, result: i32, target: i32, value: Option<TargetUnion>) -> pb::Compare {
    pb::Compare {
        result,
        target,
        key: b(key),
        target_union: value,
        range_end: Bytes::new(),
    }
}

fn version_is(key: &str, v: i64) -> pb::Compare {
    cmp(
        key,
        CompareResult::Equal as i32,
        CompareTarget::Version as i32,
        Some(TargetUnion::Version(v)),
    )
}

#[test]
fn every_refusal_is_invalid_argument_with_etcd_s_message() {
    let status = Status::from(Invalid::EmptyKey);
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "etcdserver: key is not provided");
    let refusal = flotilla_kv::Refusal::EmptyKey {
        role: flotilla_kv::KeyRole::Write,
    };
    assert!(matches!(
        crate::EtcdError::from(refusal),
        crate::EtcdError::Invalid(Invalid::EmptyKey)
    ));
    let messages = [
        (Invalid::EmptyOp, "etcdserver: key not found"),
        (Invalid::ValueProvided, "etcdserver: value is provided"),
        (Invalid::LeaseProvided, "etcdserver: lease is provided"),
        (
            Invalid::TooManyOps,
            "etcdserver: too many operations in txn request",
        ),
        (
            Invalid::DuplicateKey,
            "etcdserver: duplicate key given in txn request",
        ),
        (
            Invalid::InvalidSortOption,
            "etcdserver: invalid sort option",
        ),
    ];
    for (e, text) in messages {
        assert_eq!(Status::from(e).message(), text);
    }
}

#[test]
fn a_range_needs_a_key_known_sort_options_and_no_negative_number() {
    let ok = pb::RangeRequest {
        key: b("k"),
        ..Default::default()
    };
    check_range(&ok).unwrap();
    let with = |f: fn(&mut pb::RangeRequest)| {
        let mut r = ok.clone();
        f(&mut r);
        check_range(&r).unwrap_err()
    };
    assert_eq!(with(|r| r.key = Bytes::new()), Invalid::EmptyKey);
    assert_eq!(with(|r| r.sort_order = 3), Invalid::InvalidSortOption);
    assert_eq!(with(|r| r.sort_target = -1), Invalid::InvalidSortOption);
    assert_eq!(
        with(|r| r.limit = -1),
        Invalid::Negative {
            field: "limit",
            value: -1
        }
    );
    for (field, e) in [
        ("revision", with(|r| r.revision = -2)),
        ("min_mod_revision", with(|r| r.min_mod_revision = -2)),
        ("max_mod_revision", with(|r| r.max_mod_revision = -2)),
        ("min_create_revision", with(|r| r.min_create_revision = -2)),
        ("max_create_revision", with(|r| r.max_create_revision = -2)),
    ] {
        assert_eq!(e, Invalid::Negative { field, value: -2 });
    }
    // etcdctl's `get "" --prefix`: key "\0", range_end "\0".
    let all = pb::RangeRequest {
        key: b("\0"),
        range_end: b("\0"),
        ..Default::default()
    };
    check_range(&all).unwrap();
}

#[test]
fn a_put_needs_a_key_and_no_value_or_lease_it_says_it_ignores() {
    let ok = pb::PutRequest {
        key: b("k"),
        value: b("v"),
        ..Default::default()
    };
    check_put(&ok).unwrap();
    let with = |f: fn(&mut pb::PutRequest)| {
        let mut r = ok.clone();
        f(&mut r);
        check_put(&r)
    };
    assert_eq!(with(|r| r.key = Bytes::new()), Err(Invalid::EmptyKey));
    assert_eq!(with(|r| r.ignore_value = true), Err(Invalid::ValueProvided));
    let ignored = with(|r| {
        r.ignore_value = true;
        r.value = Bytes::new();
    });
    assert_eq!(ignored, Ok(()), "the service refuses it as unsupported");
    let lease = with(|r| {
        r.ignore_lease = true;
        r.lease = 5;
    });
    assert_eq!(lease, Err(Invalid::LeaseProvided));
    assert_eq!(
        with(|r| r.lease = -5),
        Err(Invalid::Negative {
            field: "lease",
            value: -5
        })
    );
}

#[test]
fn a_delete_needs_a_key_and_a_compaction_a_revision_not_below_zero() {
    let no_key = pb::DeleteRangeRequest {
        range_end: b("z"),
        ..Default::default()
    };
    assert_eq!(check_delete(&no_key), Err(Invalid::EmptyKey));
    let prefix = pb::DeleteRangeRequest {
        key: b("a"),
        range_end: b("b"),
        ..Default::default()
    };
    check_delete(&prefix).unwrap();
    let compact = |revision| pb::CompactionRequest {
        revision,
        physical: false,
    };
    check_compact(&compact(0)).unwrap();
    assert!(matches!(
        check_compact(&compact(-1)),
        Err(Invalid::Negative { .. })
    ));
    let hash = |revision| pb::HashKvRequest { revision };
    check_hash_kv(&hash(0)).unwrap();
    assert_eq!(
        check_hash_kv(&hash(-3)).map_err(|e| e.to_string()),
        Err("flotilla: negative revision: -3".to_string())
    );
}

#[test]
fn a_watch_refuses_only_a_filter_it_does_not_know() {
    use pb::watch_create_request::FilterType;
    let mut w = pb::WatchCreateRequest {
        key: Bytes::new(),
        start_revision: -3,
        filters: vec![FilterType::Noput as i32, FilterType::Nodelete as i32],
        ..Default::default()
    };
    check_watch(&w).unwrap();
    w.filters.push(7);
    assert_eq!(check_watch(&w), Err(Invalid::UnknownWatchFilter(7)));
}

#[test]
fn every_op_and_compare_of_a_txn_is_checked_nested_ones_too() {
    // Issue 19: a put "" inside a Txn reached the log.
    assert_eq!(
        check_txn(&txn(vec![put("")], vec![])),
        Err(Invalid::EmptyKey)
    );
    assert_eq!(
        check_txn(&txn(vec![], vec![get("")])),
        Err(Invalid::EmptyKey)
    );
    assert_eq!(
        check_txn(&txn(vec![del("", "z")], vec![])),
        Err(Invalid::EmptyKey)
    );
    let deep = txn(
        vec![nested(txn(
            vec![],
            vec![nested(txn(vec![put("")], vec![]))],
        ))],
        vec![],
    );
    assert_eq!(check_txn(&deep), Err(Invalid::EmptyKey));
    let empty_op = txn(vec![pb::RequestOp { request: None }], vec![]);
    assert_eq!(check_txn(&empty_op), Err(Invalid::EmptyOp));
    let mut sorted = pb::RangeRequest {
        key: b("k"),
        sort_order: 9,
        ..Default::default()
    };
    let bad_sort = |r: &pb::RangeRequest| {
        txn(
            vec![pb::RequestOp {
                request: Some(R::RequestRange(r.clone())),
            }],
            vec![],
        )
    };
    assert_eq!(
        check_txn(&bad_sort(&sorted)),
        Err(Invalid::InvalidSortOption)
    );
    sorted.sort_order = 0;
    check_txn(&bad_sort(&sorted)).unwrap();
}

#[test]
fn a_compare_needs_a_key_a_known_result_and_target_and_a_matching_value() {
    let with = |c: pb::Compare| {
        let mut t = txn(vec![put("a")], vec![]);
        t.compare.push(c);
        check_txn(&t)
    };
    with(version_is("k", 0)).unwrap();
    assert_eq!(with(version_is("", 0)), Err(Invalid::EmptyKey));
    assert!(matches!(
        with(version_is("k", -1)),
        Err(Invalid::Negative {
            field: "version",
            ..
        })
    ));
    let mut c = version_is("k", 1);
    c.result = 4;
    assert_eq!(with(c), Err(Invalid::UnknownCompareResult(4)));
    let mut c = version_is("k", 1);
    c.target = 5;
    assert_eq!(with(c), Err(Invalid::UnknownCompareTarget(5)));
    let mismatch = cmp(
        "k",
        CompareResult::Equal as i32,
        CompareTarget::Mod as i32,
        Some(TargetUnion::Value(b("v"))),
    );
    assert_eq!(
        with(mismatch),
        Err(Invalid::CompareValueMismatch { target: "mod" })
    );
    let missing = cmp(
        "k",
        CompareResult::Equal as i32,
        CompareTarget::Value as i32,
        None,
    );
    assert_eq!(
        with(missing),
        Err(Invalid::CompareValueMismatch { target: "value" })
    );
}

#[test]
fn a_key_written_twice_where_both_may_run_is_refused() {
    let dup = Err(Invalid::DuplicateKey);
    assert_eq!(check_txn(&txn(vec![put("a"), put("a")], vec![])), dup);
    assert_eq!(check_txn(&txn(vec![del("a", "c"), put("b")], vec![])), dup);
    assert_eq!(check_txn(&txn(vec![del("b", ""), put("b")], vec![])), dup);
    assert_eq!(check_txn(&txn(vec![del("a", "\0"), put("z")], vec![])), dup);
    let inner = txn(vec![put("a")], vec![]);
    assert_eq!(check_txn(&txn(vec![put("a"), nested(inner)], vec![])), dup);
    let inner = txn(vec![del("a", "b")], vec![]);
    assert_eq!(check_txn(&txn(vec![put("a"), nested(inner)], vec![])), dup);
}

#[test]
fn writes_that_never_run_together_or_do_not_overlap_pass() {
    // The two branches of one transaction.
    check_txn(&txn(vec![put("a")], vec![put("a")])).unwrap();
    // The two branches of a nested one.
    let inner = txn(vec![put("a")], vec![put("a")]);
    check_txn(&txn(vec![nested(inner)], vec![])).unwrap();
    // Deletes may overlap each other; a put just past a range is fine.
    check_txn(&txn(vec![del("a", "c"), del("b", "d"), put("d")], vec![])).unwrap();
    check_txn(&txn(vec![del("b", ""), put("b0")], vec![])).unwrap();
}

#[test]
fn too_many_ops_or_too_deep_a_nesting_is_refused() {
    let many = txn(
        (0..=MAX_TXN_OPS).map(|i| put(&format!("k{i}"))).collect(),
        vec![],
    );
    assert_eq!(check_txn(&many), Err(Invalid::TooManyOps));
    let mut compares = txn(vec![], vec![]);
    compares.compare = (0..=MAX_TXN_OPS).map(|_| version_is("k", 0)).collect();
    assert_eq!(check_txn(&compares), Err(Invalid::TooManyOps));
    // etcd: a nested transaction gets the budget its parent left.
    let half = MAX_TXN_OPS / 2;
    let inner = txn((0..=half).map(|i| put(&format!("in{i}"))).collect(), vec![]);
    let mut outer_ops: Vec<_> = (1..half).map(|i| put(&format!("out{i}"))).collect();
    outer_ops.push(nested(inner));
    assert_eq!(check_txn(&txn(outer_ops, vec![])), Err(Invalid::TooManyOps));
    let deep = (1..MAX_TXN_DEPTH).fold(txn(vec![], vec![]), |t, _| txn(vec![nested(t)], vec![]));
    check_txn(&deep).unwrap();
    let too_deep = txn(vec![nested(deep)], vec![]);
    assert_eq!(check_txn(&too_deep), Err(Invalid::TooDeep));
}

#[test]
fn a_session_write_needs_a_session_a_seq_and_a_valid_op() {
    use kvpb::session_write::Op;
    let write = |client_id, seq, op| kvpb::SessionWrite {
        client_id,
        seq,
        resumed: false,
        op,
    };
    let append = |k: &str| {
        Some(Op::Append(kvpb::AppendRequest {
            key: b(k),
            value: b("x"),
        }))
    };
    check_session(&write(7, 1, append("k"))).unwrap();
    assert_eq!(
        check_session(&write(0, 1, append("k"))),
        Err(Invalid::BadClientId(0))
    );
    assert_eq!(
        check_session(&write(1 << 63, 1, append("k"))),
        Err(Invalid::BadClientId(1 << 63))
    );
    assert_eq!(
        check_session(&write(7, 0, append("k"))),
        Err(Invalid::ZeroSeq)
    );
    assert_eq!(check_session(&write(7, 1, None)), Err(Invalid::NoSessionOp));
    assert_eq!(
        check_session(&write(7, 1, append(""))),
        Err(Invalid::EmptyKey)
    );
    let empty_put = Op::Put(pb::PutRequest {
        key: Bytes::new(),
        ..Default::default()
    });
    assert_eq!(
        check_session(&write(7, 1, Some(empty_put))),
        Err(Invalid::EmptyKey)
    );
    let txn = Op::Txn(txn(vec![put("a"), put("a")], vec![]));
    assert_eq!(
        check_session(&write(7, 1, Some(txn))),
        Err(Invalid::DuplicateKey)
    );
    assert_eq!(
        Status::from(Invalid::BadClientId(0)).message(),
        "flotilla: client_id 0x0 must be nonzero with the top bit clear"
    );
}
