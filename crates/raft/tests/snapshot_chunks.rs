//! A follower receiving a snapshot in chunks (§7), stepped by hand: the
//! chunks of one transfer assemble in order, a chunk that does not
//! continue the transfer (another snapshot, another length, a gap) is
//! answered with the offset wanted and never mixed in, a snapshot the
//! follower already covers is only acknowledged, and malformed chunks are
//! refused. The interaction script `snapshot_transfer` shows the leader's
//! side; these cases need messages no honest leader sends in that order.

mod common;

use bytes::Bytes;
use common::msg;
use flotilla_raft::message::{AppendResp, Message, MessageBody, SnapshotChunk};
use flotilla_raft::{
    ConfState, Config, Entry, EntryKind, HardState, InitialState, LogIndex, NodeId, RawNode, Ready,
    Role, SnapshotMeta, StepError, Term,
};

fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(1),
        conf_state: ConfState::with_voters((1..=3).map(NodeId)),
    }
}

/// Node 2 (leader of term 1) sends node 1 bytes `offset..` of a snapshot
/// at `index` that is `total` bytes long.
fn chunk(index: u64, offset: u64, total: u64, data: &'static [u8]) -> Message {
    let body = MessageBody::Snapshot(SnapshotChunk {
        meta: meta(index),
        offset,
        total_len: total,
        data: Bytes::from_static(data),
    });
    msg(2, 1, body)
}

fn entry(index: u64) -> Entry {
    Entry {
        term: Term(1),
        index: LogIndex(index),
        kind: EntryKind::Command,
        data: Bytes::from_static(b"e"),
    }
}

/// Node 1 of three holding entries `1..=last` of term 1, `commit` of them
/// committed.
fn follower(last: u64, commit: u64) -> RawNode {
    let cfg = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
    let init = InitialState {
        hard_state: HardState {
            term: Term(1),
            vote: None,
            commit: LogIndex(commit),
        },
        snapshot: None,
        entries: (1..=last).map(entry).collect(),
    };
    RawNode::new(cfg, init).expect("valid config")
}

/// Takes the node's Ready, advances past it, returns it.
fn drain(node: &mut RawNode) -> Ready {
    let rd = node.ready();
    node.advance(&rd);
    rd
}

/// The single answer the node sent in its Ready.
fn answer(rd: &Ready) -> MessageBody {
    let sent: Vec<&Message> = rd.messages.iter().chain(&rd.persisted_messages).collect();
    assert_eq!(sent.len(), 1, "one answer: {sent:?}");
    sent[0].body.clone()
}

fn wants(index: u64, next_offset: u64) -> MessageBody {
    MessageBody::SnapshotResp {
        index: LogIndex(index),
        next_offset,
    }
}

fn acked(index: u64) -> MessageBody {
    MessageBody::AppendResp(AppendResp {
        index: LogIndex(index),
        reject: None,
    })
}

#[test]
fn chunks_assemble_in_order_and_the_snapshot_is_restored() {
    let mut node = follower(0, 0);
    node.step(chunk(5, 0, 8, b"abcd")).expect("first chunk");
    assert_eq!(answer(&drain(&mut node)), wants(5, 4));
    node.step(chunk(5, 4, 8, b"efgh")).expect("last chunk");
    // Waiting to restore the snapshot, the node may not campaign: its
    // state is not the snapshot's yet.
    node.campaign();
    assert_eq!(node.status().role, Role::Follower);
    let rd = drain(&mut node);
    assert_eq!(answer(&rd), acked(5));
    let snap = rd.snapshot.expect("the snapshot is handed out");
    assert_eq!(
        (snap.meta, snap.data),
        (meta(5), Bytes::from_static(b"abcdefgh"))
    );
    assert!(rd.restore_snapshot);
    let status = node.status();
    assert_eq!(
        (status.commit, status.last_index),
        (LogIndex(5), LogIndex(5))
    );
}

