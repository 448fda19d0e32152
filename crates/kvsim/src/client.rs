//! Clients on the simulator: a [`Clerk`] run as an [`Actor`], driven by a
//! [`Workload`] that chooses each next operation, with every operation
//! recorded in a shared linearizability [`History`] at virtual times.
//!
//! An operation is recorded when the clerk starts it (`invoke`) and when its
//! answer arrives (`ok`); one still in flight when the run ends keeps an
//! unknown outcome. Serializable reads and ranges are not recorded: the
//! checker's model is single-key and linearizable.
//!
//! [`History`]: flotilla_linearize::History

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;
use flotilla_kv::{
    Clerk, ClerkConfig, ClerkError, ClerkStep, CmpOp, Op, ReadConsistency, Response, Target,
};
use flotilla_linearize::{KvInput, KvOutput, OpId, Recorder};
use flotilla_raft::NodeId;
use flotilla_sim::{Actor, Cluster, Failure, MS, Tester};

/// The shared recorder of a run's history.
pub type History = Rc<Recorder<KvInput, KvOutput>>;

/// The result of one operation.
pub type OpResult = Result<(u64, Response), ClerkError>;

/// What a workload wants next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run this operation (recorded under the client's id).
    Op(Op, ReadConsistency),
    /// Ask again at this virtual time.
    Sleep(u64),
    /// The client is done.
    Stop,
}

/// Chooses the operations of a client of cluster `C` and checks their
/// answers.
pub trait Workload<C = Cluster> {
    /// The next thing to do (called when no operation is in flight).
    fn next(&mut self, c: &mut C) -> Next;
    /// An operation completed; an error fails the run.
    fn done(&mut self, c: &mut C, op: &Op, result: &OpResult) -> Result<(), Failure>;
}

/// How long a clerk waits for an answer before trying another server, and
/// after a round of wrong-leader answers.
pub const CLERK_TIMING: ClerkConfig = ClerkConfig {
    retry_timeout: 100 * MS,
    backoff: 20 * MS,
};

