//! The course's Lab 4B sharded KV tests (spec §5.2) on production replica
//! hosts, each over `FLOTILLA_SEEDS` seeds (default 5): a controller group
//! and groups 100, 101 and 102 of three servers, with the course's
//! schedules of joins, leaves, shutdowns and restarts on virtual time.
//! Concurrent appenders' final values are checked exactly (every
//! acknowledged append, once, in order); Unreliable3's history is checked
//! for linearizability, and a checker that gives up fails the test.

use std::cell::RefCell;
use std::rc::Rc;

use flotilla_shardkv::{Gid, KvOp, KvReply, key2shard};
use flotilla_shardsim::tester::b;
use flotilla_shardsim::workloads::{Appender, Control, Random, rand_string};
use flotilla_shardsim::{FleetConfig, ShardTester};
use flotilla_sim::runner::seeds;
use flotilla_sim::{Failure, MS};

const SEEDS: u64 = 5;

fn run(test: &str, scenario: impl Fn(u64) -> Result<(), Failure>) {
    for seed in seeds(SEEDS) {
        if let Err(f) = scenario(seed) {
            panic!(
                "{test} failed: {f}\nreplay: FLOTILLA_SEED={seed} cargo test -p flotilla-shardsim \
                 --test shard_4b {test} -- --exact"
            );
        }
    }
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// Puts a random value of `len` characters at each key; returns them.
fn fill(t: &mut ShardTester, keys: &[String], len: usize) -> Result<Vec<String>, Failure> {
    let mut values = Vec::new();
    for k in keys {
        let v = rand_string(&mut t.f.rng, len);
        t.put(k, &v)?;
        values.push(v);
    }
    Ok(values)
}

fn check_all(t: &mut ShardTester, keys: &[String], values: &[String]) -> Result<(), Failure> {
    keys.iter().zip(values).try_for_each(|(k, v)| t.check(k, v))
}

/// For each key: check, then append `len` random characters.
fn check_and_append(
    t: &mut ShardTester,
    keys: &[String],
    values: &mut [String],
    len: usize,
) -> Result<(), Failure> {
    for (k, v) in keys.iter().zip(values.iter_mut()) {
        t.check(k, v)?;
        let x = rand_string(&mut t.f.rng, len);
        t.append(k, &x)?;
        v.push_str(&x);
    }
    Ok(())
}

/// One appender per key; what each appended, acknowledged.
fn appenders(
    t: &mut ShardTester,
    keys: &[String],
    len: usize,
    every_ns: u64,
    control: &Control,
) -> Vec<Rc<RefCell<String>>> {
    keys.iter()
        .map(|k| {
            let (a, acked) = Appender::new(k, len, every_ns, control.clone());
            t.clerk(Box::new(a));
            acked
        })
        .collect()
}

/// Stops the appenders, waits for each to finish its operation out, and
/// checks every key holds its initial value and every acknowledged
/// append, in order.
fn stop_and_check(
    t: &mut ShardTester,
    control: &Control,
    keys: &[String],
    values: &[String],
    acked: &[Rc<RefCell<String>>],
) -> Result<(), Failure> {
    control.stop.set(true);
    let n = keys.len();
    let stopped = control.stopped.clone();
    t.f.run_until_cond(120_000 * MS, "appenders did not stop", |_| {
        stopped.get() == n
    })?;
    for ((k, v), a) in keys.iter().zip(values).zip(acked) {
        t.check(k, &format!("{v}{}", a.borrow()))?;
    }
    Ok(())
}

fn static_shards(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(None, false), seed);
    t.join(&[100, 101])?;
    let ks = keys(10);
    let values = fill(&mut t, &ks, 20)?;
    check_all(&mut t, &ks, &values)?;
    t.f.shutdown_group(101);
    t.f.checklogs()?;
    let replies: Vec<_> = ks
        .iter()
        .map(|k| {
            let (s, r) = flotilla_shardsim::clerk::Script::new(vec![KvOp::Get(b(k))]);
            t.clerk(Box::new(s));
            r
        })
        .collect();
    let done =
        |r: &[Rc<RefCell<Vec<KvReply>>>]| r.iter().filter(|x| !x.borrow().is_empty()).count();
    // Until 2 s pass without a completion.
    let mut seen = usize::MAX;
    while done(&replies) != seen {
        seen = done(&replies);
        t.f.run_for(2_000 * MS)?;
    }
    if seen != 5 {
        return Err(t
            .f
            .fail(format!("{seen} gets completed with group 101 down, not 5")));
    }
    for ((r, v), k) in replies.iter().zip(&values).zip(&ks) {
        if let Some(reply) = r.borrow().first()
            && *reply != KvReply::Value(b(v))
        {
            return Err(t.f.fail(format!("get {k:?} answered {reply:?}, not {v:?}")));
        }
    }
    t.f.start_group(101);
    check_all(&mut t, &ks, &values)
}

