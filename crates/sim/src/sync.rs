//! Asynchronous writes in the simulator, as the production driver does
//! them: a node hands a Ready's writes to its disk and goes on; one sync at
//! a time runs for a random while, covering every write made before it
//! began; when it ends, the `persisted_messages` of the Readys it covers
//! leave and the core hears [`RawNode::on_persisted`], Ready after Ready.
//! Writes handed out while a sync runs wait for the next one. A crash
//! drops the queue (and the disk keeps what it keeps of unsynced writes).
//!
//! A Ready with a snapshot takes the synchronous path: its sync covers
//! every earlier write too, so the Readys waiting here are persisted at
//! once (`persisted_all`).
//!
//! [`RawNode::on_persisted`]: flotilla_raft::RawNode::on_persisted

use flotilla_raft::{Entry, Message, PersistMark, Ready, Term};

use crate::cluster::{Cluster, Event};
use crate::net::MS;

/// The sync latencies, in ns, that the randomized runs (`flotilla sim raft`
/// and `flotilla sim kv`) give half their seeds: 50 µs to 4 ms, from below
/// an idle `fdatasync` on the benchmark machine (0.12–0.17 ms) to several
/// times its average under load (0.8 ms).
pub const ASYNC_SYNC_NS: (u64, u64) = (50_000, 4 * MS);

/// A Ready handed out whose writes are not yet durable.
#[derive(Debug)]
pub(crate) struct PendingSync {
    messages: Vec<Message>,
    /// The entries it wrote, with the term before each (for the
    /// log-matching check, made once they are durable).
    written: Vec<(Entry, Term)>,
    mark: PersistMark,
    must_sync: bool,
}

/// One node's Readys waiting for durability.
#[derive(Debug, Default)]
pub(crate) struct SyncQueue {
    /// Handed out, waiting for the next sync.
    queued: Vec<PendingSync>,
    /// Covered by the sync that runs, if one does.
    in_flight: Option<Vec<PendingSync>>,
}

impl SyncQueue {
    /// Queues a Ready whose writes were just handed to the disk.
    pub(crate) fn push(&mut self, rd: &Ready, written: Vec<(Entry, Term)>) {
        self.queued.push(PendingSync {
            messages: rd.persisted_messages.clone(),
            written,
            mark: rd.persist_mark(),
            must_sync: rd.must_sync,
        });
    }
}

impl Cluster {
    /// Starts a sync of what is queued on node `idx`, unless one runs or
    /// nothing waits. Readys that wrote nothing to sync, with no sync
    /// running, are done at once.
    pub(crate) fn start_sync(&mut self, idx: usize) {
        let Some((lo, hi)) = self.cfg.async_sync_ns else {
            return;
        };
        let node = &mut self.nodes[idx];
        if node.syncs.in_flight.is_some() || node.syncs.queued.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut node.syncs.queued);
        if !batch.iter().any(|p| p.must_sync) {
            return self.persisted(idx, batch);
        }
        let token = node.disk.begin_sync();
        node.syncs.in_flight = Some(batch);
        let (id, incarnation) = (node.id, node.incarnation);
        let at = self.now + self.rng.range(lo, hi + 1);
        self.trace(|| format!("n{id} sync begins"));
        self.schedule(
            at,
            Event::Synced {
                node: idx,
                incarnation,
                token,
            },
        );
    }

    /// The sync that node `idx` began (as `incarnation`) is done.
    pub(crate) fn synced(&mut self, idx: usize, incarnation: u32, token: u64) {
        let node = &mut self.nodes[idx];
        if node.incarnation != incarnation || !node.alive() {
            return;
        }
        node.disk.finish_sync(token);
        let batch = node.syncs.in_flight.take().unwrap_or_default();
        let id = node.id;
        self.trace(|| format!("n{id} sync done"));
        self.persisted(idx, batch);
        self.drain(idx);
    }

    /// A synchronous Ready's sync covered every write before it: the
    /// Readys waiting on node `idx` are durable. The running sync, when it
    /// ends, finds nothing left to report.
    pub(crate) fn persisted_all(&mut self, idx: usize) {
        let syncs = &mut self.nodes[idx].syncs;
        let mut batch = syncs
            .in_flight
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        batch.append(&mut syncs.queued);
        self.persisted(idx, batch);
    }

    /// Reports durable Readys, in order: their messages leave, the core
    /// hears of each.
    fn persisted(&mut self, idx: usize, batch: Vec<PendingSync>) {
        for p in batch {
            self.check_log_matching(idx, &p.written);
            self.send_all(&p.messages);
            if let Some(raft) = self.nodes[idx].raft.as_mut() {
                raft.on_persisted(p.mark);
            }
        }
    }
}
