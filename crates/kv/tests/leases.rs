//! The store's leases (etcd's lessor, its replicated half): grants,
//! attachments, revocation deleting every attached key in one revision,
//! checkpoints, the checks that refuse what etcd refuses, and a model
//! test that the lease table's key sets always match the keys' leases,
//! through snapshots too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::command;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use flotilla_kv::{
    CmpOp, Compare, CompareSpan, EventKind, Op, Outcome, Refusal, Replica, Response, SessionLimits,
    Store, Target, Txn, check_op,
};
use proptest::prelude::*;

fn keys_of(s: &Store, id: i64) -> Vec<&[u8]> {
    s.leases()
        .get(id)
        .map(|l| l.keys().map(|k| k.as_ref()).collect())
        .unwrap_or_default()
}

fn lease_of(s: &Store, key: &str) -> i64 {
    s.get(key.as_bytes()).map_or(-1, |kv| kv.lease)
}

#[test]
fn a_revoke_deletes_every_attached_key_in_one_revision() {
    let mut s = Store::with_history();
    s.apply(&Op::LeaseGrant { id: 7, ttl: 10 });
    assert_eq!(s.revision(), 0, "a grant takes no revision");
    assert!(!s.leases().is_empty() && s.leases().len() == 1);
    s.apply(&Op::put_leased("a", "1", 7));
    s.apply(&Op::put_leased("b", "2", 7));
    s.apply(&Op::put("c", "3"));
    assert_eq!(keys_of(&s, 7), vec![&b"a"[..], b"b"]);
    assert_eq!((lease_of(&s, "a"), lease_of(&s, "c")), (7, 0));
    let mut events = Vec::new();
    let r = s.apply_recording(&Op::LeaseRevoke { id: 7 }, Some(&mut events));
    assert_eq!(r, Response::Leased);
    assert_eq!(s.revision(), 4, "both keys go in one revision");
    assert!(s.get(b"a").is_none() && s.get(b"b").is_none());
    assert!(s.get(b"c").is_some());
    assert!(s.leases().is_empty());
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.kv.mod_rev)).collect();
    assert_eq!(kinds, vec![(EventKind::Delete, 4), (EventKind::Delete, 4)]);
    assert_eq!(events[0].prev.as_ref().unwrap().lease, 7);
    // The history remembers the keys and their lease.
    let Response::Range { kvs, .. } = s.read(&Op::range_at("", None, 0, 3)) else {
        panic!()
    };
    let leases: Vec<i64> = kvs.iter().map(|kv| kv.lease).collect();
    assert_eq!(leases, vec![7, 7, 0]);
    // A lease without keys goes without a revision.
    s.apply(&Op::LeaseGrant { id: 8, ttl: 10 });
    s.apply(&Op::LeaseRevoke { id: 8 });
    assert_eq!(s.revision(), 4);
}

#[test]
fn keys_move_between_leases_as_they_are_written() {
    let mut s = Store::new();
    s.apply(&Op::LeaseGrant { id: 1, ttl: 10 });
    s.apply(&Op::LeaseGrant { id: 2, ttl: 10 });
    s.apply(&Op::put_leased("k", "v", 1));
    s.apply(&Op::put_leased("k", "v", 2));
    assert_eq!((keys_of(&s, 1).len(), keys_of(&s, 2).len()), (0, 1));
    // Append and a rewrite keeping the lease keep it.
    s.apply(&Op::append("k", "w"));
    assert_eq!(lease_of(&s, "k"), 2);
    s.apply(&Op::Rewrite {
        key: Bytes::from_static(b"k"),
        value: Some(Bytes::from_static(b"x")),
        lease: None,
    });
    assert_eq!(
        (lease_of(&s, "k"), s.get(b"k").unwrap().value),
        (2, "x".into())
    );
    // A rewrite keeping the value moves the lease.
    s.apply(&Op::rewrite("k", 1));
    assert_eq!(
        (lease_of(&s, "k"), s.get(b"k").unwrap().value),
        (1, "x".into())
    );
    assert_eq!(keys_of(&s, 1), vec![&b"k"[..]]);
    // A put without a lease detaches it; deletes detach too.
    s.apply(&Op::put("k", "y"));
    assert!(keys_of(&s, 1).is_empty());
    s.apply(&Op::put_leased("k", "y", 1));
    s.apply(&Op::delete("k"));
    assert!(keys_of(&s, 1).is_empty());
    s.apply(&Op::put_leased("k", "y", 1));
    s.apply(&Op::delete_prefix("", false));
    assert!(keys_of(&s, 1).is_empty());
    // Revoking a lease the key left does not touch the key.
    s.apply(&Op::put_leased("k", "z", 2));
    s.apply(&Op::LeaseRevoke { id: 1 });
    assert_eq!(lease_of(&s, "k"), 2);
}

