//! A Raft cluster on virtual time: nodes, their disks, the network, the
//! event queue, and the fault operations tests use (crash, restart,
//! disconnect, partition). Events are processed in (time, sequence) order,
//! and every random choice comes from one PRNG seeded by the test, so a
//! seed replays a run exactly.
//!
//! Ready processing and the invariant checks live in `driver.rs`; the
//! course-style helpers (`one`, `check_one_leader`, ...) in `lab.rs`.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use flotilla_raft::rng::SplitMix64;
use flotilla_raft::{Config, LogIndex, Message, NodeId, RawNode, ReadState, Role, Term};

use crate::disk::SimDisk;
use crate::invariants::election_safety::ElectionSafety;
use crate::invariants::log_matching::LogMatching;
use crate::invariants::state_machine::CommittedLog;
use crate::net::{MS, NetConfig, Network};

/// A test or invariant failure, with where and when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The seed of the run.
    pub seed: u64,
    /// Virtual time of the failure, in ns.
    pub at_ns: u64,
    /// What went wrong.
    pub what: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} at {:.3}s: {}",
            self.seed,
            self.at_ns as f64 / 1e9,
            self.what
        )
    }
}

impl std::error::Error for Failure {}

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Number of nodes (ids 1..=nodes).
    pub nodes: u64,
    /// The seed of every random choice.
    pub seed: u64,
    /// Network faults.
    pub net: NetConfig,
    /// Take an application snapshot every this many applied entries.
    pub snapshot_every: Option<u64>,
    /// Extra bytes in each snapshot, so transfers need several chunks.
    pub snapshot_padding: usize,
    /// Virtual time between ticks.
    pub tick_ns: u64,
    /// Check the invariants after every step.
    pub checks: bool,
    /// Encode and decode every message (deep copies, codec coverage).
    pub serialize: bool,
    /// Keep a step-by-step trace.
    pub trace: bool,
    /// On a crash, lose a random part of the unsynced writes (else keep them).
    pub lose_unsynced_on_crash: bool,
    /// Asynchronous writes, as the production driver does them: a Ready's
    /// sync completes a random time in this range (ns) after it starts,
    /// while the node goes on (see `sync.rs`). `None`: each Ready's I/O is
    /// one step.
    pub async_sync_ns: Option<(u64, u64)>,
    /// The voters at bootstrap (default: every node). Other nodes start as
    /// outsiders that join through membership changes.
    pub initial_voters: Option<Vec<NodeId>>,
    /// Settings for every node (id, voters and seed are filled in).
    pub raft: Config,
}

impl ClusterConfig {
    /// A reliable cluster of `nodes` with the default node settings.
    pub fn new(nodes: u64, seed: u64) -> ClusterConfig {
        let mut raft = Config::new(NodeId(1), Vec::new());
        raft.snapshot_chunk_bytes = 256;
        ClusterConfig {
            nodes,
            seed,
            net: NetConfig::default(),
            snapshot_every: None,
            snapshot_padding: 0,
            tick_ns: 10 * MS,
            checks: true,
            serialize: true,
            trace: false,
            lose_unsynced_on_crash: true,
            async_sync_ns: None,
            initial_voters: None,
            raft,
        }
    }
}

/// The test's model of an application: the digest of what it applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    /// The last index applied (or restored from a snapshot).
    pub last_applied: LogIndex,
    /// Digest of entries `1..=last_applied`.
    pub digest: u64,
    /// The index of the last snapshot this node took.
    pub last_snapshot: LogIndex,
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// Its id.
    pub id: NodeId,
    /// The running instance (`None` while crashed).
    pub raft: Option<RawNode>,
    /// Its disk, which survives crashes.
    pub disk: SimDisk,
    /// Bumped at every crash, so timers of a dead instance are ignored.
    pub incarnation: u32,
    /// The application's state (kept while crashed, as the course's tester
    /// keeps its record of what a crashed server applied).
    pub app: AppState,
    /// Reads confirmed to this node, in order.
    pub reads: Vec<ReadState>,
    /// Reads this node reported dropped.
    pub dropped_reads: Vec<u64>,
    pub(crate) last_commit: LogIndex,
    pub(crate) last_term: Term,
    /// The highest term in a message this node sent (pre-votes aside):
    /// durable by then, so no restart may come back below it.
    pub(crate) sent_term: Term,
    /// Asynchronous writes waiting for their sync (see `sync.rs`).
    pub(crate) syncs: crate::sync::SyncQueue,
}

