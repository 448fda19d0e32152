//! The course's Lab 3B kvraft tests (spec §3.5): snapshots, with
//! maxraftstate 1000 and the log bound of 8 × maxraftstate, on virtual
//! time, each over `FLOTILLA_SEEDS` seeds (default 10), every history
//! checked for linearizability.

use std::time::Instant;

use flotilla_kvsim::lab::ELECTION_TIMEOUT_NS;
use flotilla_kvsim::lab::generic::finish;
use flotilla_kvsim::{Generic, KvCluster, RunStats, generic_test, run_seeds, speed_test};
use flotilla_sim::{Failure, Tester};

const SEEDS: u64 = 10;
const MAXRAFTSTATE: u64 = 1000;

fn generic(name: &str, g: Generic) {
    run_seeds(name, SEEDS, |seed| generic_test(seed, &g));
}

const fn g(nclients: usize, unreliable: bool, crash: bool, partitions: bool) -> Generic {
    Generic {
        nclients,
        nservers: 5,
        unreliable,
        crash,
        partitions,
        maxraftstate: Some(MAXRAFTSTATE),
        random_keys: false,
    }
}

fn log_trimmed(t: &KvCluster) -> Result<(), Failure> {
    let size = t.c.log_size();
    if size > 8 * MAXRAFTSTATE {
        return Err(t
            .c
            .fail(format!("logs were not trimmed ({size} > 8*{MAXRAFTSTATE})")));
    }
    Ok(())
}

fn snapshot_rpc(seed: u64) -> Result<RunStats, Failure> {
    let began = Instant::now();
    let mut t = KvCluster::new(3, seed, false, Some(MAXRAFTSTATE));
    let ck = t.make_client(&[0, 1, 2]);
    t.put(&ck, "a", "A")?;
    t.check(&ck, "a", "A")?;
    // A bunch of puts into the majority partition.
    t.partition(&[0, 1], &[2]);
    let ck1 = t.make_client(&[0, 1]);
    for i in 0..50 {
        t.put(&ck1, &i.to_string(), &i.to_string())?;
    }
    t.c.run_for(ELECTION_TIMEOUT_NS)?;
    t.put(&ck1, "b", "B")?;
    // Check that the majority partition has thrown away most of its log.
    log_trimmed(&t)?;
    // Now make a group that requires participation of the lagging server,
    // so that it has to catch up through a snapshot.
    t.partition(&[0, 2], &[1]);
    let ck1 = t.make_client(&[0, 2]);
    t.put(&ck1, "c", "C")?;
    t.put(&ck1, "d", "D")?;
    t.check(&ck1, "a", "A")?;
    t.check(&ck1, "b", "B")?;
    t.check(&ck1, "1", "1")?;
    t.check(&ck1, "49", "49")?;
    if t.c.snapshot_chunks_to(2) == 0 {
        return Err(t.c.fail("server 2 caught up without installing a snapshot"));
    }
    // Now everybody.
    t.partition(&[0, 1, 2], &[]);
    t.put(&ck1, "e", "E")?;
    t.check(&ck1, "c", "C")?;
    t.check(&ck1, "e", "E")?;
    t.check(&ck1, "1", "1")?;
    finish(&t, began)
}

#[test]
fn snapshot_rpc_3b() {
    run_seeds("snapshot_rpc_3b", SEEDS, snapshot_rpc);
}

fn snapshot_size(seed: u64) -> Result<RunStats, Failure> {
    let began = Instant::now();
    let mut t = KvCluster::new(3, seed, false, Some(MAXRAFTSTATE));
    let ck = t.make_client(&[0, 1, 2]);
    for _ in 0..200 {
        t.put(&ck, "x", "0")?;
        t.check(&ck, "x", "0")?;
        t.put(&ck, "x", "1")?;
        t.check(&ck, "x", "1")?;
    }
    // Check that servers have thrown away most of their log entries.
    log_trimmed(&t)?;
    // Check that the snapshots are not unreasonably large.
    let size = t.c.snapshot_size();
    if size == 0 {
        return Err(t.c.fail("no snapshot was taken"));
    }
    if size > 500 {
        return Err(t.c.fail(format!("snapshot too large ({size} > 500)")));
    }
    finish(&t, began)
}

#[test]
fn snapshot_size_3b() {
    run_seeds("snapshot_size_3b", SEEDS, snapshot_size);
}

#[test]
fn speed_3b() {
    run_seeds("speed_3b", SEEDS, |seed| {
        speed_test(seed, Some(MAXRAFTSTATE))
    });
}

#[test]
fn snapshot_recover_3b() {
    generic("snapshot_recover_3b", g(1, false, true, false));
}

#[test]
fn snapshot_recover_many_clients_3b() {
    generic(
        "snapshot_recover_many_clients_3b",
        g(20, false, true, false),
    );
}

#[test]
fn snapshot_unreliable_3b() {
    generic("snapshot_unreliable_3b", g(5, true, false, false));
}

#[test]
fn snapshot_unreliable_recover_3b() {
    generic("snapshot_unreliable_recover_3b", g(5, true, true, false));
}

#[test]
fn snapshot_unreliable_recover_concurrent_partition_3b() {
    generic(
        "snapshot_unreliable_recover_concurrent_partition_3b",
        g(5, true, true, true),
    );
}

#[test]
fn snapshot_unreliable_recover_concurrent_partition_linearizable_3b() {
    let mut p = g(15, true, true, true);
    p.nservers = 7;
    p.random_keys = true;
    generic(
        "snapshot_unreliable_recover_concurrent_partition_linearizable_3b",
        p,
    );
}