/// What the checker's model makes of an operation (`None`: not recorded).
/// Besides get, put, append and delete, a transaction that is a
/// single-key compare-and-swap (one comparison on a version, or on a
/// non-empty value, and one put of that key) is recorded as the model's
/// `cas_version` or `cas`.
/// An invalid operation (which the replicas refuse, changing nothing) is
/// not recorded either.
pub fn model_input(op: &Op, read: ReadConsistency) -> Option<KvInput> {
    flotilla_kv::check_op(op).ok()?;
    let s = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    Some(match op {
        Op::Get { key } if read == ReadConsistency::Linearizable => KvInput::get(s(key)),
        Op::Put { key, value, .. } => KvInput::put(s(key), s(value)),
        Op::Append { key, value } => KvInput::append(s(key), s(value)),
        Op::Delete { key } => KvInput::delete(s(key)),
        Op::Txn(t) => {
            let ([cmp], [Op::Put { key, value, .. }], []) =
                (&t.compares[..], &t.success[..], &t.failure[..])
            else {
                return None;
            };
            if cmp.key != key || cmp.op != CmpOp::Equal {
                return None;
            }
            match &cmp.target {
                Target::Version(v) => KvInput::cas_version(s(key), *v, s(value)),
                // The model matches "" with an absent key; etcd does not.
                Target::Value(e) if !e.is_empty() => KvInput::cas(s(key), s(e), s(value)),
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// What the checker's model makes of an answer.
pub fn model_output(resp: &Response) -> KvOutput {
    match resp {
        Response::Get(kv) => KvOutput::Versioned {
            value: kv
                .as_ref()
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                .unwrap_or_default(),
            version: kv.as_ref().map_or(0, |kv| kv.version),
        },
        Response::Txn { succeeded, .. } => KvOutput::Cas(*succeeded),
        _ => KvOutput::Ok,
    }
}

/// Counts shared by the clients of a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientStats {
    /// Operations completed.
    pub ops: u64,
}

struct InFlight {
    op: Op,
    recorded: Option<OpId>,
}

/// A clerk as an actor. See the module docs.
pub struct ClerkActor {
    addr: u64,
    clerk: Clerk,
    workload: Box<dyn Workload>,
    history: History,
    stats: Rc<RefCell<ClientStats>>,
    inflight: Option<InFlight>,
}

impl ClerkActor {
    /// Spawns a client with id `client` talking to `servers`, running
    /// `workload`; returns its address and actor id.
    pub fn spawn(
        c: &mut Cluster,
        client: u64,
        servers: &[NodeId],
        workload: Box<dyn Workload>,
        history: History,
        stats: Rc<RefCell<ClientStats>>,
    ) -> (u64, usize) {
        let addr = c.new_client();
        let mut order: Vec<u64> = servers.iter().map(|s| s.get()).collect();
        // The course gives each clerk the servers in a random order.
        for i in (1..order.len()).rev() {
            let j = c.rng.range(0, i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let actor = ClerkActor {
            addr,
            clerk: Clerk::new(CLERK_TIMING, client, order),
            workload,
            history,
            stats,
            inflight: None,
        };
        let id = c.spawn_client(addr, Box::new(actor));
        (addr, id)
    }

    fn complete(&mut self, c: &mut Cluster, result: OpResult) -> Result<(), Failure> {
        let Some(f) = self.inflight.take() else {
            return Ok(());
        };
        if let (Some(id), Ok((_, resp))) = (f.recorded, &result) {
            self.history.ok_at(id, model_output(resp), c.now);
        }
        self.stats.borrow_mut().ops += 1;
        self.workload.done(c, &f.op, &result)
    }

    fn handle_inbox(&mut self, c: &mut Cluster) -> Result<(), Failure> {
        for (from, bytes) in c.take_inbox(self.addr) {
            match self.clerk.on_reply(from, &bytes, c.now) {
                ClerkStep::Send(s) => c.send_to_server(self.addr, NodeId(s.to), s.msg),
                ClerkStep::Done(r) => self.complete(c, r)?,
                ClerkStep::Nothing | ClerkStep::Wait => {}
            }
        }
        Ok(())
    }
}

impl Actor for ClerkActor {
    fn wake(&mut self, c: &mut Cluster) -> Result<Option<u64>, Failure> {
        self.handle_inbox(c)?;
        if let Some(s) = self.clerk.on_timer(c.now) {
            c.send_to_server(self.addr, NodeId(s.to), s.msg);
        }
        while !self.clerk.busy() {
            match self.workload.next(c) {
                Next::Stop => return Ok(None),
                Next::Sleep(t) => return Ok(Some(t.max(c.now + 1))),
                Next::Op(op, read) => {
                    let recorded = model_input(&op, read)
                        .map(|i| self.history.invoke_at(self.clerk.id(), i, c.now));
                    let s = self
                        .clerk
                        .start(op.clone(), read, c.now)
                        .map_err(|e| c.fail(e.to_string()))?;
                    self.inflight = Some(InFlight { op, recorded });
                    c.send_to_server(self.addr, NodeId(s.to), s.msg);
                }
            }
        }
        Ok(self.clerk.deadline())
    }
}

/// A workload fed by the test: operations queued by [`Script::push`] run
/// in order; results land in `results`.
#[derive(Default)]
pub struct ScriptState {
    /// Operations to run.
    pub queue: VecDeque<(Op, ReadConsistency)>,
    /// Results of those completed, in order.
    pub results: Vec<OpResult>,
    /// Stop once the queue is empty.
    pub stop: bool,
}

/// See [`ScriptState`].
pub struct Script(pub Rc<RefCell<ScriptState>>);

impl<C: Tester> Workload<C> for Script {
    fn next(&mut self, c: &mut C) -> Next {
        let mut s = self.0.borrow_mut();
        match s.queue.pop_front() {
            Some((op, read)) => Next::Op(op, read),
            None if s.stop => Next::Stop,
            None => Next::Sleep(c.now() + 1000 * MS),
        }
    }

    fn done(&mut self, _c: &mut C, _op: &Op, result: &OpResult) -> Result<(), Failure> {
        self.0.borrow_mut().results.push(result.clone());
        Ok(())
    }
}
