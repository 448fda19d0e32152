//! Random KV workloads under random faults, for `flotilla sim kv` (the
//! swarm testing of `flotilla_sim::swarm`, with clients): the seed decides
//! the cluster size (unless given), the fault rates, `max_raft_state`, and
//! every operation.
//!
//! A run has two phases. In the *safety* phase, clients issue random gets
//! (linearizable, and some serializable), puts, appends, deletes, ranges
//! and compare-and-swap transactions on a few keys while a nemesis crashes,
//! restarts and partitions servers, with Raft's invariants checked after
//! every step. In the *liveness* phase the faults stop: every client must
//! finish, a final write must reach every replica, and all replicas must
//! then hold the same store and sessions. The whole history is checked for
//! linearizability.
//!
//! Clients also send invalid operations (an empty key in a get, put,
//! delete or compare-and-swap), as hostile or broken clients do, which
//! reach the log unchecked: every one must come back refused
//! ([`flotilla_kv::Outcome::Refused`]) and change nothing, so the checker's
//! model leaves them out of the history, and the replicas, compared at the
//! end, must agree on them too.
//!
//! With `mvcc_per_mille` the servers keep the store's history (etcd's
//! MVCC) and clients also compact it and read the whole key space at
//! older revisions: a read at a revision must be answered alike by every
//! replica at every time until that revision is compacted (the first
//! answer is kept and every later one compared with it, to the end of the
//! run), a compaction or a read at a revision a client has seen is never
//! refused as a future revision, and the replicas, histories included,
//! must agree at the end.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_kv::{Compare, Op, ReadConsistency, Refusal, Response, Txn};
use flotilla_sim::swarm::Faults;
use flotilla_sim::{Failure, MS, Tester};

use crate::client::{Next, OpError, OpResult, Workload};
use crate::lab::{KvCluster, KvHosted, KvLabApp, server_partition};

/// How to run one seed.
#[derive(Clone, Debug)]
pub struct KvSwarmConfig {
    /// Servers; 0 lets the seed choose 3 or 5.
    pub nodes: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Distinct keys the clients use.
    pub keys: u64,
    /// Faults to inject (`partition`, `crash`, `drop`, `reorder`,
    /// `snapshot`; others are ignored).
    pub faults: Faults,
    /// Length of the safety phase, virtual ns.
    pub safety_ns: u64,
    /// Time allowed to finish once the faults stop, virtual ns.
    pub liveness_ns: u64,
    /// Per mille of operations that are invalid (0: none; the seeds
    /// found before they existed replay with 0).
    pub invalid_per_mille: u64,
    /// Per mille of operations that compact the history or read at an
    /// older revision (0: none, and the servers keep no history; the
    /// seeds found before they existed replay with 0).
    pub mvcc_per_mille: u64,
}

impl Default for KvSwarmConfig {
    fn default() -> KvSwarmConfig {
        KvSwarmConfig {
            nodes: 0,
            clients: 5,
            keys: 4,
            faults: Faults::all(),
            safety_ns: 10_000 * MS,
            liveness_ns: 30_000 * MS,
            invalid_per_mille: 20,
            mvcc_per_mille: 50,
        }
    }
}

/// What a passing run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvSwarmReport {
    /// Client operations completed.
    pub ops: u64,
    /// Virtual time simulated, ns.
    pub virtual_ns: u64,
    /// Wall time simulating.
    pub sim_wall: Duration,
    /// Operations in the checked history.
    pub checked_ops: u64,
    /// Wall time checking the history.
    pub check_wall: Duration,
}

/// A client issuing random operations until stopped.
struct RandomClient {
    me: usize,
    keys: u64,
    n: u64,
    /// The last version seen per key, to aim compare-and-swaps.
    seen: Vec<u64>,
    /// Per mille of operations that are invalid.
    invalid_per_mille: u64,
    /// Per mille of compactions and reads at a revision.
    mvcc_per_mille: u64,
    /// The highest revision an answer carried.
    seen_rev: u64,
    /// The first answer of a whole read at each revision, shared by every
    /// client.
    reads_at: ReadsAt,
    stop: Rc<Cell<bool>>,
    finished: Rc<Cell<usize>>,
}

