//! The course's Lab 3A kvraft tests (spec §3.4) on virtual time, each over
//! `FLOTILLA_SEEDS` seeds (default 10), every history checked for
//! linearizability.

use flotilla_kvsim::{Generic, generic_test, run_seeds, speed_test};

const SEEDS: u64 = 10;

fn generic(name: &str, g: Generic) {
    run_seeds(name, SEEDS, |seed| generic_test(seed, &g));
}

const fn g(
    nclients: usize,
    nservers: u64,
    unreliable: bool,
    crash: bool,
    partitions: bool,
) -> Generic {
    Generic {
        nclients,
        nservers,
        unreliable,
        crash,
        partitions,
        maxraftstate: None,
        random_keys: false,
    }
}

#[test]
fn basic_3a() {
    generic("basic_3a", g(1, 5, false, false, false));
}

#[test]
fn speed_3a() {
    run_seeds("speed_3a", SEEDS, |seed| speed_test(seed, None));
}

#[test]
fn concurrent_3a() {
    generic("concurrent_3a", g(5, 5, false, false, false));
}

#[test]
fn unreliable_3a() {
    generic("unreliable_3a", g(5, 5, true, false, false));
}

#[test]
fn many_partitions_one_client_3a() {
    generic("many_partitions_one_client_3a", g(1, 5, false, false, true));
}

#[test]
fn many_partitions_many_clients_3a() {
    generic(
        "many_partitions_many_clients_3a",
        g(5, 5, false, false, true),
    );
}

#[test]
fn persist_one_client_3a() {
    generic("persist_one_client_3a", g(1, 5, false, true, false));
}

#[test]
fn persist_concurrent_3a() {
    generic("persist_concurrent_3a", g(5, 5, false, true, false));
}

#[test]
fn persist_concurrent_unreliable_3a() {
    generic(
        "persist_concurrent_unreliable_3a",
        g(5, 5, true, true, false),
    );
}

#[test]
fn persist_partition_3a() {
    generic("persist_partition_3a", g(5, 5, false, true, true));
}

#[test]
fn persist_partition_unreliable_3a() {
    generic("persist_partition_unreliable_3a", g(5, 5, true, true, true));
}

#[test]
fn persist_partition_unreliable_linearizable_3a() {
    let mut p = g(15, 7, true, true, true);
    p.random_keys = true;
    generic("persist_partition_unreliable_linearizable_3a", p);
}
