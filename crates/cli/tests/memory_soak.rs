//! Memory soak (issue 19): real `flotilla server` processes take writes
//! through every member, followers included (so two thirds are
//! forwarded to the leader over `flotilla.raft.v1.Proposals`), while
//! watch streams open and close on every member. Each member's RSS
//! (`VmRSS` of /proc/<pid>/status) is sampled after a warm-up phase and
//! after a second phase as long, over the *same* keys; it must plateau.
//!
//! What the phases hold constant, so that growth means a leak: the keys
//! (each written six times in the warm-up), the key history (the last
//! 10,000 revisions, the default automatic compaction: the warm-up is as
//! long as the second phase because a third of it, 20,000 writes, left
//! the history and the allocator short of their steady state, and the
//! members then grew by up to 29 MiB with no leak), the log (compacted every
//! [`SNAPSHOT_ENTRIES`], at least twice per phase), the sessions (writes go
//! through one exactly-once session per writer: plain etcd puts would
//! each add a session that the replicated table keeps, up to 100,000,
//! for ten minutes, growth the test would mistake for a leak) and the
//! watch hub (bounded).
//!
//! Tolerance: [`PLATEAU_SLACK_MB`] per member between the phases, and
//! [`LEADER_EXTRA_MB`] for the leader over the largest follower. Members
//! apply the same entries and hold the same state, so what the leader
//! keeps beyond a follower is per-request state of its own. Before the
//! fix every forwarded write kept its 8 KiB gRPC receive buffer alive in
//! the leader's log (until compaction) and store (until the key is
//! written again), which this run's bounds on both cap: it showed as the
//! leader at 140 MiB beside followers at 45 MiB, not as growth between
//! the phases; an unbounded table would show as both. With the fix the
//! members stayed within 3 MiB of one another and moved by 3 MiB at most
//! between the phases; with the key history kept as well, they sit at
//! 61-89 MiB and moved by 9 MiB at most (two runs), then in a later
//! clean CI run on this machine kind by 25 MiB (a follower, 69 to 94
//! MiB; three runs beside it moved by -5 to 12). The slack covers what
//! is not a leak: mimalloc
//! keeps freed pages of its size classes for reuse, a snapshot being
//! encoded holds a second copy of the state for a moment (about 5 MiB
//! at these sizes), and tokio's and tonic's buffers grow to the peak
//! concurrency; it stays well below the 95 MiB the bug cost here.
//!
//! The short run takes about 25 s (the test profile is optimized);
//! `FLOTILLA_SOAK_WRITES=N` makes each phase N writes. Loops are
//! bounded in count, waits poll with deadlines, only the processes this
//! test started are stopped, by PID.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cluster_common::Cluster;
use flotilla_client::session::{Session, SessionOptions};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::watch_client::WatchClient;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// Writes of each phase on the short run.
const SHORT_WRITES: u64 = 60_000;
/// Distinct keys; the warm-up writes each at least once.
const KEYS: u64 = 10_000;
/// Bytes per value, as in the report.
const VALUE_BYTES: usize = 256;
/// Concurrent writers, spread evenly over the members.
const WRITERS: usize = 12;
/// Watch streams opened and closed per phase, spread over the members.
const WATCH_STREAMS: u64 = 60;
/// How often members compact their log: a few times per phase.
const SNAPSHOT_ENTRIES: &str = "10000";
/// The most a member's RSS may grow from the end of the warm-up to the
/// end of the second phase (see the module docs).
const PLATEAU_SLACK_MB: i64 = 32;
/// The most the leader's RSS may exceed the largest follower's.
const LEADER_EXTRA_MB: i64 = 32;