impl SimNode {
    /// Whether it is running.
    pub fn alive(&self) -> bool {
        self.raft.is_some()
    }

    /// Its term and whether it leads (the course's `GetState`).
    pub fn state(&self) -> Option<(Term, bool)> {
        self.raft.as_ref().map(|r| {
            let s = r.status();
            (s.term, s.role == Role::Leader)
        })
    }
}

/// Something scheduled on virtual time.
#[derive(Debug)]
pub(crate) enum Event {
    Tick {
        node: usize,
        incarnation: u32,
    },
    Deliver {
        msg: Message,
    },
    Wake {
        actor: usize,
        epoch: u64,
    },
    Synced {
        node: usize,
        incarnation: u32,
        token: u64,
    },
}

/// A concurrent client of a cluster `C` (the course's goroutines).
pub trait Actor<C = Cluster> {
    /// Runs at its wake time; returns when to wake next, or `None` when done.
    fn wake(&mut self, c: &mut C) -> Result<Option<u64>, Failure>;
}

/// A simulated cluster.
pub struct Cluster {
    /// How it was built.
    pub cfg: ClusterConfig,
    /// Virtual time, in ns.
    pub now: u64,
    /// The run's PRNG (tests draw from it too).
    pub rng: SplitMix64,
    /// The network.
    pub net: Network,
    /// The nodes; node id `i` is at index `i - 1`.
    pub nodes: Vec<SimNode>,
    pub(crate) events: BTreeMap<(u64, u64), Event>,
    seq: u64,
    pub(crate) election: ElectionSafety,
    pub(crate) log_matching: LogMatching,
    /// The committed log as observed through applications.
    pub committed: CommittedLog,
    pub(crate) actors: Vec<Option<Box<dyn Actor>>>,
    /// Each actor's wake generation: only its latest wake-up counts.
    actor_epochs: Vec<u64>,
    pub(crate) trace: Vec<String>,
    pub(crate) failure: Option<Failure>,
    /// Events processed.
    pub steps: u64,
    /// Reads in flight: (node index, ctx) to the committed length when the
    /// read was issued; a read index below it would be stale.
    pub(crate) pending_reads: BTreeMap<(usize, u64), LogIndex>,
    /// Reads confirmed and checked so far.
    pub reads_checked: u64,
}

impl Cluster {
    /// Builds and starts a cluster.
    pub fn new(cfg: ClusterConfig) -> Cluster {
        let mut c = Cluster {
            now: 0,
            rng: SplitMix64::new(cfg.seed),
            net: Network::new(cfg.net.clone()),
            nodes: (1..=cfg.nodes)
                .map(|id| SimNode {
                    id: NodeId(id),
                    raft: None,
                    disk: SimDisk::new(),
                    incarnation: 0,
                    app: AppState::default(),
                    reads: Vec::new(),
                    dropped_reads: Vec::new(),
                    syncs: Default::default(),
                    last_commit: LogIndex(0),
                    last_term: Term(0),
                    sent_term: Term(0),
                })
                .collect(),
            events: BTreeMap::new(),
            seq: 0,
            election: ElectionSafety::default(),
            log_matching: LogMatching::default(),
            committed: CommittedLog::default(),
            actors: Vec::new(),
            actor_epochs: Vec::new(),
            trace: Vec::new(),
            failure: None,
            steps: 0,
            pending_reads: BTreeMap::new(),
            reads_checked: 0,
            cfg,
        };
        for i in 0..c.nodes.len() {
            c.start_node(i);
        }
        c
    }

