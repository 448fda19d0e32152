//! The checks `step` makes of a peer's message, at their boundaries: what
//! an honest peer can send is taken, one step past it is refused with the
//! error that names it (`tests/hostile_peers.rs` covers the rest of the
//! message space for panics).

mod common;

use bytes::Bytes;
use flotilla_raft::message::{Message, MessageBody};
use flotilla_raft::{
    Append, AppendResp, Config, Entry, EntryKind, InitialState, LogIndex, NodeId, RawNode,
    RejectHint, StepError, Term, VoteRequest,
};

/// Node 1 of three, a follower of term `term` that has not heard a leader.
fn follower(term: u64) -> RawNode {
    let cfg = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
    let mut init = InitialState::default();
    init.hard_state.term = Term(term);
    RawNode::new(cfg, init).expect("valid config")
}

use common::leader;

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        kind: EntryKind::Command,
        data: Bytes::from_static(b"e"),
    }
}

fn append(term: u64, prev: (u64, u64), entries: Vec<Entry>) -> Message {
    let body = MessageBody::Append(Append {
        prev_index: LogIndex(prev.0),
        prev_term: Term(prev.1),
        entries,
        commit: LogIndex(0),
    });
    common::msg(2, term, body)
}

fn malformed_append(r: Result<(), StepError>) -> &'static str {
    match r {
        Err(StepError::MalformedAppend { what, .. }) => what,
        other => panic!("expected MalformedAppend, got {other:?}"),
    }
}

#[test]
fn append_entries_must_run_on_from_the_previous_entry() {
    let mut n = follower(3);
    // Consecutive, terms rising up to the message's: taken.
    let ok = vec![entry(1, 1), entry(1, 2), entry(3, 3)];
    n.step(append(3, (0, 0), ok)).expect("an honest append");
    assert_eq!(n.status().last_index, LogIndex(3));
    let mut n = follower(3);
    let gap = vec![entry(1, 1), entry(1, 3)];
    let what = malformed_append(n.step(append(3, (0, 0), gap)));
    assert!(what.contains("indices"), "{what}");
    let mut n = follower(3);
    let not_after_prev = vec![entry(1, 1)];
    let what = malformed_append(n.step(append(3, (1, 1), not_after_prev)));
    assert!(what.contains("indices"), "{what}");
    let mut n = follower(3);
    let falling = vec![entry(2, 1), entry(1, 2)];
    let what = malformed_append(n.step(append(3, (0, 0), falling)));
    assert!(what.contains("decrease"), "{what}");
    let mut n = follower(3);
    let below_prev = vec![entry(1, 2)];
    let what = malformed_append(n.step(append(3, (1, 2), below_prev)));
    assert!(what.contains("decrease"), "{what}");
    let mut n = follower(3);
    let past_message = vec![entry(4, 1)];
    let what = malformed_append(n.step(append(3, (0, 0), past_message)));
    assert!(what.contains("past the message"), "{what}");
    assert_eq!(n.status().last_index, LogIndex(0));
}

#[test]
fn indices_over_2_to_the_62_are_refused() {
    let limit = 1u64 << 62;
    let hb = |commit: u64| MessageBody::Heartbeat {
        commit: LogIndex(commit),
        read_seq: 0,
    };
    let mut n = follower(1);
    n.step(common::msg(2, 1, hb(limit))).expect("2^62 is taken");
    let err = n.step(common::msg(2, 1, hb(limit + 1))).unwrap_err();
    assert!(
        matches!(err, StepError::IndexOutOfRange { index, .. } if index == LogIndex(limit + 1)),
        "{err:?}"
    );
}

#[test]
fn an_entry_term_past_the_message_term_is_refused() {
    let vote = |last_term: u64| {
        MessageBody::Vote(VoteRequest {
            pre: false,
            last_index: LogIndex(0),
            last_term: Term(last_term),
            transfer: false,
        })
    };
    // Equal and lower terms are what candidates send.
    for last_term in [0, 2] {
        let mut n = follower(1);
        n.step(common::msg(2, 2, vote(last_term)))
            .expect("an honest vote request");
        assert_eq!(n.status().term, Term(2));
    }
    let mut n = follower(1);
    let err = n.step(common::msg(2, 2, vote(3))).unwrap_err();
    assert!(
        matches!(
            err,
            StepError::TermPastMessage {
                term: Term(3),
                message_term: Term(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        n.status().term,
        Term(1),
        "the refused message changed nothing"
    );
}

#[test]
fn a_message_from_the_node_itself_is_refused() {
    let mut n = follower(1);
    let hb = MessageBody::Heartbeat {
        commit: LogIndex(0),
        read_seq: 0,
    };
    let err = n.step(common::msg(1, 1, hb)).unwrap_err();
    assert_eq!(err, StepError::FromSelf { me: NodeId(1) });
}

fn answer(index: u64, hint: Option<u64>) -> Message {
    let reject = hint.map(|i| RejectHint {
        index: LogIndex(i),
        term: Term(1),
    });
    let body = MessageBody::AppendResp(AppendResp {
        index: LogIndex(index),
        reject,
    });
    common::msg(2, 1, body)
}

fn malformed_answer(r: Result<(), StepError>) -> &'static str {
    match r {
        Err(StepError::MalformedAppendAnswer { what, .. }) => what,
        other => panic!("expected MalformedAppendAnswer, got {other:?}"),
    }
}

#[test]
fn a_leader_refuses_answers_past_its_log() {
    let mut n = leader();
    assert_eq!(n.status().last_index, LogIndex(1));
    n.step(answer(1, None)).expect("an ack of the last entry");
    let what = malformed_answer(n.step(answer(2, None)));
    assert!(what.contains("past this leader's last index"), "{what}");
    // A rejection hints at or before the index it rejects.
    n.step(answer(1, Some(1)))
        .expect("a hint at the rejected index");
    let what = malformed_answer(n.step(answer(1, Some(2))));
    assert!(what.contains("hint past"), "{what}");
}

#[test]
fn a_follower_ignores_append_answers_without_error() {
    // Only a leader knows its log is the one answered; a follower drops a
    // stray answer (stale, from a term it led) as Raft says, quietly.
    let mut n = follower(1);
    n.step(answer(5, None))
        .expect("a stray answer is not an error");
}

#[test]
fn a_second_leader_in_the_leaders_own_term_is_refused() {
    let mut node = leader();
    // Node 2 claims to lead term 1, which node 1 leads: a broken peer.
    // Following it would put two leaders' entries under one term.
    for body in [
        MessageBody::Heartbeat {
            commit: LogIndex(0),
            read_seq: 0,
        },
        append(1, (1, 1), vec![entry(1, 2)]).body,
    ] {
        let r = node.step(common::msg(2, 1, body));
        assert!(matches!(r, Err(StepError::TwoLeaders { .. })), "{r:?}");
        assert_eq!(node.status().role, flotilla_raft::Role::Leader);
    }
}
