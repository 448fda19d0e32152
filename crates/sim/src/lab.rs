//! The course's Raft tester (`raft/config.go`, spec §2.2) on virtual time:
//! `one`, `check_one_leader`, `n_committed`, `wait` and friends, with the
//! same polling intervals and time budgets, so the Lab 2 tests read like
//! the originals. They are written once, over [`Tester`]: what a test
//! needs of a cluster (its servers' state, the course's `Start`, faults,
//! virtual time), which [`crate::hosted::HostedCluster`] runs on the
//! production replica host; test goroutines are [`Actor`]s, and a test
//! or invariant that fails is a [`Failure`] naming the seed and the time.
//!
//! Differences, kept on purpose: every leader appends a no-op at the start
//! of its term (§8), so log indexes of commands are not consecutive across
//! terms; tests compare indexes relative to what they observed instead of
//! the course's absolute numbers.

use std::fmt;

use bytes::Bytes;
use flotilla_raft::rng::SplitMix64;
use flotilla_raft::{LogIndex, Term};

use crate::net::MS;

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

/// A concurrent client of a cluster `C` (the course's goroutines).
pub trait Actor<C> {
    /// Runs at its wake time; returns when to wake next, or `None` when done.
    fn wake(&mut self, c: &mut C) -> Result<Option<u64>, Failure>;
}

/// The course's election timeout: tests allow this long for an election.
pub const ELECTION_TIMEOUT_NS: u64 = 1000 * MS;

/// A command for tests: an integer, as the course's tests use.
pub fn cmd(x: u64) -> Bytes {
    Bytes::copy_from_slice(&x.to_le_bytes())
}

/// What the course's tester needs of a cluster of `n()` servers, indexed
/// `0..n()` (server `i` is member `i + 1`).
pub trait Tester {
    /// The number of servers.
    fn n(&self) -> usize;
    /// Virtual time, in ns.
    fn now(&self) -> u64;
    /// The test's PRNG.
    fn test_rng(&mut self) -> &mut SplitMix64;
    /// A failure at the current time.
    fn fail(&self, what: impl Into<String>) -> Failure;
    /// Runs every event up to virtual time `t`.
    fn run_until(&mut self, t: u64) -> Result<(), Failure>;
    /// When the next event is due, if one is.
    fn next_event_at(&self) -> Option<u64>;
    /// Whether server `i` is connected.
    fn connected(&self, i: usize) -> bool;
    /// Cuts server `i` off from everyone.
    fn disconnect(&mut self, i: usize);
    /// Kills server `i`: it loses what it had not synced.
    fn crash(&mut self, i: usize);
    /// Server `i`'s term and whether it leads (the course's `GetState`),
    /// or `None` while it is down.
    fn get_state(&self, i: usize) -> Option<(Term, bool)>;
    /// The last index server `i` applied (kept while it is down, as the
    /// course's tester keeps its record of what a crashed server applied).
    fn applied(&self, i: usize) -> LogIndex;
    /// The command committed at `index`, if one was applied there (`None`
    /// for a no-op or a membership change).
    fn command_at(&self, index: LogIndex) -> Option<Bytes>;
    /// Proposes `cmd` at server `i` if it leads: the course's `Start`.
    /// Returns the index and term it will have if committed.
    fn start(&mut self, i: usize, cmd: Bytes) -> Option<(LogIndex, Term)>;

    /// Runs for `d` ns of virtual time.
    fn run_for(&mut self, d: u64) -> Result<(), Failure> {
        self.run_until(self.now() + d)
    }