fn join_leave(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(None, false), seed);
    t.join(&[100])?;
    let ks = keys(10);
    let mut values = fill(&mut t, &ks, 5)?;
    check_all(&mut t, &ks, &values)?;
    t.join(&[101])?;
    check_and_append(&mut t, &ks, &mut values, 5)?;
    t.leave(&[100])?;
    check_and_append(&mut t, &ks, &mut values, 5)?;
    t.f.run_for(1_000 * MS)?;
    t.f.checklogs()?;
    t.f.shutdown_group(100);
    check_all(&mut t, &ks, &values)
}

fn snapshot(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(Some(1000), false), seed);
    t.join(&[100])?;
    let ks = keys(30);
    let mut values = fill(&mut t, &ks, 20)?;
    check_all(&mut t, &ks, &values)?;
    t.join(&[101])?;
    t.join(&[102])?;
    t.leave(&[100])?;
    check_and_append(&mut t, &ks, &mut values, 20)?;
    t.leave(&[101])?;
    t.join(&[100])?;
    check_and_append(&mut t, &ks, &mut values, 20)?;
    t.f.run_for(1_000 * MS)?;
    check_all(&mut t, &ks, &values)?;
    t.f.run_for(1_000 * MS)?;
    t.f.checklogs()?;
    for g in [100, 101, 102] {
        t.f.shutdown_group(g);
    }
    for g in [100, 101, 102] {
        t.f.start_group(g);
    }
    check_all(&mut t, &ks, &values)
}

fn miss_change(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(Some(1000), false), seed);
    let all: [Gid; 3] = [100, 101, 102];
    t.join(&[100])?;
    let ks = keys(10);
    let mut values = fill(&mut t, &ks, 20)?;
    check_all(&mut t, &ks, &values)?;
    t.join(&[101])?;
    check_and_append(&mut t, &ks, &mut values, 20)?;
    all.iter().for_each(|&g| t.f.shutdown_server(g, 0));
    t.join(&[102])?;
    t.leave(&[101])?;
    t.leave(&[100])?;
    check_and_append(&mut t, &ks, &mut values, 20)?;
    t.join(&[101])?;
    check_and_append(&mut t, &ks, &mut values, 20)?;
    all.iter().for_each(|&g| t.f.start_server(g, 0));
    check_and_append(&mut t, &ks, &mut values, 20)?;
    t.f.run_for(2_000 * MS)?;
    all.iter().for_each(|&g| t.f.shutdown_server(g, 1));
    t.join(&[100])?;
    t.leave(&[102])?;
    check_and_append(&mut t, &ks, &mut values, 20)?;
    all.iter().for_each(|&g| t.f.start_server(g, 1));
    check_all(&mut t, &ks, &values)
}

/// One step of a concurrent test's schedule.
enum Step {
    Join(Gid),
    Leave(Gid),
    Sleep(u64),
    Shutdown(Gid),
    Start(Gid),
}

fn schedule(t: &mut ShardTester, steps: &[Step]) -> Result<(), Failure> {
    for s in steps {
        match *s {
            Step::Join(g) => t.join(&[g])?,
            Step::Leave(g) => t.leave(&[g])?,
            Step::Sleep(ms) => t.f.run_for(ms * MS)?,
            Step::Shutdown(g) => t.f.shutdown_group(g),
            Step::Start(g) => t.f.start_group(g),
        }
    }
    Ok(())
}

fn concurrent1(seed: u64) -> Result<(), Failure> {
    use Step::*;
    let mut t = ShardTester::new(FleetConfig::course(Some(100), false), seed);
    t.join(&[100])?;
    let ks = keys(10);
    let values = fill(&mut t, &ks, 5)?;
    let control = Control::default();
    let acked = appenders(&mut t, &ks, 5, 10 * MS, &control);
    schedule(
        &mut t,
        &[
            Sleep(150),
            Join(101),
            Sleep(500),
            Join(102),
            Sleep(500),
            Leave(100),
            Shutdown(100),
            Sleep(100),
            Shutdown(101),
            Sleep(100),
            Shutdown(102),
            Leave(102),
            Sleep(100),
            Start(100),
            Start(101),
            Start(102),
            Sleep(100),
            Join(100),
            Leave(101),
            Sleep(500),
            Join(101),
            Sleep(1000),
        ],
    )?;
    stop_and_check(&mut t, &control, &ks, &values, &acked)
}

