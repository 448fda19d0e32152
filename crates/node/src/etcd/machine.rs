//! The KV replica ([`flotilla_kv::Replica`]) as the state machine of the
//! Raft driver, and how etcd requests become log commands.
//!
//! Requests that come through the plain etcd API carry no client session:
//! each gets a fresh session id (this node's id, its boot nonce and a
//! counter, with the top bit set so it never collides with a Rust clerk's
//! id) and sequence number 1. The replica's session table then records
//! each one like any other (it is bounded and expires old sessions), and
//! such a request is applied at most once, as in etcd.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flotilla_kv::{Command, Op, ReadConsistency, Replica, Request};
use flotilla_raft::Entry;

use crate::raft::{ApplyError, RestoreError, SnapshotJob, StateMachine};

/// What applying one entry gave: the request's answer, `None` for an
/// entry that is not a command.
pub type KvOutput = Option<flotilla_kv::Applied>;

/// The replicated KV state machine.
#[derive(Debug, Default)]
pub struct KvMachine {
    /// The replica.
    pub replica: Replica,
}

impl StateMachine for KvMachine {
    type Output = KvOutput;

    /// Every error of the replica stops the node: an undecodable command
    /// (a newer version's op, during a rolling upgrade) or an entry out of
    /// order (a driver bug). Commands are encoded by servers of this
    /// cluster, and a forwarded one is decoded before it is proposed, so
    /// no client can make a member stop this way.
    fn apply(&mut self, entry: &Entry) -> Result<KvOutput, ApplyError> {
        self.replica.apply(entry).map_err(|e| ApplyError {
            index: entry.index,
            source: Box::new(e),
        })
    }

    fn snapshot(&self) -> Bytes {
        self.replica.snapshot()
    }

    /// A clone of the replica (its keys and values are reference-counted
    /// `Bytes`, so the clone copies tree nodes, not data) costs about a
    /// third of the encoding, which moves off the Raft task
    /// (`cargo bench -p flotilla-kv --bench snapshot`).
    fn snapshot_job(&self) -> SnapshotJob {
        let copy = self.replica.clone();
        Box::new(move || copy.snapshot())
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), RestoreError> {
        self.replica
            .restore(data)
            .map_err(|e| RestoreError(Box::new(e)))
    }
}

/// Mints the session ids of plain etcd requests.
#[derive(Debug)]
pub struct SessionIds {
    base: u64,
    next: AtomicU64,
}

impl SessionIds {
    /// Ids for node `node`, unique across its restarts.
    pub fn new(node: u64) -> SessionIds {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // 1 | 15 bits of node | 24 bits of boot time | 24-bit counter.
        let base = (1 << 63) | ((node & 0x7fff) << 48) | ((nanos >> 20) & 0xff_ffff) << 24;
        SessionIds {
            base,
            next: AtomicU64::new(0),
        }
    }

    /// The command that carries `op` for a session-less request.
    pub fn command(&self, op: Op) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
        Command {
            stamp_ms: now_ms(),
            request: Request {
                client: self.base | n,
                seq: 1,
                read: ReadConsistency::Linearizable,
                resumed: false,
                op,
            },
        }
        .encode()
    }
}

/// The wall clock in ms: the stamp of a proposed command.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
