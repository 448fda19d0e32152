//! The Raft driver bounds what waits in it (issue 19's audit): beyond
//! `proposals_pending_max` proposals, or `reads_pending_max` reads,
//! waiting for an outcome, a request is refused at once as
//! `NodeError::Overloaded` (etcd's "too many requests") instead of
//! growing the node's tables; the requests it took are answered as
//! usual. A single voter with limits of one; both requests of a pair
//! reach the node's queue before its task runs (one-thread runtime), so
//! the task sees them in the same turn.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // not every test uses every part
mod common;

use flotilla_etcd::machine::SessionIds;
use flotilla_kv::Op;
use flotilla_runtime::NodeError;

#[tokio::test]
async fn requests_beyond_the_pending_limits_are_refused_and_the_rest_answered() {
    let single = common::single_voter("overload", |o| {
        o.host.proposals_pending_max = 1;
        o.host.reads_pending_max = 1;
    })
    .await;
    let node = &single.node;

    let ids = SessionIds::new(1);
    let h = &node.handle;
    let (first, second) = tokio::join!(
        h.propose(ids.command(Op::put("a", "1"))),
        h.propose(ids.command(Op::put("b", "2")))
    );
    assert!(first.is_ok(), "the proposal taken is applied: {first:?}");
    assert!(
        matches!(second, Err(NodeError::Overloaded { pending: 1 })),
        "{second:?}"
    );

    let (first, second) = tokio::join!(h.read_index(), h.read_index());
    assert!(first.is_ok(), "the read taken is confirmed: {first:?}");
    assert!(
        matches!(second, Err(NodeError::Overloaded { pending: 1 })),
        "{second:?}"
    );

    // Nothing waits any more: a new request is taken.
    h.propose(ids.command(Op::put("c", "3"))).await.unwrap();
    single.stop.send_replace(true);
    single.node.task.await.unwrap().unwrap();
}
