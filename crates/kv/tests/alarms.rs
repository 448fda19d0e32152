//! etcd's NOSPACE alarm in the store: while one is raised, what adds data
//! (puts, transactions with a put in either branch, lease grants) is
//! refused and what frees room (deletes, compaction) goes on; alarms are
//! per member and survive a snapshot (so do members' starts); the size a quota measures grows with
//! writes and shrinks once a compaction is swept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::command;

use flotilla_kv::{AlarmKind, Compare, Op, Outcome, Refusal, Replica, SessionLimits, Store, Txn};

fn alarm(raise: bool, member: u64) -> Op {
    Op::Alarm {
        raise,
        member,
        kind: AlarmKind::NoSpace,
    }
}

#[test]
fn a_raised_nospace_alarm_refuses_what_adds_data_only() {
    let mut s = Store::with_history();
    s.apply(&Op::put("k", "v"));
    s.apply(&Op::LeaseGrant { id: 1, ttl: 10 });
    s.apply(&alarm(true, 7));
    s.apply(&alarm(true, 8));
    assert_eq!(
        s.alarms().collect::<Vec<_>>(),
        vec![(7, AlarmKind::NoSpace), (8, AlarmKind::NoSpace)]
    );
    let put_in_failure = Op::Txn(Txn {
        compares: vec![Compare::exists("k")],
        success: vec![Op::get("k")],
        failure: vec![Op::put("x", "1")],
    });
    for op in [
        Op::put("k", "w"),
        Op::append("k", "w"),
        Op::rewrite("k", 0),
        Op::LeaseGrant { id: 2, ttl: 10 },
        put_in_failure,
    ] {
        assert_eq!(s.check_state(&op), Err(Refusal::NoSpace), "{op:?}");
    }
    for op in [
        Op::delete("k"),
        Op::delete_prefix("", false),
        Op::Compact { revision: 1 },
        Op::LeaseRevoke { id: 1 },
        Op::get("k"),
    ] {
        assert_eq!(s.check_state(&op), Ok(()), "{op:?}");
    }
    s.apply(&alarm(false, 7));
    assert_eq!(
        s.check_state(&Op::put("k", "w")),
        Err(Refusal::NoSpace),
        "8's remains"
    );
    s.apply(&alarm(false, 8));
    assert_eq!(s.check_state(&Op::put("k", "w")), Ok(()));
    assert_eq!(
        Refusal::NoSpace.to_string(),
        "the store is over its quota (a NOSPACE alarm is raised)"
    );
}

#[test]
fn alarms_survive_a_snapshot_and_refuse_through_the_replica() {
    let limits = SessionLimits::default();
    let mut r = Replica::etcd(limits);
    r.apply(&command(1, alarm(true, 3))).unwrap();
    let refused = r.apply(&command(2, Op::put("k", "v"))).unwrap().unwrap();
    assert!(!r.store().started(4));
    r.apply(&command(3, Op::MemberStarted { member: 4 }))
        .unwrap();
    assert_eq!(refused.outcome, Outcome::Refused(Refusal::NoSpace));
    let mut back = Replica::etcd(limits);
    back.restore(&r.snapshot()).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.store().alarms().count(), 1);
    assert!(back.store().started(4) && !back.store().started(3));
}

#[test]
fn the_size_grows_with_writes_and_shrinks_once_a_compaction_is_swept() {
    let mut s = Store::with_history();
    s.set_sweep_per_apply(0);
    assert_eq!(s.size_bytes(), 0);
    for i in 0..100 {
        s.apply(&Op::put("k", vec![b'v'; 1000 + i]));
    }
    let full = s.size_bytes();
    assert!(full >= 100 * 1000, "{full}");
    s.apply(&Op::Compact { revision: 100 });
    assert_eq!(s.size_bytes(), full, "nothing swept yet");
    while s.sweep(1000) {}
    let after = s.size_bytes();
    assert!(after < 3_000, "{after}: one or two changes remain");
    let mut plain = Store::new();
    plain.apply(&Op::put("ab", "cd"));
    assert_eq!(plain.size_bytes(), 4 + 64);
    let mut one = Store::with_history();
    one.apply(&Op::put("abc", "defg"));
    assert_eq!(one.size_bytes(), 3 + 4 + 96, "key, value and the indexes");
}

#[test]
fn a_raised_corrupt_alarm_refuses_every_write_and_lets_reads_and_alarms_through() {
    let mut s = Store::with_history();
    s.apply(&Op::put("k", "v"));
    s.apply(&Op::LeaseGrant { id: 1, ttl: 10 });
    // etcd raises it for member 0: which member diverged is not known.
    let corrupt = |raise| Op::Alarm {
        raise,
        member: 0,
        kind: AlarmKind::Corrupt,
    };
    s.apply(&corrupt(true));
    let read_only_txn = Op::Txn(Txn {
        compares: vec![Compare::exists("k")],
        success: vec![Op::get("k")],
        failure: vec![],
    });
    let delete_in_failure = Op::Txn(Txn {
        compares: vec![Compare::exists("k")],
        success: vec![Op::get("k")],
        failure: vec![Op::delete("k")],
    });
    for op in [
        Op::put("k", "w"),
        Op::append("k", "w"),
        Op::rewrite("k", 0),
        Op::delete("k"),
        Op::delete_prefix("", false),
        Op::Compact { revision: 1 },
        // Refused as corrupt before anything else is checked, as etcd.
        Op::Compact { revision: 99 },
        Op::LeaseGrant { id: 2, ttl: 10 },
        Op::LeaseRevoke { id: 1 },
        Op::LeaseRevoke { id: 42 },
        delete_in_failure,
    ] {
        assert_eq!(s.check_state(&op), Err(Refusal::Corrupt), "{op:?}");
    }
    for op in [
        Op::get("k"),
        Op::prefix("", 0),
        read_only_txn,
        Op::LeaseCheckpoint {
            checkpoints: vec![(1, 5)],
        },
        Op::MemberStarted { member: 2 },
        alarm(true, 3),
        corrupt(false),
    ] {
        assert_eq!(s.check_state(&op), Ok(()), "{op:?}");
    }
    s.apply(&corrupt(false));
    assert_eq!(s.check_state(&Op::put("k", "w")), Ok(()));
    assert_eq!(
        Refusal::Corrupt.to_string(),
        "the cluster is marked corrupt (a CORRUPT alarm is raised)"
    );
}