    /// The number of nodes.
    pub fn n(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn schedule(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), e);
    }

    /// Records a trace line (when tracing).
    pub fn trace(&mut self, line: impl FnOnce() -> String) {
        if self.cfg.trace {
            let t = self.now as f64 / 1e9;
            self.trace.push(format!("[{t:9.4}s] {}", line()));
        }
    }

    /// The trace so far.
    pub fn trace_lines(&self) -> &[String] {
        &self.trace
    }

    /// A failure at the current time. With tracing on, the trace so far is
    /// printed to stderr first, so a replayed failure shows how it came about.
    pub fn fail(&self, what: impl Into<String>) -> Failure {
        if self.cfg.trace {
            for line in &self.trace {
                eprintln!("{line}");
            }
        }
        Failure {
            seed: self.cfg.seed,
            at_ns: self.now,
            what: what.into(),
        }
    }

    fn node_config(&mut self, idx: usize) -> Config {
        let mut cfg = self.cfg.raft.clone();
        cfg.id = self.nodes[idx].id;
        cfg.voters = match &self.cfg.initial_voters {
            Some(v) => v.clone(),
            None => self.nodes.iter().map(|n| n.id).collect(),
        };
        cfg.seed = self.rng.next_u64();
        cfg
    }

    fn start_node(&mut self, idx: usize) {
        let cfg = self.node_config(idx);
        let node = &mut self.nodes[idx];
        let init = node.disk.contents().clone();
        node.app = AppState::default();
        if let Some(snap) = &init.snapshot {
            match crate::driver::decode_app_snapshot(&snap.data) {
                Some((index, digest)) => {
                    node.app = AppState {
                        last_applied: index,
                        digest,
                        last_snapshot: index,
                    };
                }
                None => {
                    let what = format!("node {} cannot decode its own snapshot", node.id);
                    self.failure.get_or_insert(Failure {
                        seed: self.cfg.seed,
                        at_ns: self.now,
                        what,
                    });
                }
            }
        }
        let node = &mut self.nodes[idx];
        node.last_commit = LogIndex(0);
        node.raft = Some(RawNode::new(cfg, init).expect("simulator configs are valid"));
        let phase = self.rng.range(1, self.cfg.tick_ns + 1);
        let incarnation = self.nodes[idx].incarnation;
        self.schedule(
            self.now + phase,
            Event::Tick {
                node: idx,
                incarnation,
            },
        );
    }

    /// Kills node `idx` (0-based): it loses its unsynced writes.
    pub fn crash(&mut self, idx: usize) {
        let lose = self.cfg.lose_unsynced_on_crash;
        let node = &mut self.nodes[idx];
        if node.raft.take().is_some() {
            node.incarnation += 1;
            node.disk.crash(&mut self.rng, lose);
            node.syncs = Default::default();
            if self.cfg.async_sync_ns.is_some() {
                // A term taken but not yet synced (and so never sent) may
                // be lost; one that left in a message may not.
                node.last_term = node.sent_term;
            }
            let id = node.id;
            self.trace(|| format!("n{id} CRASH"));
        }
    }

    /// Crashes (if running) and restarts node `idx` from its disk. It stays
    /// disconnected or connected as it was (the course's `start1`).
    pub fn restart(&mut self, idx: usize) {
        self.crash(idx);
        self.start_node(idx);
        let id = self.nodes[idx].id;
        self.trace(|| format!("n{id} RESTART"));
    }

    /// Reconnects node `idx` to everyone.
    pub fn connect(&mut self, idx: usize) {
        self.net.rejoin(self.nodes[idx].id.get());
        let id = self.nodes[idx].id;
        self.trace(|| format!("n{id} CONNECT"));
    }

    /// Cuts node `idx` off from everyone.
    pub fn disconnect(&mut self, idx: usize) {
        self.net.isolate(self.nodes[idx].id.get());
        let id = self.nodes[idx].id;
        self.trace(|| format!("n{id} DISCONNECT"));
    }

    /// Whether node `idx` is connected.
    pub fn connected(&self, idx: usize) -> bool {
        !self.net.is_isolated(self.nodes[idx].id.get())
    }

    /// Starts an actor now; returns its id.
    pub fn spawn(&mut self, actor: Box<dyn Actor>) -> usize {
        self.actors.push(Some(actor));
        self.actor_epochs.push(0);
        let id = self.actors.len() - 1;
        self.schedule(
            self.now,
            Event::Wake {
                actor: id,
                epoch: 0,
            },
        );
        id
    }

    /// Wakes actor `id` now (e.g. a message reached it), replacing its
    /// pending wake-up: the actor tells again when it wants the next one.
    pub fn wake_actor(&mut self, id: usize) {
        if self.actors.get(id).is_some_and(Option::is_some) {
            self.actor_epochs[id] += 1;
            let epoch = self.actor_epochs[id];
            self.schedule(self.now, Event::Wake { actor: id, epoch });
        }
    }

    /// Whether every spawned actor has finished.
    pub fn actors_done(&self) -> bool {
        self.actors.iter().all(Option::is_none)
    }

    /// Runs every event up to virtual time `t`.
    pub fn run_until(&mut self, t: u64) -> Result<(), Failure> {
        while let Some(entry) = self.events.first_entry() {
            let (at, _) = *entry.key();
            if at > t {
                break;
            }
            let event = entry.remove();
            self.now = at;
            self.steps += 1;
            self.process(event);
            if let Some(f) = self.failure.take() {
                return Err(f);
            }
        }
        self.now = self.now.max(t);
        Ok(())
    }

    /// Runs for `d` ns of virtual time.
    pub fn run_for(&mut self, d: u64) -> Result<(), Failure> {
        self.run_until(self.now + d)
    }

    /// When the next event is due, if one is.
    pub fn next_event_at(&self) -> Option<u64> {
        self.events.first_key_value().map(|((at, _), _)| *at)
    }

    fn process(&mut self, event: Event) {
        match event {
            Event::Tick { node, incarnation } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                if let Some(raft) = self.nodes[node].raft.as_mut() {
                    raft.tick();
                }
                self.drain(node);
                let next = self.now + self.cfg.tick_ns;
                self.schedule(next, Event::Tick { node, incarnation });
            }
            Event::Deliver { msg } => self.deliver(msg),
            Event::Wake { actor, epoch } => {
                if self.actor_epochs.get(actor) == Some(&epoch) {
                    self.wake(actor);
                }
            }
            Event::Synced {
                node,
                incarnation,
                token,
            } => self.synced(node, incarnation, token),
        }
    }

    fn wake(&mut self, id: usize) {
        let Some(mut actor) = self.actors.get_mut(id).and_then(Option::take) else {
            return;
        };
        match actor.wake(self) {
            Ok(Some(at)) => {
                self.actors[id] = Some(actor);
                self.actor_epochs[id] += 1;
                let epoch = self.actor_epochs[id];
                self.schedule(at.max(self.now), Event::Wake { actor: id, epoch });
            }
            Ok(None) => {}
            Err(f) => {
                self.failure.get_or_insert(f);
            }
        }
    }

    /// Proposes `cmd` at node `idx` if it leads: the course's `Start`.
    /// Returns the index and term it will have if committed.
    pub fn start(&mut self, idx: usize, cmd: Bytes) -> Option<(LogIndex, Term)> {
        let raft = self.nodes[idx].raft.as_mut()?;
        let index = raft.propose(cmd).ok()?;
        let term = raft.status().term;
        self.drain(idx);
        Some((index, term))
    }

    /// Largest persisted Raft state over all nodes (the course's `LogSize`).
    pub fn log_size(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.disk.raft_state_bytes())
            .max()
            .unwrap_or(0)
    }

    /// Largest snapshot over all nodes.
    pub fn snapshot_size(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.disk.snapshot_bytes())
            .max()
            .unwrap_or(0)
    }
}
