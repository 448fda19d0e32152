//! The client workload of the cluster tests: phases of concurrent clients
//! doing puts and gets on a few shared keys (recorded with real times for
//! the linearizability checker) and puts of unique keys (remembered when
//! acknowledged, to check that none is lost).
//!
//! An operation whose outcome is unknown (a timeout, a broken connection)
//! stays pending in the history: the checker may place it anywhere after
//! its invocation, or drop it. The client that issued it continues under
//! a new history id, so one id's operations never overlap.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_client::Client;
use flotilla_linearize::{Kv, KvInput, KvOutput, Limits, Recorder, Verdict, check};
use flotilla_proto::etcdserverpb as pb;

pub type Rec = Recorder<KvInput, KvOutput>;

/// Operations per client per phase.
pub const OPS_PER_PHASE: u64 = 25;
/// Shared keys per epoch.
pub const KEYS: u64 = 3;
/// Phases that share one set of keys; later phases use fresh keys, so a
/// long soak's history splits into partitions the checker can search.
pub const PHASES_PER_EPOCH: u64 = 4;
/// No phase runs longer than this, whatever its faults.
pub const PHASE_LIMIT: Duration = Duration::from_secs(30);

/// Clients, their history and their acknowledged unique writes.
pub struct Workload {
    pub clients: Vec<Arc<Client>>,
    pub rec: Arc<Rec>,
    acked: Arc<Mutex<Vec<String>>>,
    keys: Mutex<BTreeSet<String>>,
    phase: AtomicU64,
}

/// A `Range` of one key.
pub fn get(key: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: Bytes::from(key.to_string()),
        ..Default::default()
    }
}

/// A `Put`.
pub fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: Bytes::from(key.to_string()),
        value: Bytes::from(value.to_string()),
        ..Default::default()
    }
}

fn value_of(r: &pb::RangeResponse) -> String {
    let v = r.kvs.first().map(|kv| kv.value.clone()).unwrap_or_default();
    String::from_utf8(v.to_vec()).unwrap()
}

/// One client's share of a phase.
struct Share {
    client: Arc<Client>,
    rec: Arc<Rec>,
    acked: Arc<Mutex<Vec<String>>>,
    id: u64,
    phase: u64,
    deadline: Instant,
}

impl Share {
    async fn run(self) -> u64 {
        let epoch = self.phase / PHASES_PER_EPOCH;
        let mut x = self.id * 7919 + self.phase * 104_729 + 1;
        let mut acks = 0;
        for n in 0..OPS_PER_PHASE {
            if Instant::now() > self.deadline {
                break;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("e{epoch}k{}", x % KEYS);
            let who = self.phase * 1_000_000 + self.id * 1000 + n;
            let ok = match x % 3 {
                0 => {
                    let op = self.rec.invoke(who, KvInput::get(&key));
                    let r = self.client.range(get(&key)).await;
                    r.map(|r| self.rec.ok(op, KvOutput::Value(value_of(&r))))
                        .is_ok()
                }
                1 => {
                    let value = format!("c{}p{}n{n}", self.id, self.phase);
                    let op = self.rec.invoke(who, KvInput::put(&key, &value));
                    let r = self.client.put(put(&key, &value)).await;
                    r.map(|_| self.rec.ok(op, KvOutput::Ok)).is_ok()
                }
                _ => {
                    let key = format!("u-{}-{}-{n}", self.id, self.phase);
                    let r = self.client.put(put(&key, "1")).await;
                    r.map(|_| self.acked.lock().unwrap().push(key)).is_ok()
                }
            };
            acks += u64::from(ok);
        }
        acks
    }
}

impl Workload {
    /// Once `cluster` has a leader: a workload of `clients` clients (client
    /// c starting at member c mod n) with per-request `timeout`, and a
    /// client over every member for the final checks.
    pub fn on(
        cluster: &super::Cluster,
        rt: &tokio::runtime::Runtime,
        clients: usize,
        timeout: Duration,
    ) -> (Workload, Client) {
        cluster.wait_leader(rt);
        let _g = rt.enter();
        let w = Workload::new(cluster.clients(clients, timeout));
        (w, cluster.client())
    }

