//! What a hosted run replicates, and what its clients ask of it: the
//! [`App`] trait. The world runs the production host over any
//! [`StateMachine`], wrapped in the [`super::machine::Chain`] that checks
//! every member applies the same log; the app makes each member's
//! machine, chooses each client's next request, and checks the answers
//! against what it asked (a history for a linearizability checker, say).
//!
//! [`Bare`] is the app with nothing to check beyond the chain: a machine
//! with no state (its snapshots only padded), writes of unique bytes and
//! reads that only check their index.
//! `flotilla_kvsim::hosted` runs etcd's KV machine
//! (`flotilla_host::kv_app::KvMachine`) the same way.
//!
//! If the app's machine keeps a member table of its own
//! ([`StateMachine::peer_table`]), the chain checks it against the
//! configuration after every conf change and restore: the same members,
//! each with an address, and the same removed ids.
//!
//! Invariants the world keeps: a client has at most one request out;
//! every request ends in [`App::written`] or [`App::read`], or in no
//! answer the client can use (an error, or it gave up: the app learns so
//! at the client's next [`App::next`], and a write's outcome stays
//! unknown until it is sent again), or is still out when the run ends;
//! the machine `App::read` is handed has applied at least the read's
//! index.

use bytes::Bytes;
use flotilla_host::{ApplyError, RestoreError, StateMachine};
use flotilla_raft::rng::SplitMix64;
use flotilla_raft::{ConfChange, Entry, NodeId};

/// A client's next request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Propose this command.
    Write(Bytes),
    /// A linearizable read: ask for a read index, then read the machine.
    Read,
}

/// The application of a hosted run, and its clients' side.
pub trait App: 'static {
    /// Each member's state machine.
    type Machine: StateMachine;

    /// A fresh machine for member `member` (at its start and at every
    /// restart), of a group whose bootstrap voters are `voters`.
    fn machine(&mut self, member: u64, voters: &[NodeId]) -> Self::Machine;

    /// Client `c`'s next request, at virtual time `now` (ns).
    fn next(&mut self, rng: &mut SplitMix64, c: u64, now: u64) -> Request;

    /// Client `c`'s write was acknowledged with the machine's output.
    /// An `Err` fails the run.
    fn written(
        &mut self,
        c: u64,
        output: &<Self::Machine as StateMachine>::Output,
        now: u64,
    ) -> Result<(), String>;

    /// Client `c`'s read index was confirmed and applied at `machine`:
    /// the read happens now. An `Err` fails the run.
    fn read(&mut self, c: u64, machine: &Self::Machine, now: u64) -> Result<(), String>;

    /// Fills in what the operator's membership change `cc` carries for
    /// the application (etcd's member add puts the new member's address
    /// in its context, as `flotilla_host::kv_app::members::encode_context`
    /// writes it). The default carries nothing.
    fn change_context(&self, _cc: &mut ConfChange) {}

    /// Member `m`'s host ran and went quiet; `machine` is its state now
    /// (a watcher following the member reads what it published, say). An
    /// `Err` fails the run.
    fn pumped(&mut self, _m: u64, _machine: &Self::Machine, _now: u64) -> Result<(), String> {
        Ok(())
    }

    /// A rule the machines broke since the last call (checked after every
    /// event, so a failure names its time).
    fn violation(&mut self) -> Option<String> {
        None
    }

    /// The checks at the end of a run (the history, say).
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Nothing but the chain's checks: writes of unique bytes (`c{c}-{n}`,
/// `n` counting the client's requests) and, unless told otherwise, reads
/// three times in ten that check only their index; the machine holds
/// nothing but its snapshots' padding.
#[derive(Debug)]
pub struct Bare {
    sent: Vec<u64>,
    reads: bool,
    padding: usize,
}

impl Default for Bare {
    /// Reads among the writes, and empty snapshots.
    fn default() -> Bare {
        Bare::new(true, 0)
    }
}

impl Bare {
    /// Clients that also read if `reads`, over machines whose snapshots
    /// carry `padding` bytes (so that with small chunks a transfer takes
    /// several).
    pub fn new(reads: bool, padding: usize) -> Bare {
        Bare {
            sent: Vec::new(),
            reads,
            padding,
        }
    }
}

/// [`Bare`]'s machine: no state but the padding of its snapshots, which
/// a restore checks byte for byte.
#[derive(Debug)]
pub struct Padded {
    padding: usize,
}

impl Padded {
    /// A machine whose snapshots are `padding` bytes.
    pub fn new(padding: usize) -> Padded {
        Padded { padding }
    }
}

impl StateMachine for Padded {
    type Output = ();

    fn apply(&mut self, _entry: &Entry) -> Result<(), ApplyError> {
        Ok(())
    }

    fn snapshot(&self) -> Bytes {
        Bytes::from(vec![0xa5; self.padding])
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), RestoreError> {
        if data.len() == self.padding && data.iter().all(|&b| b == 0xa5) {
            return Ok(());
        }
        let what = format!(
            "a snapshot of {} bytes, where this machine writes {} bytes of padding",
            data.len(),
            self.padding
        );
        Err(RestoreError(what.into()))
    }
}

impl App for Bare {
    type Machine = Padded;

    fn machine(&mut self, _member: u64, _voters: &[NodeId]) -> Padded {
        Padded::new(self.padding)
    }

    fn next(&mut self, rng: &mut SplitMix64, c: u64, _now: u64) -> Request {
        let c = c as usize;
        if self.sent.len() <= c {
            self.sent.resize(c + 1, 0);
        }
        let n = self.sent[c];
        self.sent[c] += 1;
        if self.reads && rng.range(0, 10) >= 7 {
            return Request::Read;
        }
        Request::Write(Bytes::from(format!("c{c}-{n}")))
    }

    fn written(&mut self, _c: u64, _output: &(), _now: u64) -> Result<(), String> {
        Ok(())
    }

    fn read(&mut self, _c: u64, _machine: &Padded, _now: u64) -> Result<(), String> {
        Ok(())
    }
}
