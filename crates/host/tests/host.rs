//! The host's bookkeeping, one member at a time: a single voter on the
//! real WAL (in memory), driven by hand as an executor would. What the
//! simulator's sweeps cannot reach this way is checked here: overload
//! refusals at their bound, reads forgotten once their caller gave up,
//! membership changes answered, snapshots compacting the log, and a
//! member learning from its table that it was removed.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flotilla_host::{
    Action, Applied, ApplyError, Counters, Host, HostOptions, NodeError, PeerTable, Pump,
    RestoreError, StateMachine, Waiter, Waiters,
};
use flotilla_raft::{ConfChange, ConfChangeOp, Config, Entry, LogIndex, NodeId, Role};
use flotilla_wal::{GroupId, MemFs, Options, Wal};

/// A machine that counts applied entries and reports a member table in
/// which the members named in `removed` are gone.
#[derive(Default)]
struct Counter {
    applied: u64,
    removed: BTreeSet<NodeId>,
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
struct Slot<T> {
    answer: Rc<RefCell<Option<T>>>,
    gave_up: Rc<RefCell<bool>>,
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
    fn take(&self) -> Option<T> {
        self.answer.borrow_mut().take()
    }
}

struct Slots;

impl Waiters<u64> for Slots {
    type Propose = Slot<Result<Applied<u64>, NodeError>>;
    type Index = Slot<Result<LogIndex, NodeError>>;
}

type TestHost = Host<Counter, Slots>;

/// Node 1 of `voters`, not yet ticked, with `opts` adjusting the
/// defaults; and what it counts.
fn member(
    voters: u64,
    opts: impl FnOnce(&mut HostOptions),
) -> (TestHost, Arc<Mutex<Counter>>, Arc<Counters>) {
    let wal = Wal::open_with_fs("/wal", Options::default(), Arc::new(MemFs::new())).expect("wal");
    let storage = wal.group(GroupId(1)).expect("group");
    let mut raft = Config::new(NodeId(1), (1..=voters).map(NodeId).collect());
    raft.election_ticks = 10;
    raft.heartbeat_ticks = 1;
    let mut options = HostOptions {
        raft,
        snapshot_entries: 1_000_000,
        proposals_pending_max: 100,
        reads_pending_max: 100,
    };
    opts(&mut options);
    let sm = Arc::new(Mutex::new(Counter::default()));
    let counters = Arc::new(Counters::default());
    let host = Host::new(options, storage, Arc::clone(&sm), Arc::clone(&counters)).expect("host");
    (host, sm, counters)
}

/// Node 1, the only voter, leading, with `opts` adjusting the defaults.
fn leader(opts: impl FnOnce(&mut HostOptions)) -> (TestHost, Arc<Mutex<Counter>>) {
    let (host, sm, _) = leader_counting(opts);
    (host, sm)
}

/// [`leader`], with what it counts.
fn leader_counting(
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
fn run(host: &mut TestHost) -> Vec<Action> {
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
                    let data = task.run(&host.wal());
                    host.snapshot_built(index, Some(data));
                }
                a => other.push(a),
            }
        }
    }
}

#[test]
fn a_batch_is_answered_at_consecutive_indexes_and_the_election_counted() {
    let (mut host, _, counters) = leader_counting(|_| {});
    let changes = counters
        .leader_changes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(changes, 1, "no leader, then node 1");
    let slots: Vec<Slot<_>> = (0..3).map(|_| Slot::default()).collect();
    for s in &slots {
        host.propose(Bytes::from_static(b"x"), s.clone());
    }
    run(&mut host);
    let indexes: Vec<LogIndex> = slots
        .iter()
        .map(|s| s.take().expect("answered").expect("applied").index)
        .collect();
    let first = indexes[0];
    assert_eq!(indexes, vec![first, first.next(), first.next().next()]);
}

#[test]
fn proposals_past_the_bound_are_refused_with_the_count_waiting() {
    let (mut host, _) = leader(|o| o.proposals_pending_max = 2);
    let slots: Vec<Slot<_>> = (0..3).map(|_| Slot::default()).collect();
    for s in &slots {
        host.propose(Bytes::from_static(b"x"), s.clone());
    }
    assert_eq!(
        slots[2].take().map(|r| r.map(|a| a.index)),
        Some(Err(NodeError::Overloaded { pending: 2 }))
    );
    run(&mut host);
    for s in &slots[..2] {
        assert!(matches!(s.take(), Some(Ok(Applied { .. }))));
    }
}

