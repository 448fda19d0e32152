//! Issue 19, "peers are no softer than clients", on real servers: a batch
//! on the peer service holding bytes that are no message, a message
//! addressed to another member, a term far in the future, an append past
//! any log's reach, an append whose entries skip an index, and a snapshot
//! chunk whose data runs past its stated length, sent to the leader and
//! to a follower, is dropped with a log line and counted (so is every
//! message tagged for a group the server does not host, and a batch whose
//! group tags do not match its messages is refused); every member
//! keeps serving, and the cluster's term does not move.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use std::time::Duration;

use bytes::Bytes;
use cluster_common::Cluster;
use cluster_common::workload::put;
use flotilla_proto::raft::v1::MessageBatch;
use flotilla_proto::raft::v1::raft_transport_client::RaftTransportClient;
use flotilla_raft::message::{Append, Message, MessageBody};
use flotilla_raft::{
    ConfState, Encode, Entry, EntryKind, LogIndex, NodeId, SnapshotChunk, SnapshotMeta, Term,
};
use flotilla_testkit::wait_for;

/// What a broken or hostile member `from` sends `to` in `term`.
fn garbage(from: u64, to: u64, term: u64) -> Vec<Bytes> {
    let msg = |to: u64, term: u64, body| {
        Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(term),
            body,
        }
        .to_bytes()
    };
    let entry = |index: u64| Entry {
        term: Term(term),
        index: LogIndex(index),
        kind: EntryKind::Command,
        data: Bytes::from_static(b"x"),
    };
    let append = |prev: u64, entries| {
        MessageBody::Append(Append {
            prev_index: LogIndex(prev),
            prev_term: Term(term),
            entries,
            commit: LogIndex(0),
        })
    };
    let heartbeat = MessageBody::Heartbeat {
        commit: LogIndex(0),
        read_seq: 0,
    };
    let chunk = MessageBody::Snapshot(SnapshotChunk {
        meta: SnapshotMeta {
            index: LogIndex(10),
            term: Term(term),
            conf_state: ConfState {
                voters: vec![NodeId(1), NodeId(2), NodeId(3)],
                outgoing: Vec::new(),
                learners: Vec::new(),
            },
        },
        offset: 5,
        total_len: 6,
        data: Bytes::from_static(b"too long"),
    });
    let other = if to == 1 { 2 } else { 1 };
    vec![
        Bytes::from_static(b"\xff\xfe not a raft message"),
        msg(other, term, heartbeat.clone()),
        msg(to, term + (1 << 40), heartbeat),
        msg(to, term, append((1 << 62) + 7, vec![entry((1 << 62) + 8)])),
        msg(to, term, append(0, vec![entry(1), entry(3)])),
        msg(to, term, chunk),
    ]
}

#[test]
fn garbage_from_a_peer_is_dropped_logged_and_counted() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("peer_garbage", 3);
    let leader = cluster.wait_leader(&rt);
    let client = {
        let _g = rt.enter();
        cluster.client()
    };
    rt.block_on(client.put(put("before", "1"))).unwrap();
    let header = rt
        .block_on(client.status_of(leader))
        .unwrap()
        .header
        .unwrap();
    let term = header.raft_term;
    let follower = (leader + 1) % 3;
    for target in [leader, follower] {
        let to = target as u64 + 1;
        // The third member poses as the sender.
        let from = (0..3u64)
            .map(|i| i + 1)
            .find(|&i| i != to && i != leader as u64 + 1);
        let from = from.unwrap_or(if to == 1 { 2 } else { 1 });
        let batch = MessageBatch {
            cluster_id: header.cluster_id,
            from,
            messages: garbage(from, to, term),
            ..Default::default()
        };
        let mut peer = RaftTransportClient::new(client.channel(target).unwrap());
        let summary = rt
            .block_on(peer.send(tokio_stream::iter([batch])))
            .expect("the peer service answers")
            .into_inner();
        // Only the messages that decode, addressed to it, reach the node.
        assert_eq!(summary.received, 4, "member {to}");
        tagged_batches(&rt, &mut peer, header.cluster_id, from, to, term);
        let log = cluster.log(target);
        wait_for("the refusals in the log", Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&log).ok()?;
            (text.contains("dropped a peer message that does not decode")
                && text.contains("dropped a peer message: "))
            .then_some(())
        });
    }
    // Every member serves, and no refused message moved the term.
    for i in 0..3 {
        let status = rt.block_on(client.status_of(i)).unwrap();
        assert_eq!(status.header.unwrap().raft_term, term, "member {}", i + 1);
    }
    rt.block_on(client.put(put("after", "2"))).unwrap();
    let got = rt.block_on(client.get("after")).unwrap();
    assert_eq!(got.as_deref(), Some(&b"2"[..]));
}

/// Tagged for a group this one-group server does not host, no message
/// reaches member `to`; tags that do not match the messages refuse the
/// batch.
fn tagged_batches(
    rt: &tokio::runtime::Runtime,
    peer: &mut RaftTransportClient<tonic::transport::Channel>,
    cluster_id: u64,
    from: u64,
    to: u64,
    term: u64,
) {
    let messages = garbage(from, to, term);
    let tagged = |groups: Vec<u64>| MessageBatch {
        cluster_id,
        from,
        messages: messages.clone(),
        groups,
        ..Default::default()
    };
    let other_group = tagged(vec![7; messages.len()]);
    let summary = rt
        .block_on(peer.send(tokio_stream::iter([other_group])))
        .expect("the peer service answers")
        .into_inner();
    assert_eq!(summary.received, 0, "member {to}");
    let refused = rt
        .block_on(peer.send(tokio_stream::iter([tagged(vec![0])])))
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
}
