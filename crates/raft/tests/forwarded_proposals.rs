//! Proposals a follower forwards to the leader: each batch gets exactly
//! one outcome, taken only from the node asked and only by the
//! incarnation that asked; a batch with no answer, or forwarded to a
//! leader that is no longer the leader, is given up for a retry; a
//! leader appends a batch only from a member, and only while it leads.

mod common;

use bytes::Bytes;
use flotilla_raft::message::{Message, MessageBody};
use flotilla_raft::{
    Config, ForwardOutcome, InitialState, LogIndex, NodeId, ProposeError, RawNode, Ready, Term,
};

/// Node 1 of three, started with PRNG seed `seed`, following leader 2 of
/// term 1.
fn follower(seed: u64) -> RawNode {
    let mut cfg = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
    cfg.seed = seed;
    let mut node = RawNode::new(cfg, InitialState::default()).expect("valid config");
    node.step(common::msg(2, 1, heartbeat()))
        .expect("heartbeat");
    drain(&mut node);
    node
}

fn heartbeat() -> MessageBody {
    MessageBody::Heartbeat {
        commit: LogIndex(0),
        read_seq: 0,
    }
}

fn drain(node: &mut RawNode) -> Ready {
    let rd = node.ready();
    node.advance(&rd);
    rd
}

fn sent(rd: &Ready) -> Vec<&Message> {
    rd.messages.iter().chain(&rd.persisted_messages).collect()
}

fn commands(n: u8) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(vec![i])).collect()
}

/// Forwards `n` commands as the application's batch `ctx`; returns the
/// id the batch travels under.
fn forward(node: &mut RawNode, ctx: u64, n: u8) -> u64 {
    node.forward_proposals(ctx, commands(n)).expect("forwarded");
    let rd = drain(node);
    match sent(&rd).as_slice() {
        [
            Message {
                to: NodeId(2),
                body:
                    MessageBody::Propose {
                        ctx: id,
                        commands: c,
                    },
                ..
            },
        ] if *c == commands(n) => *id,
        other => panic!("expected one Propose of {n} to the leader, got {other:?}"),
    }
}

fn placed(from: u64, term: u64, id: u64, first: Option<u64>) -> Message {
    let body = MessageBody::ProposeResp {
        ctx: id,
        first: first.map(LogIndex),
    };
    common::msg(from, term, body)
}

#[test]
fn a_placed_batch_names_its_first_index_and_the_leaders_term_once() {
    let mut node = follower(1);
    let id = forward(&mut node, 40, 3);
    node.step(placed(3, 1, id, Some(7)))
        .expect("from a non-leader");
    assert!(drain(&mut node).forwarded.is_empty(), "not the node asked");
    node.step(placed(2, 1, id, Some(7))).expect("answer");
    let want = ForwardOutcome {
        ctx: 40,
        placed: Some((LogIndex(7), Term(1))),
    };
    assert_eq!(drain(&mut node).forwarded, [want]);
    node.step(placed(2, 1, id, Some(7))).expect("duplicate");
    assert!(drain(&mut node).forwarded.is_empty(), "counted twice");
}

#[test]
fn a_restarted_follower_ignores_the_answer_to_its_previous_incarnation() {
    let mut before = follower(11);
    let old_id = forward(&mut before, 1, 1);
    let mut after = follower(12);
    let new_id = forward(&mut after, 1, 1);
    assert_ne!(old_id, new_id, "ids must differ across starts");
    after.step(placed(2, 1, old_id, Some(5))).expect("stale");
    assert!(drain(&mut after).forwarded.is_empty(), "stale answer taken");
    after.step(placed(2, 1, new_id, Some(9))).expect("answer");
    let outcome = drain(&mut after).forwarded;
    assert_eq!(outcome[0].placed, Some((LogIndex(9), Term(1))));
}

#[test]
fn a_refused_or_unanswered_batch_is_given_up_once() {
    let mut node = follower(4);
    let refused = forward(&mut node, 8, 1);
    node.step(placed(2, 1, refused, None)).expect("refusal");
    let none = |ctx| ForwardOutcome { ctx, placed: None };
    assert_eq!(drain(&mut node).forwarded, [none(8)]);

    let election_ticks = Config::new(NodeId(1), vec![NodeId(1)]).election_ticks;
    let lost = forward(&mut node, 21, 2);
    for t in 1..=election_ticks {
        node.tick();
        node.step(common::msg(2, 1, heartbeat()))
            .expect("heartbeat");
        let want: &[ForwardOutcome] = if t == election_ticks {
            &[none(21)]
        } else {
            &[]
        };
        assert_eq!(drain(&mut node).forwarded, want, "tick {t}");
    }
    node.step(placed(2, 1, lost, Some(3))).expect("late answer");
    assert!(
        drain(&mut node).forwarded.is_empty(),
        "taken after the drop"
    );
}

