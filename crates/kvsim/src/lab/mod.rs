//! The course's kvraft tester (`kvraft/config.go`, spec §3.1) on the
//! production replica host: every server is a [`flotilla_host::Host`]
//! over the real WAL on the simulator's disk, running the KV machine
//! every etcd-compatible member runs ([`KvMachine`], here with the
//! course's store, which keeps no history), and clients are
//! [`HostedClerk`]s that speak the session service's requests across the
//! simulated network. The tester's operations are the course's: clerks
//! connected to chosen servers, partitions of the servers that leave
//! client links alone, shutdown and restart of servers from their disks,
//! `LogSize` and the snapshot's size, and a check of the whole recorded
//! history with the linearizability checker.
//!
//! The course's `maxraftstate` sets the host's byte bound on the log
//! (`snapshot_log_bytes`): a server compacts once its log holds half of
//! it. The network has a 3 ms latency per message (labrpc's RPCs take
//! real time), on top of the course's unreliable-mode faults when on.

pub mod clerk;
pub mod generic;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_host::kv_app::members::Members;
use flotilla_host::kv_app::{KvMachine, NoWatch};
use flotilla_kv::{Op, ReadConsistency, Replica, Response, SessionLimits};
use flotilla_linearize::{Kv, Limits, Recorder, Verdict, check};
use flotilla_raft::NodeId;
use flotilla_raft::rng::SplitMix64;
use flotilla_sim::hosted::{App, HostedCluster, HostedConfig, Request};
use flotilla_sim::{CLIENT_ADDR_BASE, Failure, MS, Tester};

use crate::client::{ClientStats, History, OpError, OpResult, Script, ScriptState, Workload};
pub use clerk::HostedClerk;

/// One-way latency of every message.
pub const NET_LATENCY_NS: u64 = 3 * MS;

/// The course's electionTimeout.
pub const ELECTION_TIMEOUT_NS: u64 = 1000 * MS;

/// How long the checker may take on one history (the course allows 1 s and
/// passes on a timeout; we fail on one, loudly).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// The hosted cluster the KV tests run.
pub type KvHosted = HostedCluster<KvLabApp>;

/// The course's KV service as a hosted app: every member runs
/// [`KvMachine`] over the course's store, or over etcd's with `history`
/// (every revision kept until compacted). Its clients are the test's
/// [`HostedClerk`]s, not the world's.
#[derive(Debug, Default)]
pub struct KvLabApp {
    /// Keep the store's history (etcd's MVCC).
    pub history: bool,
}

impl App for KvLabApp {
    type Machine = KvMachine<NoWatch>;

    fn machine(&mut self, _member: u64, voters: &[NodeId]) -> KvMachine<NoWatch> {
        let addrs: BTreeMap<NodeId, String> =
            voters.iter().map(|&id| (id, format!("sim-{id}"))).collect();
        let limits = SessionLimits::default();
        KvMachine {
            replica: if self.history {
                Replica::with_history(limits)
            } else {
                Replica::new(limits)
            },
            members: Members::bootstrap(&addrs),
            watch: Arc::new(NoWatch),
        }
    }

    /// The world has no clients here; were one configured, it would read.
    fn next(&mut self, _rng: &mut SplitMix64, _c: u64, _now: u64) -> Request {
        Request::Read
    }

    fn written(
        &mut self,
        _c: u64,
        _o: &flotilla_host::kv_app::KvOutput,
        _now: u64,
    ) -> Result<(), String> {
        Ok(())
    }

    fn read(&mut self, _c: u64, _m: &KvMachine<NoWatch>, _now: u64) -> Result<(), String> {
        Ok(())
    }
}

/// What every clerk of a run shares: the history and the counts.
#[derive(Clone)]
pub struct Shared {
    /// Every recorded operation of the run.
    pub history: History,
    /// Counts over every client.
    pub stats: Rc<RefCell<ClientStats>>,
}

/// A test-driven clerk (the course's `makeClient`): operations run one at a
/// time through [`KvCluster::op`].
pub struct Ck {
    /// Its network address.
    pub addr: u64,
    actor: usize,
    script: Rc<RefCell<ScriptState>>,
}

impl Ck {
    /// How many of its operations completed.
    pub fn completed(&self) -> usize {
        self.script.borrow().results.len()
    }
}

/// What checking a history cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckStats {
    /// Operations in the history.
    pub ops: usize,
    /// Wall time the checker took.
    pub wall: Duration,
}

/// A KV cluster under test.
pub struct KvCluster {
    /// The hosted cluster.
    pub c: KvHosted,
    /// The history and counts of every clerk.
    pub shared: Shared,
    /// The course's `maxraftstate` (`None`: -1, never snapshot).
    pub maxraftstate: Option<u64>,
    next_client: u64,
}

