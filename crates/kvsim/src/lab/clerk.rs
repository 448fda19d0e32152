//! A client of the course's KV service on production hosts: an actor
//! with a session, speaking the requests the session service makes of a
//! member (a write is a `Command` proposed through the host, stamped and
//! numbered as `Core::write_session` does; a linearizable get asks the
//! member for a read index and reads its machine once applied, as etcd's
//! Range does), over the simulated network between client and servers:
//! a request and its answer each cross a link that may be cut, lose
//! them or delay them.
//!
//! Like the course's clerk, it tries the servers in a random order, goes
//! to the one a "not the leader" answer names, and sends the same
//! request again (same session and number) to the next server when no
//! answer came within [`RETRY_NS`]; the session table applies a write
//! once however often it arrives.
//!
//! Invariant: one operation at a time, and only the answer to its
//! latest attempt counts; every operation is recorded in the history
//! when it starts and, once answered, when it ends.

use flotilla_host::NodeError;
use flotilla_host::kv_app::KvOutput;
use flotilla_kv::{Command, Op, Outcome, ReadConsistency, Request, Response};
use flotilla_linearize::OpId;
use flotilla_raft::LogIndex;
use flotilla_sim::hosted::Answered;
use flotilla_sim::{Actor, Failure, MS, Tester};

use super::{KvHosted, KvLabApp, Shared};
use crate::client::{Next, OpError, OpResult, Workload, model_input, model_output};

/// How long a clerk waits for an answer before it tries the next server.
pub const RETRY_NS: u64 = 100 * MS;

/// How long a clerk waits after a refusal before it tries the next.
const BACKOFF_NS: u64 = 20 * MS;

/// A message on its way: to a server (a request), or back (an answer).
enum Transit {
    /// The attempt's request, to server `server`.
    Request { server: usize },
    /// What server `server` answered the attempt.
    Answer { server: usize, reply: Reply },
}

/// What a server's answer means to the clerk.
#[derive(Clone)]
enum Reply {
    /// Served: the store's revision after it, and the answer.
    Done(u64, Response),
    NotLeader(Option<u64>),
    Retry,
    Failed(OpError),
}

/// The operation out.
struct InFlight {
    op: Op,
    read: ReadConsistency,
    /// Its number in the session (writes; 0 for reads).
    seq: u64,
    recorded: Option<OpId>,
    /// The attempt whose answer counts.
    attempt: u64,
    /// When to try the next server.
    deadline: u64,
}

/// A client as an actor. See the module docs.
pub struct HostedClerk {
    me: usize,
    /// The client's address on the network.
    pub(super) addr: u64,
    session: u64,
    /// The last number used in the session.
    seq: u64,
    /// A write of the session was answered (the servers know it).
    answered: bool,
    servers: Vec<usize>,
    target: usize,
    workload: Box<dyn Workload<KvHosted>>,
    shared: Shared,
    inflight: Option<InFlight>,
    attempts: u64,
    /// Messages on the wire: (arrival, attempt, message).
    transit: Vec<(u64, u64, Transit)>,
    /// Requests the host has, by id: (attempt, server).
    asked: std::collections::BTreeMap<u64, (u64, usize)>,
    /// Sleeping until then (the workload asked).
    sleep: Option<u64>,
}

impl HostedClerk {
    /// A clerk for session `session`, actor `me`, at `addr`, talking to
    /// `servers` (indexes, tried in this order), running `workload`.
    pub(super) fn new(
        me: usize,
        addr: u64,
        session: u64,
        servers: Vec<usize>,
        workload: Box<dyn Workload<KvHosted>>,
        shared: Shared,
    ) -> HostedClerk {
        HostedClerk {
            me,
            addr,
            session,
            seq: 0,
            answered: false,
            servers,
            target: 0,
            workload,
            shared,
            inflight: None,
            attempts: 0,
            transit: Vec::new(),
            asked: Default::default(),
            sleep: None,
        }
    }

    /// Sends the operation out to the current target, as a new attempt.
    fn send(&mut self, c: &mut KvHosted) {
        let Some(f) = self.inflight.as_mut() else {
            return;
        };
        self.attempts += 1;
        f.attempt = self.attempts;
        f.deadline = c.now() + RETRY_NS;
        let server = self.servers[self.target % self.servers.len()];
        let link = (self.addr, server as u64 + 1);
        for at in c.route(link, true, 64) {
            let request = Transit::Request { server };
            self.transit.push((at, f.attempt, request));
        }
    }

