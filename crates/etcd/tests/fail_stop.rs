//! A committed entry the state machine cannot read stops the node with
//! an error naming the entry, what was wrong and the recovery, instead of
//! being skipped (one it reads but refuses, such as an empty key, is
//! answered instead: `crates/cli/tests/refusals.rs`): replicas of a
//! newer version that can apply it would otherwise diverge from this one
//! (a rolling upgrade meeting a new operation). The entry stays in the
//! log, so an upgraded member replays it on restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // not every test uses every part
mod common;

use std::time::Duration;

use bytes::Bytes;
use flotilla_runtime::{FatalError, NodeError};

#[tokio::test]
async fn an_undecodable_committed_command_stops_the_node() {
    let single = common::single_voter("fail-stop", |_| {}).await;
    let node = single.node;
    let _scratch = single.scratch;

    // Bytes that are no KV command, proposed straight to the Raft task
    // (the Proposals service refuses them before that).
    let proposed = tokio::time::timeout(
        Duration::from_secs(30),
        node.handle
            .propose(Bytes::from_static(b"\xffnot a command")),
    )
    .await
    .expect("the proposal is answered");
    // The proposer learns nothing good: the node stopped under it.
    assert!(matches!(proposed, Err(NodeError::Stopped)), "{proposed:?}");
    let ended = tokio::time::timeout(Duration::from_secs(30), node.task)
        .await
        .expect("the node task ends")
        .expect("the node task does not panic");
    let err = ended.expect_err("the node stops with an error");
    assert!(matches!(err, FatalError::Apply(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("cannot apply committed entry 2"), "{text}");
    // The cause names the entry, what was wrong and the way out.
    let why = std::error::Error::source(&err).map_or(String::new(), |e| e.to_string());
    assert!(why.contains("entry 2 (term 1)"), "{why}");
    assert!(why.contains("format version 255"), "{why}");
    assert!(
        why.contains("Recovery: if a newer Flotilla wrote it"),
        "{why}"
    );
}
