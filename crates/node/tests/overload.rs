//! The Raft driver bounds what waits in it (issue 19's audit): beyond
//! `proposals_pending_max` proposals, or `reads_pending_max` reads,
//! waiting for an outcome, a request is refused at once as
//! `NodeError::Overloaded` (etcd's "too many requests") instead of
//! growing the node's tables; the requests it took are answered as
//! usual. A single voter with limits of one; both requests of a pair
//! reach the node's queue before its task runs (one-thread runtime), so
//! the task sees them in the same turn.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_kv::Op;
use flotilla_node::etcd::KvMachine;
use flotilla_node::etcd::machine::SessionIds;
use flotilla_node::metrics::Metrics;
use flotilla_node::raft::{NodeError, NodeOptions, RaftNode, Transport};
use flotilla_raft::{Config, NodeId, Role};
use flotilla_wal::{GroupId, Options, Wal};
use tokio::sync::{mpsc, watch};

#[tokio::test]
async fn requests_beyond_the_pending_limits_are_refused_and_the_rest_answered() {
    let dir = std::env::temp_dir().join(format!("flotilla-overload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let wal = Wal::open(&dir, Options::default()).unwrap();
    let storage = wal.group(GroupId(1)).unwrap();
    let me = NodeId(1);
    let (stop_tx, stop) = watch::channel(false);
    let peers = BTreeMap::from([(me, String::new())]);
    let transport = Transport::start(7, me, &peers, stop.clone());
    let (_inbound_tx, inbound) = mpsc::channel(16);
    let opts = NodeOptions {
        raft: Config::new(me, vec![me]),
        tick: Duration::from_millis(1),
        snapshot_entries: 1000,
        request_queue: 16,
        proposals_pending_max: 1,
        reads_pending_max: 1,
        metrics: Arc::new(Metrics::default()),
    };
    let sm = Arc::new(Mutex::new(KvMachine::new(&peers)));
    let node = RaftNode::start(opts, storage, sm, transport, inbound, stop).unwrap();
    let mut status = node.handle.watch_status();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.role == Role::Leader),
    )
    .await
    .expect("the single voter becomes leader")
    .unwrap();

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
    stop_tx.send_replace(true);
    node.task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
