//! A client of the sharded store (the course's `shardkv` clerk) as a
//! fleet actor: it routes each request by its key's shard to the group
//! its cached configuration names, tries that group's servers in turn
//! (going to the one a "not the leader" answer names, or the next after
//! [`RETRY_NS`] without an answer), and asks the controller for the
//! latest configuration after a wrong-group answer or a round of every
//! server without one. A put or append keeps its client and number
//! across retries and groups, so it applies once; a get goes through the
//! group's log too.
//!
//! Every operation can be recorded in a history for the linearizability
//! checker: when it starts and, once answered, when it ends.
//!
//! Invariant: one operation at a time; only an answer to the latest
//! attempt counts.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use flotilla_host::NodeError;
use flotilla_linearize::{KvInput, KvOutput, OpId, Recorder};
use flotilla_shardkv::{
    Config, CtrlCommand, CtrlOp, CtrlReply, GroupApplied, GroupCommand, KvOp, KvReply, key2shard,
};
use flotilla_sim::hosted::Answered;
use flotilla_sim::{Failure, MS};

use crate::fleet::{Fleet, FleetActor, Mail};

/// How long a clerk waits for an answer before it tries the next server.
pub const RETRY_NS: u64 = 100 * MS;

/// A run's history of client operations.
pub type History = Rc<Recorder<KvInput, KvOutput>>;

/// What a clerk does next.
pub enum Next {
    /// This operation now.
    Op(KvOp),
    /// Nothing until then (ns), unless woken earlier.
    Sleep(u64),
    /// Nothing more: the clerk finishes.
    Stop,
}

/// What a clerk runs.
pub trait Workload {
    /// The next step, at virtual time `now`.
    fn next(&mut self, f: &mut Fleet, now: u64) -> Next;
    /// `op` was answered `reply` at `now`. An `Err` fails the run.
    fn done(&mut self, op: &KvOp, reply: &KvReply, now: u64) -> Result<(), String>;
}

/// Where the request out is.
enum Stage {
    /// At server `server` of group `gid`: the host's request id, if sent.
    Group { gid: u64, request: Option<u64> },
    /// Asking the controller for the latest configuration.
    Query { request: Option<u64> },
}

struct Flight {
    op: KvOp,
    seq: u64,
    recorded: Option<OpId>,
    stage: Stage,
    /// Servers of the group tried without an answer.
    tried: usize,
    deadline: u64,
}

/// A clerk. See the module docs.
pub struct KvClerk {
    client: u64,
    seq: u64,
    config: Config,
    target: usize,
    workload: Box<dyn Workload>,
    history: Option<History>,
    flight: Option<Flight>,
}

impl KvClerk {
    /// Clerk `client` running `workload`, recording into `history` if
    /// given.
    pub fn new(client: u64, workload: Box<dyn Workload>, history: Option<History>) -> KvClerk {
        KvClerk {
            client,
            seq: 0,
            config: Config::default(),
            target: client as usize,
            workload,
            history,
            flight: None,
        }
    }

    /// Sends the operation out: to the group its shard is on, or to the
    /// controller when no group has it.
    fn send(&mut self, f: &mut Fleet, me: usize) {
        let Some(fl) = self.flight.as_mut() else {
            return;
        };
        fl.deadline = f.now() + RETRY_NS;
        let shard = key2shard(fl.op.key(), f.cfg.nshards);
        let gid = self.config.shards.get(shard).copied().unwrap_or(0);
        let n = f.groups.get(&gid).map(flotilla_sim::Tester::n);
        match n {
            Some(n) if fl.tried < n => {
                let command = GroupCommand::Op {
                    client: self.client,
                    seq: fl.seq,
                    op: fl.op.clone(),
                };
                let request = f.ask_group(me, gid, self.target % n, &command);
                fl.stage = Stage::Group { gid, request };
            }
            _ => {
                fl.tried = 0;
                let query = CtrlCommand {
                    client: self.client,
                    seq: 0,
                    op: CtrlOp::Query(None),
                };
                let server = self.target % flotilla_sim::Tester::n(&f.ctrl);
                let request = f.ask_ctrl(me, server, &query);
                fl.stage = Stage::Query { request };
            }
        }
    }