fn concurrent2(seed: u64) -> Result<(), Failure> {
    use Step::*;
    let mut t = ShardTester::new(FleetConfig::course(None, false), seed);
    t.join(&[101])?;
    t.join(&[100])?;
    t.join(&[102])?;
    let ks = keys(10);
    let values = fill(&mut t, &ks, 1)?;
    let control = Control::default();
    let acked = appenders(&mut t, &ks, 1, 50 * MS, &control);
    schedule(
        &mut t,
        &[
            Leave(100),
            Leave(102),
            Sleep(3000),
            Join(100),
            Join(102),
            Leave(101),
            Sleep(3000),
            Join(101),
            Leave(100),
            Leave(102),
            Sleep(3000),
            Shutdown(101),
            Shutdown(102),
            Sleep(1000),
            Start(101),
            Start(102),
            Sleep(2000),
        ],
    )?;
    stop_and_check(&mut t, &control, &ks, &values, &acked)
}

fn concurrent3(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(Some(300), false), seed);
    t.join(&[100])?;
    let ks = keys(10);
    let values = fill(&mut t, &ks, 1)?;
    let control = Control::default();
    let acked = appenders(&mut t, &ks, 1, 0, &control);
    let end = t.f.now() + 12_000 * MS;
    let pause = |t: &mut ShardTester| t.f.rng.range(0, 900) * MS;
    while t.f.now() < end {
        t.join(&[102])?;
        t.join(&[101])?;
        let p = pause(&mut t);
        t.f.run_for(p)?;
        [100, 101, 102].iter().for_each(|&g| t.f.shutdown_group(g));
        [100, 101, 102].iter().for_each(|&g| t.f.start_group(g));
        let p = pause(&mut t);
        t.f.run_for(p)?;
        t.leave(&[101])?;
        t.leave(&[102])?;
        let p = pause(&mut t);
        t.f.run_for(p)?;
    }
    t.f.run_for(2_000 * MS)?;
    stop_and_check(&mut t, &control, &ks, &values, &acked)
}

fn unreliable1(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(Some(100), true), seed);
    t.join(&[100])?;
    let ks = keys(10);
    let mut values = fill(&mut t, &ks, 5)?;
    t.join(&[101])?;
    t.join(&[102])?;
    t.leave(&[100])?;
    for round in 0..20 {
        let i = round % ks.len();
        t.check(&ks[i], &values[i])?;
        let x = rand_string(&mut t.f.rng, 5);
        t.append(&ks[i], &x)?;
        values[i].push_str(&x);
    }
    t.join(&[100])?;
    t.leave(&[101])?;
    for round in 0..20 {
        let i = round % ks.len();
        t.check(&ks[i], &values[i])?;
    }
    t.check_history()
}

/// Unreliable2's and Unreliable3's schedule.
fn unreliable_schedule(t: &mut ShardTester) -> Result<(), Failure> {
    use Step::*;
    schedule(
        t,
        &[
            Sleep(150),
            Join(101),
            Sleep(500),
            Join(102),
            Sleep(500),
            Leave(100),
            Sleep(500),
            Leave(101),
            Sleep(500),
            Join(101),
            Join(100),
            Sleep(2000),
        ],
    )
}

fn unreliable2(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(Some(100), true), seed);
    t.join(&[100])?;
    let ks = keys(10);
    let values = fill(&mut t, &ks, 5)?;
    let control = Control::default();
    let acked = appenders(&mut t, &ks, 5, 0, &control);
    unreliable_schedule(&mut t)?;
    control.stop.set(true);
    let stopped = control.stopped.clone();
    t.f.run_until_cond(120_000 * MS, "appenders did not stop", |_| {
        stopped.get() == ks.len()
    })?;
    t.f.set_reliable(true);
    stop_and_check(&mut t, &control, &ks, &values, &acked)
}

fn unreliable3(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(Some(100), true), seed);
    t.join(&[100])?;
    let ks = keys(10);
    fill(&mut t, &ks, 5)?;
    let control = Control::default();
    for _ in 0..10 {
        t.clerk(Box::new(Random::new(ks.clone(), control.clone())));
    }
    unreliable_schedule(&mut t)?;
    control.stop.set(true);
    let stopped = control.stopped.clone();
    t.f.run_until_cond(120_000 * MS, "clients did not stop", |_| {
        stopped.get() == 10
    })?;
    t.check_history()
}

