//! Tests of the store: etcd's revisions and versions, ranges, deletes,
//! transactions and compares.

use super::*;

fn keys(r: &Response) -> Vec<&[u8]> {
    match r {
        Response::Range { kvs, .. } => kvs.iter().map(|kv| kv.key.as_ref()).collect(),
        other => panic!("not a range: {other:?}"),
    }
}

#[test]
fn revisions_and_versions_follow_etcd() {
    let mut s = Store::new();
    s.apply(&Op::put("a", "1"));
    s.apply(&Op::put("b", "1"));
    s.apply(&Op::append("a", "2"));
    let a = s.get(b"a").unwrap();
    assert_eq!((a.create_rev, a.mod_rev, a.version), (1, 3, 2));
    assert_eq!(a.value.as_ref(), b"12");
    assert_eq!(s.apply(&Op::delete("a")), Response::Deleted(true));
    assert_eq!(s.revision(), 4);
    assert_eq!(s.apply(&Op::delete("a")), Response::Deleted(false));
    assert_eq!(s.revision(), 4, "deleting an absent key is not a write");
    s.apply(&Op::append("a", "x"));
    let a = s.get(b"a").unwrap();
    assert_eq!((a.create_rev, a.mod_rev, a.version), (5, 5, 1));
}

/// etcd's put with `ignore_value`: a new revision and version, the
/// same value; refused for an absent key, inside a transaction too,
/// judged on the state before it.
#[test]
fn a_rewrite_keeps_the_value_and_needs_the_key() {
    let mut s = Store::with_history();
    s.apply(&Op::put("k", "v"));
    let rewrite = |k: &'static str| Op::rewrite(k, 0);
    assert_eq!(s.check_state(&rewrite("k")), Ok(()));
    assert_eq!(s.apply(&rewrite("k")), Response::Written);
    let k = s.get(b"k").unwrap();
    assert_eq!(
        (k.value.as_ref(), k.create_rev, k.mod_rev, k.version),
        (&b"v"[..], 1, 2, 2)
    );
    assert_eq!(s.check_state(&rewrite("absent")), Err(Refusal::KeyNotFound));
    let create_then_rewrite = Op::Txn(Txn {
        compares: vec![],
        success: vec![Op::put("new", "x"), rewrite("new")],
        failure: vec![],
    });
    assert_eq!(
        s.check_state(&create_then_rewrite),
        Err(Refusal::KeyNotFound)
    );
}

#[test]
fn range_by_prefix_and_bounds_with_limit() {
    let mut s = Store::new();
    for k in ["a", "ab", "abc", "abd", "b", "c"] {
        s.apply(&Op::put(k, "v"));
    }
    assert_eq!(
        keys(&s.read(&Op::prefix("ab", 0))),
        [&b"ab"[..], b"abc", b"abd"]
    );
    let r = s.read(&Op::prefix("ab", 2));
    assert_eq!(keys(&r), [&b"ab"[..], b"abc"]);
    assert!(matches!(r, Response::Range { count: 3, .. }));
    let r = s.read(&Op::range("abc", Some(Bytes::from_static(b"c")), 0));
    assert_eq!(keys(&r), [&b"abc"[..], b"abd", b"b"]);
    assert_eq!(keys(&s.read(&Op::range("b", None, 0))), [&b"b"[..], b"c"]);
    let empty = s.read(&Op::range("c", Some(Bytes::from_static(b"a")), 0));
    assert_eq!(keys(&empty), Vec::<&[u8]>::new());
    assert_eq!(keys(&s.read(&Op::prefix("", 1))), [&b"a"[..]]);
}

#[test]
fn txn_compares_value_version_and_absence() {
    let mut s = Store::new();
    let cas = |expected: &str, new: &str| {
        Op::Txn(Txn {
            compares: vec![Compare::value_is("k", expected.to_string())],
            success: vec![Op::put("k", new.to_string())],
            failure: vec![Op::get("k")],
        })
    };
    let r = s.apply(&cas("", "x"));
    assert!(
        matches!(
            r,
            Response::Txn {
                succeeded: false,
                ..
            }
        ),
        "absent key matches no value"
    );
    let create = Op::Txn(Txn {
        compares: vec![Compare::absent("k")],
        success: vec![Op::put("k", "a")],
        failure: vec![],
    });
    assert!(matches!(
        s.apply(&create),
        Response::Txn {
            succeeded: true,
            ..
        }
    ));
    assert!(matches!(
        s.apply(&create),
        Response::Txn {
            succeeded: false,
            ..
        }
    ));
    assert_eq!(
        s.revision(),
        1,
        "a failed txn with only reads is not a write"
    );
    assert!(matches!(
        s.apply(&cas("a", "b")),
        Response::Txn {
            succeeded: true,
            ..
        }
    ));
    let by_version = Op::Txn(Txn {
        compares: vec![Compare::version_is("k", 2), Compare::exists("k")],
        success: vec![Op::put("k", "c"), Op::put("j", "c"), Op::get("k")],
        failure: vec![],
    });
    let Response::Txn {
        succeeded: true,
        responses,
    } = s.apply(&by_version)
    else {
        panic!("version compare failed")
    };
    assert_eq!(s.revision(), 3, "one revision for the whole txn");
    let Response::Get(Some(k)) = &responses[2] else {
        panic!("no get")
    };
    assert_eq!((k.value.as_ref(), k.mod_rev), (&b"c"[..], 3));
    assert_eq!(s.get(b"j").unwrap().create_rev, 3);
}

fn store_with(keys: &[&str]) -> Store {
    let mut s = Store::new();
    for k in keys {
        s.apply(&Op::put(k.to_string(), "v"));
    }
    s
}