    /// An answer came: the operation completes, or goes elsewhere.
    fn answered(&mut self, f: &mut Fleet, me: usize, mail: Mail) -> Result<(), Failure> {
        let Some(fl) = self.flight.as_mut() else {
            return Ok(());
        };
        match (&fl.stage, mail) {
            (Stage::Query { request: Some(r) }, Mail::Ctrl(a, answer)) if a == *r => match answer {
                Ok(Answered::Written(_, Some(applied))) => {
                    if let CtrlReply::Config(c) = applied.reply {
                        self.config = c;
                    }
                    let shard = key2shard(fl.op.key(), f.cfg.nshards);
                    if self.config.shards.get(shard).is_none_or(|&g| g == 0) {
                        // No group has it yet: ask again after a pause.
                        fl.stage = Stage::Query { request: None };
                        fl.deadline = f.now() + RETRY_NS;
                    } else {
                        self.send(f, me);
                    }
                }
                _ => {
                    self.target += 1;
                    self.send(f, me);
                }
            },
            (
                Stage::Group {
                    gid,
                    request: Some(r),
                },
                Mail::Group(g, a, _, answer),
            ) if (g, a) == (*gid, *r) => {
                match answer {
                    Ok(Answered::Written(_, Some(GroupApplied::Op { client, seq, reply })))
                        if (client, seq) == (self.client, fl.seq) =>
                    {
                        if reply == KvReply::WrongGroup {
                            fl.tried = usize::MAX;
                            self.send(f, me);
                        } else {
                            return self.complete(f, reply);
                        }
                    }
                    Err(NodeError::NotLeader {
                        leader_hint: Some(l),
                    }) => {
                        self.target = l.get().saturating_sub(1) as usize;
                        fl.tried += 1;
                        self.send(f, me);
                    }
                    // The outcome is unknown (a forwarded proposal whose
                    // place came back after its entry applied, or a
                    // leader change): send it again at once, with the
                    // same number, as the production server resends.
                    Err(NodeError::Retry) => self.send(f, me),
                    // Retry elsewhere at the deadline.
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn complete(&mut self, f: &mut Fleet, reply: KvReply) -> Result<(), Failure> {
        let Some(fl) = self.flight.take() else {
            return Ok(());
        };
        if let (Some(h), Some(id)) = (&self.history, fl.recorded) {
            let out = match &reply {
                KvReply::Value(v) => KvOutput::Value(String::from_utf8_lossy(v).into_owned()),
                KvReply::NoKey => KvOutput::Value(String::new()),
                _ => KvOutput::Ok,
            };
            h.ok_at(id, out, f.now());
        }
        let now = f.now();
        self.workload
            .done(&fl.op, &reply, now)
            .map_err(|what| f.fail(what))
    }

    fn start(&mut self, f: &mut Fleet, me: usize, op: KvOp) {
        let s = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let (input, seq) = match &op {
            KvOp::Get(k) => (KvInput::get(s(k)), 0),
            KvOp::Put(k, v) => (KvInput::put(s(k), s(v)), self.seq + 1),
            KvOp::Append(k, v) => (KvInput::append(s(k), s(v)), self.seq + 1),
        };
        self.seq = self.seq.max(seq);
        let recorded = self
            .history
            .as_ref()
            .map(|h| h.invoke_at(self.client, input, f.now()));
        self.flight = Some(Flight {
            op,
            seq,
            recorded,
            stage: Stage::Query { request: None },
            tried: 0,
            deadline: 0,
        });
        self.send(f, me);
    }
}

impl FleetActor for KvClerk {
    fn wake(&mut self, f: &mut Fleet, me: usize) -> Result<Option<u64>, Failure> {
        for mail in f.take_mail(me) {
            self.answered(f, me, mail)?;
        }
        if let Some(fl) = self.flight.as_mut()
            && f.now() >= fl.deadline
        {
            if matches!(fl.stage, Stage::Group { .. }) {
                fl.tried += 1;
            }
            self.target += 1;
            self.send(f, me);
        }
        if self.flight.is_none() {
            match self.workload.next(f, f.now()) {
                Next::Op(op) => self.start(f, me, op),
                Next::Sleep(t) => return Ok(Some(t.max(f.now() + 1))),
                Next::Stop => return Ok(None),
            }
        }
        Ok(self.flight.as_ref().map(|fl| fl.deadline))
    }
}

/// A workload of given operations, one after another; each answer is
/// kept in order.
pub struct Script {
    ops: std::collections::VecDeque<KvOp>,
    /// The answers so far.
    pub replies: Rc<RefCell<Vec<KvReply>>>,
}

impl Script {
    /// Runs `ops`; the answers go to the returned list.
    pub fn new(ops: Vec<KvOp>) -> (Script, Rc<RefCell<Vec<KvReply>>>) {
        let replies = Rc::new(RefCell::new(Vec::new()));
        let script = Script {
            ops: ops.into(),
            replies: replies.clone(),
        };
        (script, replies)
    }
}

impl Workload for Script {
    fn next(&mut self, _f: &mut Fleet, _now: u64) -> Next {
        self.ops.pop_front().map_or(Next::Stop, Next::Op)
    }

    fn done(&mut self, _op: &KvOp, reply: &KvReply, _now: u64) -> Result<(), String> {
        self.replies.borrow_mut().push(reply.clone());
        Ok(())
    }
}
