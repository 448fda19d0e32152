//! Clients on the simulator: a [`Workload`] chooses each next operation
//! of a clerk (`crate::lab::HostedClerk`), and every operation is recorded
//! in a shared linearizability [`History`] at virtual times.
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
use flotilla_kv::{CmpOp, Op, ReadConsistency, Refusal, Response, Target};
use flotilla_linearize::{KvInput, KvOutput, Recorder};
use flotilla_sim::{Failure, MS, Tester};

/// The shared recorder of a run's history.
pub type History = Rc<Recorder<KvInput, KvOutput>>;

/// The result of one operation: the store's revision after it and the
/// answer, or why not.
pub type OpResult = Result<(u64, Response), OpError>;

/// Why an operation did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    /// The servers no longer had the client's session: the write may or
    /// may not have taken effect.
    SessionExpired {
        /// The session.
        client: u64,
        /// The write's number in it.
        seq: u64,
    },
    /// The replicas (or the member, for a read) refused the operation as
    /// invalid; it changed nothing.
    Refused {
        /// The session.
        client: u64,
        /// The write's number in it (0 for a read).
        seq: u64,
        /// Why.
        refusal: Refusal,
    },
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::SessionExpired { client, seq } => write!(
                f,
                "client {client}: session expired; request {seq} may or may not have been applied"
            ),
            OpError::Refused {
                client,
                seq,
                refusal,
            } => write!(f, "client {client}: request {seq} was refused: {refusal}"),
        }
    }
}

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
pub trait Workload<C> {
    /// The next thing to do (called when no operation is in flight).
    fn next(&mut self, c: &mut C) -> Next;
    /// An operation completed; an error fails the run.
    fn done(&mut self, c: &mut C, op: &Op, result: &OpResult) -> Result<(), Failure>;
}

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