#[test]
fn what_etcd_refuses_is_refused_before_anything_changes() {
    let mut s = Store::new();
    let missing = Refusal::LeaseNotFound { id: 9 };
    assert_eq!(s.check_state(&Op::put_leased("k", "v", 9)), Err(missing));
    assert_eq!(s.check_state(&Op::LeaseRevoke { id: 9 }), Err(missing));
    assert_eq!(
        s.check_state(&Op::rewrite("k", 9)),
        Err(Refusal::KeyNotFound)
    );
    s.apply(&Op::put("k", "v"));
    assert_eq!(s.check_state(&Op::rewrite("k", 9)), Err(missing));
    assert_eq!(s.check_state(&Op::rewrite("k", 0)), Ok(()));
    s.apply(&Op::LeaseGrant { id: 9, ttl: 5 });
    assert_eq!(s.check_state(&Op::LeaseRevoke { id: 9 }), Ok(()));
    assert_eq!(
        s.check_state(&Op::LeaseGrant { id: 9, ttl: 5 }),
        Err(Refusal::LeaseExists { id: 9 })
    );
    assert_eq!(s.check_state(&Op::put_leased("k", "v", 9)), Ok(()));
    assert_eq!(
        check_op(&Op::LeaseGrant { id: 0, ttl: 5 }),
        Err(Refusal::LeaseNotFound { id: 0 })
    );
    assert_eq!(check_op(&Op::LeaseGrant { id: -4, ttl: 5 }), Ok(()));
    assert_eq!(
        Refusal::LeaseNotFound { id: 0x1f }.to_string(),
        "lease 000000000000001f not found"
    );
}

/// etcd checks a transaction's leases on the branch that runs only.
#[test]
fn a_transaction_checks_the_leases_of_the_branch_that_runs() {
    let mut s = Store::new();
    s.apply(&Op::LeaseGrant { id: 3, ttl: 5 });
    s.apply(&Op::put_leased("k", "v", 3));
    let on_lease = |id| Compare {
        key: Bytes::from_static(b"k"),
        op: CmpOp::Equal,
        target: Target::Lease(id),
        span: CompareSpan::Key,
    };
    let txn = |cmp, success, failure| {
        Op::Txn(Txn {
            compares: vec![cmp],
            success: vec![success],
            failure: vec![failure],
        })
    };
    let bad = || Op::put_leased("x", "1", 404);
    assert_eq!(
        s.check_state(&txn(on_lease(3), Op::put("x", "1"), bad())),
        Ok(())
    );
    assert_eq!(
        s.check_state(&txn(on_lease(4), Op::put("x", "1"), bad())),
        Err(Refusal::LeaseNotFound { id: 404 })
    );
    let nested = txn(on_lease(3), bad(), Op::put("x", "1"));
    assert_eq!(
        s.check_state(&txn(on_lease(3), nested, Op::put("x", "1"))),
        Err(Refusal::LeaseNotFound { id: 404 })
    );
    let greater = Compare {
        op: CmpOp::Greater,
        target: Target::Lease(2),
        ..on_lease(0)
    };
    assert!(s.holds(&greater));
    assert!(!s.holds(&Compare {
        key: Bytes::from_static(b"absent"),
        ..greater
    }));
}

#[test]
fn checkpoints_record_what_is_left_of_leases_that_exist() {
    let mut s = Store::new();
    s.apply(&Op::LeaseGrant { id: 1, ttl: 60 });
    assert_eq!(s.leases().get(1).unwrap().countdown(), 60);
    s.apply(&Op::LeaseCheckpoint {
        checkpoints: vec![(1, 25), (2, 5)],
    });
    let l = s.leases().get(1).unwrap();
    assert_eq!((l.ttl, l.remaining, l.countdown()), (60, 25, 25));
    assert!(s.leases().get(2).is_none(), "a checkpoint grants nothing");
    s.apply(&Op::LeaseCheckpoint {
        checkpoints: vec![(1, 0)],
    });
    assert_eq!(s.leases().get(1).unwrap().countdown(), 60);
    assert_eq!(s.revision(), 0);
}

#[test]
fn hash_kv_covers_a_key_s_lease() {
    let mut a = Store::with_history();
    let mut b = Store::with_history();
    for s in [&mut a, &mut b] {
        s.apply(&Op::LeaseGrant { id: 1, ttl: 60 });
    }
    a.apply(&Op::put_leased("k", "v", 1));
    b.apply(&Op::put("k", "v"));
    assert_ne!(a.hash_kv(0).unwrap().0, b.hash_kv(0).unwrap().0);
    // Which lease counts too.
    let mut c = Store::with_history();
    c.apply(&Op::LeaseGrant { id: 2, ttl: 60 });
    c.apply(&Op::put_leased("k", "v", 2));
    assert_ne!(a.hash_kv(0).unwrap().0, c.hash_kv(0).unwrap().0);
}

