//! One member as the simulator runs it: the production [`Host`] over the
//! real WAL on an in-memory file system, or, while the member is down,
//! the WAL as the crash left it (unsynced writes lost, the tail torn, as
//! [`flotilla_wal::Image::crash`] decides).
//!
//! Invariant: an event scheduled for an earlier incarnation (a sync or a
//! snapshot job that was running at the crash) never reaches the next.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use flotilla_host::{Counters, Host, HostOptions, StartError, Waiter, Waiters};
use flotilla_raft::{Config, LogIndex, NodeId};
use flotilla_wal::{GroupHandle, GroupId, MemFs, Options, Wal, WalError};

use super::machine::{Chain, Ledger};
use flotilla_host::StateMachine;

/// The group every member hosts.
pub(crate) const GROUP: GroupId = GroupId(1);

/// An answer the host gave, for the simulation to check and pass on;
/// `O` is the machine's output.
#[derive(Debug)]
pub(crate) enum Answer<O> {
    /// A proposal's outcome: the index it applied at and the machine's
    /// output, or why not.
    Proposal(
        u64,
        Result<(LogIndex, flotilla_raft::Term, O), flotilla_host::NodeError>,
    ),
    /// A read's outcome: the index to read at, or why not.
    Read(u64, Result<LogIndex, flotilla_host::NodeError>),
    /// A membership change's outcome: the index of its entry, or why not.
    Membership(u64, Result<LogIndex, flotilla_host::NodeError>),
}

impl<O> Answer<O> {
    /// The request it answers.
    pub(crate) fn request(&self) -> u64 {
        match self {
            Answer::Proposal(r, _) | Answer::Read(r, _) | Answer::Membership(r, _) => *r,
        }
    }
}

/// Where answers collect until the simulation looks.
pub(crate) type Inbox<O> = Rc<RefCell<Vec<(u64, Answer<O>)>>>;

/// A waiter that files its answer, with the member that gave it, in the
/// simulation's inbox. The waiter's type makes the answer a proposal's;
/// `membership` tells a membership change's index from a read's.
pub(crate) struct SimWaiter<O> {
    pub(crate) member: u64,
    pub(crate) request: u64,
    pub(crate) membership: bool,
    pub(crate) inbox: Inbox<O>,
    /// Set when the client gave up on the request.
    pub(crate) gave_up: Rc<RefCell<bool>>,
}

impl<O> Waiter<Result<flotilla_host::Applied<O>, flotilla_host::NodeError>> for SimWaiter<O> {
    fn answer(self, value: Result<flotilla_host::Applied<O>, flotilla_host::NodeError>) {
        let value = value.map(|a| (a.index, a.term, a.output));
        let answer = Answer::Proposal(self.request, value);
        self.inbox.borrow_mut().push((self.member, answer));
    }

    fn gave_up(&self) -> bool {
        *self.gave_up.borrow()
    }
}

impl<O> Waiter<Result<LogIndex, flotilla_host::NodeError>> for SimWaiter<O> {
    fn answer(self, value: Result<LogIndex, flotilla_host::NodeError>) {
        let answer = if self.membership {
            Answer::Membership(self.request, value)
        } else {
            Answer::Read(self.request, value)
        };
        self.inbox.borrow_mut().push((self.member, answer));
    }

    fn gave_up(&self) -> bool {
        *self.gave_up.borrow()
    }
}

/// The simulator's waiter types.
pub(crate) struct SimWaiters;

impl<O> Waiters<O> for SimWaiters {
    type Propose = SimWaiter<O>;
    type Index = SimWaiter<O>;
}

/// The host the simulation runs, over the app's machine `M`.
pub(crate) type SimHost<M> = Host<Chain<M>, SimWaiters>;

/// A member's machine, which its host shares.
pub(crate) type SharedChain<M> = Arc<Mutex<Chain<M>>>;

