//! The MVCC history against a model that keeps every revision's whole key
//! space: random writes, compactions and sweeps of random sizes, then
//! every read at every revision, every replay, and a snapshot round trip
//! must answer as the model does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_kv::{
    Command, Event, EventKind, KeyValue, Op, Outcome, ReadConsistency, Refusal, Replica, Request,
    Response, SessionLimits, Store, Txn,
};
use flotilla_raft::{Entry, EntryKind, LogIndex, Term};
use proptest::prelude::*;

/// One key space, by key.
type State = BTreeMap<Bytes, KeyValue>;

#[derive(Clone, Debug)]
enum Step {
    Put(u8, u8),
    Delete(u8),
    DeleteRange(u8, u8),
    /// Two writes in one revision, the second to the same key or not.
    Txn(u8, u8, u8),
    /// Compact at this fraction (of 256) of the way from the last
    /// compaction to the current revision.
    Compact(u8),
    Sweep(u8),
}

fn key(k: u8) -> Bytes {
    Bytes::from(format!("k{}", k % 6))
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
        2 => any::<u8>().prop_map(Step::Delete),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Step::DeleteRange(a, b)),
        1 => (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, b, v)| Step::Txn(a, b, v)),
        1 => any::<u8>().prop_map(Step::Compact),
        1 => any::<u8>().prop_map(Step::Sweep),
    ]
}

/// The replica, the model's states by revision, and each revision's
/// events.
struct Run {
    replica: Replica,
    states: Vec<State>,
    events: BTreeMap<u64, Vec<Event>>,
}

impl Run {
    fn new(sweep_per_apply: usize) -> Run {
        let mut replica = Replica::with_history(SessionLimits::default());
        replica.set_sweep_per_apply(sweep_per_apply);
        Run {
            replica,
            states: vec![State::new()],
            events: BTreeMap::new(),
        }
    }

    /// Applies `op` as the next log entry, and returns its outcome.
    fn apply(&mut self, op: Op, ev: Option<&mut Vec<Event>>) -> Outcome {
        let index = self.replica.applied().get() + 1;
        let applied = self.replica.apply_recording(&entry(index, op), ev);
        applied.unwrap().unwrap().outcome
    }

    fn write(&mut self, op: &Op) {
        let mut ev = Vec::new();
        self.apply(op.clone(), Some(&mut ev));
        let rev = self.replica.store().revision();
        if rev as usize == self.states.len() {
            let mut s = self.states[rev as usize - 1].clone();
            for e in &ev {
                match e.kind {
                    EventKind::Put => s.insert(e.kv.key.clone(), e.kv.clone()),
                    EventKind::Delete => s.remove(&e.kv.key),
                };
            }
            self.states.push(s);
            self.events.insert(rev, ev);
        } else {
            assert!(ev.is_empty(), "events without a revision");
        }
    }

    fn run(&mut self, s: &Step) {
        match *s {
            Step::Put(k, v) => self.write(&Op::put(key(k), vec![v])),
            Step::Delete(k) => self.write(&Op::delete(key(k))),
            Step::DeleteRange(a, b) => {
                self.write(&Op::delete_range(key(a), Some(key(b)), false));
            }
            Step::Txn(a, b, v) => self.write(&Op::Txn(Txn {
                compares: vec![],
                success: vec![Op::put(key(a), vec![v]), Op::put(key(b), vec![v, 1])],
                failure: vec![],
            })),
            Step::Compact(f) => {
                let store = self.replica.store();
                let (lo, hi) = (store.compacted(), store.revision());
                let at = lo + (hi - lo) * u64::from(f) / 255;
                match self.apply(Op::Compact { revision: at }, None) {
                    Outcome::Ok {
                        revision,
                        response: Response::Compacted,
                    } => assert_eq!((revision, self.replica.store().compacted()), (hi, at)),
                    Outcome::Refused(Refusal::Compacted { .. }) => assert!(at <= lo),
                    other => panic!("compact {at} of {lo}..={hi}: {other:?}"),
                }
            }
            Step::Sweep(n) => {
                self.replica.sweep(usize::from(n));
            }
        }
    }