impl KvCluster {
    /// `nservers` KV servers, reliable or not (the course's
    /// `make_config(t, n, unreliable, maxraftstate)`).
    pub fn new(nservers: u64, seed: u64, unreliable: bool, maxraftstate: Option<u64>) -> KvCluster {
        KvCluster::with_app(
            nservers,
            seed,
            unreliable,
            maxraftstate,
            KvLabApp::default(),
        )
    }

    /// [`KvCluster::new`] with the members running `app`.
    pub fn with_app(
        nservers: u64,
        seed: u64,
        unreliable: bool,
        maxraftstate: Option<u64>,
        app: KvLabApp,
    ) -> KvCluster {
        let cfg = HostedConfig::course(nservers, unreliable, NET_LATENCY_NS, maxraftstate)
            .with_snapshot_chunks(256);
        // Fixed, valid settings on empty disks: a failed start is the
        // simulator's bug.
        let c = HostedCluster::new(seed, cfg, app).unwrap_or_else(|e| panic!("{e}"));
        KvCluster {
            c,
            shared: Shared {
                history: Rc::new(Recorder::new()),
                stats: Rc::new(RefCell::new(ClientStats::default())),
            },
            maxraftstate,
            next_client: 1,
        }
    }

    /// Starts a clerk running `w` on session `id`, talking to every
    /// server in a random order; returns its address and actor id.
    fn clerk(&mut self, w: Box<dyn Workload<KvHosted>>) -> (u64, usize) {
        let id = self.next_client;
        self.next_client += 1;
        let mut order: Vec<usize> = (0..self.c.n()).collect();
        // The course gives each clerk the servers in a random order.
        for i in (1..order.len()).rev() {
            let j = self.c.rng.range(0, i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let addr = CLIENT_ADDR_BASE + id;
        let me = self.c.next_actor();
        let clerk = HostedClerk::new(me, addr, id, order, w, self.shared.clone());
        let actor = self.c.spawn(Box::new(clerk));
        (addr, actor)
    }

    /// Starts a client running `w`, connected to every server.
    pub fn spawn(&mut self, w: Box<dyn Workload<KvHosted>>) -> u64 {
        self.clerk(w).0
    }

    /// A test-driven clerk connected to the servers `to` (indexes).
    pub fn make_client(&mut self, to: &[usize]) -> Ck {
        let script = Rc::new(RefCell::new(ScriptState::default()));
        let (addr, actor) = self.clerk(Box::new(Script(script.clone())));
        let ck = Ck {
            addr,
            actor,
            script,
        };
        self.connect_client(&ck, to);
        ck
    }

    /// Connects `ck` to exactly the servers `to` (the course's
    /// `ConnectClient`).
    pub fn connect_client(&mut self, ck: &Ck, to: &[usize]) {
        for i in 0..self.c.n() {
            let up = to.contains(&i);
            self.c.network().set_link(ck.addr, i as u64 + 1, up);
        }
    }

    /// Starts `op` on `ck` without waiting.
    pub fn start_op(&mut self, ck: &Ck, op: Op) {
        self.start_read(ck, op, ReadConsistency::Linearizable);
    }

    /// Starts `op` on `ck` with the given read consistency.
    pub fn start_read(&mut self, ck: &Ck, op: Op, read: ReadConsistency) {
        ck.script.borrow_mut().queue.push_back((op, read));
        self.c.wake_actor(ck.actor);
    }

    /// Runs `op` on `ck` to completion (the course's clerk calls block
    /// forever; the test's 120 s limit bounds them here).
    pub fn op(&mut self, ck: &Ck, op: Op) -> Result<Response, Failure> {
        self.op_with(ck, op, ReadConsistency::Linearizable)
    }

    /// Runs `op` on `ck` to completion with the given read consistency.
    pub fn op_with(&mut self, ck: &Ck, op: Op, read: ReadConsistency) -> Result<Response, Failure> {
        let before = ck.completed();
        self.start_read(ck, op, read);
        self.c
            .run_until_cond(120_000 * MS, "a clerk operation never completed", |_| {
                ck.script.borrow().results.len() > before
            })?;
        let r: OpResult = ck.script.borrow().results[before].clone();
        r.map(|(_, resp)| resp)
            .map_err(|e: OpError| self.c.fail(e.to_string()))
    }

    /// `Get(key)`: `""` for a missing key.
    pub fn get(&mut self, ck: &Ck, key: &str) -> Result<String, Failure> {
        let r = self.op(ck, Op::get(key.to_string()))?;
        Ok(r.value()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default())
    }

    /// `Put(key, value)`.
    pub fn put(&mut self, ck: &Ck, key: &str, value: &str) -> Result<(), Failure> {
        self.op(ck, Op::put(key.to_string(), value.to_string()))
            .map(|_| ())
    }

    /// `Append(key, value)`.
    pub fn append(&mut self, ck: &Ck, key: &str, value: &str) -> Result<(), Failure> {
        self.op(ck, Op::append(key.to_string(), value.to_string()))
            .map(|_| ())
    }

    /// The course's `check`: `Get(key)` must return `expected`.
    pub fn check(&mut self, ck: &Ck, key: &str, expected: &str) -> Result<(), Failure> {
        let got = self.get(ck, key)?;
        if got != expected {
            return Err(self
                .c
                .fail(format!("Get({key:?}): expected {expected:?}, got {got:?}")));
        }
        Ok(())
    }

    /// Server-only partition: full connectivity inside each side, none
    /// across; client links untouched (the course's `partition`).
    pub fn partition(&mut self, p1: &[usize], p2: &[usize]) {
        server_partition(&mut self.c, p1, p2);
    }

    /// Reconnects every server to every other (client links untouched).
    pub fn connect_all(&mut self) {
        let all: Vec<usize> = (0..self.c.n()).collect();
        self.partition(&all, &[]);
    }

    /// The course's `ShutdownServer`: cut it off, then kill it (it keeps
    /// its disk, minus unsynced writes).
    pub fn shutdown_server(&mut self, i: usize) {
        self.c.crash1(i);
    }

    /// The course's `StartServer`: restart from disk, still cut off until
    /// a `connect_all` or `partition`.
    pub fn start_server(&mut self, i: usize) {
        self.c.restart(i);
    }

    /// A server that believes it leads, if any.
    pub fn leader(&self) -> Option<usize> {
        self.c.leader()
    }

    /// The course's `make_partition`: the leader in the minority, last.
    pub fn make_partition(&self) -> (Vec<usize>, Vec<usize>) {
        let n = self.c.n();
        let l = self.leader().unwrap_or(0);
        let others: Vec<usize> = (0..n).filter(|&i| i != l).collect();
        let p1 = others[..n / 2 + 1].to_vec();
        let mut p2 = others[n / 2 + 1..].to_vec();
        p2.push(l);
        (p1, p2)
    }

    /// The course's `LogSize` and snapshot limits: with snapshots, the
    /// largest Raft state is at most 8 × `maxraftstate`; without, no
    /// snapshot exists.
    pub fn check_sizes(&self) -> Result<(), Failure> {
        let size = self.c.log_size();
        match self.maxraftstate {
            Some(max) if size > 8 * max => Err(self
                .c
                .fail(format!("logs were not trimmed ({size} > 8*{max})"))),
            None if self.c.snapshot_size() > 0 => Err(self.c.fail(format!(
                "snapshot too large ({}), should not be used when maxraftstate = -1",
                self.c.snapshot_size()
            ))),
            _ => Ok(()),
        }
    }

    /// Checks the whole history; a violation, or a check that runs out of
    /// time, fails with the counterexample.
    pub fn check_history(&self) -> Result<CheckStats, Failure> {
        self.check_history_within(CHECK_TIMEOUT, false)
    }

    /// Checks the whole history within `timeout`. With `unknown_ok`, a
    /// timeout passes as in the course (its one-key test gives the checker
    /// 50 concurrent appends to order), after a loud message.
    pub fn check_history_within(
        &self,
        timeout: Duration,
        unknown_ok: bool,
    ) -> Result<CheckStats, Failure> {
        let h = self.shared.history.history();
        let began = Instant::now();
        let verdict = check(&Kv, &h, &Limits::timeout(timeout));
        let stats = CheckStats {
            ops: h.len(),
            wall: began.elapsed(),
        };
        match verdict {
            Verdict::Linearizable => Ok(stats),
            Verdict::NotLinearizable(cx) => {
                Err(self.c.fail(format!("history is not linearizable:\n{cx}")))
            }
            Verdict::Unknown(_) if unknown_ok => {
                eprintln!(
                    "info: seed {}: linearizability check timed out after {timeout:?}, \
                     assuming history is ok (as the course does)",
                    self.c.seed()
                );
                Ok(stats)
            }
            Verdict::Unknown(u) => Err(self.c.fail(format!(
                "linearizability check timed out after {timeout:?} on {} of {} keys",
                u.partitions.len(),
                u.total
            ))),
        }
    }
}

/// Partitions the servers (by index) of `c` into `p1` and `p2`, leaving
/// client links alone; a server in neither side is cut off from all.
pub fn server_partition(c: &mut KvHosted, p1: &[usize], p2: &[usize]) {
    let n = c.n();
    let net = c.network();
    for i in 0..n {
        net.rejoin(i as u64 + 1);
        for j in i + 1..n {
            let same = (p1.contains(&i) && p1.contains(&j)) || (p2.contains(&i) && p2.contains(&j));
            net.set_link(i as u64 + 1, j as u64 + 1, same);
        }
    }
}
