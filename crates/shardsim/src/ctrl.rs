//! The course's shard controller tester (`shardctrler/config.go`, spec
//! §4.1) on production replica hosts: every controller server is a
//! [`flotilla_host::Host`] over the real WAL on the simulator's disk,
//! running [`Ctrler`], and clerks ([`CtrlClerk`]) propose their requests
//! through the host's request path, queries included (a query through
//! the log is linearizable).
//!
//! Like the course's clerk, one tries the servers in turn, goes to the
//! one a "not the leader" answer names, and sends the same request (same
//! client and number) to the next server when no answer came within
//! [`RETRY_NS`]; the controller applies a change once however often it
//! arrives. The course's controller tests run on a reliable network, so
//! a clerk's request reaches its server at once; between servers each
//! message takes [`NET_LATENCY_NS`].
//!
//! Invariant: a clerk has one request out, and only the answer to its
//! latest attempt counts.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use flotilla_host::NodeError;
use flotilla_raft::NodeId;
use flotilla_raft::rng::SplitMix64;
use flotilla_shardkv::{Config, CtrlApplied, CtrlCommand, CtrlOp, CtrlReply, Ctrler, Gid};
use flotilla_sim::hosted::{Answered, App, HostedConfig, Request};
use flotilla_sim::{Actor, Failure, HostedCluster, MS, Tester};

/// How long a clerk waits for an answer before it tries the next server.
pub const RETRY_NS: u64 = 100 * MS;

/// How long a clerk waits after a refusal, or a server that is down,
/// before it tries the next.
const BACKOFF_NS: u64 = 10 * MS;

/// One-way latency of every message between servers (labrpc's RPCs
/// take real time).
pub const NET_LATENCY_NS: u64 = 3 * MS;

/// How long one of the harness's requests may take before the test fails
/// (the course's tests end at 120 s).
pub const OP_LIMIT_NS: u64 = 30_000 * MS;

/// The controller as a hosted app: every member runs a [`Ctrler`]. Its
/// clients are the test's [`CtrlClerk`]s, not the world's.
#[derive(Debug)]
pub struct CtrlApp {
    /// Shards per configuration.
    pub nshards: usize,
}

impl App for CtrlApp {
    type Machine = Ctrler;

    fn machine(&mut self, _member: u64, _voters: &[NodeId]) -> Ctrler {
        Ctrler::new(self.nshards)
    }

    /// The world has no clients here; were one configured, it would
    /// query the latest configuration.
    fn next(&mut self, _rng: &mut SplitMix64, c: u64, _now: u64) -> Request {
        let query = CtrlCommand {
            client: c,
            seq: 0,
            op: CtrlOp::Query(None),
        };
        Request::Write(query.encode())
    }

    fn written(&mut self, _c: u64, _o: &Option<CtrlApplied>, _now: u64) -> Result<(), String> {
        Ok(())
    }

    fn read(&mut self, _c: u64, _m: &Ctrler, _now: u64) -> Result<(), String> {
        Ok(())
    }
}

/// The hosted cluster of controller servers.
pub type CtrlHosted = HostedCluster<CtrlApp>;

/// What a clerk's answers go to: each request's answer, in order.
pub type Answers = Rc<RefCell<Vec<CtrlReply>>>;

/// The request out.
struct Flight {
    command: CtrlCommand,
    /// The host's id of the latest attempt (`None`: its server was down).
    request: Option<u64>,
    /// When to try the next server.
    deadline: u64,
}

/// A controller client as an actor, running a script of requests.
pub struct CtrlClerk {
    me: usize,
    client: u64,
    seq: u64,
    target: usize,
    script: VecDeque<CtrlOp>,
    answers: Answers,
    flight: Option<Flight>,
}

impl CtrlClerk {
    /// Clerk `client` (actor `me`), which runs `script` in order and
    /// appends each answer to `answers`.
    pub fn new(me: usize, client: u64, script: Vec<CtrlOp>, answers: Answers) -> CtrlClerk {
        CtrlClerk {
            me,
            client,
            seq: 0,
            target: client as usize,
            script: script.into(),
            answers,
            flight: None,
        }
    }

    /// Sends the request out to the current target, as a new attempt.
    fn send(&mut self, c: &mut CtrlHosted) {
        let Some(f) = self.flight.as_mut() else {
            return;
        };
        let server = self.target % c.n();
        f.request = c.propose(server, f.command.encode(), Some(self.me));
        f.deadline = c.now()
            + if f.request.is_some() {
                RETRY_NS
            } else {
                BACKOFF_NS
            };
    }

