//! Peers are untrusted: whatever a peer sends — a message from a node that
//! is not a member, a term from the far future, an append far past the
//! log's end or before its start, a snapshot chunk at a wrong offset, an
//! answer to nothing that was asked, a replayed or reordered message — the
//! core answers with an error or takes it as Raft says, and never panics;
//! its invariants hold after every step and Ready.
//!
//! The numbers are drawn near the node's own state (small terms and
//! indices, ids around the membership) as well as anywhere in `u64`, so
//! that both plausible and absurd messages reach the deep branches.

mod common;

use bytes::Bytes;
use flotilla_raft::{
    Append, AppendResp, ConfState, Config, Entry, EntryKind, InitialState, LogIndex, MemStorage,
    Message, MessageBody, NodeId, RawNode, RejectHint, SnapshotChunk, SnapshotMeta, Term,
    VoteRequest, persist,
};
use proptest::prelude::*;

/// A number near the node's state (0..8), or anywhere.
fn num() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![4 => 0u64..8, 1 => any::<u64>(), 1 => Just(u64::MAX)]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        num(),
        num(),
        0u8..3,
        prop::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(t, i, k, d)| Entry {
            term: Term(t),
            index: LogIndex(i),
            kind: [EntryKind::Noop, EntryKind::Command, EntryKind::ConfChange][k as usize],
            data: Bytes::from(d),
        })
}

fn ids() -> impl Strategy<Value = Vec<NodeId>> {
    prop::collection::vec(num().prop_map(NodeId), 0..4)
}

fn chunk() -> impl Strategy<Value = SnapshotChunk> {
    (
        num(),
        num(),
        ids(),
        ids(),
        num(),
        num(),
        prop::collection::vec(any::<u8>(), 0..24),
    )
        .prop_map(|(i, t, voters, learners, offset, total_len, d)| {
            let meta = SnapshotMeta {
                index: LogIndex(i),
                term: Term(t),
                conf_state: ConfState {
                    voters,
                    outgoing: Vec::new(),
                    learners,
                },
            };
            SnapshotChunk {
                meta,
                offset,
                total_len,
                data: Bytes::from(d),
            }
        })
}