#[test]
fn a_replica_refuses_a_put_on_a_missing_lease_and_changes_nothing() {
    let mut r = Replica::with_history(SessionLimits::default());
    let out = r.apply(&command(1, Op::put_leased("k", "v", 5))).unwrap();
    assert_eq!(
        out.unwrap().outcome,
        Outcome::Refused(Refusal::LeaseNotFound { id: 5 })
    );
    assert_eq!(r.store().revision(), 0);
    r.apply(&command(2, Op::LeaseGrant { id: 5, ttl: 9 }))
        .unwrap();
    let out = r.apply(&command(3, Op::put_leased("k", "v", 5))).unwrap();
    assert!(matches!(
        out.unwrap().outcome,
        Outcome::Ok { revision: 1, .. }
    ));
}

/// etcd numbers revisions from 1 (the empty store); a log written by an
/// earlier build (format 1 commands) keeps its numbering from 0, so a
/// replica replaying it agrees with one that applied it then.
#[test]
fn an_etcd_replica_numbers_from_the_log_s_format() {
    let limits = SessionLimits::default();
    let mut now = Replica::etcd(limits);
    now.apply(&command(1, Op::put("k", "v"))).unwrap();
    assert_eq!(
        now.store().revision(),
        2,
        "etcd's first write is revision 2"
    );
    let mut back = Replica::etcd(limits);
    back.restore(&now.snapshot()).unwrap();
    back.apply(&command(2, Op::put("k", "w"))).unwrap();
    assert_eq!(back.store().revision(), 3);
    let mut old = command(1, Op::put("k", "v"));
    let mut bytes = old.data.to_vec();
    assert_eq!(bytes[0], flotilla_kv::COMMAND_FORMAT_VERSION);
    bytes[0] = 1;
    old.data = bytes.into();
    let mut replayed = Replica::etcd(limits);
    replayed.apply(&old).unwrap();
    assert_eq!(
        replayed.store().revision(),
        1,
        "an older build's log, from 0"
    );
    replayed.apply(&command(2, Op::put("k", "w"))).unwrap();
    assert_eq!(replayed.store().revision(), 2, "and it goes on as it began");
    let mut course = Replica::with_history(limits);
    course.apply(&command(1, Op::put("k", "v"))).unwrap();
    assert_eq!(
        course.store().revision(),
        1,
        "the course's KV counts from 0"
    );
}

#[derive(Clone, Debug)]
enum Step {
    Grant(u8),
    Revoke(u8),
    Put(u8, u8),
    Delete(u8),
    DeleteAll,
    Checkpoint(u8, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => any::<u8>().prop_map(Step::Grant),
        1 => any::<u8>().prop_map(Step::Revoke),
        5 => (any::<u8>(), any::<u8>()).prop_map(|(k, l)| Step::Put(k, l)),
        2 => any::<u8>().prop_map(Step::Delete),
        1 => Just(Step::DeleteAll),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(l, r)| Step::Checkpoint(l, r)),
    ]
}

fn op_of(step: &Step) -> Op {
    let lease = |l: u8| i64::from(l % 4); // 0: no lease
    let key = |k: u8| Bytes::from(format!("k{}", k % 5));
    match *step {
        Step::Grant(l) => Op::LeaseGrant {
            id: lease(l),
            ttl: 30,
        },
        Step::Revoke(l) => Op::LeaseRevoke { id: lease(l) },
        Step::Put(k, l) => Op::put_leased(key(k), "v", lease(l)),
        Step::Delete(k) => Op::delete(key(k)),
        Step::DeleteAll => Op::delete_prefix("", false),
        Step::Checkpoint(l, r) => Op::LeaseCheckpoint {
            checkpoints: vec![(lease(l), i64::from(r % 40))],
        },
    }
}

/// The invariant of `lease.rs`: a key is in a lease's key set exactly when
/// the store holds it with that lease, and every leased key's lease exists.
fn check_invariant(r: &Replica) {
    let s = r.store();
    let mut by_lease: BTreeMap<i64, BTreeSet<Bytes>> = BTreeMap::new();
    let Response::Range { kvs, .. } = s.read(&Op::range("", None, 0)) else {
        panic!()
    };
    for kv in kvs.iter().filter(|kv| kv.lease != 0) {
        by_lease.entry(kv.lease).or_default().insert(kv.key.clone());
    }
    for (id, l) in s.leases().iter() {
        let keys: BTreeSet<Bytes> = l.keys().cloned().collect();
        assert_eq!(keys, by_lease.remove(&id).unwrap_or_default(), "lease {id}");
    }
    assert!(
        by_lease.is_empty(),
        "keys on leases that do not exist: {by_lease:?}"
    );
}

proptest! {
    #[test]
    fn lease_key_sets_match_the_keys_through_snapshots(
        steps in proptest::collection::vec(step(), 1..60),
        history in any::<bool>(),
    ) {
        let limits = SessionLimits::default();
        let fresh = || if history { Replica::with_history(limits) } else { Replica::new(limits) };
        let mut r = fresh();
        for (i, st) in steps.iter().enumerate() {
            r.apply(&command(i as u64 + 1, op_of(st))).unwrap();
            check_invariant(&r);
        }
        let mut back = fresh();
        back.restore(&r.snapshot()).unwrap();
        prop_assert_eq!(&back, &r);
        check_invariant(&back);
    }
}