    /// What the host answered, for the attempt out.
    fn mail(
        &mut self,
        c: &mut CtrlHosted,
        answer: Result<Answered<Option<CtrlApplied>>, NodeError>,
    ) {
        let Some(f) = self.flight.as_mut() else {
            return;
        };
        match answer {
            Ok(Answered::Written(_, Some(applied)))
                if (applied.client, applied.seq) == (f.command.client, f.command.seq) =>
            {
                self.answers.borrow_mut().push(applied.reply);
                self.flight = None;
            }
            Err(NodeError::NotLeader {
                leader_hint: Some(leader),
            }) => {
                self.target = leader.get().saturating_sub(1) as usize;
                self.send(c);
            }
            // Refused, or no leader known: the next server, after a
            // pause (the deadline moves the target on).
            _ => f.deadline = c.now() + BACKOFF_NS,
        }
    }
}

impl Actor<CtrlHosted> for CtrlClerk {
    fn wake(&mut self, c: &mut CtrlHosted) -> Result<Option<u64>, Failure> {
        for (request, _member, answer) in c.take_mail(self.me) {
            if self
                .flight
                .as_ref()
                .is_some_and(|f| f.request == Some(request))
            {
                self.mail(c, answer);
            }
        }
        if self.flight.as_ref().is_some_and(|f| c.now() >= f.deadline) {
            // No answer in time, or the server was down: the next.
            self.target += 1;
            self.send(c);
        }
        if self.flight.is_none() {
            let Some(op) = self.script.pop_front() else {
                return Ok(None);
            };
            // Queries need no session: they change nothing.
            let seq = if matches!(op, CtrlOp::Query(_)) {
                0
            } else {
                self.seq += 1;
                self.seq
            };
            let command = CtrlCommand {
                client: self.client,
                seq,
                op,
            };
            self.flight = Some(Flight {
                command,
                request: None,
                deadline: 0,
            });
            self.send(c);
        }
        Ok(self.flight.as_ref().map(|f| f.deadline))
    }
}

/// The course's controller tester: `n` servers on a reliable network.
pub struct CtrlTester {
    /// The hosted cluster.
    pub c: CtrlHosted,
    next_client: u64,
}

impl CtrlTester {
    /// `n` controller servers over `nshards` shards, for seed `seed`.
    pub fn new(n: u64, nshards: usize, seed: u64) -> CtrlTester {
        // No snapshots: the course's controller keeps its whole log.
        let cfg = HostedConfig::course(n, false, NET_LATENCY_NS, None);
        // Fixed, valid settings on empty disks: a failed start is the
        // simulator's bug.
        let c =
            HostedCluster::new(seed, cfg, CtrlApp { nshards }).unwrap_or_else(|e| panic!("{e}"));
        CtrlTester { c, next_client: 1 }
    }

    /// Starts a clerk running `script`; its answers go to the result.
    pub fn clerk(&mut self, script: Vec<CtrlOp>) -> Answers {
        let answers = Answers::default();
        let me = self.c.next_actor();
        let client = self.next_client;
        self.next_client += 1;
        let clerk = CtrlClerk::new(me, client, script, answers.clone());
        self.c.spawn(Box::new(clerk));
        answers
    }

    /// Runs until every clerk is done, or fails after `limit_ns`.
    pub fn run_clerks(&mut self, limit_ns: u64) -> Result<(), Failure> {
        let what = "controller requests did not complete in time";
        self.c.run_until_cond(limit_ns, what, |c| c.actors_done())
    }

    /// Runs one request to its answer.
    pub fn ask(&mut self, op: CtrlOp) -> Result<CtrlReply, Failure> {
        let answers = self.clerk(vec![op]);
        self.run_clerks(OP_LIMIT_NS)?;
        let reply = answers.borrow_mut().pop();
        reply.ok_or_else(|| self.c.fail("a clerk finished without an answer"))
    }

    /// A change that must be made; its refusal fails the test.
    pub fn change(&mut self, op: CtrlOp) -> Result<(), Failure> {
        match self.ask(op.clone())? {
            CtrlReply::Done => Ok(()),
            other => Err(self.c.fail(format!("{op:?} answered {other:?}"))),
        }
    }

    /// The course's `Join`.
    pub fn join(&mut self, groups: BTreeMap<Gid, Vec<String>>) -> Result<(), Failure> {
        self.change(CtrlOp::Join(groups))
    }

    /// The course's `Leave`.
    pub fn leave(&mut self, gids: Vec<Gid>) -> Result<(), Failure> {
        self.change(CtrlOp::Leave(gids))
    }

    /// The course's `Move`.
    pub fn move_shard(&mut self, shard: u64, gid: Gid) -> Result<(), Failure> {
        self.change(CtrlOp::Move { shard, gid })
    }

    /// The course's `Query` (`None`: the latest).
    pub fn query(&mut self, num: Option<u64>) -> Result<Config, Failure> {
        match self.ask(CtrlOp::Query(num))? {
            CtrlReply::Config(config) => Ok(config),
            other => Err(self.c.fail(format!("query {num:?} answered {other:?}"))),
        }
    }
}