/// A member's state.
pub(crate) enum Life<M: StateMachine> {
    /// Running.
    Up(Box<SimHost<M>>),
    /// Crashed: the WAL recovered from what the crash left, read-only
    /// until the restart (it answers what is durable here).
    Down(GroupHandle),
    /// Shut down for good once it applied its own removal, as a server
    /// does; its disk stays for the checks (it no longer counts).
    Removed(Box<SimHost<M>>),
}

/// One member.
pub(crate) struct Member<M: StateMachine> {
    pub(crate) id: u64,
    pub(crate) fs: MemFs,
    pub(crate) life: Life<M>,
    /// Bumped at every crash.
    pub(crate) incarnation: u64,
    /// A sync runs (the host asked for one and has not heard back).
    pub(crate) syncing: bool,
    /// The member table the host last pointed the transport at; `None`
    /// until it does, when the transport reaches every member it was
    /// started with (all of them: a joining server is told where the
    /// group is).
    pub(crate) table: Option<flotilla_host::PeerTable>,
    /// Peers this incarnation heard from: the transport answers them even
    /// when its table does not list them yet (see [`Member::reaches`]).
    pub(crate) heard: BTreeSet<NodeId>,
    /// The last index its machine applied, as of its latest pump (kept
    /// while it is down, for the course's tester).
    pub(crate) applied: LogIndex,
}

/// Why a member could not start: the simulation's failure.
pub(crate) fn start_error(id: u64, e: &dyn std::error::Error) -> String {
    format!("member {id} could not start: {e}")
}

/// Opens the WAL on `fs` and takes the group's handle.
pub(crate) fn open_group(fs: &MemFs) -> Result<GroupHandle, WalError> {
    let options = Options {
        segment_bytes: 64 << 10,
        ..Options::default()
    };
    let wal = Wal::open_with_fs("/wal", options, Arc::new(fs.clone()))?;
    wal.group(GROUP)
}

/// Starts a host over `storage`, running the app's `machine`.
pub(crate) fn start_host<M: StateMachine>(
    raft: Config,
    (snapshot_entries, snapshot_log_bytes): (u64, Option<u64>),
    storage: GroupHandle,
    ledger: &Arc<Mutex<Ledger>>,
    machine: M,
) -> Result<SimHost<M>, StartError> {
    let opts = HostOptions {
        snapshot_entries,
        snapshot_log_bytes,
        proposals_pending_max: 1024,
        reads_pending_max: 1024,
        raft,
    };
    let chain = Chain::new(opts.raft.id.get(), Arc::clone(ledger), machine);
    let counters = Arc::new(Counters::default());
    Host::new(opts, storage, Arc::new(Mutex::new(chain)), counters)
}

impl<M: StateMachine> Member<M> {
    /// The member's WAL handle, up or down.
    pub(crate) fn storage(&self) -> &GroupHandle {
        match &self.life {
            Life::Up(host) | Life::Removed(host) => host.storage(),
            Life::Down(storage) => storage,
        }
    }

    /// Whether this member's transport has a link to `to`: one its table
    /// lists (before the first table, every member: a joining server is
    /// told where the group is) or, with `callers`, one that reached it;
    /// never one removed.
    ///
    /// With links to its table's members only, a member whose table
    /// predates the addition of the current leader (it was down or cut
    /// off meanwhile) cannot answer that leader, which therefore never
    /// learns what to send it, and the member never applies the entry
    /// that would add the leader to its table: it is stuck for good, and
    /// a group that needs its vote stops (seeds 368 and 617 of the
    /// membership sweep). So a transport answers whoever reached it, as
    /// `flotilla_runtime`'s does since (`Transport::learn`, from the
    /// address each batch names); `HostedConfig::links_to_callers` off
    /// shows the checker catching the old behaviour.
    pub(crate) fn reaches(&self, to: NodeId, callers: bool) -> bool {
        let Some(table) = &self.table else {
            return true;
        };
        let linked = table.addrs.contains_key(&to) || (callers && self.heard.contains(&to));
        linked && !table.removed.contains(&to)
    }

