//! The host in a group of three, driven by hand, for what a lone voter
//! cannot show: writes through a follower (forwarded to the leader and
//! answered where they were asked, or told to retry when the outcome is
//! unknown), a follower whose confirmed read waits for it to apply, a
//! leader that stops leading with proposals pending, a snapshot from the
//! leader acknowledged as soon as it is durable, and a local snapshot in
//! the same Ready as committed entries.
//!
//! Messages travel through one queue, in order, unless the test's filter
//! drops them; every member syncs and builds snapshots at once.

mod common;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{Counter, Slot, TestHost, leader, node, run};
use flotilla_host::{Action, Counters, HostOptions, NodeError, Pump};
use flotilla_raft::{LogIndex, Message, MessageBody, NodeId, Role};

/// Whether a message is lost.
type Filter = Box<dyn Fn(&Message) -> bool>;

struct Group {
    /// Member `id` at `id - 1`.
    hosts: Vec<TestHost>,
    machines: Vec<Arc<Mutex<Counter>>>,
    counters: Vec<Arc<Counters>>,
    net: VecDeque<Message>,
    drop: Filter,
}

impl Group {
    /// Three members, none leading yet.
    fn new(opts: impl Fn(&mut HostOptions)) -> Group {
        let (mut hosts, mut machines) = (Vec::new(), Vec::new());
        let mut counters = Vec::new();
        for id in 1..=3 {
            let (host, sm, c) = node(id, 3, &opts);
            hosts.push(host);
            machines.push(sm);
            counters.push(c);
        }
        Group {
            hosts,
            machines,
            counters,
            net: VecDeque::new(),
            drop: Box::new(|_| false),
        }
    }

    fn host(&mut self, id: u64) -> &mut TestHost {
        &mut self.hosts[id as usize - 1]
    }

    /// Runs member `id` until quiet; what it sends joins the queue.
    /// Returns what it sent.
    fn run(&mut self, id: u64) -> Vec<Message> {
        let mut sent = Vec::new();
        for a in run(self.host(id)) {
            if let Action::Send(ms) = a {
                sent.extend(ms);
            }
        }
        self.net.extend(sent.iter().cloned());
        sent
    }

    /// Delivers the next message not dropped; returns it with what its
    /// receiver sent on stepping it, or `None` once the queue is empty.
    fn step_one(&mut self) -> Option<(Message, Vec<Message>)> {
        while let Some(m) = self.net.pop_front() {
            if (self.drop)(&m) {
                continue;
            }
            let to = m.to.get();
            // A stale message the core refuses is lost, as on a network.
            let _ = self.host(to).step(m.clone());
            let sent = self.run(to);
            return Some((m, sent));
        }
        None
    }

    /// Delivers until the queue is empty.
    fn deliver(&mut self) {
        while self.step_one().is_some() {}
    }

    /// One tick of member `id`, and everything that follows from it.
    fn tick(&mut self, id: u64) {
        self.host(id).tick();
        self.run(id);
        self.deliver();
    }

    /// Ticks member 1 alone until it leads.
    fn elect_1(&mut self) {
        for _ in 0..100 {
            if self.host(1).status().role == Role::Leader {
                return;
            }
            self.tick(1);
        }
        panic!("member 1 did not lead: {:?}", self.host(1).status());
    }

    fn applied(&self, id: u64) -> u64 {
        self.machines[id as usize - 1].lock().expect("lock").applied
    }
}

