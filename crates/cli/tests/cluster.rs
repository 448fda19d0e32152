//! Real `flotilla server` processes on loopback ports, driven through
//! etcd's v3 API: concurrent clients while the leader is killed with
//! SIGKILL and restarted, while the leader is paused (SIGSTOP) and resumed,
//! then every member killed and restarted. The
//! recorded history (real times) must be linearizable, and no
//! acknowledged write may be missing afterwards. Members snapshot every 20
//! entries, so recovery from snapshots and snapshot transfer to a member
//! that missed entries are exercised too. Loops are bounded in
//! count; waits poll with deadlines; only processes this test started are
//! killed, by PID.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cluster_common::Cluster;
use flotilla_linearize::{Kv, KvInput, KvOutput, Limits, Recorder, check};
use flotilla_node::client::Client;
use flotilla_proto::etcdserverpb as pb;

type Rec = Recorder<KvInput, KvOutput>;

const CLIENTS: u64 = 3;
const OPS_PER_PHASE: u64 = 25;
const KEYS: u64 = 3;

/// One client's share of a phase: puts and gets on shared keys (checked
/// for linearizability) and puts of unique keys (checked for loss).
async fn client_phase(
    client: Arc<Client>,
    rec: Arc<Rec>,
    id: u64,
    phase: u64,
    acked: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut x = id * 7919 + phase * 104_729 + 1;
    for n in 0..OPS_PER_PHASE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = format!("k{}", x % KEYS);
        // A client whose request had an unknown outcome continues as a
        // new client, so its operations never overlap in the history.
        let who = id * 1000 + phase * 100 + n;
        match x % 3 {
            0 => {
                let op = rec.invoke(who, KvInput::get(&key));
                if let Ok(r) = client.range(get(&key)).await {
                    let v = r.kvs.first().map(|kv| kv.value.clone()).unwrap_or_default();
                    rec.ok(op, KvOutput::Value(String::from_utf8(v.to_vec()).unwrap()));
                }
            }
            1 => {
                let value = format!("c{id}p{phase}n{n}");
                let op = rec.invoke(who, KvInput::put(&key, &value));
                if client.put(put(&key, &value)).await.is_ok() {
                    rec.ok(op, KvOutput::Ok);
                }
            }
            _ => {
                let key = format!("u-{id}-{phase}-{n}");
                if client.put(put(&key, "1")).await.is_ok() {
                    acked.lock().unwrap().push(key);
                }
            }
        }
    }
}

fn get(key: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: Bytes::from(key.to_string()),
        ..Default::default()
    }
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
        ..Default::default()
    }
}

async fn run_phase(
    client: &Arc<Client>,
    rec: &Arc<Rec>,
    phase: u64,
    acked: &Arc<std::sync::Mutex<Vec<String>>>,
) {
    let tasks: Vec<_> = (1..=CLIENTS)
        .map(|id| {
            tokio::spawn(client_phase(
                Arc::clone(client),
                Arc::clone(rec),
                id,
                phase,
                Arc::clone(acked),
            ))
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn killing_members_loses_no_acknowledged_write_and_history_is_linearizable() {
    kill_and_pause_members("kill9", 3);
}

#[test]
fn five_members_survive_two_kills_and_a_pause() {
    kill_and_pause_members("kill9x5", 5);
}

/// Phases of concurrent clients between faults: kill -9 of the leader
/// (and, with five members, of a follower too: a minority of two), its
/// restart, SIGSTOP/SIGCONT of the leader, and the kill and restart of
/// every member; then no acknowledged write may be missing and the history
/// must be linearizable.
fn kill_and_pause_members(name: &str, n: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Frequent snapshots, so that restarts recover from a snapshot plus a
    // log suffix and a restarted member may need one sent by the leader.
    let mut cluster = Cluster::start_with(name, n, &["--snapshot-entries", "20"]);
    cluster.wait_leader(&rt);
    let client = {
        let _g = rt.enter();
        Arc::new(cluster.client())
    };
    let rec = Arc::new(Rec::new());
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));

    rt.block_on(run_phase(&client, &rec, 1, &acked));
    let leader = cluster.wait_leader(&rt);
    cluster.kill(leader);
    let follower = (leader + 1) % n;
    if n >= 5 {
        cluster.kill(follower);
    }
    rt.block_on(run_phase(&client, &rec, 2, &acked));
    cluster.restart(leader);
    if n >= 5 {
        cluster.restart(follower);
    }
    rt.block_on(run_phase(&client, &rec, 3, &acked));
    // Pause the leader (SIGSTOP): the others elect a new one while it
    // sleeps; on SIGCONT it must step down, not serve stale state.
    let leader = cluster.wait_leader(&rt);
    cluster.signal(leader, "STOP");
    rt.block_on(run_phase(&client, &rec, 4, &acked));
    cluster.signal(leader, "CONT");
    rt.block_on(run_phase(&client, &rec, 5, &acked));
    for i in 0..n {
        cluster.kill(i);
    }
    for i in 0..n {
        cluster.restart(i);
    }
    cluster.wait_leader(&rt);
    let acked = acked.lock().unwrap().clone();
    rt.block_on(check_after_restart(&client, &rec, &acked));
}

/// Every acknowledged write is readable, and the whole history (with a
/// final read of each key) is linearizable.
async fn check_after_restart(client: &Client, rec: &Rec, acked: &[String]) {
    assert!(!acked.is_empty(), "no write was acknowledged");
    for key in acked {
        let r = client.range(get(key)).await.expect("read after restart");
        assert_eq!(r.kvs.len(), 1, "acknowledged write of {key} is lost");
    }
    for k in 0..KEYS {
        let key = format!("k{k}");
        let op = rec.invoke(999_999, KvInput::get(&key));
        let r = client.range(get(&key)).await.expect("final read");
        let v = r.kvs.first().map(|kv| kv.value.clone()).unwrap_or_default();
        rec.ok(op, KvOutput::Value(String::from_utf8(v.to_vec()).unwrap()));
    }
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
        "checked {} operations and {} acknowledged unique writes",
        rec.len(),
        acked.len()
    );
}