    /// The next server, or the one named.
    fn retarget(&mut self, hint: Option<u64>) {
        let named = hint.and_then(|l| self.servers.iter().position(|&s| s as u64 + 1 == l));
        self.target = named.unwrap_or(self.target + 1);
    }

    /// A request reaches server `server`: the host takes it.
    fn arrive(&mut self, c: &mut KvHosted, attempt: u64, server: usize) {
        let Some(f) = self.inflight.as_ref().filter(|f| f.attempt == attempt) else {
            return;
        };
        let request = match (&f.op, f.read) {
            (op, ReadConsistency::Linearizable) if is_read(op) => c.read(server, Some(self.me)),
            (op, _) if is_read(op) => {
                // A serializable read: the member's machine as it is.
                let op = op.clone();
                if let Some(reply) = c.with_machine(server, |m| read(m, &op)) {
                    self.answer(c, attempt, server, reply);
                }
                return;
            }
            (op, _) => {
                let command = Command {
                    stamp_ms: c.now() / MS,
                    request: Request {
                        client: self.session,
                        seq: f.seq,
                        read: ReadConsistency::Linearizable,
                        resumed: self.answered,
                        op: op.clone(),
                    },
                };
                c.propose(server, command.encode(), Some(self.me))
            }
        };
        if let Some(request) = request {
            self.asked.insert(request, (attempt, server));
        }
    }

    /// Server `server` answers `reply`: it travels back.
    fn answer(&mut self, c: &mut KvHosted, attempt: u64, server: usize, reply: Reply) {
        let link = (server as u64 + 1, self.addr);
        for at in c.route(link, false, 64) {
            let copy = Transit::Answer {
                server,
                reply: reply.clone(),
            };
            self.transit.push((at, attempt, copy));
        }
    }

    /// What the host answered request `request` of ours.
    fn mail(
        &mut self,
        c: &mut KvHosted,
        request: u64,
        answer: Result<Answered<KvOutput>, NodeError>,
    ) {
        let Some((attempt, server)) = self.asked.remove(&request) else {
            return;
        };
        // An answer to an earlier attempt, maybe of an earlier operation,
        // would be dropped on arrival anyway; a read must not read for the
        // operation out now.
        if self.inflight.as_ref().is_none_or(|f| f.attempt != attempt) {
            return;
        }
        let reply = match answer {
            Ok(Answered::Written(_, output)) => self.written(output),
            Ok(Answered::Read(index)) => self.read_at(c, server, index),
            Ok(Answered::Changed(_)) => Reply::Retry,
            Err(NodeError::NotLeader { leader_hint }) => {
                Reply::NotLeader(leader_hint.map(|l| l.get()))
            }
            Err(_) => Reply::Retry,
        };
        self.answer(c, attempt, server, reply);
    }

    fn written(&self, output: KvOutput) -> Reply {
        let Some(applied) = output else {
            return Reply::Retry;
        };
        let Some(f) = &self.inflight else {
            return Reply::Retry;
        };
        if (applied.client, applied.seq) != (self.session, f.seq) {
            return Reply::Retry;
        }
        match applied.outcome {
            Outcome::Ok { revision, response } => Reply::Done(revision, response),
            Outcome::WrongLeader { leader } => Reply::NotLeader(leader),
            Outcome::SessionExpired => Reply::Failed(OpError::SessionExpired {
                client: self.session,
                seq: f.seq,
            }),
            Outcome::Refused(refusal) => Reply::Failed(OpError::Refused {
                client: self.session,
                seq: f.seq,
                refusal,
            }),
        }
    }

    /// The read index `index` was applied at server `server` (the
    /// world checked it): the read reads its machine now.
    fn read_at(&self, c: &mut KvHosted, server: usize, _index: LogIndex) -> Reply {
        let Some(op) = self.inflight.as_ref().map(|f| f.op.clone()) else {
            return Reply::Retry;
        };
        c.with_machine(server, |m| read(m, &op))
            .unwrap_or(Reply::Retry)
    }

    /// An answer to the latest attempt arrives.
    fn receive(&mut self, c: &mut KvHosted, attempt: u64, reply: Reply) -> Result<(), Failure> {
        if self.inflight.as_ref().is_none_or(|f| f.attempt != attempt) {
            return Ok(());
        }
        match reply {
            Reply::Done(revision, response) => self.complete(c, Ok((revision, response))),
            Reply::Failed(e) => self.complete(c, Err(e)),
            Reply::NotLeader(hint) => {
                self.retarget(hint);
                self.send(c);
                Ok(())
            }
            Reply::Retry => {
                self.retarget(None);
                if let Some(f) = self.inflight.as_mut() {
                    f.deadline = c.now() + BACKOFF_NS;
                    f.attempt = 0;
                }
                Ok(())
            }
        }
    }