    /// Every read and replay the store may serve, against the model.
    fn check(&self, store: &Store) {
        let (lo, hi) = (store.compacted(), store.revision());
        let now = all_at(0, 0);
        assert_eq!(store.check_state(&now), Ok(()), "0: the current revision");
        for rev in lo.max(1)..=hi {
            let read = all_at(rev, 0);
            assert_eq!(store.check_state(&read), Ok(()));
            let want: Vec<KeyValue> = self.states[rev as usize].values().cloned().collect();
            let count = want.len() as u64;
            let first: Vec<KeyValue> = want.iter().take(1).cloned().collect();
            assert_eq!(
                store.read(&read),
                Response::Range { kvs: want, count },
                "range at {rev} (compacted {lo})"
            );
            assert_eq!(
                store.read(&all_at(rev, 1)),
                Response::Range { kvs: first, count },
                "range at {rev}, limit 1"
            );
        }
        let nothing = store.replay(
            lo.max(1),
            hi,
            &Bytes::from_static(b"b"),
            Some(&Bytes::from_static(b"a")),
            10,
        );
        assert_eq!(
            nothing.map(|r| (r.events.len(), r.next)),
            Ok((0, hi + 1)),
            "an empty range"
        );
        if lo > 1 {
            let old = all_at(lo - 1, 0);
            assert!(matches!(
                store.check_state(&old),
                Err(Refusal::Compacted { .. })
            ));
            assert!(store.replay(lo - 1, hi, &Bytes::new(), None, 10).is_err());
        }
        self.check_replay(store, lo.max(1), hi);
    }

    fn check_replay(&self, store: &Store, from: u64, to: u64) {
        let compacted = store.compacted();
        let want: Vec<Event> = self
            .events
            .range(from..=to)
            .flat_map(|(rev, evs)| {
                evs.iter().map(move |e| {
                    let mut e = e.clone();
                    // A change at the compaction loses the state before it.
                    if *rev == compacted && e.prev.as_ref().is_some_and(|p| p.mod_rev < compacted) {
                        e.prev = None;
                    }
                    e
                })
            })
            .collect();
        let mut got = Vec::new();
        let mut next = from;
        while next <= to {
            let r = store.replay(next, to, &Bytes::new(), None, 3).unwrap();
            assert!(r.next > next, "a replay step makes progress");
            got.extend(r.events);
            next = r.next;
        }
        assert_eq!(got, want, "replay {from}..={to} (compacted {compacted})");
    }
}

/// Every key at `revision` (0: the current one), at most `limit`.
fn all_at(revision: u64, limit: u64) -> Op {
    Op::range_at(Bytes::new(), None, limit, revision)
}