/// The first answer of a whole read at each revision.
type ReadsAt = Rc<RefCell<BTreeMap<u64, Response>>>;

/// A read of every key at `revision`.
fn read_at(revision: u64) -> Op {
    Op::range_at(Bytes::new(), None, 0, revision)
}

impl RandomClient {
    /// A compaction or a whole read at a revision up to the last seen.
    fn mvcc_op(&mut self, c: &mut KvHosted) -> Op {
        let rev = c.rng.range(self.seen_rev / 2, self.seen_rev + 1);
        // Revision 0 reads the current state: nothing to compare.
        if c.rng.range(0, 4) == 0 || rev == 0 {
            Op::Compact { revision: rev }
        } else {
            read_at(rev)
        }
    }

    /// Checks the answer of [`RandomClient::mvcc_op`].
    fn mvcc_done(&mut self, c: &mut KvHosted, op: &Op, r: &OpResult) -> Result<(), Failure> {
        let requested = match op {
            Op::Compact { revision } | Op::Range { revision, .. } => *revision,
            _ => 0,
        };
        match (op, r) {
            (_, Err(OpError::Refused { refusal, .. })) => match refusal {
                Refusal::Compacted { compacted, .. } if *compacted >= requested => Ok(()),
                other => Err(c.fail(format!(
                    "client {}: {op:?} refused: {other} (seen revision {})",
                    self.me, self.seen_rev
                ))),
            },
            (Op::Compact { .. }, Ok((_, Response::Compacted))) => Ok(()),
            (Op::Range { revision, .. }, Ok((_, resp @ Response::Range { .. }))) => {
                let mut reads = self.reads_at.borrow_mut();
                let first = reads.entry(*revision).or_insert_with(|| resp.clone());
                if first != resp {
                    return Err(c.fail(format!(
                        "client {}: read at {revision} answered {resp:?}, earlier {first:?}",
                        self.me
                    )));
                }
                Ok(())
            }
            (_, other) => Err(c.fail(format!("client {}: {op:?} -> {other:?}", self.me))),
        }
    }

    fn cas(&mut self, c: &mut KvHosted, key: String, k: usize, value: String) -> Op {
        let compare = match c.rng.range(0, 3) {
            0 => Compare::value_is(
                key.clone(),
                format!("c{}-{}", self.me, self.n.saturating_sub(1)),
            ),
            1 => Compare::absent(key.clone()),
            _ => Compare::version_is(key.clone(), self.seen[k]),
        };
        Op::Txn(Txn {
            compares: vec![compare],
            success: vec![Op::put(key, value)],
            failure: Vec::new(),
        })
    }
}

impl Workload<KvHosted> for RandomClient {
    fn next(&mut self, c: &mut KvHosted) -> Next {
        if self.stop.get() {
            self.finished.set(self.finished.get() + 1);
            return Next::Stop;
        }
        // Drawn only when enabled, so that runs without invalid operations
        // replay as they did before these existed.
        if self.invalid_per_mille > 0 && c.rng.range(0, 1000) < self.invalid_per_mille {
            self.n += 1;
            let op = invalid_op(c, format!("c{}-{}", self.me, self.n));
            return Next::Op(op, ReadConsistency::Linearizable);
        }
        if self.mvcc_per_mille > 0 && c.rng.range(0, 1000) < self.mvcc_per_mille {
            self.n += 1;
            return Next::Op(self.mvcc_op(c), ReadConsistency::Linearizable);
        }
        let k = c.rng.range(0, self.keys) as usize;
        let key = format!("k{k}");
        self.n += 1;
        let value = format!("c{}-{}", self.me, self.n);
        let lin = ReadConsistency::Linearizable;
        let (op, read) = match c.rng.range(0, 100) {
            0..30 => (Op::get(key), lin),
            30..35 => (Op::get(key), ReadConsistency::Serializable),
            35..50 => (Op::put(key, value), lin),
            50..65 => (Op::append(key, value), lin),
            65..72 => (Op::delete(key), lin),
            72..77 => (Op::prefix("k", c.rng.range(0, 3)), lin),
            _ => (self.cas(c, key, k, value), lin),
        };
        Next::Op(op, read)
    }