#[test]
fn a_write_through_a_follower_is_answered_there_at_the_leaders_index() {
    let mut g = Group::new(|_| {});
    g.elect_1();
    let slot = Slot::default();
    g.host(3).propose(Bytes::from_static(b"x"), slot.clone());
    g.host(3).propose(Bytes::from_static(b"y"), Slot::default());
    g.run(3);
    assert!(slot.take().is_none(), "answered before it was placed");
    let in_flight = |g: &Group, i: usize| g.counters[i].proposals_in_flight.load(Ordering::Relaxed);
    assert_eq!(in_flight(&g, 2), 2, "both forwarded, neither answered");
    g.deliver();
    // The next heartbeat tells member 3 the entry is committed.
    g.tick(1);
    assert_eq!(in_flight(&g, 2), 0, "both answered");
    let answer = slot.take().expect("answered").expect("applied");
    // x sits just before y, at the leader's index; member 3's own apply
    // answered it, one entry before y's.
    assert_eq!(answer.index.0 + 1, g.host(1).status().last_index.0);
    assert_eq!(answer.output + 1, g.applied(3));
    assert!(g.host(3).status().applied >= answer.index);
    let forwarded = g.counters[2].proposals_forwarded.load(Ordering::Relaxed);
    assert_eq!(forwarded, 2);
}

#[test]
fn a_write_placed_before_the_follower_applied_past_it_is_told_to_retry() {
    let mut g = Group::new(|_| {});
    g.elect_1();
    // The leader's answer to member 3 is held back until member 3 has
    // applied the entry it names: the outcome can no longer be told.
    let held = Rc::new(RefCell::new(Vec::new()));
    let hold = Rc::clone(&held);
    g.drop = Box::new(move |m| {
        let late = m.to == NodeId(3) && matches!(m.body, MessageBody::ProposeResp { .. });
        if late {
            hold.borrow_mut().push(m.clone());
        }
        late
    });
    let slot = Slot::default();
    g.host(3).propose(Bytes::from_static(b"x"), slot.clone());
    g.run(3);
    g.deliver();
    g.tick(1);
    let entry = g.host(1).status().last_index;
    assert!(g.host(3).status().applied >= entry, "member 3 applied it");
    assert!(slot.take().is_none());
    g.drop = Box::new(|_| false);
    g.net.extend(held.borrow_mut().drain(..));
    g.deliver();
    assert!(matches!(slot.take(), Some(Err(NodeError::Retry))));
}

#[test]
fn a_write_forwarded_to_a_leader_that_is_cut_off_is_told_to_retry() {
    let mut g = Group::new(|_| {});
    g.elect_1();
    g.drop = Box::new(|m| m.from == NodeId(1) || m.to == NodeId(1));
    let slot = Slot::default();
    g.host(3).propose(Bytes::from_static(b"x"), slot.clone());
    g.run(3);
    g.deliver();
    // Member 3 gives the batch up an election timeout later at most.
    for _ in 0..30 {
        if slot.answer.borrow().is_some() {
            break;
        }
        g.tick(3);
    }
    assert!(matches!(slot.take(), Some(Err(NodeError::Retry))));
}

#[test]
fn a_write_placed_at_an_index_a_leaders_snapshot_covers_is_told_to_retry() {
    let mut g = Group::new(|o| o.snapshot_entries = 3);
    g.elect_1();
    // Member 3's write is placed, but the entries never reach member 3
    // until the leader has compacted them away.
    g.drop = Box::new(is_append_to_3);
    let slot = Slot::default();
    g.host(3).propose(Bytes::from_static(b"x"), slot.clone());
    g.run(3);
    g.deliver();
    for _ in 0..10 {
        g.host(1).propose(Bytes::from_static(b"y"), Slot::default());
        g.run(1);
        g.deliver();
    }
    assert!(slot.take().is_none(), "member 3 has not applied it");
    g.drop = Box::new(|_| false);
    for _ in 0..10 {
        g.tick(1);
    }
    assert!(
        g.host(3).raw().snapshot().is_some(),
        "member 3 restored one"
    );
    assert!(
        matches!(slot.take(), Some(Err(NodeError::Retry))),
        "its outcome is unknown here: retry, not wait for ever"
    );
}

