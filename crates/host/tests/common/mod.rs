//! What the host's tests share: a counting state machine, answer slots
//! a test can read and give up on, a member on the real WAL (in memory),
//! and an executor that runs a host until it is quiet.

#![allow(dead_code)] // each test file uses its own part of the kit

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flotilla_host::{
    Action, Applied, ApplyError, Counters, Host, HostOptions, NodeError, PeerTable, Pump,
    RestoreError, StateMachine, Waiter, Waiters,
};
use flotilla_raft::{Config, Entry, LogIndex, NodeId, Role};
use flotilla_wal::{GroupId, MemFs, Options, Wal};

/// A machine that counts applied entries and reports a member table in
/// which the members named in `removed` are gone.
#[derive(Default)]
pub struct Counter {
    pub applied: u64,
    pub removed: BTreeSet<NodeId>,
}

impl StateMachine for Counter {
    type Output = u64;

    fn apply(&mut self, _: &Entry) -> Result<u64, ApplyError> {
        self.applied += 1;
        Ok(self.applied)
    }

    fn snapshot(&self) -> Bytes {
        Bytes::from(self.applied.to_be_bytes().to_vec())
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), RestoreError> {
        let bytes: [u8; 8] = data
            .as_ref()
            .try_into()
            .map_err(|e| RestoreError(Box::new(e)))?;
        self.applied = u64::from_be_bytes(bytes);
        Ok(())
    }

    fn peer_table(&self) -> Option<PeerTable> {
        let addrs = BTreeMap::from([(NodeId(1), "127.0.0.1:1".to_string())]);
        Some(PeerTable {
            addrs,
            removed: self.removed.clone(),
        })
    }
}

/// Where an answer lands; `gave_up` is the caller's deadline passing.
pub struct Slot<T> {
    pub answer: Rc<RefCell<Option<T>>>,
    pub gave_up: Rc<RefCell<bool>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            answer: Rc::new(RefCell::new(None)),
            gave_up: Rc::new(RefCell::new(false)),
        }
    }
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot {
            answer: Rc::clone(&self.answer),
            gave_up: Rc::clone(&self.gave_up),
        }
    }
}

impl<T> Waiter<T> for Slot<T> {
    fn answer(self, value: T) {
        *self.answer.borrow_mut() = Some(value);
    }

    fn gave_up(&self) -> bool {
        *self.gave_up.borrow()
    }
}

impl<T> Slot<T> {
    /// The answer, if one came (taking it).
    pub fn take(&self) -> Option<T> {
        self.answer.borrow_mut().take()
    }
}

pub struct Slots;

impl Waiters<u64> for Slots {
    type Propose = Slot<Result<Applied<u64>, NodeError>>;
    type Index = Slot<Result<LogIndex, NodeError>>;
}

pub type TestHost = Host<Counter, Slots>;

/// The options of node `id` among `voters`: elections after 10 ticks,
/// heartbeats every tick, no snapshots, bounds of 100.
pub fn options(id: u64, voters: u64) -> HostOptions {
    let mut raft = Config::new(NodeId(id), (1..=voters).map(NodeId).collect());
    raft.election_ticks = 10;
    raft.heartbeat_ticks = 1;
    HostOptions {
        raft,
        snapshot_entries: 1_000_000,
        snapshot_log_bytes: None,
        proposals_pending_max: 100,
        reads_pending_max: 100,
    }
}

/// Node `id` of `voters` on a fresh WAL, not yet ticked, with `opts`
/// adjusting [`options`]; and what it counts.
pub fn node(
    id: u64,
    voters: u64,
    opts: impl FnOnce(&mut HostOptions),
) -> (TestHost, Arc<Mutex<Counter>>, Arc<Counters>) {
    let wal = Wal::open_with_fs("/wal", Options::default(), Arc::new(MemFs::new())).expect("wal");
    let storage = wal.group(GroupId(1)).expect("group");
    let mut options = options(id, voters);
    opts(&mut options);
    let sm = Arc::new(Mutex::new(Counter::default()));
    let counters = Arc::new(Counters::default());
    let host = Host::new(options, storage, Arc::clone(&sm), Arc::clone(&counters)).expect("host");
    (host, sm, counters)
}

/// Node 1 of `voters`: see [`node`].
pub fn member(
    voters: u64,
    opts: impl FnOnce(&mut HostOptions),
) -> (TestHost, Arc<Mutex<Counter>>, Arc<Counters>) {
    node(1, voters, opts)
}

/// Node 1, the only voter, leading, with `opts` adjusting the defaults.
pub fn leader(opts: impl FnOnce(&mut HostOptions)) -> (TestHost, Arc<Mutex<Counter>>) {
    let (host, sm, _) = leader_counting(opts);
    (host, sm)
}

/// [`leader`], with what it counts.
pub fn leader_counting(
    opts: impl FnOnce(&mut HostOptions),
) -> (TestHost, Arc<Mutex<Counter>>, Arc<Counters>) {
    let (mut host, sm, counters) = member(1, opts);
    for _ in 0..100 {
        if host.status().role == Role::Leader {
            return (host, sm, counters);
        }
        host.tick();
        run(&mut host);
    }
    panic!("a lone voter did not lead: {:?}", host.status());
}

/// What an executor does until the host is quiet: syncs at once, builds
/// snapshots at once. Returns the actions other than those.
pub fn run(host: &mut TestHost) -> Vec<Action> {
    run_noting_jobs(host, &mut Vec::new())
}

/// [`run`], noting the index of every snapshot job the host asks for.
pub fn run_noting_jobs(host: &mut TestHost, jobs: &mut Vec<LogIndex>) -> Vec<Action> {
    let mut other = Vec::new();
    loop {
        while let Pump::SyncNow(lsn) = host.pump().expect("pump") {
            host.wal().sync_to(lsn).expect("sync");
            host.resume().expect("resume");
        }
        let actions = host.take_actions();
        if actions.is_empty() {
            return other;
        }
        for a in actions {
            match a {
                Action::Sync(lsn) => {
                    host.wal().sync_to(lsn).expect("sync");
                    host.synced();
                }
                Action::Snapshot(task) => {
                    let index = task.index;
                    jobs.push(index);
                    let data = task.run(&host.wal());
                    host.snapshot_built(index, Some(data));
                }
                a => other.push(a),
            }
        }
    }
}
