//! Exactly-once writes through client sessions (`flotilla.kv.v1.Kv`),
//! against real `flotilla server` processes on loopback ports.
//!
//! Session clients append unique tokens to shared keys (a write applied
//! twice would show its token twice) and put unique keys while the leader
//! is killed with SIGKILL and restarted, twice, so writes in flight are retried
//! with the same (client id, seq) on other members across leader changes.
//! Then: no token appears twice, every acknowledged token and key is
//! there, and the history (appends and linearizable gets) is linearizable.
//! `FLOTILLA_SOAK_SECS=N` repeats the round (clients, two kills) with
//! fresh keys until N seconds have passed. A second test replays one
//! (client id, seq) by hand.
//! Loops are bounded in count; waits poll with deadlines; only processes
//! the test started are killed, by PID.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_common::Cluster;
use flotilla_client::Client;
use flotilla_client::session::{Session, SessionError, SessionOptions};
use flotilla_linearize::{KvInput, KvOutput, Recorder};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::kv::v1 as kvpb;
use flotilla_proto::kv::v1::kv_client::KvClient;
use flotilla_testkit::wait_for;
use tokio::sync::watch;

type Rec = Recorder<KvInput, KvOutput>;

const CLIENTS: u64 = 3;
/// Operations a client may do between two of the test's steps.
const STEP: u64 = 8;
const KEYS: u64 = 2;

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Tokens whose append was acknowledged, by key.
    acked_tokens: BTreeMap<String, Vec<String>>,
    /// Unique keys whose put was acknowledged.
    acked_keys: Vec<String>,
    /// Writes reported with an unknown outcome.
    unknown: u64,
    /// Writes sent again after an unknown outcome.
    resent: u64,
    /// The errors of the writes with unknown outcomes.
    errors: Vec<String>,
    /// The shared keys appended to.
    keys: BTreeSet<String>,
}

fn get(key: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: Bytes::from(key.to_string()),
        ..Default::default()
    }
}

async fn read(client: &Client, key: &str) -> Option<String> {
    let r = client.range(get(key)).await.ok()?;
    let v = r.kvs.first().map(|kv| kv.value.clone()).unwrap_or_default();
    Some(String::from_utf8(v.to_vec()).unwrap())
}