#[test]
fn writes_through_a_follower_count_against_its_bound_while_in_flight() {
    let mut g = Group::new(|o| o.proposals_pending_max = 2);
    g.elect_1();
    let slots: Vec<Slot<_>> = (0..2).map(|_| Slot::default()).collect();
    for s in &slots {
        g.host(3).propose(Bytes::from_static(b"x"), s.clone());
    }
    g.run(3);
    let refused = Slot::default();
    g.host(3).propose(Bytes::from_static(b"y"), refused.clone());
    assert!(matches!(
        refused.take(),
        Some(Err(NodeError::Overloaded { pending: 2 }))
    ));
    g.deliver();
    g.tick(1);
    for s in &slots {
        assert!(matches!(s.take(), Some(Ok(_))));
    }
    // Answered: room for two again, forwarded as two batches in flight at
    // once, each answered.
    let again: Vec<Slot<_>> = (0..2).map(|_| Slot::default()).collect();
    for s in &again {
        g.host(3).propose(Bytes::from_static(b"z"), s.clone());
        g.run(3);
    }
    g.deliver();
    g.tick(1);
    for s in &again {
        assert!(matches!(s.take(), Some(Ok(_))), "refused or lost");
    }
}

fn is_append_to_3(m: &Message) -> bool {
    m.to == NodeId(3) && matches!(m.body, MessageBody::Append(_))
}

#[test]
fn a_follower_answers_a_confirmed_read_once_it_has_applied_its_index() {
    let mut g = Group::new(|o| o.reads_pending_max = 2);
    g.elect_1();
    // Member 3 hears heartbeats and read answers but no new entries.
    g.drop = Box::new(is_append_to_3);
    g.host(1).propose(Bytes::from_static(b"x"), Slot::default());
    g.run(1);
    g.deliver();
    let commit = g.host(1).status().commit;
    assert!(g.host(3).status().applied < commit, "member 3 lags");

    let (read, given_up) = (Slot::default(), Slot::default());
    g.host(3).read_index(read.clone());
    g.host(3).read_index(given_up.clone());
    g.run(3);
    g.deliver();
    assert_eq!(read.take(), None, "confirmed at {commit}, not applied yet");
    // Both confirmed, one more waits for the leader: the bound counts all.
    let waiting = Slot::default();
    g.host(3).read_index(waiting.clone());
    let refused = Slot::default();
    g.host(3).read_index(refused.clone());
    assert_eq!(
        refused.take(),
        Some(Err(NodeError::Overloaded { pending: 2 })),
        "two confirmed and one forwarded read, bound 2"
    );

    *given_up.gave_up.borrow_mut() = true;
    g.tick(3);
    g.drop = Box::new(|_| false);
    g.tick(1);
    assert!(g.host(3).status().applied >= commit, "member 3 caught up");
    assert_eq!(read.take(), Some(Ok(commit)), "answered at its index");
    assert_eq!(given_up.take(), None, "its caller gave up: forgotten");
}

#[test]
fn a_leader_that_stops_leading_fails_its_pending_proposals() {
    let mut g = Group::new(|_| {});
    g.elect_1();
    // Member 1 is cut off: its proposal cannot commit, and check-quorum
    // makes it step down.
    g.drop = Box::new(|m| m.from == NodeId(1) || m.to == NodeId(1));
    let slot = Slot::default();
    g.host(1).propose(Bytes::from_static(b"x"), slot.clone());
    g.run(1);
    g.deliver();
    assert!(slot.take().is_none(), "not committed, still leading");
    for _ in 0..30 {
        if g.host(1).status().role != Role::Leader {
            break;
        }
        g.tick(1);
    }
    assert_ne!(g.host(1).status().role, Role::Leader, "check-quorum");
    assert!(matches!(slot.take(), Some(Err(NodeError::Retry))));
}