#[test]
fn reads_past_the_bound_are_refused_and_given_up_reads_are_forgotten() {
    let (mut host, _) = leader(|o| o.reads_pending_max = 2);
    let (kept, dropped, refused) = (Slot::default(), Slot::default(), Slot::default());
    host.read_index(kept.clone());
    host.read_index(dropped.clone());
    host.read_index(refused.clone());
    assert_eq!(
        refused.take(),
        Some(Err(NodeError::Overloaded { pending: 2 }))
    );
    // The second caller's deadline passes before the tick.
    *dropped.gave_up.borrow_mut() = true;
    host.tick();
    run(&mut host);
    for _ in 0..3 {
        host.tick();
        run(&mut host);
    }
    assert!(
        matches!(kept.take(), Some(Ok(_))),
        "a waiting read is answered"
    );
    assert_eq!(
        dropped.take(),
        None,
        "a read whose caller gave up is forgotten"
    );
    // Room for two again.
    let (a, b) = (Slot::default(), Slot::default());
    host.read_index(a.clone());
    host.read_index(b.clone());
    assert_eq!(a.take(), None);
    assert_eq!(b.take(), None);
}

#[test]
fn a_membership_change_is_answered_with_its_index_once_applied() {
    let (mut host, _) = leader(|_| {});
    let slot = Slot::default();
    let cc = ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(2))]);
    host.change_membership(&cc, slot.clone());
    run(&mut host);
    let index = slot.take().expect("answered").expect("applied");
    assert!(index > LogIndex(0));
    assert_eq!(host.status().learners, vec![NodeId(2)]);
    let again = Slot::default();
    host.change_membership(
        &ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(1))]),
        again.clone(),
    );
    assert!(matches!(
        again.take(),
        Some(Err(NodeError::InvalidConfChange(_)))
    ));
}

#[test]
fn a_finished_snapshot_job_compacts_the_log_on_schedule() {
    let (mut host, _, counters) = leader_counting(|o| o.snapshot_entries = 5);
    for _ in 0..12 {
        host.propose(Bytes::from_static(b"x"), Slot::default());
        run(&mut host);
    }
    // Member 1's phase for one snapshot every 5 entries is 3 (its id
    // times the golden ratio, modulo 5): it snapshots at 2, 7 and 12 of
    // the 13 entries (the leader's no-op and 12 commands), no more.
    let snap = host.raw().snapshot().expect("a snapshot after 13 entries");
    assert_eq!(snap.meta.index, LogIndex(12));
    let taken = counters
        .snapshots
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(taken, 3);
    assert!(host.storage().first_index() > LogIndex(1));
}

#[test]
fn a_change_of_voters_is_answered_only_once_the_joint_configuration_is_left() {
    let (mut host, _) = leader(|_| {});
    let slot = Slot::default();
    // Voters {1} to {1, 2}: the joint configuration needs node 2 to
    // leave it, and node 2 never answers here.
    let cc = ConfChange::new(vec![ConfChangeOp::AddVoter(NodeId(2))]);
    host.change_membership(&cc, slot.clone());
    for _ in 0..5 {
        host.tick();
        run(&mut host);
    }
    assert_eq!(host.status().voters, vec![NodeId(1), NodeId(2)]);
    assert_eq!(slot.take(), None, "answered while still joint");
}

#[test]
fn membership_changes_are_refused_off_the_leader_and_while_one_is_pending() {
    let (mut follower, _, _) = member(2, |_| {});
    let slot = Slot::default();
    let cc = ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(3))]);
    follower.change_membership(&cc, slot.clone());
    let refused = slot.take();
    assert_eq!(
        refused,
        Some(Err(NodeError::NotLeader { leader_hint: None }))
    );
    let (mut host, _) = leader(|_| {});
    let (first, second) = (Slot::default(), Slot::default());
    host.change_membership(&cc, first.clone());
    let cc4 = ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(4))]);
    host.change_membership(&cc4, second.clone());
    assert_eq!(second.take(), Some(Err(NodeError::ConfChangePending)));
    run(&mut host);
    assert!(matches!(first.take(), Some(Ok(_))));
}

#[test]
fn a_member_that_applies_its_removal_knows_and_repoints_the_transport() {
    let (mut host, sm) = leader(|_| {});
    assert!(!host.status().removed);
    sm.lock().expect("lock").removed.insert(NodeId(3));
    let cc = ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(3))]);
    host.change_membership(&cc, Slot::default());
    let actions = run(&mut host);
    assert!(
        !host.status().removed,
        "another member's removal is not ours"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::SetPeers(t) if t.removed.contains(&NodeId(3))))
    );
    sm.lock().expect("lock").removed.insert(NodeId(1));
    let cc = ConfChange::new(vec![ConfChangeOp::Remove(NodeId(3))]);
    host.change_membership(&cc, Slot::default());
    run(&mut host);
    assert!(
        host.status().removed,
        "the member table says this member was removed"
    );
}