    /// The running host's machine, if the member is up.
    pub(crate) fn machine(&mut self) -> Option<SharedChain<M>> {
        self.host().map(|h| Arc::clone(h.machine()))
    }

    /// The running host, if the member is up, to look at.
    pub(crate) fn running(&self) -> Option<&SimHost<M>> {
        match &self.life {
            Life::Up(host) => Some(host),
            Life::Down(_) | Life::Removed(_) => None,
        }
    }

    /// The running host, if the member is up.
    pub(crate) fn host(&mut self) -> Option<&mut SimHost<M>> {
        match &mut self.life {
            Life::Up(host) => Some(host),
            Life::Down(_) | Life::Removed(_) => None,
        }
    }

    /// Whether the entry `(index, term)` is durable here: synced, or
    /// covered by a durable snapshot.
    pub(crate) fn holds_durably(&self, index: LogIndex, term: flotilla_raft::Term) -> bool {
        let storage = self.storage();
        if storage.durable_index() < index {
            return false;
        }
        match storage.term(index) {
            Some(t) => t == term,
            None => storage.snapshot_meta().is_some_and(|m| m.index >= index),
        }
    }

    /// Power loss: what was not synced is lost (`seed` picks how much of
    /// it survives), and the WAL is recovered from the rest.
    pub(crate) fn crash(&mut self, seed: u64) -> Result<(), String> {
        // The disk as the power went, before the old host is dropped.
        let image = self.fs.image();
        self.life = Life::Down(self.storage_placeholder()?);
        self.fs = image.crash(seed);
        let storage = open_group(&self.fs).map_err(|e| start_error(self.id, &e))?;
        self.life = Life::Down(storage);
        self.incarnation += 1;
        self.syncing = false;
        self.table = None;
        self.heard.clear();
        Ok(())
    }

    /// A handle on an empty disk, to hold while the old WAL is dropped.
    fn storage_placeholder(&self) -> Result<GroupHandle, String> {
        open_group(&MemFs::new()).map_err(|e| start_error(self.id, &e))
    }

    /// Shuts the member down for good if its host applied its removal;
    /// returns whether it did now.
    pub(crate) fn retire_if_removed(&mut self) -> Result<bool, String> {
        if !matches!(&self.life, Life::Up(host) if host.status().removed) {
            return Ok(false);
        }
        let placeholder = Life::Down(self.storage_placeholder()?);
        if let Life::Up(host) = std::mem::replace(&mut self.life, placeholder) {
            self.life = Life::Removed(host);
        }
        self.incarnation += 1;
        self.syncing = false;
        Ok(true)
    }

    /// Restarts a member that is down (never one removed), with a fresh
    /// `machine` that the host restores from the disk.
    pub(crate) fn restart(
        &mut self,
        raft: Config,
        compaction: (u64, Option<u64>),
        ledger: &Arc<Mutex<Ledger>>,
        machine: M,
    ) -> Result<(), String> {
        let placeholder = Life::Down(self.storage_placeholder()?);
        let Life::Down(storage) = std::mem::replace(&mut self.life, placeholder) else {
            return Ok(());
        };
        let host = start_host(raft, compaction, storage, ledger, machine)
            .map_err(|e| start_error(self.id, &e))?;
        self.life = Life::Up(Box::new(host));
        // A fresh transport: what the down member "heard" reached no one.
        self.heard.clear();
        Ok(())
    }
}

/// The Raft configuration of member `id` of `members`, with a seed of
/// this incarnation's. Committed entries are handed to the host a few
/// at a time (a small `max_apply_bytes`, drawn from the seed) so that
/// applying lags committing and reads wait for their index to apply.
pub(crate) fn raft_config(id: u64, members: u64, seed: u64) -> Config {
    let mut cfg = Config::new(NodeId(id), (1..=members).map(NodeId).collect());
    cfg.election_ticks = 20;
    cfg.heartbeat_ticks = 2;
    cfg.seed = seed;
    cfg.max_apply_bytes = if seed.is_multiple_of(2) { 1 } else { 8 << 20 };
    cfg
}
