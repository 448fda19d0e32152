//! Asynchronous writes: a Ready handed out with `advance_handed` is not
//! given out again, and a leader counts its own log toward commitment only
//! once `on_persisted` says it is durable, so acks alone commit only when a
//! majority of the followers' syncs suffices.

use bytes::Bytes;
mod common;

use common::leader;
use flotilla_raft::LogIndex;
use flotilla_raft::message::Message;

fn ack(from: u64, index: u64) -> Message {
    common::ack(from, 1, index)
}

#[test]
fn a_leader_counts_its_own_log_only_once_persisted() {
    let mut node = leader();
    node.propose(Bytes::from_static(b"x")).expect("leader");
    let first = node.ready();
    assert_eq!(first.entries.len(), 1);
    node.advance_handed(&first);
    node.propose(Bytes::from_static(b"y")).expect("leader");
    let second = node.ready();
    // Entry 2 is being written: only entry 3 is handed out now.
    let handed: Vec<u64> = second.entries.iter().map(|e| e.index.get()).collect();
    assert_eq!(handed, [3]);
    node.advance_handed(&second);
    // One follower's ack and an unsynced leader make no majority.
    node.step(ack(2, 3)).expect("ack");
    assert_eq!(node.status().commit, LogIndex(1));
    // The first write is durable: entry 2 commits, entry 3 (still being
    // written here) does not.
    node.on_persisted(first.persist_mark());
    assert_eq!(node.status().commit, LogIndex(2));
    node.on_persisted(second.persist_mark());
    assert_eq!(node.status().commit, LogIndex(3));
}

#[test]
fn two_followers_commit_while_the_leader_still_syncs() {
    let mut node = leader();
    node.propose(Bytes::from_static(b"x")).expect("leader");
    let handed = node.ready();
    node.advance_handed(&handed);
    node.step(ack(2, 2)).expect("ack");
    node.step(ack(3, 2)).expect("ack");
    assert_eq!(node.status().commit, LogIndex(2));
    let rd = node.ready();
    assert_eq!(rd.committed_entries.len(), 1);
    node.advance_handed(&rd);
    node.on_persisted(handed.persist_mark());
    node.on_persisted(rd.persist_mark());
    assert_eq!(node.status().applied, LogIndex(2));
}