fn second_phase_writes() -> u64 {
    std::env::var("FLOTILLA_SOAK_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SHORT_WRITES)
}

/// A member's resident set, in MiB.
fn rss_mb(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb / 1024
}

fn sample(cluster: &Cluster) -> Vec<i64> {
    cluster
        .procs
        .iter()
        .map(|p| rss_mb(p.as_ref().expect("member is running").child.id()))
        .collect()
}

/// One phase: `writes` session puts over the keys by [`WRITERS`] writers
/// (writer `w` starts at member `w % n`), and [`WATCH_STREAMS`] watch
/// streams opened and closed meanwhile.
async fn phase(sessions: Vec<Session>, cluster: &Cluster, writes: u64) -> Vec<Session> {
    let next = Arc::new(AtomicU64::new(0));
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let mut tasks = Vec::new();
    for mut s in sessions {
        let next = Arc::clone(&next);
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= writes {
                    return s;
                }
                let req = pb::PutRequest {
                    key: Bytes::from(format!("soak/{:06}", i % KEYS)),
                    value: value.clone(),
                    ..Default::default()
                };
                s.put(req).await.expect("a soak write failed");
            }
        }));
    }
    let watches = tokio::spawn(open_and_close_watches(cluster.endpoints.clone()));
    let mut sessions = Vec::new();
    for t in tasks {
        sessions.push(t.await.unwrap());
    }
    watches.await.unwrap();
    sessions
}

/// Opens watch streams one after another, member by member; each
/// watches the soak's keys, sees one change and is dropped (the client
/// goes away without canceling, as a crashed client would).
async fn open_and_close_watches(endpoints: Vec<String>) {
    for i in 0..WATCH_STREAMS {
        let ep = &endpoints[i as usize % endpoints.len()];
        let mut client = WatchClient::connect(format!("http://{ep}")).await.unwrap();
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: Bytes::from_static(b"soak/"),
                    range_end: Bytes::from_static(b"soak0"),
                    ..Default::default()
                },
            )),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(create).await.unwrap();
        let requests = ReceiverStream::new(rx);
        let mut responses = client.watch(requests).await.unwrap().into_inner();
        // The created answer, then (within the writes) one with events.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = tokio::time::timeout_at(deadline, responses.message())
                .await
                .expect("a watch saw no change within 10 s")
                .unwrap()
                .expect("the watch stream ended");
            if !r.events.is_empty() {
                break;
            }
        }
        drop(tx);
    }
}

#[test]
fn member_memory_plateaus_under_writes_through_followers_and_watches() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start_with("memory-soak", 3, &["--snapshot-entries", SNAPSHOT_ENTRIES]);
    cluster.wait_leader(&rt);
    let named: Vec<(String, tonic::transport::Channel)> = {
        let _g = rt.enter();
        let client = cluster.client();
        (0..cluster.endpoints.len())
            .map(|i| (cluster.endpoints[i].clone(), client.channel(i).unwrap()))
            .collect()
    };
    let sessions: Vec<Session> = (0..WRITERS)
        .map(|w| Session::over(named.clone(), SessionOptions::default()).starting_at(w))
        .collect();
    let writes = second_phase_writes();
    let before = sample(&cluster);
    let sessions = rt.block_on(phase(sessions, &cluster, writes));
    let warm = sample(&cluster);
    rt.block_on(phase(sessions, &cluster, writes));
    let after = sample(&cluster);
    // Leadership may have moved (it should not, on loopback).
    let leader = cluster.wait_leader(&rt);
    eprintln!(
        "memory soak: leader is member {}; RSS MiB per member: start {before:?}, after {} writes {warm:?}, after {} more {after:?}",
        leader + 1,
        writes,
        writes
    );
    for i in 0..after.len() {
        assert!(
            after[i] - warm[i] <= PLATEAU_SLACK_MB,
            "member {}'s RSS grew from {} MiB to {} MiB over {writes} writes to the same keys \
             (slack {PLATEAU_SLACK_MB} MiB): something keeps per-request state",
            i + 1,
            warm[i],
            after[i]
        );
    }
    let followers_max = (0..after.len())
        .filter(|&i| i != leader)
        .map(|i| after[i])
        .max()
        .unwrap();
    assert!(
        after[leader] - followers_max <= LEADER_EXTRA_MB,
        "the leader (member {}) holds {} MiB, the largest follower {followers_max} MiB \
         (allowed: {LEADER_EXTRA_MB} MiB more): it keeps something per forwarded request",
        leader + 1,
        after[leader]
    );
}
