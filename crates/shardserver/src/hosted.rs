//! The groups one server hosts: the shard controller's replica and a
//! replica of every data group, each a running production host
//! ([`RaftNode`]) with its state machine, and how requests reach them.
//!
//! A proposal or a read index at a replica that does not lead is carried
//! to the leader by Raft itself (the host forwards proposals and read
//! indexes inside the group's messages), so any server's replica takes
//! any request; [`propose_until`] and [`read_index_until`] retry what
//! a leader change interrupted, with the same command bytes (exactly-once
//! sessions make a repeat harmless), until the deadline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_raft::{LogIndex, NodeId};
use flotilla_runtime::{Applied, NodeError, NodeHandle, StateMachine, lock};
use flotilla_shardkv::{Config, Ctrler, Gid, ShardKv};
use tokio::time::Instant;

/// One hosted group's replica here.
pub struct Replica<SM: StateMachine> {
    /// The running host.
    pub node: NodeHandle<SM::Output>,
    /// Its state machine (read under the lock; nothing awaits under it).
    pub sm: Arc<Mutex<SM>>,
}

/// Everything this server hosts.
pub struct Hosted {
    /// This server's id (the same in every group).
    pub me: NodeId,
    /// Shards per configuration.
    pub nshards: usize,
    /// The controller's replica.
    pub ctrl: Replica<Ctrler>,
    /// Each data group's replica.
    pub groups: BTreeMap<Gid, Replica<ShardKv>>,
}

/// Why a request to a group got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unanswered {
    /// The deadline passed first; the outcome is unknown.
    #[error("no answer before the deadline: the group has no leader, or is behind")]
    Timeout,
    /// The replica stopped (the server shuts down, or its WAL failed).
    #[error("the group's replica here has stopped")]
    Stopped,
}

/// The first wait between retries, doubled up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(10);
/// The longest wait between retries.
const RETRY_MAX: Duration = Duration::from_millis(200);

impl Hosted {
    /// The latest configuration this server's controller replica has
    /// applied (possibly behind the controller's leader).
    pub fn latest(&self) -> Config {
        lock(&self.ctrl.sm).query(None).clone()
    }

    /// The latest configuration, linearizable: read after a read index
    /// at the controller.
    pub async fn latest_linearizable(&self, deadline: Instant) -> Result<Config, Unanswered> {
        self.query(None, deadline).await
    }

    /// Configuration `num` (the latest for `None`, or past the latest),
    /// linearizable.
    pub async fn query(&self, num: Option<u64>, deadline: Instant) -> Result<Config, Unanswered> {
        read_index_until(&self.ctrl.node, deadline).await?;
        Ok(lock(&self.ctrl.sm).query(num).clone())
    }

    /// The gids this server hosts, in order.
    pub fn gids(&self) -> Vec<Gid> {
        self.groups.keys().copied().collect()
    }
}

/// Whether `e` may clear up on a retry.
fn transient(e: &NodeError) -> bool {
    matches!(
        e,
        NodeError::NotLeader { .. } | NodeError::Retry | NodeError::Overloaded { .. }
    )
}

/// Waits `backoff` (doubling it for next time), unless that passes the
/// deadline.
async fn back_off(backoff: &mut Duration, deadline: Instant) -> Result<(), Unanswered> {
    if Instant::now() + *backoff >= deadline {
        return Err(Unanswered::Timeout);
    }
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(RETRY_MAX);
    Ok(())
}

/// Proposes `command` at `node` until it is applied here, retrying what
/// a leader change or a full queue interrupted, until `deadline`.
pub async fn propose_until<O: Send + 'static>(
    node: &NodeHandle<O>,
    command: Bytes,
    deadline: Instant,
) -> Result<Applied<O>, Unanswered> {
    until(deadline, || node.propose(command.clone())).await
}

/// Waits until `node`'s replica may serve a linearizable read, retrying
/// as [`propose_until`] does.
pub async fn read_index_until<O: Send + 'static>(
    node: &NodeHandle<O>,
    deadline: Instant,
) -> Result<LogIndex, Unanswered> {
    until(deadline, || node.read_index()).await
}

