//! Messages that the core's integration tests step into node 1, and a
//! leader to step them into.

// Each test binary uses some of these.
#![allow(dead_code)]

use flotilla_raft::message::{AppendResp, Message, MessageBody};
use flotilla_raft::{Config, InitialState, LogIndex, NodeId, RawNode, Role, Term};

/// A message from `from` to node 1 in `term`.
pub fn msg(from: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(1),
        term: Term(term),
        body,
    }
}

/// `from` acknowledges node 1's log up to `index`, in `term`.
pub fn ack(from: u64, term: u64, index: u64) -> Message {
    let resp = AppendResp {
        index: LogIndex(index),
        reject: None,
    };
    msg(from, term, MessageBody::AppendResp(resp))
}

/// Node 1 of three, leader of term 1 (pre-vote off) with its no-op
/// (index 1) durable, acknowledged by node 2 and committed.
pub fn leader() -> RawNode {
    let mut cfg = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
    cfg.pre_vote = false;
    let mut node = RawNode::new(cfg, InitialState::default()).expect("valid config");
    node.campaign();
    let rd = node.ready();
    node.advance(&rd);
    let granted = MessageBody::VoteResp {
        pre: false,
        granted: true,
    };
    node.step(msg(2, 1, granted)).expect("vote response");
    assert_eq!(node.status().role, Role::Leader);
    let rd = node.ready();
    node.advance(&rd);
    node.step(ack(2, 1, 1)).expect("ack");
    let rd = node.ready();
    node.advance(&rd);
    assert_eq!(node.status().commit, LogIndex(1));
    node
}