fn entry(index: u64, op: Op) -> Entry {
    let c = Command {
        stamp_ms: index,
        request: Request {
            client: 1,
            seq: index,
            read: ReadConsistency::Linearizable,
            resumed: index > 1,
            op,
        },
    };
    Entry {
        term: Term(1),
        index: LogIndex(index),
        kind: EntryKind::Command,
        data: c.encode(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn history_answers_as_a_model_of_every_revision(
        steps in prop::collection::vec(step(), 1..60),
        sweep_per_apply in 0usize..3,
    ) {
        let mut run = Run::new(sweep_per_apply);
        for s in &steps {
            run.run(s);
            if matches!(s, Step::Compact(_) | Step::Sweep(_)) {
                run.check(run.replica.store());
            }
        }
        run.check(run.replica.store());
        let mut swept = run.replica.clone();
        while swept.sweep(1) {}
        prop_assert_eq!(&swept, &run.replica, "sweeping changes no answer");
        run.check(swept.store());
        let mut back = Replica::with_history(SessionLimits::default());
        back.restore(&run.replica.snapshot()).unwrap();
        prop_assert_eq!(&back, &run.replica, "a snapshot restores every answer");
        run.check(back.store());
        prop_assert_eq!(back.snapshot(), swept.snapshot(), "one snapshot, however swept");
        let store = run.replica.store();
        for rev in store.compacted()..=store.revision() {
            let hash = store.hash_kv(rev);
            prop_assert!(hash.is_ok());
            prop_assert_eq!(&swept.store().hash_kv(rev), &hash, "HashKV at {}", rev);
            prop_assert_eq!(&back.store().hash_kv(rev), &hash, "HashKV at {}", rev);
        }
        let future = matches!(
            store.hash_kv(store.revision() + 1),
            Err(Refusal::FutureRevision { .. })
        );
        prop_assert!(future, "HashKV past the store's revision");
    }
}

/// A replica's snapshot carries the history: the restored replica serves
/// the same old revisions and refuses the same compacted ones.
#[test]
fn a_snapshot_carries_the_history_and_its_compaction() {
    let mut r = Replica::with_history(SessionLimits::default());
    let ops = [
        Op::put("a", "1"),
        Op::put("b", "1"),
        Op::put("a", "2"),
        Op::delete("b"),
        Op::Compact { revision: 3 },
        Op::put("a", "3"),
    ];
    for (i, op) in ops.into_iter().enumerate() {
        r.apply(&entry(i as u64 + 1, op)).unwrap();
    }
    let mut back = Replica::with_history(SessionLimits::default());
    back.restore(&r.snapshot()).unwrap();
    assert_eq!(back, r);
    let at = |rev| all_at(rev, 0);
    for rep in [&r, &back] {
        let Outcome::Ok {
            response: Response::Range { kvs, count },
            ..
        } = rep.read(&at(3))
        else {
            panic!("read at 3 refused")
        };
        assert_eq!(count, 2);
        assert_eq!(kvs[0].value.as_ref(), b"2");
        assert_eq!(
            rep.read(&at(2)),
            Outcome::Refused(Refusal::Compacted {
                requested: 2,
                compacted: 3
            })
        );
        assert_eq!(
            rep.read(&at(6)),
            Outcome::Refused(Refusal::FutureRevision {
                requested: 6,
                current: 5
            })
        );
    }
    // A compaction at or below the last one is refused, as etcd does,
    // and so is one past the store's revision.
    let again = back.apply(&entry(7, Op::Compact { revision: 3 })).unwrap();
    assert!(matches!(
        again.unwrap().outcome,
        Outcome::Refused(Refusal::Compacted { .. })
    ));
    let future = back.apply(&entry(8, Op::Compact { revision: 9 })).unwrap();
    assert!(matches!(
        future.unwrap().outcome,
        Outcome::Refused(Refusal::FutureRevision { .. })
    ));
    // A replica without history restores the same snapshot as its current
    // pairs only.
    let mut plain = Replica::new(SessionLimits::default());
    plain.restore(&r.snapshot()).unwrap();
    assert_eq!(plain.store().get(b"a").map(|kv| kv.version), Some(3));
    assert!(!plain.store().keeps_history());
}

/// A compaction's forgetting is done a bounded step at a time: each
/// step says whether work remains, and once none does, only what a read
/// at the compaction needs is left.
#[test]
fn sweeping_forgets_obsolete_changes_a_few_at_a_time() {
    let mut s = Store::with_history();
    s.set_sweep_per_apply(0);
    for i in 0..100 {
        s.apply(&Op::put("k", i.to_string()));
    }
    s.apply(&Op::put("other", "x"));
    s.apply(&Op::Compact { revision: 101 });
    assert_eq!(s.history_len(), 101, "nothing swept yet");
    // A change examined and forgotten counts two: each step of 10 does
    // five of k's 100 changes (the 99 obsolete ones, and its last put,
    // which stays).
    assert_eq!(steps_of(&mut s, 10), 19);
    assert_eq!(s.history_len(), 2, "k's last put and other's");
    assert!(!s.sweep(10), "nothing left");
    // A change examined and kept counts one: 100 keys written once take
    // ten steps of 10.
    for i in 0..100 {
        s.apply(&Op::put(format!("key{i:03}"), "x"));
    }
    s.apply(&Op::put("last", "x"));
    s.apply(&Op::Compact { revision: 202 });
    assert_eq!(steps_of(&mut s, 10), 10);
    assert_eq!(s.history_len(), 103, "every key's only put");
}

/// How many calls of `sweep(budget)` said work remained.
fn steps_of(s: &mut Store, budget: usize) -> usize {
    let mut steps = 0;
    while s.sweep(budget) {
        steps += 1;
        assert!(steps < 1000, "sweeping never ends");
    }
    steps
}

/// Stores equal in every key now but not in their history, or in their
/// compaction, are not equal.
#[test]
fn equality_looks_at_the_history_and_the_compaction() {
    let mut a = Store::with_history();
    let mut b = Store::with_history();
    a.apply(&Op::put("k", "1"));
    b.apply(&Op::put("k", "other"));
    for s in [&mut a, &mut b] {
        s.apply(&Op::put("k", "2"));
    }
    assert_eq!(a.get(b"k"), b.get(b"k"));
    assert_ne!(a, b, "k was 1 at revision 1 in a only");
    let mut c = a.clone();
    assert_eq!(a, c);
    c.apply(&Op::Compact { revision: 1 });
    assert_ne!(a, c, "the same changes, compacted in c only");
}

/// A replica's sweeping follows its setting: none on apply with 0, then
/// step by step.
#[test]
fn a_replica_sweeps_as_set() {
    let mut r = Replica::with_history(SessionLimits::default());
    r.set_sweep_per_apply(0);
    for i in 1..=50 {
        r.apply(&entry(i, Op::put("k", i.to_string()))).unwrap();
    }
    r.apply(&entry(51, Op::Compact { revision: 50 })).unwrap();
    assert_eq!(r.store().history_len(), 50, "nothing swept on apply");
    let mut steps = 0;
    while r.sweep(5) {
        steps += 1;
        assert!(steps < 100, "sweeping never ends");
    }
    assert!(steps > 0);
    assert_eq!(r.store().history_len(), 1, "k's put at 50 alone");
}

/// HashKV tells replicas apart that differ in any change up to the
/// revision, and only up to it.
#[test]
fn hash_kv_covers_every_change_up_to_its_revision() {
    let mut a = Store::with_history();
    let mut b = Store::with_history();
    for s in [&mut a, &mut b] {
        s.apply(&Op::put("k", "1"));
        s.apply(&Op::put("k", "2"));
    }
    a.apply(&Op::put("k", "3"));
    b.apply(&Op::put("k", "4"));
    assert_eq!(a.hash_kv(2), b.hash_kv(2));
    assert_ne!(a.hash_kv(3), b.hash_kv(3));
    assert_ne!(a.hash_kv(2), a.hash_kv(3));
    assert_eq!(a.hash_kv(0), a.hash_kv(3), "0: the current revision");
    a.apply(&Op::Compact { revision: 2 });
    assert!(matches!(a.hash_kv(1), Err(Refusal::Compacted { .. })));
    assert_eq!(a.hash_kv(2).map(|(_, c)| c), Ok(2));
    // A plain store hashes its current pairs.
    let mut plain = Store::new();
    plain.apply(&Op::put("k", "1"));
    let one = plain.hash_kv(0);
    plain.apply(&Op::put("k", "2"));
    assert_ne!(plain.hash_kv(0), one);
}

/// A replica that keeps history restores a snapshot made without one
/// (an older build's) as history compacted at its revision, every key
/// kept, two written by one transaction too.
#[test]
fn a_plain_snapshot_starts_the_history_at_its_revision() {
    let mut plain = Replica::new(SessionLimits::default());
    let both = Op::Txn(Txn {
        compares: vec![],
        success: vec![Op::put("a", "1"), Op::put("b", "2")],
        failure: vec![],
    });
    plain.apply(&entry(1, both)).unwrap();
    plain.apply(&entry(2, Op::put("c", "1"))).unwrap();
    let mut r = Replica::with_history(SessionLimits::default());
    r.restore(&plain.snapshot()).unwrap();
    assert_eq!(r.store().compacted(), 2);
    r.apply(&entry(3, Op::put("a", "2"))).unwrap();
    let Outcome::Ok {
        response: Response::Range { kvs, .. },
        ..
    } = r.read(&all_at(2, 0))
    else {
        panic!("read at 2 refused")
    };
    let values: Vec<&[u8]> = kvs.iter().map(|kv| kv.value.as_ref()).collect();
    assert_eq!(values, [&b"1"[..], b"2", b"1"], "a, b (one revision), c");
}