fn challenge1_delete(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(Some(1), false), seed);
    t.join(&[100])?;
    let ks = keys(30);
    let values = fill(&mut t, &ks, 1000)?;
    check_all(&mut t, &ks[..3], &values[..3])?;
    for _ in 0..2 {
        t.join(&[101])?;
        t.leave(&[100])?;
        t.join(&[102])?;
        t.f.run_for(3_000 * MS)?;
        check_all(&mut t, &ks[..3], &values[..3])?;
        t.leave(&[101])?;
        t.join(&[100])?;
        t.leave(&[102])?;
        t.f.run_for(3_000 * MS)?;
        check_all(&mut t, &ks[..3], &values[..3])?;
    }
    t.join(&[101])?;
    t.join(&[102])?;
    for _ in 0..3 {
        t.f.run_for(1_000 * MS)?;
        check_all(&mut t, &ks[..3], &values[..3])?;
    }
    let total = t.total_state_bytes();
    let limit = 3 * (27 * 1000 + 2 * 3 * 1000 + 6000);
    if total > limit {
        return Err(t.f.fail(format!(
            "servers hold {total} bytes of state, over the course's {limit}"
        )));
    }
    check_all(&mut t, &ks, &values)
}

/// The shards `gid` owns in the latest configuration, and the keys among
/// "0".."9" on them.
fn owned_keys(t: &mut ShardTester, gid: Gid) -> Result<Vec<String>, Failure> {
    let c = t.query()?;
    Ok(keys(10)
        .into_iter()
        .filter(|k| c.shards[key2shard(k.as_bytes(), 10)] == gid)
        .collect())
}

fn challenge2_unaffected(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(Some(100), true), seed);
    t.join(&[100])?;
    let ks = keys(10);
    ks.iter().try_for_each(|k| t.put(k, "100"))?;
    t.join(&[101])?;
    let mine = owned_keys(&mut t, 101)?;
    t.f.run_for(1_000 * MS)?;
    mine.iter().try_for_each(|k| t.put(k, "101"))?;
    t.f.shutdown_group(100);
    t.leave(&[100])?;
    t.f.run_for(1_000 * MS)?;
    for k in &mine {
        t.check(k, "101")?;
        t.put(k, "101-1")?;
        t.check(k, "101-1")?;
    }
    Ok(())
}

fn challenge2_partial(seed: u64) -> Result<(), Failure> {
    let mut t = ShardTester::new(FleetConfig::course(Some(100), true), seed);
    t.join(&[100, 101, 102])?;
    t.f.run_for(1_000 * MS)?;
    let ks = keys(10);
    ks.iter().try_for_each(|k| t.put(k, "100"))?;
    let from_102 = owned_keys(&mut t, 102)?;
    t.f.shutdown_group(100);
    t.leave(&[100, 102])?;
    t.f.run_for(1_000 * MS)?;
    for k in &from_102 {
        t.check(k, "100")?;
        t.put(k, "100-2")?;
        t.check(k, "100-2")?;
    }
    Ok(())
}

#[test]
fn static_shards_4b() {
    run("static_shards_4b", static_shards);
}

#[test]
fn join_leave_4b() {
    run("join_leave_4b", join_leave);
}

#[test]
fn snapshot_4b() {
    run("snapshot_4b", snapshot);
}

#[test]
fn miss_change_4b() {
    run("miss_change_4b", miss_change);
}

#[test]
fn concurrent1_4b() {
    run("concurrent1_4b", concurrent1);
}

#[test]
fn concurrent2_4b() {
    run("concurrent2_4b", concurrent2);
}

#[test]
fn concurrent3_4b() {
    run("concurrent3_4b", concurrent3);
}

#[test]
fn unreliable1_4b() {
    run("unreliable1_4b", unreliable1);
}

#[test]
fn unreliable2_4b() {
    run("unreliable2_4b", unreliable2);
}

#[test]
fn unreliable3_4b() {
    run("unreliable3_4b", unreliable3);
}

#[test]
fn challenge1_delete_4b() {
    run("challenge1_delete_4b", challenge1_delete);
}

#[test]
fn challenge2_unaffected_4b() {
    run("challenge2_unaffected_4b", challenge2_unaffected);
}

#[test]
fn challenge2_partial_4b() {
    run("challenge2_partial_4b", challenge2_partial);
}