    fn done(&mut self, c: &mut KvHosted, op: &Op, r: &OpResult) -> Result<(), Failure> {
        if let Err(refusal) = flotilla_kv::check_op(op) {
            return match r {
                Err(OpError::Refused { refusal: got, .. }) if *got == refusal => Ok(()),
                other => Err(c.fail(format!(
                    "client {}: invalid {op:?} ({refusal}) was answered {other:?}, not refused",
                    self.me
                ))),
            };
        }
        if let Ok((rev, _)) = r {
            self.seen_rev = self.seen_rev.max(*rev);
        }
        if matches!(op, Op::Compact { .. } | Op::Range { revision: 1.., .. }) {
            return self.mvcc_done(c, op, r);
        }
        let (_, resp) = r
            .as_ref()
            .map_err(|e| c.fail(format!("client {}: {e}", self.me)))?;
        if let (Op::Get { key }, Response::Get(kv)) = (op, resp) {
            let k: usize = key
                .get(1..)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            if let Some(seen) = self.seen.get_mut(k) {
                *seen = kv.as_ref().map_or(0, |kv| kv.version);
            }
        }
        Ok(())
    }
}

/// An operation every replica must refuse: an empty key where a key is
/// needed.
fn invalid_op(c: &mut KvHosted, value: String) -> Op {
    match c.rng.range(0, 4) {
        0 => Op::get(""),
        1 => Op::put("", value),
        2 => Op::delete(""),
        _ => Op::Txn(Txn {
            compares: vec![Compare::absent("")],
            success: vec![Op::put("k0", value)],
            failure: Vec::new(),
        }),
    }
}

fn build(seed: u64, cfg: &KvSwarmConfig) -> KvCluster {
    let mut rng = flotilla_raft::rng::SplitMix64::new(seed ^ 0x6b76_5eed);
    let nodes = match cfg.nodes {
        0 => [3, 5][rng.range(0, 2) as usize],
        n => n,
    };
    let f = cfg.faults;
    let maxraftstate = f.snapshot.then(|| rng.range(300, 3000));
    let app = KvLabApp {
        history: cfg.mvcc_per_mille > 0,
    };
    let mut t = KvCluster::with_app(nodes, seed, false, maxraftstate, app);
    let net = &mut t.c.network().cfg;
    if f.drop {
        net.reliable = false;
        net.drop_request_per_mille = rng.range(0, 200);
        net.drop_response_per_mille = rng.range(0, 200);
    }
    if f.reorder {
        net.reliable = false;
        net.long_reordering = rng.range(0, 2) == 0;
        net.duplicate_per_mille = rng.range(0, 100);
    }
    t
}

fn nemesis_step(t: &mut KvCluster, f: Faults) {
    let n = t.c.n();
    let victim = t.c.rng.range(0, n as u64) as usize;
    match t.c.rng.range(0, 4) {
        0 if f.crash && t.c.alive(victim) => t.c.crash(victim),
        0 | 1 if f.crash && !t.c.alive(victim) => t.c.restart(victim),
        2 if f.partition => {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for i in 0..n {
                if t.c.rng.range(0, 2) == 0 {
                    a.push(i);
                } else {
                    b.push(i);
                }
            }
            server_partition(&mut t.c, &a, &b);
        }
        3 if f.partition => t.connect_all(),
        _ => {}
    }
}

