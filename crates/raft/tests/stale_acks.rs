//! A leader's answer to a stale acknowledgement: one that moves no match
//! index (a late, duplicated or reordered append answer) changes nothing,
//! in particular it does not take a follower the leader is probing back
//! to pipelined replication and send the probed entries a second time;
//! and a late append or snapshot answer does not restart or redirect a
//! snapshot transfer.

mod common;

use bytes::Bytes;
use common::{ack, leader, msg};
use flotilla_raft::message::{Message, MessageBody};
use flotilla_raft::{LogIndex, RawNode};

/// Everything the node sends to `to` in its next Ready.
fn sent_to(node: &mut RawNode, to: u64) -> Vec<Message> {
    let rd = node.ready();
    node.advance(&rd);
    rd.messages
        .into_iter()
        .chain(rd.persisted_messages)
        .filter(|m| m.to.get() == to)
        .collect()
}

/// The leader of `common::leader` with entry 2 committed and its log
/// compacted up to it, sending node 3 (which never answered) the
/// snapshot: its entries are gone.
fn leader_sending_snapshot_to_3() -> RawNode {
    let mut node = leader();
    node.propose(Bytes::from_static(b"x")).expect("leader");
    sent_to(&mut node, 2);
    node.step(ack(2, 1, 2)).expect("ack");
    sent_to(&mut node, 2);
    node.compact(LogIndex(2), Bytes::from_static(b"snapshot"))
        .expect("entry 2 is applied");
    sent_to(&mut node, 2);
    node.step(heartbeat_answer(3)).expect("heartbeat answer");
    let chunk = sent_to(&mut node, 3);
    assert!(
        matches!(chunk.as_slice(), [m] if matches!(m.body, MessageBody::Snapshot(_))),
        "{chunk:?}"
    );
    node
}

fn snapshot_answer(index: u64, next_offset: u64) -> Message {
    let body = MessageBody::SnapshotResp {
        index: LogIndex(index),
        next_offset,
    };
    msg(3, 1, body)
}

#[test]
fn a_stale_ack_below_the_snapshot_does_not_restart_the_transfer() {
    let mut node = leader_sending_snapshot_to_3();
    // An answer to the no-op's append, long delayed: 3 matches index 1,
    // which the snapshot (index 2) covers; the transfer goes on.
    node.step(ack(3, 1, 1)).expect("stale ack");
    assert_eq!(sent_to(&mut node, 3), []);
}

#[test]
fn an_answer_about_another_snapshot_is_ignored() {
    let mut node = leader_sending_snapshot_to_3();
    // Claiming all 8 bytes arrived asks for nothing more: the follower's
    // append answer, once it installed the snapshot, ends the transfer.
    node.step(snapshot_answer(2, 8)).expect("answer at the end");
    assert_eq!(sent_to(&mut node, 3), []);
    node.step(snapshot_answer(1, 0))
        .expect("answer about snapshot 1");
    assert_eq!(sent_to(&mut node, 3), []);
    // Once 3 installed the snapshot, a late answer about it is ignored too.
    node.step(ack(3, 1, 2)).expect("installed");
    sent_to(&mut node, 3);
    node.step(snapshot_answer(2, 4)).expect("late answer");
    assert_eq!(sent_to(&mut node, 3), []);
}

fn heartbeat_answer(from: u64) -> Message {
    msg(from, 1, MessageBody::HeartbeatResp { read_seq: 0 })
}

/// The appends the node sends to `to` in its next Ready.
fn appends_to(node: &mut RawNode, to: u64) -> Vec<Message> {
    let rd = node.ready();
    node.advance(&rd);
    rd.messages
        .into_iter()
        .chain(rd.persisted_messages)
        .filter(|m| m.to.get() == to && matches!(m.body, MessageBody::Append(_)))
        .collect()
}

#[test]
fn a_stale_ack_does_not_end_a_probe() {
    let mut node = leader();
    node.propose(Bytes::from_static(b"x")).expect("leader");
    assert_eq!(appends_to(&mut node, 2).len(), 1, "entry 2 is pipelined");
    // The append was lost: two heartbeat answers without progress make
    // the leader probe node 2 from its match index (1) again.
    node.step(heartbeat_answer(2)).expect("heartbeat answer");
    assert!(
        appends_to(&mut node, 2).is_empty(),
        "still counted in flight"
    );
    node.step(heartbeat_answer(2)).expect("heartbeat answer");
    let probe = appends_to(&mut node, 2);
    assert_eq!(probe.len(), 1, "one probe: {probe:?}");
    // A late duplicate of node 2's answer to the no-op's append.
    node.step(ack(2, 1, 1)).expect("stale ack");
    assert_eq!(appends_to(&mut node, 2), [], "the probe is still in flight");
    assert_eq!(node.status().commit, LogIndex(1));
    // The probe's own answer moves node 2 on and commits entry 2.
    node.step(ack(2, 1, 2)).expect("ack");
    assert_eq!(node.status().commit, LogIndex(2));
}