/// `attempt` again, backing off, while it fails for a reason that passes
/// ([`transient`]); `Stopped` on any other failure, `Timeout` at
/// `deadline`.
async fn until<T, F, Fut>(deadline: Instant, attempt: F) -> Result<T, Unanswered>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, NodeError>>,
{
    let mut backoff = RETRY_MIN;
    loop {
        match tokio::time::timeout_at(deadline, attempt()).await {
            Err(_) => return Err(Unanswered::Timeout),
            Ok(Ok(done)) => return Ok(done),
            Ok(Err(e)) if transient(&e) => back_off(&mut backoff, deadline).await?,
            Ok(Err(_)) => return Err(Unanswered::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use flotilla_runtime::{NodeOptions, RaftNode, Transport};
    use flotilla_shardkv::{CtrlApplied, CtrlCommand, CtrlOp, CtrlReply};
    use flotilla_testkit::Scratch;
    use flotilla_wal::{GroupId, Options, Wal};
    use tokio::sync::{mpsc, watch};

    use super::*;

    type Handle = NodeHandle<Option<CtrlApplied>>;

    /// Member 1 of a group of `voters` over a fresh WAL in `dir`: alone,
    /// it leads; with others, which never answer (nothing listens at
    /// their addresses), no one does.
    fn node(
        dir: &std::path::Path,
        voters: &[u64],
    ) -> (
        Handle,
        watch::Sender<bool>,
        tokio::task::JoinHandle<Result<(), flotilla_runtime::FatalError>>,
    ) {
        std::fs::create_dir_all(dir).unwrap();
        let wal = Wal::open(dir, Options::default()).unwrap();
        let storage = wal.group(GroupId(1)).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let peers = voters
            .iter()
            .map(|&v| (NodeId(v), format!("127.0.0.1:{v}")))
            .collect();
        let transport = Transport::start(1, NodeId(1), &peers, stop.clone());
        let raft =
            flotilla_raft::Config::new(NodeId(1), voters.iter().map(|&v| NodeId(v)).collect());
        let opts = NodeOptions::server(raft, 1_000, Duration::from_millis(5));
        let (_inbound, rx) = mpsc::channel(16);
        let sm = Arc::new(Mutex::new(Ctrler::new(10)));
        let node = RaftNode::start(opts, storage, sm, transport, rx, stop).unwrap();
        (node.handle, stop_tx, node.task)
    }

    fn query() -> Bytes {
        let op = CtrlOp::Query(None);
        CtrlCommand {
            client: 0,
            seq: 0,
            op,
        }
        .encode()
    }

    #[tokio::test]
    async fn a_request_waits_for_a_leader_until_its_deadline() {
        let scratch = Scratch::new("hosted-leader");
        let (alone, stop, task) = node(&scratch.path.join("alone"), &[1]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let applied = propose_until(&alone, query(), deadline).await.unwrap();
        let reply = applied.output.map(|a| a.reply);
        assert!(
            matches!(&reply, Some(CtrlReply::Config(c)) if c.num == 0),
            "{reply:?}"
        );
        assert!(read_index_until(&alone, deadline).await.unwrap() >= applied.index);
        stop.send_replace(true);
        task.await.unwrap().unwrap();
        let (leaderless, _stop, _task) = node(&scratch.path.join("three"), &[1, 2, 3]);
        let soon = Instant::now() + Duration::from_millis(300);
        assert_eq!(
            read_index_until(&leaderless, soon).await,
            Err(Unanswered::Timeout)
        );
        let soon = Instant::now() + Duration::from_millis(300);
        let proposed = propose_until(&leaderless, query(), soon)
            .await
            .map(|a| a.index);
        assert_eq!(proposed, Err(Unanswered::Timeout));
    }

    #[tokio::test]
    async fn a_stopped_replica_is_not_waited_for() {
        let scratch = Scratch::new("hosted-stopped");
        let (node, stop, task) = node(&scratch.path, &[1]);
        stop.send_replace(true);
        task.await.unwrap().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let proposed = propose_until(&node, query(), deadline)
            .await
            .map(|a| a.index);
        assert_eq!(proposed, Err(Unanswered::Stopped));
        assert_eq!(
            read_index_until(&node, deadline).await,
            Err(Unanswered::Stopped)
        );
        assert!(Instant::now() < deadline, "at once, not at the deadline");
    }
}