    /// Runs until `done` holds (checked after every event), or fails with
    /// `what` once `timeout_ns` passes.
    fn run_until_cond(
        &mut self,
        timeout_ns: u64,
        what: &str,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<(), Failure>
    where
        Self: Sized,
    {
        let deadline = self.now() + timeout_ns;
        while !done(self) {
            match self.next_event_at() {
                Some(at) if at <= deadline => self.run_until(at)?,
                _ => {
                    self.run_until(deadline)?;
                    return if done(self) {
                        Ok(())
                    } else {
                        Err(self.fail(what))
                    };
                }
            }
        }
        Ok(())
    }

    /// Indexes of servers that are running and connected.
    fn live_connected(&self) -> Vec<usize> {
        (0..self.n())
            .filter(|&i| self.connected(i) && self.get_state(i).is_some())
            .collect()
    }

    /// Waits for exactly one leader among the connected servers: up to 10
    /// rounds of 450–549 ms; two leaders in one term fail at once.
    fn check_one_leader(&mut self) -> Result<usize, Failure> {
        for _ in 0..10 {
            let ms = self.test_rng().range(450, 550);
            self.run_for(ms * MS)?;
            let mut leaders: std::collections::BTreeMap<Term, Vec<usize>> = Default::default();
            for i in self.live_connected() {
                if let Some((term, true)) = self.get_state(i) {
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

    /// All connected servers agree on the term; returns it.
    fn check_terms(&self) -> Result<Term, Failure> {
        let mut term = None;
        for i in self.live_connected() {
            let Some((t, _)) = self.get_state(i) else {
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

    /// No connected server claims to lead.
    fn check_no_leader(&self) -> Result<(), Failure> {
        for i in self.live_connected() {
            if let Some((_, true)) = self.get_state(i) {
                return Err(self.fail(format!(
                    "expected no leader among connected servers, but {} claims",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// How many servers have applied `index`, and the command there.
    fn n_committed(&self, index: LogIndex) -> (usize, Option<Bytes>) {
        let count = (0..self.n()).filter(|&i| self.applied(i) >= index).count();
        (count, self.command_at(index))
    }

    /// The course's `one`: submits `cmd` until a leader accepts it and at
    /// least `expected` servers apply it, within 10 s.
    fn one(&mut self, cmd: Bytes, expected: usize, retry: bool) -> Result<LogIndex, Failure>
    where
        Self: Sized,
    {
        let mut call = OneCall::new(self, cmd, expected, retry);
        loop {
            match call.poll(self)? {
                OnePoll::Done(index) => return Ok(index),
                OnePoll::WaitUntil(t) => self.run_until(t)?,
            }
        }
    }

    /// The course's `wait`: until `n` servers applied `index`, backing off
    /// from 10 ms to 1 s for 30 rounds. Reports [`Waited::TermMoved`] if
    /// some term passed `start_term` (the caller retries).
    fn wait(
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
                let passed = (0..self.n())
                    .filter_map(|i| self.get_state(i))
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

    /// The course's `crash1`: cut server `i` off, then kill it.
    fn crash1(&mut self, i: usize) {
        self.disconnect(i);
        self.crash(i);
    }

    /// A random string of `n` letters and digits (the course's `randstring`).
    fn rand_string(&mut self, n: usize) -> Bytes {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let rng = self.test_rng();
        (0..n)
            .map(|_| ALPHABET[rng.range(0, ALPHABET.len() as u64) as usize])
            .collect()
    }
}

/// What [`Tester::wait`] saw.
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
    pub fn new<C: Tester>(c: &C, cmd: Bytes, expected: usize, retry: bool) -> OneCall {
        OneCall {
            cmd,
            expected,
            retry,
            began: c.now(),
            starts: 0,
            polling: None,
        }
    }

    /// Advances the call.
    pub fn poll<C: Tester>(&mut self, c: &mut C) -> Result<OnePoll, Failure> {
        let fail =
            |c: &C, cmd: &Bytes| Err(c.fail(format!("one({cmd:?}) failed to reach agreement")));
        let now = c.now();
        if now - self.began >= 10_000 * MS {
            return fail(c, &self.cmd);
        }
        if self.polling.is_none() {
            for _ in 0..c.n() {
                self.starts = (self.starts + 1) % c.n();
                if !c.connected(self.starts) {
                    continue;
                }
                if let Some((index, _)) = c.start(self.starts, self.cmd.clone()) {
                    self.polling = Some((index, now));
                    break;
                }
            }
        }
        let Some((index, since)) = self.polling else {
            return Ok(OnePoll::WaitUntil(now + 50 * MS));
        };
        let (nd, got) = c.n_committed(index);
        if nd > 0 && nd >= self.expected && got.as_ref() == Some(&self.cmd) {
            return Ok(OnePoll::Done(index));
        }
        if now - since < 2000 * MS {
            return Ok(OnePoll::WaitUntil(now + 20 * MS));
        }
        if !self.retry {
            return fail(c, &self.cmd);
        }
        self.polling = None;
        Ok(OnePoll::WaitUntil(now))
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

impl<C: Tester> Actor<C> for OneActor {
    fn wake(&mut self, c: &mut C) -> Result<Option<u64>, Failure> {
        match self.call.poll(c)? {
            OnePoll::Done(index) => {
                self.done.borrow_mut().push(index);
                Ok(None)
            }
            OnePoll::WaitUntil(t) => Ok(Some(t)),
        }
    }
}
