//! A single-voter node on a WAL in a scratch directory, leading, for the
//! driver's integration tests. The directory is the test kit's
//! [`Scratch`]: removed when the test ends, unless `FLOTILLA_KEEP_SCRATCH`
//! is set.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_etcd::KvMachine;
use flotilla_raft::{Config, NodeId, Role};
use flotilla_runtime::metrics::Metrics;
use flotilla_runtime::{HostOptions, NodeOptions, RaftNode, Transport};
use flotilla_testkit::Scratch;
use flotilla_wal::{GroupId, Options, Wal};
use tokio::sync::{mpsc, watch};

/// A leading single voter and what keeps it running.
pub struct Single {
    pub node: RaftNode<KvMachine>,
    /// Set to true to stop the node.
    pub stop: watch::Sender<bool>,
    /// Its data, removed when dropped (the tests stop the node first).
    pub scratch: Scratch,
    /// Keeps the inbound queue open.
    _inbound: mpsc::Sender<flotilla_raft::Message>,
}

/// Starts node 1 alone with 1 ms ticks in a fresh directory named after
/// `test`, `opts` adjusting the defaults, and waits until it leads.
pub async fn single_voter(test: &str, opts: impl FnOnce(&mut NodeOptions)) -> Single {
    let scratch = Scratch::new(test);
    let wal = Wal::open(&scratch.path, Options::default()).expect("open the WAL");
    let storage = wal.group(GroupId(1)).expect("the group's storage");
    let me = NodeId(1);
    let (stop_tx, stop) = watch::channel(false);
    let peers = BTreeMap::from([(me, String::new())]);
    let transport = Transport::start(7, me, &peers, stop.clone());
    let (inbound_tx, inbound) = mpsc::channel(16);
    let mut options = NodeOptions {
        host: HostOptions {
            raft: Config::new(me, vec![me]),
            snapshot_entries: 1000,
            snapshot_log_bytes: None,
            proposals_pending_max: 16,
            reads_pending_max: 16,
        },
        tick: Duration::from_millis(1),
        request_queue: 16,
        metrics: Arc::new(Metrics::default()),
    };
    opts(&mut options);
    let sm = Arc::new(Mutex::new(KvMachine::new(&peers, Arc::default())));
    let node = RaftNode::start(options, storage, sm, transport, inbound, stop).expect("start");
    // A single voter elects itself after an election timeout.
    let mut status = node.handle.watch_status();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.role == Role::Leader),
    )
    .await
    .expect("the single voter becomes leader")
    .expect("the node runs");
    Single {
        node,
        stop: stop_tx,
        scratch,
        _inbound: inbound_tx,
    }
}