    /// A workload over `clients`.
    pub fn new(clients: Vec<Arc<Client>>) -> Workload {
        Workload {
            clients,
            rec: Arc::new(Rec::new()),
            acked: Arc::new(Mutex::new(Vec::new())),
            keys: Mutex::new(BTreeSet::new()),
            phase: AtomicU64::new(0),
        }
    }

    fn next_phase(&self) -> u64 {
        let phase = self.phase.fetch_add(1, Ordering::Relaxed) + 1;
        let epoch = phase / PHASES_PER_EPOCH;
        let mut keys = self.keys.lock().unwrap();
        keys.extend((0..KEYS).map(|k| format!("e{epoch}k{k}")));
        phase
    }

    /// One phase: every client runs its share concurrently. Returns how
    /// many operations were acknowledged.
    pub async fn phase(&self) -> u64 {
        let phase = self.next_phase();
        let deadline = Instant::now() + PHASE_LIMIT;
        let tasks: Vec<_> = self
            .clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                tokio::spawn(
                    Share {
                        client: Arc::clone(client),
                        rec: Arc::clone(&self.rec),
                        acked: Arc::clone(&self.acked),
                        id: i as u64 + 1,
                        phase,
                        deadline,
                    }
                    .run(),
                )
            })
            .collect();
        let mut acks = 0;
        for t in tasks {
            acks += t.await.unwrap();
        }
        acks
    }

    /// Puts on shared keys through `clients` (each normally on one
    /// member), all at once, recorded in the history; returns how many
    /// were acknowledged. A write that timed out stays pending: it may
    /// still take effect after the partition heals.
    pub async fn probe_writes(&self, clients: &[Arc<Client>]) -> usize {
        let phase = self.next_phase();
        let epoch = phase / PHASES_PER_EPOCH;
        let probes: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let key = format!("e{epoch}k{}", i as u64 % KEYS);
                let value = format!("probe{phase}-{i}");
                let who = phase * 1_000_000 + 900_000 + i as u64;
                let op = self.rec.invoke(who, KvInput::put(&key, &value));
                let (c, rec) = (Arc::clone(c), Arc::clone(&self.rec));
                tokio::spawn(async move {
                    let r = c.put(put(&key, &value)).await;
                    r.map(|_| rec.ok(op, KvOutput::Ok)).is_ok()
                })
            })
            .collect();
        let mut acks = 0;
        for p in probes {
            acks += usize::from(p.await.unwrap());
        }
        acks
    }

    /// Every acknowledged unique write is readable, and the whole history
    /// (with a final read of every shared key) is linearizable.
    pub async fn check(&self, client: &Client) {
        let acked = self.acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "no write was acknowledged");
        for key in &acked {
            let r = client.range(get(key)).await.expect("read after restart");
            assert_eq!(r.kvs.len(), 1, "acknowledged write of {key} is lost");
        }
        let keys = self.keys.lock().unwrap().clone();
        for key in &keys {
            let op = self.rec.invoke(999_999_999_999, KvInput::get(key));
            let r = client.range(get(key)).await.expect("final read");
            self.rec.ok(op, KvOutput::Value(value_of(&r)));
        }
        assert_linearizable(&self.rec);
        eprintln!(
            "checked {} operations on {} keys and {} acknowledged unique writes",
            self.rec.len(),
            keys.len(),
            acked.len()
        );
    }
}

/// Checks `rec`'s history with the KV model (60 s limit), failing with the
/// counterexample, or saying so when the checker found no verdict in time.
pub fn assert_linearizable(rec: &Rec) {
    let limits = Limits {
        timeout: Some(Duration::from_secs(60)),
        ..Limits::default()
    };
    match check(&Kv, &rec.history(), &limits) {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable(c) => panic!("history is not linearizable: {c}"),
        Verdict::Unknown(u) => panic!(
            "the checker ran out of time on {:?} of {} keys: no verdict",
            u.partitions, u.total
        ),
    }
}
