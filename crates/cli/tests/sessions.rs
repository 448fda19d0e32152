//! Exactly-once writes through client sessions (`flotilla.kv.v1.Kv`),
//! against real `flotilla server` processes on loopback ports.
//!
//! Session clients append unique tokens to shared keys (a write applied
//! twice would show its token twice) and put unique keys while the leader
//! is killed with SIGKILL and restarted, so writes in flight are retried
//! with the same (client id, seq) on other members across leader changes.
//! Then: no token appears twice, every acknowledged token and key is
//! there, and the history (appends and linearizable gets) is linearizable.
//! A second test replays one (client id, seq) by hand.
//! Loops are bounded in count; waits poll with deadlines; only processes
//! the test started are killed, by PID.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cluster_common::Cluster;
use common::wait_for;
use flotilla_linearize::{Kv, KvInput, KvOutput, Limits, Recorder, check};
use flotilla_node::client::Client;
use flotilla_node::session::{Session, SessionOptions};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::kv::v1 as kvpb;
use flotilla_proto::kv::v1::kv_client::KvClient;

type Rec = Recorder<KvInput, KvOutput>;

const CLIENTS: u64 = 3;
const OPS: u64 = 40;
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
/// unique keys, and gets; `done` counts its finished operations.
async fn session_client(
    client: Arc<Client>,
    rec: Arc<Rec>,
    id: u64,
    seen: Arc<Mutex<Seen>>,
    done: Arc<AtomicU64>,
) {
    let opts = SessionOptions {
        deadline: Duration::from_secs(20),
        ..SessionOptions::default()
    };
    // One session per member, so a killed member had one connected.
    let mut session = Session::new(&client, opts).starting_at(id as usize);
    for n in 0..OPS {
        let key = format!("a{}", (id + n) % KEYS);
        let who = id * 1000 + n;
        match n % 4 {
            0 => {
                let op = rec.invoke(who, KvInput::get(&key));
                if let Some(v) = read(&client, &key).await {
                    rec.ok(op, KvOutput::Value(v));
                }
            }
            3 => {
                let unique = format!("u-{id}-{n}");
                let req = pb::PutRequest {
                    key: Bytes::from(unique.clone()),
                    value: Bytes::from_static(b"1"),
                    ..Default::default()
                };
                match session.put(req).await {
                    Ok(_) => seen.lock().unwrap().acked_keys.push(unique),
                    Err(_) => seen.lock().unwrap().unknown += 1,
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
                    Err(_) => seen.lock().unwrap().unknown += 1,
                }
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    seen.lock().unwrap().resent += session.resent();
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
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (1..=CLIENTS)
        .map(|id| {
            rt.spawn(session_client(
                Arc::clone(&client),
                Arc::clone(&rec),
                id,
                Arc::clone(&seen),
                Arc::clone(&done),
            ))
        })
        .collect();
    let total = CLIENTS * OPS;
    let progress = |at: u64| {
        wait_for("client progress", Duration::from_secs(60), || {
            (done.load(Ordering::Relaxed) >= at).then_some(())
        })
    };
    progress(total / 4);
    let leader = cluster.wait_leader(&rt);
    cluster.kill(leader);
    progress(total / 2);
    cluster.restart(leader);
    // The restarted member may lead again: kill whoever leads now too.
    progress(3 * total / 4);
    let leader = cluster.wait_leader(&rt);
    cluster.kill(leader);
    cluster.restart(leader);
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    cluster.wait_leader(&rt);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    rt.block_on(check_exactly_once(&client, &rec, &seen));
}

/// No token twice, every acknowledged token and key present, and the
/// history (with a final read of each key) linearizable.
async fn check_exactly_once(client: &Client, rec: &Rec, seen: &Seen) {
    let mut acked = 0;
    for k in 0..KEYS {
        let key = format!("a{k}");
        let op = rec.invoke(999_999 + k, KvInput::get(&key));
        let value = read(client, &key).await.expect("final read");
        rec.ok(op, KvOutput::Value(value.clone()));
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for t in value.split_terminator(';') {
            *count.entry(t).or_default() += 1;
        }
        for (t, n) in &count {
            assert_eq!(*n, 1, "append {t} of {key} applied {n} times: {value}");
        }
        for t in seen.acked_tokens.get(&key).into_iter().flatten() {
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
    assert!(
        seen.resent > 0,
        "no write was re-sent: the kills did not exercise the retries"
    );
    let limits = Limits {
        timeout: Some(Duration::from_secs(60)),
        ..Limits::default()
    };
    let verdict = check(&Kv, &rec.history(), &limits);
    assert!(
        verdict.is_linearizable(),
        "history is not linearizable: {:?}",
        verdict.counterexample().map(ToString::to_string)
    );
    eprintln!(
        "{acked} acknowledged appends, {} acknowledged puts, {} unknown outcomes, \
         {} writes re-sent; {} operations linearizable",
        seen.acked_keys.len(),
        seen.unknown,
        seen.resent,
        rec.len()
    );
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
