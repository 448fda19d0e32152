//! A leader's answer to a stale acknowledgement: one that moves no match
//! index (a late, duplicated or reordered append answer) changes nothing,
//! in particular it does not take a follower the leader is probing back
//! to pipelined replication and send the probed entries a second time.

mod common;

use bytes::Bytes;
use common::{ack, leader, msg};
use flotilla_raft::message::{Message, MessageBody};
use flotilla_raft::{LogIndex, RawNode};

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