    fn complete(&mut self, c: &mut KvHosted, result: OpResult) -> Result<(), Failure> {
        let Some(f) = self.inflight.take() else {
            return Ok(());
        };
        if f.seq > 0 && result.is_ok() {
            self.answered = true;
        }
        if let (Some(id), Ok((_, response))) = (f.recorded, &result) {
            self.shared
                .history
                .ok_at(id, model_output(response), c.now());
        }
        self.shared.stats.borrow_mut().ops += 1;
        self.workload.done(c, &f.op, &result)
    }

    /// Starts the workload's next operation, if it has one now.
    fn next_op(&mut self, c: &mut KvHosted) -> Result<bool, Failure> {
        match self.workload.next(c) {
            Next::Stop => Ok(false),
            Next::Sleep(t) => {
                self.sleep = Some(t.max(c.now() + 1));
                Ok(false)
            }
            Next::Op(op, read) => {
                // An invalid operation goes out as it is, as a hostile
                // client's would: the replicas must refuse it.
                let recorded = model_input(&op, read)
                    .map(|input| self.shared.history.invoke_at(self.session, input, c.now()));
                let seq = if is_read(&op) {
                    0
                } else {
                    self.seq += 1;
                    self.seq
                };
                self.inflight = Some(InFlight {
                    op,
                    read,
                    seq,
                    recorded,
                    attempt: 0,
                    deadline: 0,
                });
                self.send(c);
                Ok(true)
            }
        }
    }

    /// When to wake next: the first message to arrive, the deadline, or
    /// the end of a sleep (one of them is set while the clerk runs).
    fn next_wake(&self) -> Option<u64> {
        let arrivals = self.transit.iter().map(|(at, _, _)| *at);
        let deadline = self.inflight.as_ref().map(|f| f.deadline);
        arrivals.chain(deadline).chain(self.sleep).min()
    }
}

/// Whether `op` only reads (a get or a range: served without the log,
/// as etcd's Range is).
fn is_read(op: &Op) -> bool {
    matches!(op, Op::Get { .. } | Op::Range { .. })
}

/// What the read `op` reads at `machine`; an invalid read is refused,
/// as the member's request checks refuse it.
fn read(machine: &<KvLabApp as flotilla_sim::hosted::App>::Machine, op: &Op) -> Reply {
    if let Err(refusal) = flotilla_kv::check_op(op) {
        let refused = OpError::Refused {
            client: 0,
            seq: 0,
            refusal,
        };
        return Reply::Failed(refused);
    }
    match machine.replica.read(op) {
        Outcome::Ok { revision, response } => Reply::Done(revision, response),
        Outcome::Refused(refusal) => Reply::Failed(OpError::Refused {
            client: 0,
            seq: 0,
            refusal,
        }),
        _ => Reply::Retry,
    }
}

impl Actor<KvHosted> for HostedClerk {
    fn wake(&mut self, c: &mut KvHosted) -> Result<Option<u64>, Failure> {
        let now = c.now();
        for (request, _member, answer) in c.take_mail(self.me) {
            self.mail(c, request, answer);
        }
        let mut due: Vec<(u64, u64, Transit)> = Vec::new();
        let mut i = 0;
        while i < self.transit.len() {
            if self.transit[i].0 <= now {
                due.push(self.transit.remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|(at, _, _)| *at);
        for (_, attempt, message) in due {
            match message {
                Transit::Request { server } => {
                    if c.network().link_up(self.addr, server as u64 + 1) {
                        self.arrive(c, attempt, server);
                    }
                }
                Transit::Answer { server, reply } => {
                    if c.network().link_up(server as u64 + 1, self.addr) {
                        self.receive(c, attempt, reply)?;
                    }
                }
            }
        }
        if let Some(f) = &self.inflight
            && now >= f.deadline
        {
            if f.attempt != 0 {
                self.retarget(None);
            }
            self.send(c);
        }
        // A sleep only bounds how long the workload waits to be asked
        // again: a wake-up (the test queued an operation, say) asks now.
        self.sleep = None;
        while self.inflight.is_none() && self.sleep.is_none() {
            if !self.next_op(c)? {
                if self.sleep.is_none() {
                    // The workload is done: so is the clerk (what is
                    // still on the wire is for no one).
                    return Ok(None);
                }
                break;
            }
        }
        Ok(self.next_wake())
    }
}