#[test]
fn a_new_leader_gives_up_the_batches_forwarded_to_the_old_one() {
    let mut node = follower(6);
    let id = forward(&mut node, 77, 1);
    node.step(common::msg(3, 2, heartbeat()))
        .expect("leader of term 2");
    let outcome = drain(&mut node).forwarded;
    assert_eq!(
        outcome,
        [ForwardOutcome {
            ctx: 77,
            placed: None
        }]
    );
    node.step(placed(2, 1, id, Some(2)))
        .expect("old leader's answer");
    assert!(drain(&mut node).forwarded.is_empty());
}

#[test]
fn a_node_that_knows_no_leader_refuses_and_a_leader_places_at_once() {
    let cfg = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
    let mut lost = RawNode::new(cfg, InitialState::default()).expect("valid config");
    assert_eq!(
        lost.forward_proposals(1, commands(1)),
        Err(ProposeError::NotLeader { leader_hint: None })
    );
    let mut leader = common::leader();
    leader.forward_proposals(5, commands(2)).expect("proposed");
    let rd = drain(&mut leader);
    let want = ForwardOutcome {
        ctx: 5,
        placed: Some((LogIndex(2), Term(1))),
    };
    assert_eq!(rd.forwarded, [want]);
    let appended: Vec<u64> = rd.entries.iter().map(|e| e.index.get()).collect();
    assert_eq!(appended, [2, 3]);
}

/// What node 1, leading, answers a `Propose` of `n` commands from `from`.
fn leader_answer(leader: &mut RawNode, from: u64, n: u8) -> (Option<LogIndex>, usize) {
    let body = MessageBody::Propose {
        ctx: 99,
        commands: commands(n),
    };
    leader.step(common::msg(from, 1, body)).expect("propose");
    let rd = drain(leader);
    let answers: Vec<&Message> = sent(&rd)
        .into_iter()
        .filter(|m| matches!(m.body, MessageBody::ProposeResp { .. }))
        .collect();
    match answers.as_slice() {
        [m] if m.to == NodeId(from) => match m.body {
            MessageBody::ProposeResp { ctx: 99, first } => (first, rd.entries.len()),
            _ => panic!("answer under another id: {m:?}"),
        },
        other => panic!("expected one answer to {from}, got {other:?}"),
    }
}

#[test]
fn a_leader_places_a_members_batch_and_refuses_a_stranger_or_an_empty_one() {
    let mut leader = common::leader();
    assert_eq!(leader_answer(&mut leader, 3, 2), (Some(LogIndex(2)), 2));
    assert_eq!(leader_answer(&mut leader, 2, 1), (Some(LogIndex(4)), 1));
    assert_eq!(leader_answer(&mut leader, 7, 1), (None, 0), "not a member");
    assert_eq!(leader_answer(&mut leader, 2, 0), (None, 0), "empty");
}

#[test]
fn a_follower_refuses_a_batch_it_was_sent() {
    let mut node = follower(9);
    let body = MessageBody::Propose {
        ctx: 4,
        commands: commands(1),
    };
    node.step(common::msg(3, 1, body)).expect("propose");
    let rd = drain(&mut node);
    assert!(rd.entries.is_empty());
    let refusal = MessageBody::ProposeResp {
        ctx: 4,
        first: None,
    };
    assert!(
        sent(&rd)
            .iter()
            .any(|m| m.to == NodeId(3) && m.body == refusal),
        "{rd:?}"
    );
}

#[test]
fn a_follower_that_forwarded_is_told_the_commit_at_once_and_no_other() {
    let mut leader = common::leader();
    leader
        .step(common::ack(3, 1, 1))
        .expect("member 3 replicates");
    drain(&mut leader);
    let (first, _) = leader_answer(&mut leader, 3, 1);
    assert_eq!(first, Some(LogIndex(2)));
    leader.step(common::ack(2, 1, 2)).expect("quorum");
    let rd = drain(&mut leader);
    assert_eq!(leader.status().commit, LogIndex(2));
    let appends: Vec<(NodeId, usize, LogIndex)> = sent(&rd)
        .into_iter()
        .filter_map(|m| match &m.body {
            MessageBody::Append(a) => Some((m.to, a.entries.len(), a.commit)),
            _ => None,
        })
        .collect();
    assert_eq!(
        appends,
        [(NodeId(3), 0, LogIndex(2))],
        "only member 3 waits"
    );
    // Told once: another commit-free step sends it nothing more.
    leader.step(common::ack(3, 1, 2)).expect("member 3 acks");
    let rd = drain(&mut leader);
    assert!(
        !sent(&rd)
            .iter()
            .any(|m| matches!(m.body, MessageBody::Append(_))),
        "{rd:?}"
    );
}
