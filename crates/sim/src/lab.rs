//! The course's Raft tester (`raft/config.go`, spec §2.2) on virtual time:
//! `one`, `check_one_leader`, `n_committed`, `wait` and friends, with the
//! same polling intervals and time budgets, so the Lab 2 tests read like
//! the originals.
//!
//! Differences, kept on purpose: every leader appends a no-op at the start
//! of its term (§8), so log indexes of commands are not consecutive across
//! terms; tests compare indexes relative to what they observed instead of
//! the course's absolute numbers.

use bytes::Bytes;
use flotilla_raft::{LogIndex, NodeId, Term};

use crate::cluster::{Actor, Cluster, ClusterConfig, Failure};
use crate::net::MS;

/// The course's election timeout: tests allow this long for an election.
pub const ELECTION_TIMEOUT_NS: u64 = 1000 * MS;

/// A command for tests: an integer, as the course's tests use.
pub fn cmd(x: u64) -> Bytes {
    Bytes::copy_from_slice(&x.to_le_bytes())
}

impl Cluster {
    /// A cluster set up as the course's `make_config(t, n, unreliable,
    /// snapshot)`: snapshots every 10 applied entries in snapshot mode.
    pub fn lab(n: u64, seed: u64, reliable: bool, snapshot: bool) -> Cluster {
        let mut cfg = ClusterConfig::new(n, seed);
        cfg.net.reliable = reliable;
        cfg.trace = std::env::var_os("FLOTILLA_TRACE").is_some();
        if snapshot {
            cfg.snapshot_every = Some(10);
            // Padding makes snapshots span several 256-byte chunks.
            cfg.snapshot_padding = 600;
        }
        Cluster::new(cfg)
    }

    /// Makes the network (un)reliable.
    pub fn set_reliable(&mut self, reliable: bool) {
        self.net.cfg.reliable = reliable;
    }

    /// Turns the course's long reordering of responses on or off.
    pub fn set_long_reordering(&mut self, on: bool) {
        self.net.cfg.long_reordering = on;
    }

    /// Request messages sent so far (the course's RPC count).
    pub fn rpc_total(&self) -> u64 {
        self.net.counters.requests
    }

    /// Bytes sent so far.
    pub fn bytes_total(&self) -> u64 {
        self.net.counters.bytes
    }

    /// Indexes of nodes that are running and connected.
    pub fn live_connected(&self) -> Vec<usize> {
        (0..self.n())
            .filter(|&i| self.connected(i) && self.nodes[i].alive())
            .collect()
    }

    /// Waits for exactly one leader among the connected nodes: up to 10
    /// rounds of 450–549 ms; two leaders in one term fail at once.
    pub fn check_one_leader(&mut self) -> Result<usize, Failure> {
        for _ in 0..10 {
            let ms = self.rng.range(450, 550);
            self.run_for(ms * MS)?;
            let mut leaders: std::collections::BTreeMap<Term, Vec<usize>> = Default::default();
            for i in self.live_connected() {
                if let Some((term, true)) = self.nodes[i].state() {
                    leaders.entry(term).or_default().push(i);
                }
            }
            for (term, ls) in &leaders {
                if ls.len() > 1 {
                    return Err(self.fail(format!("term {term} has {} (>1) leaders", ls.len())));
                }
            }
            if let Some((_, ls)) = leaders.last_key_value() {
                return Ok(ls[0]);
            }
        }
        Err(self.fail("expected one leader, got none"))
    }

    /// All connected nodes agree on the term; returns it.
    pub fn check_terms(&self) -> Result<Term, Failure> {
        let mut term = None;
        for i in self.live_connected() {
            let Some((t, _)) = self.nodes[i].state() else {
                continue;
            };
            match term {
                None => term = Some(t),
                Some(x) if x != t => return Err(self.fail("servers disagree on term")),
                _ => {}
            }
        }
        term.ok_or_else(|| self.fail("no connected server to ask for its term"))
    }

