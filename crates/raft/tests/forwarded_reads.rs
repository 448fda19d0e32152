//! Reads a follower forwards to the leader: the answer is taken only by the
//! incarnation that asked, only from the node asked, only once, and a read
//! that gets no answer is dropped after an election timeout.
//!
//! The first test is the shape of two `flotilla sim kv` violations (seeds
//! 867926878 and 180097349): a follower forwarded a read, crashed and
//! restarted; the leader's answer, an old read index, was delayed in the
//! network and reached the new incarnation, which had forwarded a read of
//! its own under the same number and served it at that old index, a value
//! deleted since.

mod common;

use flotilla_raft::message::{Message, MessageBody};
use flotilla_raft::{Config, InitialState, LogIndex, NodeId, RawNode, ReadState, Ready};

/// Node 1 of three, started with PRNG seed `seed`, following leader 2 of
/// term 1.
fn follower(seed: u64) -> RawNode {
    let mut cfg = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
    cfg.seed = seed;
    let mut node = RawNode::new(cfg, InitialState::default()).expect("valid config");
    let hb = MessageBody::Heartbeat {
        commit: LogIndex(0),
        read_seq: 0,
    };
    node.step(common::msg(2, 1, hb)).expect("heartbeat");
    drain(&mut node);
    node
}

fn drain(node: &mut RawNode) -> Ready {
    let rd = node.ready();
    node.advance(&rd);
    rd
}

/// Forwards the application's read `ctx`; returns the id it travels under.
fn forward(node: &mut RawNode, ctx: u64) -> u64 {
    node.read_index(ctx);
    let rd = drain(node);
    let sent: Vec<&Message> = rd.messages.iter().chain(&rd.persisted_messages).collect();
    match sent.as_slice() {
        [
            Message {
                to: NodeId(2),
                body: MessageBody::ReadIndex { ctx: id },
                ..
            },
        ] => *id,
        other => panic!("expected one ReadIndex to the leader, got {other:?}"),
    }
}

fn answer(from: u64, id: u64, index: u64) -> Message {
    let body = MessageBody::ReadIndexResp {
        ctx: id,
        index: Some(LogIndex(index)),
    };
    common::msg(from, 1, body)
}

#[test]
fn a_restarted_follower_ignores_the_answer_to_its_previous_incarnation() {
    let mut before = follower(11);
    let old_id = forward(&mut before, 1);
    // Crash: the node restarts (a new seed per start, as the server and
    // the simulator give) and forwards a new read with the same ctx.
    let mut after = follower(12);
    let new_id = forward(&mut after, 1);
    assert_ne!(old_id, new_id, "ids must differ across starts");
    // The leader's answer to the old read (index 5) arrives late.
    after.step(answer(2, old_id, 5)).expect("stale answer");
    let rd = drain(&mut after);
    assert!(rd.read_states.is_empty(), "stale answer taken: {rd:?}");
    assert!(rd.dropped_reads.is_empty());
    // The answer to the new read (index 9) is the one served.
    after.step(answer(2, new_id, 9)).expect("answer");
    let rd = drain(&mut after);
    let want = ReadState {
        ctx: 1,
        index: LogIndex(9),
    };
    assert_eq!(rd.read_states, [want]);
}

#[test]
fn an_answer_counts_once_and_only_from_the_node_asked() {
    let mut node = follower(3);
    let id = forward(&mut node, 40);
    node.step(answer(3, id, 7))
        .expect("answer from a non-leader");
    assert!(drain(&mut node).read_states.is_empty());
    node.step(answer(2, id, 7)).expect("answer");
    assert_eq!(drain(&mut node).read_states.len(), 1);
    // The network duplicates the answer: the read is not answered twice.
    node.step(answer(2, id, 7)).expect("duplicate");
    assert!(drain(&mut node).read_states.is_empty());
}

#[test]
fn a_refused_forwarded_read_is_dropped_for_a_retry() {
    let mut node = follower(4);
    let id = forward(&mut node, 8);
    let refused = MessageBody::ReadIndexResp {
        ctx: id,
        index: None,
    };
    node.step(common::msg(2, 1, refused)).expect("refusal");
    let rd = drain(&mut node);
    assert_eq!(rd.dropped_reads, [8]);
    assert!(rd.read_states.is_empty());
}

#[test]
fn an_unanswered_forwarded_read_is_dropped_after_an_election_timeout() {
    let mut node = follower(5);
    let election_ticks = Config::new(NodeId(1), vec![NodeId(1)]).election_ticks;
    let id = forward(&mut node, 21);
    // Keep the leader alive so the node does not campaign meanwhile.
    let hb = || {
        let body = MessageBody::Heartbeat {
            commit: LogIndex(0),
            read_seq: 0,
        };
        common::msg(2, 1, body)
    };
    let half = election_ticks / 2;
    let mut later = None;
    for t in 1..election_ticks + half {
        if t == half {
            later = Some(forward(&mut node, 22));
        }
        node.tick();
        node.step(hb()).expect("heartbeat");
        let dropped = drain(&mut node).dropped_reads;
        // Each read is dropped an election timeout after it was sent, the
        // later one not with the earlier.
        let want: &[u64] = if t == election_ticks {
            &[21]
        } else if t == election_ticks + half - 1 {
            &[22]
        } else {
            &[]
        };
        assert_eq!(dropped, want, "tick {t}");
    }
    assert!(later.is_some());
    // A late answer after the drop is ignored.
    node.step(answer(2, id, 3)).expect("late answer");
    assert!(drain(&mut node).read_states.is_empty());
}

#[test]
fn a_new_leader_fails_the_reads_forwarded_to_the_old_one() {
    let mut node = follower(6);
    forward(&mut node, 77);
    let hb = MessageBody::Heartbeat {
        commit: LogIndex(0),
        read_seq: 0,
    };
    node.step(common::msg(3, 2, hb))
        .expect("heartbeat of term 2");
    assert_eq!(drain(&mut node).dropped_reads, [77]);
}

#[test]
fn a_deposed_leader_fails_its_own_reads_and_refuses_its_followers() {
    let mut node = common::leader();
    // Two reads wait for a heartbeat round: this node's own, and one
    // that follower 3 forwarded.
    node.read_index(5);
    node.step(common::msg(3, 1, MessageBody::ReadIndex { ctx: 9 }))
        .expect("forwarded read");
    drain(&mut node);
    let hb = MessageBody::Heartbeat {
        commit: LogIndex(0),
        read_seq: 0,
    };
    node.step(common::msg(2, 2, hb)).expect("a newer leader");
    let rd = drain(&mut node);
    assert_eq!(rd.dropped_reads, [5]);
    let refusals: Vec<&Message> = rd
        .messages
        .iter()
        .chain(&rd.persisted_messages)
        .filter(|m| matches!(m.body, MessageBody::ReadIndexResp { .. }))
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].to, NodeId(3));
    assert_eq!(
        refusals[0].body,
        MessageBody::ReadIndexResp {
            ctx: 9,
            index: None
        }
    );
}
