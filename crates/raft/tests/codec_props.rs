//! The wire and disk codec: every message round-trips, and untrusted bytes
//! (random, truncated, bit-flipped) give an error or another valid value,
//! never a panic.

use bytes::Bytes;
use flotilla_raft::{
    Append, AppendResp, ConfState, Decode, Encode, Entry, EntryKind, HardState, LogIndex, Message,
    MessageBody, NodeId, RejectHint, SnapshotChunk, SnapshotMeta, Term, VoteRequest,
};
use proptest::prelude::*;

fn entry() -> impl Strategy<Value = Entry> {
    (
        any::<u64>(),
        any::<u64>(),
        0u8..3,
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(t, i, k, d)| Entry {
            term: Term(t),
            index: LogIndex(i),
            kind: [EntryKind::Noop, EntryKind::Command, EntryKind::ConfChange][k as usize],
            data: Bytes::from(d),
        })
}

fn ids() -> impl Strategy<Value = Vec<NodeId>> {
    prop::collection::vec(any::<u64>().prop_map(NodeId), 0..5)
}

fn meta() -> impl Strategy<Value = SnapshotMeta> {
    (any::<u64>(), any::<u64>(), ids(), ids(), ids()).prop_map(
        |(i, t, voters, outgoing, learners)| SnapshotMeta {
            index: LogIndex(i),
            term: Term(t),
            conf_state: ConfState {
                voters,
                outgoing,
                learners,
            },
        },
    )
}

fn body() -> impl Strategy<Value = MessageBody> {
    let idx = any::<u64>().prop_map(LogIndex);
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(entry(), 0..4)
        )
            .prop_map(|(p, t, c, entries)| MessageBody::Append(Append {
                prev_index: LogIndex(p),
                prev_term: Term(t),
                entries,
                commit: LogIndex(c),
            })),
        (idx.clone(), prop::option::of((any::<u64>(), any::<u64>()))).prop_map(|(index, h)| {
            let reject = h.map(|(i, t)| RejectHint {
                index: LogIndex(i),
                term: Term(t),
            });
            MessageBody::AppendResp(AppendResp { index, reject })
        }),
        (idx.clone(), any::<u64>())
            .prop_map(|(commit, read_seq)| MessageBody::Heartbeat { commit, read_seq }),
        any::<u64>().prop_map(|read_seq| MessageBody::HeartbeatResp { read_seq }),
        (any::<bool>(), idx.clone(), any::<u64>(), any::<bool>()).prop_map(
            |(pre, last_index, t, transfer)| {
                MessageBody::Vote(VoteRequest {
                    pre,
                    last_index,
                    last_term: Term(t),
                    transfer,
                })
            }
        ),
        (any::<bool>(), any::<bool>())
            .prop_map(|(pre, granted)| MessageBody::VoteResp { pre, granted }),
        (
            meta(),
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(meta, offset, total_len, d)| MessageBody::Snapshot(
                SnapshotChunk {
                    meta,
                    offset,
                    total_len,
                    data: Bytes::from(d),
                }
            )),
        (idx.clone(), any::<u64>())
            .prop_map(|(index, next_offset)| MessageBody::SnapshotResp { index, next_offset }),
        Just(MessageBody::TimeoutNow),
        any::<u64>().prop_map(|ctx| MessageBody::ReadIndex { ctx }),
        (any::<u64>(), prop::option::of(idx.clone()))
            .prop_map(|(ctx, index)| MessageBody::ReadIndexResp { ctx, index }),
        (
            any::<u64>(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..4)
        )
            .prop_map(|(ctx, cs)| MessageBody::Propose {
                ctx,
                commands: cs.into_iter().map(Bytes::from).collect(),
            }),
        (any::<u64>(), prop::option::of(idx))
            .prop_map(|(ctx, first)| MessageBody::ProposeResp { ctx, first }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (any::<u64>(), any::<u64>(), any::<u64>(), body()).prop_map(|(f, t, term, body)| Message {
        from: NodeId(f),
        to: NodeId(t),
        term: Term(term),
        body,
    })
}

proptest! {
    #[test]
    fn messages_round_trip(m in message()) {
        let bytes = m.to_bytes();
        prop_assert_eq!(Message::from_bytes(&bytes), Ok(m));
    }

    #[test]
    fn hard_state_round_trips(t in any::<u64>(), v in any::<u64>(), c in any::<u64>()) {
        let hs = HardState { term: Term(t), vote: (v != 0).then_some(NodeId(v)), commit: LogIndex(c) };
        prop_assert_eq!(HardState::from_bytes(&hs.to_bytes()), Ok(hs));
    }

    #[test]
    fn truncated_messages_are_errors(m in message(), cut in any::<prop::sample::Index>()) {
        let bytes = m.to_bytes();
        let cut = cut.index(bytes.len());
        prop_assert!(Message::from_bytes(&bytes.slice(..cut)).is_err());
    }

    #[test]
    fn corrupt_or_random_bytes_never_panic(
        m in message(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        noise in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = m.to_bytes().to_vec();
        let at = flip.index(bytes.len());
        bytes[at] ^= 1 << bit;
        let _ = Message::from_bytes(&Bytes::from(bytes));
        let _ = Message::from_bytes(&Bytes::from(noise.clone()));
        let _ = Entry::from_bytes(&Bytes::from(noise));
    }
}