/// One session client: appends of unique tokens to shared keys, puts of
/// unique keys, and gets. It does operation `n` once `quota` exceeds `n`,
/// and stops when the quota's sender is dropped; `done` counts its
/// finished operations.
async fn session_client(
    client: Arc<Client>,
    rec: Arc<Rec>,
    (round, id): (u64, u64),
    seen: Arc<Mutex<Seen>>,
    (done, mut quota): (Arc<AtomicU64>, watch::Receiver<u64>),
) {
    let opts = SessionOptions {
        deadline: Duration::from_secs(20),
        ..SessionOptions::default()
    };
    // One session per member, so a killed member had one connected.
    let mut session = Session::new(&client, opts).starting_at(id as usize);
    for n in 0.. {
        if quota.wait_for(|&q| n < q).await.is_err() {
            break;
        }
        let key = format!("a{round}.{}", (id + n) % KEYS);
        seen.lock().unwrap().keys.insert(key.clone());
        let who = round * 100_000 + id * 1000 + n;
        match n % 4 {
            0 => {
                let op = rec.invoke(who, KvInput::get(&key));
                if let Some(v) = read(&client, &key).await {
                    rec.ok(op, KvOutput::Value(v));
                }
            }
            3 => {
                let unique = format!("u-{round}-{id}-{n}");
                let req = pb::PutRequest {
                    key: Bytes::from(unique.clone()),
                    value: Bytes::from_static(b"1"),
                    ..Default::default()
                };
                match session.put(req).await {
                    Ok(_) => seen.lock().unwrap().acked_keys.push(unique),
                    Err(e) => seen.lock().unwrap().unknown(e),
                }
            }
            _ => {
                let token = format!("c{id}n{n};");
                let op = rec.invoke(who, KvInput::append(&key, &token));
                match session.append(key.clone(), token.clone()).await {
                    Ok(_) => {
                        rec.ok(op, KvOutput::Ok);
                        let mut s = seen.lock().unwrap();
                        s.acked_tokens.entry(key).or_default().push(token);
                    }
                    Err(e) => seen.lock().unwrap().unknown(e),
                }
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    seen.lock().unwrap().resent += session.resent();
}

impl Seen {
    fn unknown(&mut self, e: SessionError) {
        self.unknown += 1;
        self.errors.push(e.to_string());
    }
}

/// `FLOTILLA_SOAK_SECS`, or 0: one round.
fn soak() -> Duration {
    let secs = std::env::var("FLOTILLA_SOAK_SECS").ok();
    Duration::from_secs(secs.and_then(|s| s.parse().ok()).unwrap_or(0))
}

#[test]
fn session_writes_are_applied_exactly_once_across_a_leader_kill() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start_with("sessions", 3, &["--snapshot-entries", "20"]);
    cluster.wait_leader(&rt);
    let client = {
        let _g = rt.enter();
        Arc::new(cluster.client())
    };
    let rec = Arc::new(Rec::new());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let until = Instant::now() + soak();
    let mut round = 0;
    while round == 0 || Instant::now() < until {
        run_round(&rt, &mut cluster, &client, &rec, &seen, round);
        round += 1;
    }
    cluster.wait_leader(&rt);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    rt.block_on(check_exactly_once(&client, &rec, &seen));
}

/// Session clients on fresh keys while the leader is killed and restarted,
/// then whoever leads is killed and restarted too (it may be the same).
fn run_round(
    rt: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
    client: &Arc<Client>,
    rec: &Arc<Rec>,
    seen: &Arc<Mutex<Seen>>,
    round: u64,
) {
    let done: Vec<_> = (0..CLIENTS).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let (quota, quota_rx) = watch::channel(STEP);
    let tasks: Vec<_> = (1..=CLIENTS)
        .map(|id| {
            let (client, rec) = (Arc::clone(client), Arc::clone(rec));
            let progress = (Arc::clone(&done[id as usize - 1]), quota_rx.clone());
            let seen = Arc::clone(seen);
            rt.spawn(session_client(client, rec, (round, id), seen, progress))
        })
        .collect();
    // Every client must reach `quota` before the next step, so each fault
    // meets every client running, with writes in flight or still to do.
    let reach = |at: u64| {
        wait_for("every client's progress", Duration::from_secs(60), || {
            done.iter()
                .all(|d| d.load(Ordering::Relaxed) >= at)
                .then_some(())
        })
    };
    reach(STEP);
    // Twice: the leader is killed while every client is running, stays
    // down while they do STEP more operations each, and is restarted.
    for k in 0..2 {
        let leader = cluster.wait_leader(rt);
        let base = (1 + 2 * k) * STEP;
        quota.send_replace(base + 2 * STEP);
        reach(base + 1);
        cluster.kill(leader);
        reach(base + 2 * STEP);
        cluster.restart(leader);
    }
    drop(quota);
    for t in tasks {
        rt.block_on(t).unwrap();
    }
}

/// No token twice, every acknowledged token and key present, and the
/// history (with a final read of each key) linearizable.
async fn check_exactly_once(client: &Client, rec: &Rec, seen: &Seen) {
    let mut acked = 0;
    for (k, key) in seen.keys.iter().enumerate() {
        let op = rec.invoke(u64::MAX - k as u64, KvInput::get(key));
        let value = read(client, key).await.expect("final read");
        rec.ok(op, KvOutput::Value(value.clone()));
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for t in value.split_terminator(';') {
            *count.entry(t).or_default() += 1;
        }
        for (t, n) in &count {
            assert_eq!(*n, 1, "append {t} of {key} applied {n} times: {value}");
        }
        for t in seen.acked_tokens.get(key).into_iter().flatten() {
            let t = t.trim_end_matches(';');
            assert!(
                count.contains_key(t),
                "acknowledged append {t} of {key} lost"
            );
            acked += 1;
        }
    }
    for key in &seen.acked_keys {
        assert!(
            read(client, key).await.is_some_and(|v| v == "1"),
            "acknowledged put of {key} lost"
        );
    }
    assert!(acked > 0, "no append was acknowledged");
    eprintln!(
        "{acked} acknowledged appends, {} acknowledged puts, {} unknown outcomes, \
         {} writes re-sent; checking {} operations; errors: {:?}",
        seen.acked_keys.len(),
        seen.unknown,
        seen.resent,
        rec.len(),
        seen.errors
    );
    // How many writes a kill forces to be re-sent depends on timing (a
    // session between two writes, or on a follower whose forward had
    // already returned, re-sends nothing): CI saw 1 where this machine
    // usually sees 3. So it is reported, not asserted; the re-send rules
    // themselves are tested deterministically in
    // `crates/client/tests/session_retry.rs`, and a duplicate delivery by
    // `a_replayed_session_write_is_answered_from_the_session_table` below.
    cluster_common::workload::assert_linearizable(rec);
}

#[test]
fn a_replayed_session_write_is_answered_from_the_session_table() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("replay", 3);
    cluster.wait_leader(&rt);
    rt.block_on(async {
        let client = cluster.client();
        let write = |seq: u64, resumed: bool, value: &str| kvpb::SessionWrite {
            client_id: 42,
            seq,
            resumed,
            op: Some(kvpb::session_write::Op::Append(kvpb::AppendRequest {
                key: Bytes::from_static(b"r"),
                value: Bytes::from(value.to_string()),
            })),
        };
        let revision = |r: kvpb::SessionWriteResponse| match r.response {
            Some(kvpb::session_write_response::Response::Append(a)) => a.header.unwrap().revision,
            other => panic!("not an append answer: {other:?}"),
        };
        // The same (client, seq) on every member, as a retry would send it.
        let mut revisions = Vec::new();
        for i in 0..3 {
            let mut kv = KvClient::new(client.channel(i).unwrap());
            let r = kv.write(write(1, false, "x")).await.unwrap().into_inner();
            revisions.push(revision(r));
        }
        assert!(
            revisions.iter().all(|&r| r == revisions[0]),
            "{revisions:?}"
        );
        assert_eq!(read(&client, "r").await.as_deref(), Some("x"));
        let mut kv = KvClient::new(client.channel(0).unwrap());
        kv.write(write(2, true, "y")).await.unwrap();
        // An older write arriving late is refused, not applied.
        let late = kv.write(write(1, true, "z")).await.unwrap_err();
        assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late:?}");
        assert_eq!(read(&client, "r").await.as_deref(), Some("xy"));
        // An unknown session that claims to be resumed (it expired) too.
        let mut stale = write(5, true, "w");
        stale.client_id = 43;
        let err = kv.write(stale).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert_eq!(read(&client, "r").await.as_deref(), Some("xy"));
    });
}
