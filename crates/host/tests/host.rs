//! The host's bookkeeping, one member at a time: a single voter on the
//! real WAL (in memory), driven by hand as an executor would. What the
//! simulator's sweeps cannot reach this way is checked here: overload
//! refusals at their bound, reads forgotten once their caller gave up,
//! membership changes answered, snapshots compacting the log, and a
//! member learning from its table that it was removed.

mod common;

use bytes::Bytes;
use common::{Slot, leader, leader_counting, member, run};
use flotilla_host::{Action, Applied, NodeError, Pump};
use flotilla_raft::{ConfChange, ConfChangeOp, LogIndex, NodeId};

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
fn a_log_that_holds_too_many_bytes_is_compacted_whatever_the_entry_count() {
    let (mut host, _, counters) = leader_counting(|o| o.snapshot_log_bytes = Some(300));
    let snapshots = || {
        counters
            .snapshots
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut last = 0;
    for i in 0..40 {
        host.propose(Bytes::from(vec![b'x'; 50]), Slot::default());
        run(&mut host);
        let log = host.raw().status().log_bytes;
        // A job runs and compacts as `run` finishes it: the log past the
        // snapshot never holds much more than the bound.
        assert!(log < 300 + 100, "entry {i}: {log} bytes in the log");
        last = snapshots();
    }
    // 40 entries of over 50 bytes, a snapshot every 300 bytes or so.
    assert!((5..=10).contains(&last), "{last} snapshots");
    assert!(host.storage().first_index() > LogIndex(30));
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
    // Meanwhile it takes no request: its machine stops at its removal.
    let (read, write) = (Slot::default(), Slot::default());
    host.read_index(read.clone());
    host.propose(bytes::Bytes::from_static(b"x"), write.clone());
    for answer in [
        read.take().map(|r| r.map(drop)),
        write.take().map(|r| r.map(drop)),
    ] {
        assert!(
            matches!(
                answer,
                Some(Err(NodeError::NotLeader { leader_hint: None }))
            ),
            "{answer:?}"
        );
    }
    // It says so only after its grace, so the rest can learn the change
    // committed from it first.
    // (The test members heartbeat every tick.)
    let grace = flotilla_host::RETIRE_HEARTBEATS;
    for _ in 1..grace {
        host.tick();
        run(&mut host);
        assert!(!host.status().removed, "removed before its grace ended");
    }
    host.tick();
    run(&mut host);
    assert!(
        host.status().removed,
        "the member table says this member was removed"
    );
}

/// Runs the syncs among `actions` (and only them), as an executor whose
/// disk answers now; other actions are dropped (a lone voter sends none).
fn sync(host: &mut common::TestHost, actions: Vec<Action>) {
    for a in actions {
        if let Action::Sync(lsn) = a {
            host.wal().sync_to(lsn).expect("sync");
            host.synced();
        }
    }
}

/// [`sync`] of the actions the host has pending.
fn sync_pending(host: &mut common::TestHost) {
    let actions = host.take_actions();
    sync(host, actions);
}

/// A read asked now (taken: the removal has not applied yet) and run to
/// its answer is answered not-leader.
fn assert_a_read_now_is_refused(host: &mut common::TestHost) {
    let read = Slot::default();
    host.read_index(read.clone());
    run(host);
    let answer = read.take().map(|r| r.map(drop));
    assert!(
        matches!(
            answer,
            Some(Err(NodeError::NotLeader { leader_hint: None }))
        ),
        "{answer:?}"
    );
}

#[test]
fn reads_waiting_when_a_member_applies_its_removal_are_answered_not_leader() {
    let (mut host, sm) = leader(|_| {});
    // The member table the machine keeps will say this member was
    // removed once the next membership change applies.
    sm.lock().expect("lock").removed.insert(NodeId(1));
    let cc = ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(3))]);
    host.change_membership(&cc, Slot::default());
    // The change is made durable, so this lone voter commits it, but not
    // yet applied.
    assert_eq!(host.pump().expect("pump"), Pump::Quiet);
    sync_pending(&mut host);
    // A read now is confirmed at the change's index, so it still waits
    // when the change applies: its member stops there and will never
    // serve it.
    assert_a_read_now_is_refused(&mut host);
}

#[test]
fn reads_confirmed_past_what_applied_when_a_member_applies_its_removal_are_answered_not_leader() {
    // One committed entry applied per Ready, so a read can be confirmed
    // in one and the removal applied in a later one.
    let (mut host, sm) = leader(|o| o.raft.max_apply_bytes = 1);
    sm.lock().expect("lock").removed.insert(NodeId(1));
    // Entries w, x, then the change c: w is synced alone, then x and c
    // together, so that x and c are committed and neither is applied.
    host.propose(Bytes::from_static(b"w"), Slot::default());
    assert_eq!(host.pump().expect("pump"), Pump::Quiet);
    let first_sync = host.take_actions();
    host.propose(Bytes::from_static(b"x"), Slot::default());
    assert_eq!(host.pump().expect("pump"), Pump::Quiet);
    let cc = ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(3))]);
    host.change_membership(&cc, Slot::default());
    assert_eq!(host.pump().expect("pump"), Pump::Quiet);
    sync(&mut host, first_sync);
    assert_eq!(host.pump().expect("pump"), Pump::Quiet);
    sync_pending(&mut host);
    assert_eq!(host.status().applied, LogIndex(2), "w applied, x and c not");
    // Confirmed at c's index with x applied alongside: it waits among the
    // confirmed reads when c applies.
    assert_a_read_now_is_refused(&mut host);
}
