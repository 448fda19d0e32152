//! The course's kvraft tester (`kvraft/config.go`, spec §3.1) on virtual
//! time: servers running [`KvServer`](flotilla_kv::KvServer) on a simulated
//! Raft cluster, clerks connected to chosen servers, partitions of the
//! servers that leave client links alone, shutdown and restart of servers
//! from their disks, the course's `LogSize`/`SnapshotSize`, and a check of
//! the whole recorded history with the linearizability checker.
//!
//! The network has a 3 ms latency per message (labrpc's RPCs take real
//! time; with none, a client loop would never let virtual time pass), on
//! top of the course's unreliable-mode faults when they are on.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use flotilla_kv::{ClerkError, Op, ReadConsistency, Response, ServerConfig};
use flotilla_linearize::{Kv, Limits, Recorder, Verdict, check};
use flotilla_raft::NodeId;
use flotilla_sim::{Cluster, ClusterConfig, Failure, MS, Tester};

use crate::client::{ClerkActor, ClientStats, History, OpResult, Script, ScriptState, Workload};

/// One-way latency of every message.
pub const NET_LATENCY_NS: u64 = 3 * MS;

/// The course's electionTimeout.
pub const ELECTION_TIMEOUT_NS: u64 = 1000 * MS;

/// How long the checker may take on one history (the course allows 1 s and
/// passes on a timeout; we fail on one, loudly).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

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
    /// The simulated cluster.
    pub c: Cluster,
    /// Every recorded operation of the run.
    pub history: History,
    /// Counts over every client.
    pub stats: Rc<RefCell<ClientStats>>,
    /// The course's `maxraftstate` (`None`: -1, never snapshot).
    pub maxraftstate: Option<u64>,
    next_client: u64,
}

impl KvCluster {
    /// `nservers` KV servers, reliable or not (the course's
    /// `make_config(t, n, unreliable, maxraftstate)`).
    pub fn new(nservers: u64, seed: u64, unreliable: bool, maxraftstate: Option<u64>) -> KvCluster {
        let server = ServerConfig {
            max_raft_state: maxraftstate,
            ..ServerConfig::default()
        };
        KvCluster::with_servers(nservers, seed, unreliable, server)
    }

    /// [`KvCluster::new`] with every server configured as `server`.
    pub fn with_servers(
        nservers: u64,
        seed: u64,
        unreliable: bool,
        server: ServerConfig,
    ) -> KvCluster {
        let maxraftstate = server.max_raft_state;
        let mut cfg = ClusterConfig::new(nservers, seed);
        cfg.net.reliable = !unreliable;
        cfg.net.base_delay_ns = NET_LATENCY_NS;
        // Messages are still deep copies; skip re-encoding each one.
        cfg.serialize = false;
        cfg.trace = std::env::var_os("FLOTILLA_TRACE").is_some();
        let c = Cluster::with_service(cfg, crate::service::factory(server));
        KvCluster {
            c,
            history: Rc::new(Recorder::new()),
            stats: Rc::new(RefCell::new(ClientStats::default())),
            maxraftstate,
            next_client: 1,
        }
    }

    /// The servers' ids.
    pub fn servers(&self) -> Vec<NodeId> {
        self.c.nodes.iter().map(|n| n.id).collect()
    }

    fn client_id(&mut self) -> u64 {
        let id = self.next_client;
        self.next_client += 1;
        id
    }

    /// Starts a client running `w`, connected to every server.
    pub fn spawn(&mut self, w: Box<dyn Workload>) -> u64 {
        let id = self.client_id();
        let servers = self.servers();
        let (h, s) = (self.history.clone(), self.stats.clone());
        ClerkActor::spawn(&mut self.c, id, &servers, w, h, s);
        id
    }

    /// A test-driven clerk connected to the servers `to` (indexes).
    pub fn make_client(&mut self, to: &[usize]) -> Ck {
        let id = self.client_id();
        let servers = self.servers();
        let script = Rc::new(RefCell::new(ScriptState::default()));
        let w = Box::new(Script(script.clone()));
        let (h, s) = (self.history.clone(), self.stats.clone());
        let (addr, actor) = ClerkActor::spawn(&mut self.c, id, &servers, w, h, s);
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
        for (i, id) in self.servers().into_iter().enumerate() {
            self.c.net.set_link(ck.addr, id.get(), to.contains(&i));
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

    /// The results `ck` has so far.
    pub fn results(&self, ck: &Ck) -> usize {
        ck.script.borrow().results.len()
    }

    /// Runs `op` on `ck` to completion (the course's clerk calls block
    /// forever; the test's 120 s limit bounds them here).
    pub fn op(&mut self, ck: &Ck, op: Op) -> Result<Response, Failure> {
        self.op_with(ck, op, ReadConsistency::Linearizable)
    }

    /// Runs `op` on `ck` to completion with the given read consistency.
    pub fn op_with(&mut self, ck: &Ck, op: Op, read: ReadConsistency) -> Result<Response, Failure> {
        let before = self.results(ck);
        self.start_read(ck, op, read);
        self.c
            .run_until_cond(120_000 * MS, "a clerk operation never completed", |_| {
                ck.script.borrow().results.len() > before
            })?;
        let r: OpResult = ck.script.borrow().results[before].clone();
        r.map(|(_, resp)| resp)
            .map_err(|e: ClerkError| self.c.fail(e.to_string()))
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
        match self.maxraftstate {
            Some(max) if self.c.log_size() > 8 * max => Err(self.c.fail(format!(
                "logs were not trimmed ({} > 8*{max})",
                self.c.log_size()
            ))),
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
        let h = self.history.history();
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
                    self.c.cfg.seed
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
pub fn server_partition(c: &mut Cluster, p1: &[usize], p2: &[usize]) {
    let ids: Vec<u64> = c.nodes.iter().map(|n| n.id.get()).collect();
    for i in 0..ids.len() {
        c.net.rejoin(ids[i]);
        for j in i + 1..ids.len() {
            let same = (p1.contains(&i) && p1.contains(&j)) || (p2.contains(&i) && p2.contains(&j));
            c.net.set_link(ids[i], ids[j], same);
        }
    }
}

/// The KV replica of node `i`, if it runs.
pub fn replica(c: &Cluster, i: usize) -> Option<&flotilla_kv::Replica> {
    c.service(i)
        .and_then(|s| s.as_any().downcast_ref::<crate::service::KvService>())
        .map(|s| s.server.replica())
}
