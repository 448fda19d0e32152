//! The Raft paper's Figure 8, as a unit test of the commit rule: a leader
//! must not commit an entry of an earlier term by counting replicas, only by
//! committing an entry of its own term above it (§5.4.2).
//!
//! The simulator cannot catch a broken rule here on its own: a new leader's
//! no-op usually travels in the same append as the old entries, so a quorum
//! acknowledges both at once. This test acknowledges the old entry alone, as
//! a follower does when an earlier, shorter append arrives late.

use bytes::Bytes;
mod common;

use flotilla_raft::message::{Append, Message, MessageBody};
use flotilla_raft::{
    Config, Entry, EntryKind, HardState, InitialState, LogIndex, NodeId, RawNode, Role, Term,
};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        kind: EntryKind::Command,
        data: Bytes::from_static(b"x"),
    }
}

/// Node 1 of five, holding entries 1 (term 1) and 2 (term 2) and last seen
/// in term 3, elected leader of term 4 by nodes 2 and 3.
fn leader_of_term_4() -> RawNode {
    let mut cfg = Config::new(NodeId(1), (1..=5).map(NodeId).collect());
    cfg.pre_vote = false;
    let init = InitialState {
        hard_state: HardState {
            term: Term(3),
            vote: None,
            commit: LogIndex(1),
        },
        snapshot: None,
        entries: vec![entry(1, 1), entry(2, 2)],
    };
    let mut node = RawNode::new(cfg, init).expect("valid config");
    node.campaign();
    for from in [2, 3] {
        let granted = MessageBody::VoteResp {
            pre: false,
            granted: true,
        };
        node.step(msg(from, granted)).expect("vote response");
    }
    let status = node.status();
    assert_eq!((status.role, status.term), (Role::Leader, Term(4)));
    node
}

fn msg(from: u64, body: MessageBody) -> Message {
    common::msg(from, 4, body)
}

fn ack(from: u64, index: u64) -> Message {
    common::ack(from, 4, index)
}

/// Drains and persists what the leader has, so its own log counts.
fn flush(node: &mut RawNode) -> Vec<Message> {
    let rd = node.ready();
    node.advance(&rd);
    rd.messages
        .into_iter()
        .chain(rd.persisted_messages)
        .collect()
}

#[test]
fn an_old_term_entry_on_a_quorum_is_not_committed_by_counting() {
    let mut node = leader_of_term_4();
    let sent = flush(&mut node);
    let noop_sent = sent.iter().any(|m| match &m.body {
        MessageBody::Append(Append { entries, .. }) => entries
            .iter()
            .any(|e| e.index == LogIndex(3) && e.term == Term(4)),
        _ => false,
    });
    assert!(noop_sent, "the new leader replicates its no-op: {sent:?}");

    // Leader, 2 and 3 hold entry 2 of term 2: a quorum of five.
    for from in [2, 3] {
        node.step(ack(from, 2)).expect("ack");
    }
    flush(&mut node);
    assert_eq!(
        node.status().commit,
        LogIndex(1),
        "entry 2 (term 2) must wait for an entry of term 4"
    );

    // The no-op of term 4 reaches the same quorum: both commit together.
    for from in [2, 3] {
        node.step(ack(from, 3)).expect("ack");
    }
    flush(&mut node);
    assert_eq!(node.status().commit, LogIndex(3));
}
