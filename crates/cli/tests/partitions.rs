//! Network partitions between real `flotilla server` processes on
//! loopback ports. Members reach each other only through fault proxies
//! (`flotilla_testkit::proxy`), one per directed link, which pass, delay,
//! stall (hold bytes as a packet-dropping network does) or cut traffic;
//! clients talk to every member directly.
//!
//! Each test, with concurrent clients recording their history: the leader
//! is cut off both ways (the majority elects a new leader and serves, the
//! old leader acknowledges nothing), a one-way partition of the leader,
//! a split into minority pieces (no quorum: no write may be
//! acknowledged), delayed links, then heal; every acknowledged write must
//! be readable after healing and after every member is killed and
//! restarted, and the whole history must be linearizable.
//! `FLOTILLA_SOAK_SECS=N` adds N seconds of random fault rounds (seeded,
//! the seed printed). Loops are bounded in count and time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use std::time::Duration;

use cluster_common::Cluster;
use cluster_common::faults::{Fault, soak};
use cluster_common::netns::{self, Netns, Where};
use cluster_common::workload::Workload;
use flotilla_testkit::proxy::Mode;

#[test]
fn three_members_partitioned_lose_no_acknowledged_write() {
    partitions("part3", 3, Mode::Stall);
}

#[test]
fn five_members_partitioned_lose_no_acknowledged_write() {
    partitions("part5", 5, Mode::Cut);
}

/// The scripted rounds; `mode` is how the leader is cut off (the one-way
/// partition uses the other mode, so both are exercised).
fn partitions(name: &str, n: usize, mode: Mode) {
    let other = match mode {
        Mode::Stall => Mode::Cut,
        _ => Mode::Stall,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start_proxied(name, n, &["--snapshot-entries", "50"]);
    let (w, client) = Workload::on(&cluster, &rt, n, Duration::from_secs(2));
    rt.block_on(w.phase());
    let rounds = [
        Fault::IsolateLeader(mode),
        Fault::OneWayFromLeader(other),
        Fault::SplitMinorities(mode),
        Fault::Delay(Duration::from_millis(30)),
    ];
    for fault in rounds {
        eprintln!("{name}: {fault:?}");
        fault.run(&mut cluster, &rt, &w);
    }
    soak(name, &mut cluster, &rt, &w);
    rt.block_on(w.phase());
    rt.block_on(w.check(&client));
    Fault::RestartAll.run(&mut cluster, &rt, &w);
    rt.block_on(w.check(&client));
}

/// The leader cut off by a network namespace's link going down (where the
/// machine allows namespaces; otherwise skipped with the reason): the
/// others elect a new leader and serve; after the link comes back and
/// every member restarts, no acknowledged write is lost and the history
/// is linearizable.
#[test]
fn leader_cut_off_in_network_namespaces() {
    match netns::enter("leader_cut_off_in_network_namespaces") {
        Where::Done => return,
        Where::Skipped(why) => return eprintln!("skipped: {why}"),
        Where::Inside => {}
    }
    let ns = match Netns::setup(3) {
        Ok(ns) => ns,
        Err(why) => return eprintln!("skipped: namespaces cannot be set up: {why}"),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start_at("netns", ns.endpoints(), ns.prefixes(), &[]);
    let (w, client) = Workload::on(&cluster, &rt, 3, Duration::from_secs(2));
    rt.block_on(w.phase());
    let leader = cluster.wait_leader(&rt);
    ns.link(leader, false);
    let others: Vec<usize> = (0..3).filter(|&j| j != leader).collect();
    cluster.wait_leader_of(&rt, &others);
    assert!(rt.block_on(w.phase()) > 0, "the majority served nothing");
    ns.link(leader, true);
    cluster.wait_leader(&rt);
    rt.block_on(w.phase());
    Fault::RestartAll.run(&mut cluster, &rt, &w);
    rt.block_on(w.check(&client));
}