    /// No connected node claims to lead.
    pub fn check_no_leader(&self) -> Result<(), Failure> {
        for i in self.live_connected() {
            if let Some((_, true)) = self.nodes[i].state() {
                return Err(self.fail(format!(
                    "expected no leader among connected servers, but {} claims",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// How many nodes have applied `index`, and the command there.
    pub fn n_committed(&self, index: LogIndex) -> (usize, Option<Bytes>) {
        let count = self
            .nodes
            .iter()
            .filter(|n| n.app.last_applied >= index)
            .count();
        (count, self.committed.command(index).cloned())
    }

    /// The course's `one`: submits `cmd` until a leader accepts it and at
    /// least `expected` nodes apply it, within 10 s.
    pub fn one(&mut self, cmd: Bytes, expected: usize, retry: bool) -> Result<LogIndex, Failure> {
        let mut call = OneCall::new(self, cmd, expected, retry);
        loop {
            match call.poll(self)? {
                OnePoll::Done(index) => return Ok(index),
                OnePoll::WaitUntil(t) => self.run_until(t)?,
            }
        }
    }

    /// The course's `wait`: until `n` nodes applied `index`, backing off
    /// from 10 ms to 1 s for 30 rounds. Reports [`Waited::TermMoved`] if
    /// some term passed `start_term` (the caller retries).
    pub fn wait(
        &mut self,
        index: LogIndex,
        n: usize,
        start_term: Option<Term>,
    ) -> Result<Waited, Failure> {
        let mut to = 10 * MS;
        for _ in 0..30 {
            if self.n_committed(index).0 >= n {
                break;
            }
            self.run_for(to)?;
            if to < 1000 * MS {
                to *= 2;
            }
            if let Some(start) = start_term {
                let passed = self
                    .nodes
                    .iter()
                    .filter_map(|x| x.state())
                    .any(|(t, _)| t > start);
                if passed {
                    return Ok(Waited::TermMoved);
                }
            }
        }
        let (nd, cmd) = self.n_committed(index);
        if nd < n {
            return Err(self.fail(format!("only {nd} decided for index {index}; wanted {n}")));
        }
        Ok(Waited::Applied(cmd))
    }

    /// The course's `crash1`: cut node `idx` off, then kill it.
    pub fn crash1(&mut self, idx: usize) {
        self.disconnect(idx);
        self.crash(idx);
    }

    /// A random string of `n` letters and digits (the course's `randstring`).
    pub fn rand_string(&mut self, n: usize) -> Bytes {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..n)
            .map(|_| ALPHABET[self.rng.range(0, ALPHABET.len() as u64) as usize])
            .collect()
    }

    /// The state of node `idx` (term, leading) or `None` if it is down.
    pub fn get_state(&self, idx: usize) -> Option<(Term, bool)> {
        self.nodes[idx].state()
    }

    /// Node index of `id`.
    pub fn idx(id: NodeId) -> usize {
        id.get() as usize - 1
    }
}

/// What [`Cluster::wait`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waited {
    /// Enough nodes applied the index; the command there (`None` for a
    /// no-op or a conf change).
    Applied(Option<Bytes>),
    /// A term passed the one the caller started in.
    TermMoved,
}

/// The result of one step of [`OneCall`].
#[derive(Debug)]
pub enum OnePoll {
    /// Agreement reached at this index.
    Done(LogIndex),
    /// Call `poll` again at this time.
    WaitUntil(u64),
}

/// The course's `one()` as a resumable state machine, so several can run
/// concurrently as actors (TestUnreliableAgree2C) or one can block a test.
#[derive(Debug)]
pub struct OneCall {
    cmd: Bytes,
    expected: usize,
    retry: bool,
    began: u64,
    starts: usize,
    polling: Option<(LogIndex, u64)>,
}

impl OneCall {
    /// Prepares a call.
    pub fn new(c: &Cluster, cmd: Bytes, expected: usize, retry: bool) -> OneCall {
        OneCall {
            cmd,
            expected,
            retry,
            began: c.now,
            starts: 0,
            polling: None,
        }
    }

    /// Advances the call.
    pub fn poll(&mut self, c: &mut Cluster) -> Result<OnePoll, Failure> {
        let fail = |c: &Cluster, cmd: &Bytes| {
            Err(c.fail(format!("one({cmd:?}) failed to reach agreement")))
        };
        if c.now - self.began >= 10_000 * MS {
            return fail(c, &self.cmd);
        }
        if self.polling.is_none() {
            for _ in 0..c.n() {
                self.starts = (self.starts + 1) % c.n();
                if !c.connected(self.starts) {
                    continue;
                }
                if let Some((index, _)) = c.start(self.starts, self.cmd.clone()) {
                    self.polling = Some((index, c.now));
                    break;
                }
            }
        }
        let Some((index, since)) = self.polling else {
            return Ok(OnePoll::WaitUntil(c.now + 50 * MS));
        };
        let (nd, got) = c.n_committed(index);
        if nd > 0 && nd >= self.expected && got.as_ref() == Some(&self.cmd) {
            return Ok(OnePoll::Done(index));
        }
        if c.now - since < 2000 * MS {
            return Ok(OnePoll::WaitUntil(c.now + 20 * MS));
        }
        if !self.retry {
            return fail(c, &self.cmd);
        }
        self.polling = None;
        Ok(OnePoll::WaitUntil(c.now))
    }
}

/// Runs a [`OneCall`] as an actor; records its index when done.
pub struct OneActor {
    call: OneCall,
    done: std::rc::Rc<std::cell::RefCell<Vec<LogIndex>>>,
}

impl OneActor {
    /// An actor for `call` that pushes its index to `done`.
    pub fn new(call: OneCall, done: std::rc::Rc<std::cell::RefCell<Vec<LogIndex>>>) -> OneActor {
        OneActor { call, done }
    }
}

impl Actor for OneActor {
    fn wake(&mut self, c: &mut Cluster) -> Result<Option<u64>, Failure> {
        match self.call.poll(c)? {
            OnePoll::Done(index) => {
                self.done.borrow_mut().push(index);
                Ok(None)
            }
            OnePoll::WaitUntil(t) => Ok(Some(t)),
        }
    }
}