#[test]
fn a_follower_acknowledges_a_leaders_snapshot_once_it_is_durable() {
    let mut g = Group::new(|o| o.snapshot_entries = 3);
    g.elect_1();
    g.drop = Box::new(|m| m.from == NodeId(3) || m.to == NodeId(3));
    for _ in 0..10 {
        g.host(1).propose(Bytes::from_static(b"x"), Slot::default());
        g.run(1);
        g.deliver();
    }
    let first = g.host(1).storage().first_index();
    assert!(first > LogIndex(2), "the leader compacted its log: {first}");
    assert!(
        g.host(3).status().applied < first,
        "member 3 needs a snapshot"
    );
    let held = g.host(1).raw().snapshot().map(|s| s.data.len());
    assert_eq!(
        held,
        Some(0),
        "a durable snapshot's data is not kept in memory"
    );

    g.drop = Box::new(|_| false);
    let mut acked = None;
    for _ in 0..10 {
        g.host(1).tick();
        g.run(1);
        while let Some((m, sent)) = g.step_one() {
            if let MessageBody::Snapshot(c) = &m.body {
                // Read back from the WAL as it left.
                assert!(c.total_len > 0 && c.data.len() as u64 == c.total_len - c.offset);
            }
            // The first one: Raft would resend a snapshot left unanswered.
            if m.to == NodeId(3) && matches!(m.body, MessageBody::Snapshot(_)) && acked.is_none() {
                acked = Some(sent.iter().any(|r| r.to == NodeId(1)));
            }
        }
    }
    assert_eq!(
        acked,
        Some(true),
        "a snapshot was sent, and answered at once"
    );
    assert_eq!(
        g.applied(3),
        g.applied(1),
        "member 3 restored and caught up"
    );
}

#[test]
fn a_local_snapshot_ready_applies_the_entries_committed_with_it() {
    let (mut host, sm) = leader(|_| {});
    let applied = host.status().applied;
    let slot = Slot::default();
    host.propose(Bytes::from_static(b"x"), slot.clone());
    assert_eq!(host.pump().expect("pump"), Pump::Quiet);
    // The entry's sync ends: it commits, and the next Ready carries it...
    for a in host.take_actions() {
        if let Action::Sync(lsn) = a {
            host.wal().sync_to(lsn).expect("sync");
            host.synced();
        }
    }
    // ...together with a snapshot job's result that ended meanwhile.
    let before = sm.lock().expect("lock").applied;
    host.snapshot_built(applied, Some(Bytes::from(before.to_be_bytes().to_vec())));
    let Pump::SyncNow(lsn) = host.pump().expect("pump") else {
        panic!("a Ready with a snapshot waits for its sync");
    };
    host.wal().sync_to(lsn).expect("sync");
    host.resume().expect("resume");
    run(&mut host);
    let answered = slot.take().expect("answered").expect("applied");
    assert_eq!(answered.index, applied.next());
    assert_eq!(sm.lock().expect("lock").applied, before + 1);
    assert_eq!(host.raw().snapshot().map(|s| s.meta.index), Some(applied));
}

#[test]
fn uncommitted_bytes_past_the_last_snapshot_start_no_job_at_that_index_again() {
    let mut g = Group::new(|o| o.snapshot_log_bytes = Some(200));
    g.elect_1();
    g.host(1)
        .propose(Bytes::from(vec![b'x'; 50]), Slot::default());
    g.run(1);
    g.deliver();
    // Compacted past every applied entry once the log held 200 bytes.
    for _ in 0..5 {
        g.host(1)
            .propose(Bytes::from(vec![b'x'; 50]), Slot::default());
        g.run(1);
        g.deliver();
    }
    let snapshots = |g: &Group| {
        g.counters[0]
            .snapshots
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(snapshots(&g) >= 1, "the log's bytes started a snapshot");
    // Followers hear nothing now: what the leader appends stays
    // uncommitted, however many bytes it holds. Once what was applied
    // is snapshotted, there is nothing new to snapshot.
    g.drop = Box::new(|_| true);
    let mut jobs = Vec::new();
    for _ in 0..10 {
        let host = g.host(1);
        host.propose(Bytes::from(vec![b'y'; 100]), Slot::default());
        common::run_noting_jobs(host, &mut jobs);
    }
    // At most one more job: for what was applied before the drop.
    assert!(jobs.len() <= 1, "snapshot jobs at {jobs:?}");
    assert!(g.host(1).raw().status().log_bytes >= 200);
}