/// Every read at a revision not compacted since is answered now, by
/// every replica, as it was first.
fn reads_at_still_agree(t: &KvCluster, reads_at: &ReadsAt) -> Result<(), Failure> {
    for i in 0..t.c.n() {
        let differs = t.c.with_machine(i, |m| {
            let r = &m.replica;
            let reads = reads_at.borrow();
            let mut reads = reads.range(r.store().compacted()..);
            reads.find_map(|(rev, first)| {
                let now = r.read(&read_at(*rev));
                let same =
                    matches!(&now, flotilla_kv::Outcome::Ok { response, .. } if response == first);
                (!same).then(|| format!("reads at {rev} {now:?}, first answered {first:?}"))
            })
        });
        if let Some(Some(what)) = differs {
            return Err(t.c.fail(format!("replica {} {what}", i + 1)));
        }
    }
    Ok(())
}

/// Every replica applied the same prefix and holds the same state.
fn replicas_agree(t: &mut KvCluster) -> Result<(), Failure> {
    let all: Vec<usize> = (0..t.c.n()).collect();
    let ck = t.make_client(&all);
    t.put(&ck, "final", "x")?;
    let target = (0..t.c.n()).filter_map(|i| t.c.status(i)).map(|s| s.commit);
    let target = target.max().unwrap_or_default();
    t.c.run_until_cond(10_000 * MS, "replicas did not catch up", |c| {
        (0..c.n()).all(|i| c.with_machine(i, |m| m.replica.applied() >= target) == Some(true))
    })?;
    let state = |i| {
        t.c.with_machine(i, |m| {
            (m.replica.store().clone(), m.replica.sessions().clone())
        })
    };
    let first = state(0);
    for i in 1..t.c.n() {
        let other = state(i);
        // No client writes any more, so every replica stops at the same
        // index.
        if other != first {
            return Err(t
                .c
                .fail(format!("replica {} differs from replica 1", i + 1)));
        }
    }
    Ok(())
}

/// Runs one seed: faults, then convergence, then the history check.
pub fn run(seed: u64, cfg: &KvSwarmConfig) -> Result<KvSwarmReport, Failure> {
    let began = Instant::now();
    let mut t = build(seed, cfg);
    let stop = Rc::new(Cell::new(false));
    let finished = Rc::new(Cell::new(0));
    let reads_at = ReadsAt::default();
    for me in 0..cfg.clients {
        t.spawn(Box::new(RandomClient {
            me,
            keys: cfg.keys.max(1),
            n: 0,
            seen: vec![0; cfg.keys.max(1) as usize],
            invalid_per_mille: cfg.invalid_per_mille,
            mvcc_per_mille: cfg.mvcc_per_mille,
            seen_rev: 0,
            reads_at: reads_at.clone(),
            stop: stop.clone(),
            finished: finished.clone(),
        }));
    }
    while t.c.now() < cfg.safety_ns {
        let pause = t.c.rng.range(50, 1000);
        t.c.run_for(pause * MS)?;
        nemesis_step(&mut t, cfg.faults);
    }
    stop.set(true);
    t.c.network().cfg.reliable = true;
    t.c.network().cfg.long_reordering = false;
    t.connect_all();
    for i in 0..t.c.n() {
        if !t.c.alive(i) {
            t.start_server(i);
        }
    }
    let clients = cfg.clients;
    t.c.run_until_cond(
        cfg.liveness_ns,
        "clients did not finish after the faults stopped",
        |_| finished.get() == clients,
    )?;
    replicas_agree(&mut t)?;
    reads_at_still_agree(&t, &reads_at)?;
    let ops = t.shared.stats.borrow().ops;
    let sim_wall = began.elapsed();
    let check = t.check_history()?;
    Ok(KvSwarmReport {
        ops,
        virtual_ns: t.c.now(),
        sim_wall,
        checked_ops: check.ops as u64,
        check_wall: check.wall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_seeds_with_every_fault_pass() {
        let cfg = KvSwarmConfig {
            safety_ns: 5_000 * MS,
            ..KvSwarmConfig::default()
        };
        for seed in 1..=4 {
            if let Err(f) = run(seed, &cfg) {
                panic!("{f}\nreplay: flotilla sim kv --seed {seed} --faults all");
            }
        }
    }
}