#[test]
fn a_chunk_that_does_not_continue_the_transfer_is_not_mixed_in() {
    let mut node = follower(0, 0);
    node.step(chunk(5, 0, 8, b"abcd")).expect("first chunk");
    drain(&mut node);
    // Another snapshot's chunk at the offset wanted: not ours.
    node.step(chunk(6, 4, 8, b"XXXX")).expect("stray chunk");
    assert_eq!(answer(&drain(&mut node)), wants(6, 0));
    // Our snapshot, but another total length.
    node.step(chunk(5, 4, 9, b"XXXX")).expect("stray chunk");
    assert_eq!(answer(&drain(&mut node)), wants(5, 4));
    // A gap: bytes 4..6 are missing.
    node.step(chunk(5, 6, 8, b"XX")).expect("stray chunk");
    assert_eq!(answer(&drain(&mut node)), wants(5, 4));
    node.step(chunk(5, 4, 8, b"efgh")).expect("last chunk");
    let rd = drain(&mut node);
    assert_eq!(answer(&rd), acked(5));
    let data = rd.snapshot.expect("the snapshot is handed out").data;
    assert_eq!(data, Bytes::from_static(b"abcdefgh"));
}

#[test]
fn a_snapshot_the_follower_has_committed_is_only_acknowledged() {
    let mut node = follower(4, 3);
    for index in [2, 3] {
        node.step(chunk(index, 0, 4, b"abcd")).expect("chunk");
        let rd = drain(&mut node);
        assert_eq!(answer(&rd), acked(3), "acknowledged at the commit index");
        assert!(rd.snapshot.is_none());
    }
}

#[test]
fn a_snapshot_ending_in_the_followers_log_only_moves_its_commit() {
    let mut node = follower(4, 1);
    node.step(chunk(3, 0, 4, b"abcd")).expect("whole snapshot");
    let rd = drain(&mut node);
    assert_eq!(answer(&rd), acked(3));
    assert!(
        rd.snapshot.is_none(),
        "the log already holds what it covers"
    );
    let status = node.status();
    assert_eq!(
        (status.commit, status.last_index),
        (LogIndex(3), LogIndex(4))
    );
}

#[test]
fn malformed_chunks_are_refused() {
    let mut node = follower(0, 0);
    let past_end = node.step(chunk(5, 6, 8, b"abc"));
    assert!(
        matches!(past_end, Err(StepError::MalformedSnapshot { .. })),
        "{past_end:?}"
    );
    let at_zero = node.step(chunk(0, 0, 4, b"abcd"));
    assert!(
        matches!(at_zero, Err(StepError::MalformedSnapshot { .. })),
        "{at_zero:?}"
    );
    // Ending exactly at the total length is the last chunk, not an error.
    node.step(chunk(5, 0, 3, b"abc")).expect("a whole snapshot");
}

#[test]
fn a_durable_snapshot_s_data_is_dropped_when_storage_holds_it() {
    for in_storage in [false, true] {
        let mut cfg = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
        cfg.snapshot_data_in_storage = in_storage;
        let mut node = RawNode::new(cfg.clone(), InitialState::default()).expect("valid config");
        node.step(chunk(5, 0, 4, b"abcd")).expect("whole snapshot");
        let rd = node.ready();
        assert_eq!(rd.snapshot.as_ref().map(|s| s.data.len()), Some(4));
        assert_eq!(
            node.snapshot().map(|s| s.data.len()),
            Some(4),
            "kept until durable"
        );
        node.advance(&rd);
        let held = if in_storage { 0 } else { 4 };
        assert_eq!(node.snapshot().map(|s| s.data.len()), Some(held));
        assert_eq!(node.snapshot().map(|s| s.meta.clone()), Some(meta(5)));

        // What storage recovered is durable from the start.
        let init = InitialState {
            hard_state: HardState {
                term: Term(1),
                vote: None,
                commit: LogIndex(5),
            },
            snapshot: rd.snapshot.clone(),
            entries: Vec::new(),
        };
        let node = RawNode::new(cfg, init).expect("valid config");
        assert_eq!(node.snapshot().map(|s| s.data.len()), Some(held));
    }
}
