//! The etcd-style operations through a simulated cluster: ranges with
//! bounds and limits, compare-and-swap transactions on value, version and
//! absence, revisions that survive restarts and snapshots, serializable
//! reads from a follower. Each over `FLOTILLA_SEEDS` seeds (default 10).

use std::time::Instant;

use bytes::Bytes;
use flotilla_kv::{Compare, KeyValue, Op, ReadConsistency, Response, Txn};
use flotilla_kvsim::lab::ELECTION_TIMEOUT_NS;
use flotilla_kvsim::lab::generic::finish;
use flotilla_kvsim::{KvCluster, RunStats, run_seeds};
use flotilla_sim::{Failure, Tester};

const SEEDS: u64 = 10;

fn expect(t: &KvCluster, what: &str, ok: bool) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(t.c.fail(what.to_string()))
    }
}

fn keys(r: &Response) -> (Vec<String>, u64) {
    match r {
        Response::Range { kvs, count } => (
            kvs.iter()
                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                .collect(),
            *count,
        ),
        _ => (Vec::new(), u64::MAX),
    }
}

fn ranges(seed: u64) -> Result<RunStats, Failure> {
    let began = Instant::now();
    let mut t = KvCluster::new(3, seed, false, None);
    let ck = t.make_client(&[0, 1, 2]);
    for k in ["a", "ab", "abc", "abd", "b", "c"] {
        t.put(&ck, k, "v")?;
    }
    let r = t.op(&ck, Op::prefix("ab", 0))?;
    expect(
        &t,
        "prefix ab",
        keys(&r) == (vec!["ab".into(), "abc".into(), "abd".into()], 3),
    )?;
    let r = t.op(&ck, Op::prefix("ab", 2))?;
    expect(
        &t,
        "prefix ab limit 2",
        keys(&r) == (vec!["ab".into(), "abc".into()], 3),
    )?;
    let r = t.op(&ck, Op::range("abc", Some(Bytes::from_static(b"c")), 0))?;
    expect(&t, "range [abc, c)", keys(&r).0 == ["abc", "abd", "b"])?;
    let r = t.op(&ck, Op::range("b", None, 1))?;
    expect(
        &t,
        "range [b, ..) limit 1",
        keys(&r) == (vec!["b".into()], 2),
    )?;
    let r = t.op(&ck, Op::range("z", None, 0))?;
    expect(&t, "empty range", keys(&r) == (vec![], 0))?;
    finish(&t, began)
}

#[test]
fn range_bounds_and_limits() {
    run_seeds("range_bounds_and_limits", SEEDS, ranges);
}

fn txn(compare: Compare, success: Op) -> Op {
    Op::Txn(Txn {
        compares: vec![compare],
        success: vec![success],
        failure: vec![Op::get("k")],
    })
}

fn swapped(r: &Response) -> bool {
    matches!(
        r,
        Response::Txn {
            succeeded: true,
            ..
        }
    )
}

fn cas(seed: u64) -> Result<RunStats, Failure> {
    let began = Instant::now();
    let mut t = KvCluster::new(5, seed, true, None);
    let ck = t.make_client(&[0, 1, 2, 3, 4]);
    let r = t.op(&ck, txn(Compare::absent("k"), Op::put("k", "a")))?;
    expect(&t, "create if absent", swapped(&r))?;
    let r = t.op(&ck, txn(Compare::absent("k"), Op::put("k", "b")))?;
    expect(&t, "second create refused", !swapped(&r))?;
    let r = t.op(&ck, txn(Compare::value_is("k", "x"), Op::put("k", "b")))?;
    expect(&t, "value cas with a wrong value refused", !swapped(&r))?;
    let r = t.op(&ck, txn(Compare::value_is("k", "a"), Op::put("k", "b")))?;
    expect(&t, "value cas", swapped(&r))?;
    let r = t.op(&ck, txn(Compare::version_is("k", 1), Op::put("k", "c")))?;
    expect(&t, "stale version refused", !swapped(&r))?;
    let r = t.op(&ck, txn(Compare::version_is("k", 2), Op::put("k", "c")))?;
    expect(&t, "version cas", swapped(&r))?;
    t.op(&ck, Op::delete("k"))?;
    let r = t.op(&ck, txn(Compare::value_is("k", ""), Op::put("k", "d")))?;
    expect(&t, "an absent key matches no value (etcd)", !swapped(&r))?;
    let r = t.op(&ck, txn(Compare::exists("k"), Op::put("k", "d")))?;
    expect(&t, "exists on an absent key", !swapped(&r))?;
    t.check(&ck, "k", "")?;
    finish(&t, began)
}

