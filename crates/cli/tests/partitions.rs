//! Network partitions between real `flotilla server` processes on
//! loopback ports. Members reach each other only through fault proxies
//! (`cluster_common::proxy`), one per directed link, which pass, delay,
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
mod common;

use std::time::Duration;

use cluster_common::Cluster;
use cluster_common::faults::{Fault, soak};
use cluster_common::netns::{self, Netns, Where};
use cluster_common::proxy::Mode;
use cluster_common::workload::Workload;

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

/// The proxy itself, against an echo server: a stalled link holds bytes
/// and delivers them in order when it heals; a delayed link delivers; a
/// cut link closes its connection and closes new ones at once.
#[test]
fn proxy_stalls_without_loss_and_cuts_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let target = echo.local_addr().unwrap().to_string();
    rt.spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let net = cluster_common::proxy::Net::start(&["unused:1".to_string(), target]);
    let addr = net.addr(0, 1);
    let steps = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 6];
        s.write_all(b"ab").await.unwrap();
        s.read_exact(&mut buf[..2]).await.unwrap();
        // Both directions of a link's connections stall: the echo of
        // "cd" comes back only after the link heals (here, to a delay).
        net.set(0, 1, Mode::Stall);
        s.write_all(b"cd").await.unwrap();
        net.set(0, 1, Mode::Delay(Duration::from_millis(5)));
        s.write_all(b"ef").await.unwrap();
        s.read_exact(&mut buf[2..]).await.unwrap();
        assert_eq!(&buf, b"abcdef", "nothing lost or reordered");
        net.set(0, 1, Mode::Cut);
        assert_eq!(s.read(&mut buf).await.unwrap_or(0), 0, "cut: closed");
        let mut t = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(t.read(&mut buf).await.unwrap_or(0), 0, "cut: new ones too");
        net.heal();
        let mut u = tokio::net::TcpStream::connect(addr).await.unwrap();
        u.write_all(b"gh").await.unwrap();
        u.read_exact(&mut buf[..2]).await.unwrap();
        assert_eq!(&buf[..2], b"gh");
    };
    let limit = Duration::from_secs(30);
    rt.block_on(async { tokio::time::timeout(limit, steps).await })
        .expect("the proxy steps finish within 30 s");
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
