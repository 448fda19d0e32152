//! Messages that the core's integration tests step into node 1.

use flotilla_raft::message::{AppendResp, Message, MessageBody};
use flotilla_raft::{LogIndex, NodeId, Term};

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