#[test]
fn compare_and_swap_on_value_version_and_absence() {
    run_seeds("compare_and_swap_on_value_version_and_absence", SEEDS, cas);
}

fn pairs(r: &Response) -> Vec<KeyValue> {
    match r {
        Response::Range { kvs, .. } => kvs.clone(),
        _ => Vec::new(),
    }
}

fn revisions(seed: u64) -> Result<RunStats, Failure> {
    let began = Instant::now();
    let mut t = KvCluster::new(3, seed, false, Some(500));
    let all = [0, 1, 2];
    let ck = t.make_client(&all);
    for i in 0..60 {
        t.put(&ck, &format!("k{}", i % 7), &i.to_string())?;
        if i % 5 == 0 {
            t.op(&ck, Op::delete(format!("k{}", i % 3)))?;
        }
    }
    let before = pairs(&t.op(&ck, Op::prefix("k", 0))?);
    expect(&t, "snapshots were taken", t.c.snapshot_size() > 0)?;
    for i in 0..3 {
        t.shutdown_server(i);
    }
    t.c.run_for(ELECTION_TIMEOUT_NS)?;
    for i in 0..3 {
        t.start_server(i);
    }
    t.connect_all();
    let after = pairs(&t.op(&ck, Op::prefix("k", 0))?);
    expect(&t, "revisions changed across a restart", before == after)?;
    let rev = before.iter().map(|kv| kv.mod_rev).max().unwrap_or(0);
    t.put(&ck, "new", "x")?;
    let r = t.op(&ck, Op::get("new"))?;
    let Response::Get(Some(kv)) = r else {
        return Err(t.c.fail("new key missing"));
    };
    expect(
        &t,
        "the next write takes the next revision",
        kv.create_rev > rev,
    )?;
    // Every replica holds the same store once it applied the same prefix.
    let target = t.c.with_machine(0, |m| m.replica.applied());
    t.c.run_for(ELECTION_TIMEOUT_NS)?;
    let stores: Vec<_> = (0..3)
        .filter_map(|i| {
            t.c.with_machine(i, |m| (m.replica.applied(), m.replica.store().clone()))
        })
        .filter(|(applied, _)| Some(*applied) >= target)
        .map(|(_, store)| store)
        .collect();
    expect(
        &t,
        "replicas differ",
        stores.windows(2).all(|w| w[0] == w[1]),
    )?;
    finish(&t, began)
}

#[test]
fn revisions_survive_restarts_and_snapshots() {
    run_seeds("revisions_survive_restarts_and_snapshots", SEEDS, revisions);
}

fn serializable(seed: u64) -> Result<RunStats, Failure> {
    let began = Instant::now();
    let mut t = KvCluster::new(3, seed, false, None);
    let ck = t.make_client(&[0, 1, 2]);
    t.put(&ck, "k", "v")?;
    t.c.run_for(ELECTION_TIMEOUT_NS)?;
    let leader = t.leader().unwrap_or(0);
    let follower = (leader + 1) % 3;
    // Cut the follower off: a linearizable read cannot complete there, a
    // serializable one can (with what it had).
    t.partition(&[follower], &[leader, (leader + 2) % 3]);
    let lone = t.make_client(&[follower]);
    let r = t.op_with(&lone, Op::get("k"), ReadConsistency::Serializable)?;
    expect(
        &t,
        "serializable read",
        r.value().map(|v| v.as_ref()) == Some(&b"v"[..]),
    )?;
    finish(&t, began)
}

#[test]
fn serializable_reads_from_a_cut_off_follower() {
    run_seeds(
        "serializable_reads_from_a_cut_off_follower",
        SEEDS,
        serializable,
    );
}