fn deleted(r: &Response) -> (u64, Vec<&[u8]>) {
    match r {
        Response::DeletedRange { deleted, prev_kvs } => (
            *deleted,
            prev_kvs.iter().map(|kv| kv.key.as_ref()).collect(),
        ),
        other => panic!("not a delete-range: {other:?}"),
    }
}

fn all_keys(s: &Store) -> Vec<&[u8]> {
    s.kvs.iter().map(|(k, _)| k.as_ref()).collect()
}

#[test]
fn delete_prefix_removes_the_prefix_s_keys_in_one_revision() {
    let mut s = store_with(&["a", "ab", "abc", "abd", "b"]);
    let r = s.apply(&Op::delete_prefix("ab", false));
    assert_eq!(deleted(&r), (3, vec![]), "no prev_kvs unless asked");
    assert_eq!(all_keys(&s), [&b"a"[..], b"b"]);
    assert_eq!(s.revision(), 6, "one revision for the three keys");
    s.apply(&Op::put("ab", "w"));
    let ab = s.get(b"ab").unwrap();
    assert_eq!((ab.create_rev, ab.version), (7, 1), "recreated fresh");
}

#[test]
fn delete_range_is_half_open_and_returns_prev_kvs() {
    let mut s = store_with(&["a", "b", "c", "d"]);
    s.apply(&Op::append("b", "2"));
    let r = s.apply(&Op::delete_range("a", Some(Bytes::from_static(b"c")), true));
    let Response::DeletedRange { deleted, prev_kvs } = &r else {
        panic!("not a delete-range: {r:?}")
    };
    assert_eq!(*deleted, 2);
    let got: Vec<_> = prev_kvs
        .iter()
        .map(|kv| (kv.key.as_ref(), kv.value.as_ref(), kv.mod_rev, kv.version))
        .collect();
    let want: [(&[u8], &[u8], u64, u64); 2] = [(b"a", b"v", 1, 1), (b"b", b"v2", 5, 2)];
    assert_eq!(got, want);
    assert_eq!(all_keys(&s), [&b"c"[..], b"d"]);
    assert_eq!(s.revision(), 6);
}

#[test]
fn delete_all_and_no_op_deletes() {
    let mut s = store_with(&["a", "b", "z"]);
    let backwards = Op::delete_range("c", Some(Bytes::from_static(b"a")), true);
    assert_eq!(deleted(&s.apply(&backwards)), (0, vec![]));
    let none = Op::delete_prefix("zz", true);
    assert_eq!(deleted(&s.apply(&none)), (0, vec![]));
    assert_eq!(s.revision(), 3, "deleting nothing is not a write");
    // etcd's `del "" --prefix`: key "\0", range_end "\0".
    let all = Op::delete_range(Bytes::from_static(b"\0"), None, false);
    assert_eq!(deleted(&s.apply(&all)), (3, vec![]));
    assert!(s.is_empty());
    assert_eq!(s.revision(), 4);
    assert_eq!(deleted(&s.apply(&all)), (0, vec![]));
    assert_eq!(s.revision(), 4);
}

#[test]
fn delete_range_in_a_txn_shares_the_txn_s_revision() {
    let mut s = store_with(&["a1", "a2"]);
    let t = Op::Txn(Txn {
        compares: vec![Compare::exists("a1")],
        success: vec![Op::delete_prefix("a", true), Op::put("b", "x")],
        failure: vec![],
    });
    let Response::Txn {
        succeeded,
        responses,
    } = s.apply(&t)
    else {
        panic!("not a txn")
    };
    assert!(succeeded);
    assert_eq!(deleted(&responses[0]), (2, vec![&b"a1"[..], b"a2"]));
    assert_eq!(s.revision(), 3);
    assert_eq!(s.get(b"b").unwrap().mod_rev, 3);
}

#[test]
fn a_range_compare_holds_on_every_key_of_the_range_as_etcd() {
    // a1 (version 1), a2 (version 2), then b, the newest.
    let mut s = store_with(&["a1", "a2"]);
    s.apply(&Op::put("a2", "v2"));
    s.apply(&Op::put("b", "x"));
    let b_rev = s.get(b"b").map_or(0, |kv| kv.mod_rev);
    let cmp = |end: Option<&'static [u8]>, op, target| Compare {
        key: Bytes::from_static(b"a"),
        op,
        target,
        span: CompareSpan::Range(end.map(Bytes::from_static)),
    };
    let a_to_b = Some(&b"b"[..]);
    // Every key of [a, b) exists; not every one was written once.
    assert!(s.holds(&cmp(a_to_b, CmpOp::Greater, Target::Version(0))));
    assert!(!s.holds(&cmp(a_to_b, CmpOp::Equal, Target::Version(1))));
    assert!(s.holds(&cmp(a_to_b, CmpOp::Less, Target::ModRev(b_rev))));
    // To the last key: b is in the range now.
    assert!(!s.holds(&cmp(None, CmpOp::Less, Target::ModRev(b_rev))));
    // No key in [a, a1): as an absent key, a value compare fails and a
    // version compare sees 0.
    let empty = Some(&b"a1"[..]);
    assert!(!s.holds(&cmp(empty, CmpOp::NotEqual, Target::Value(Bytes::new()))));
    assert!(s.holds(&cmp(empty, CmpOp::Equal, Target::Version(0))));
    // An end at or before the key is an empty range too.
    assert!(s.holds(&cmp(Some(&b"0"[..]), CmpOp::Equal, Target::CreateRev(0))));
}