fn body() -> impl Strategy<Value = MessageBody> {
    let idx = || num().prop_map(LogIndex);
    prop_oneof![
        (num(), num(), num(), prop::collection::vec(entry(), 0..4)).prop_map(
            |(p, t, c, entries)| MessageBody::Append(Append {
                prev_index: LogIndex(p),
                prev_term: Term(t),
                entries,
                commit: LogIndex(c),
            })
        ),
        (idx(), prop::option::of((num(), num()))).prop_map(|(index, h)| {
            let reject = h.map(|(i, t)| RejectHint {
                index: LogIndex(i),
                term: Term(t),
            });
            MessageBody::AppendResp(AppendResp { index, reject })
        }),
        (idx(), num()).prop_map(|(commit, read_seq)| MessageBody::Heartbeat { commit, read_seq }),
        num().prop_map(|read_seq| MessageBody::HeartbeatResp { read_seq }),
        (any::<bool>(), idx(), num(), any::<bool>()).prop_map(|(pre, last_index, t, transfer)| {
            MessageBody::Vote(VoteRequest {
                pre,
                last_index,
                last_term: Term(t),
                transfer,
            })
        }),
        (any::<bool>(), any::<bool>())
            .prop_map(|(pre, granted)| MessageBody::VoteResp { pre, granted }),
        chunk().prop_map(MessageBody::Snapshot),
        (idx(), num())
            .prop_map(|(index, next_offset)| MessageBody::SnapshotResp { index, next_offset }),
        Just(MessageBody::TimeoutNow),
        num().prop_map(|ctx| MessageBody::ReadIndex { ctx }),
        (num(), prop::option::of(idx()))
            .prop_map(|(ctx, index)| MessageBody::ReadIndexResp { ctx, index }),
        (num(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(ctx, c)| {
            MessageBody::Propose {
                ctx,
                commands: vec![Bytes::from(c)],
            }
        }),
        (num(), prop::option::of(idx()))
            .prop_map(|(ctx, first)| MessageBody::ProposeResp { ctx, first }),
    ]
}

/// A message to node 1 from anyone: members 2 and 3, non-members, id 0.
fn message() -> impl Strategy<Value = Message> {
    (0u64..7, num(), body()).prop_map(|(from, term, body)| Message {
        from: NodeId(from),
        to: NodeId(1),
        term: Term(term),
        body,
    })
}

/// What the node is doing between hostile messages.
#[derive(Clone, Debug)]
enum Step {
    Peer(Message),
    Tick,
    Propose,
    Read(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => message().prop_map(Step::Peer),
        2 => Just(Step::Tick),
        1 => Just(Step::Propose),
        1 => num().prop_map(Step::Read),
    ]
}

/// Node 1 of three with a few entries; a leader of term 1 if `lead`.
fn node(lead: bool) -> (RawNode, MemStorage) {
    let mut cfg = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
    cfg.pre_vote = false;
    let mut node = RawNode::new(cfg, InitialState::default()).expect("valid config");
    let mut storage = MemStorage::new();
    if lead {
        node.campaign();
        drain(&mut node, &mut storage);
        let granted = MessageBody::VoteResp {
            pre: false,
            granted: true,
        };
        node.step(common::msg(2, 1, granted)).expect("vote");
        drain(&mut node, &mut storage);
        for _ in 0..3 {
            node.propose(Bytes::from_static(b"x")).expect("leader");
        }
        drain(&mut node, &mut storage);
        node.step(common::ack(2, 1, 4)).expect("ack");
        drain(&mut node, &mut storage);
    }
    (node, storage)
}

fn drain(node: &mut RawNode, storage: &mut MemStorage) {
    while node.has_ready() {
        let rd = node.ready();
        let Ok(()) = persist(storage, rd.writes());
        node.advance(&rd);
        node.check_invariants();
    }
}

fn run(lead: bool, steps: Vec<Step>) {
    let (mut n, mut storage) = node(lead);
    for s in steps {
        match s {
            // An error is the core refusing the message: allowed.
            Step::Peer(m) => drop(n.step(m)),
            Step::Tick => n.tick(),
            Step::Propose => drop(n.propose(Bytes::from_static(b"y"))),
            Step::Read(ctx) => n.read_index(ctx),
        }
        n.check_invariants();
        drain(&mut n, &mut storage);
    }
}

#[test]
fn a_term_far_in_the_future_is_refused() {
    let (mut n, _storage) = node(false);
    let hb = MessageBody::Heartbeat {
        commit: LogIndex(0),
        read_seq: 0,
    };
    let far = Message {
        term: Term((1 << 32) + 1),
        ..common::msg(2, 0, hb.clone())
    };
    let err = n.step(far).expect_err("refused");
    assert!(err.to_string().contains("more than 2^32 past"), "{err}");
    assert_eq!(n.status().term, Term(0));
    // 2^32 past is the limit, still taken.
    n.step(common::msg(2, 1 << 32, hb)).expect("taken");
    assert_eq!(n.status().term, Term(1 << 32));
}

#[test]
fn a_node_at_the_last_term_does_not_campaign() {
    let cfg = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
    let mut init = InitialState::default();
    init.hard_state.term = Term(u64::MAX);
    let mut n = RawNode::new(cfg, init).expect("valid config");
    n.campaign();
    for _ in 0..1000 {
        n.tick();
    }
    assert_eq!(n.status().term, Term(u64::MAX));
    assert_eq!(n.status().role, flotilla_raft::Role::Follower);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_leader_survives_any_peer_messages(steps in prop::collection::vec(step(), 1..40)) {
        run(true, steps);
    }

    #[test]
    fn a_follower_survives_any_peer_messages(steps in prop::collection::vec(step(), 1..40)) {
        run(false, steps);
    }
}
