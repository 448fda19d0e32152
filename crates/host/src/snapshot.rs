//! When a member compacts its log, and the job that builds the snapshot
//! off the host's thread.
//!
//! Invariant: one job runs at a time; its result compacts the log at the
//! index it was taken at, or is dropped if a snapshot from the leader
//! covered it meanwhile.
//!
//! A durable snapshot's data is not kept in memory (the host runs its
//! core with `snapshot_data_in_storage`): the chunks sent to followers
//! behind are read back from the snapshot's file as they leave
//! ([`fill_chunks`]).

use bytes::Bytes;
use flotilla_raft::{LogIndex, Message, MessageBody, NodeId, Snapshot, SnapshotMeta};
use flotilla_wal::{GroupHandle, GroupId, Wal};

use crate::app::SnapshotJob;

/// Whether a member that has applied `applied` and last snapshotted at
/// `snap_index` should snapshot, with one every `every` entries.
///
/// Each member snapshots when the applied index crosses a multiple of
/// `every` shifted by a phase of its own (its id times the golden ratio,
/// modulo `every`), so the members of a group do not all encode and write
/// their snapshots at the same index and compete for CPU and disk (under
/// load that showed as a writes p999 of ~30 ms). Two snapshots are at most
/// `every` entries apart (exactly that in steady state; a snapshot restored
/// from the leader may bring the next one closer).
pub(crate) fn snapshot_due(
    id: NodeId,
    applied: LogIndex,
    snap_index: LogIndex,
    every: u64,
) -> bool {
    let every = every.max(1);
    let phase = ((u128::from(id.get().wrapping_mul(0x9E37_79B9_7F4A_7C15)) * u128::from(every))
        >> 64) as u64;
    (applied.0 + phase) / every > (snap_index.0 + phase) / every
}

/// A snapshot to build: the executor calls [`SnapshotTask::run`] off its
/// main thread (encoding a large state takes a while) and hands the
/// result to [`crate::Host::snapshot_built`].
pub struct SnapshotTask {
    /// The applied index the state was captured at.
    pub index: LogIndex,
    job: SnapshotJob,
    meta: Option<SnapshotMeta>,
    group: GroupId,
}

impl std::fmt::Debug for SnapshotTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotTask")
            .field("index", &self.index)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl SnapshotTask {
    pub(crate) fn new(
        index: LogIndex,
        job: SnapshotJob,
        meta: Option<SnapshotMeta>,
        group: GroupId,
    ) -> Self {
        SnapshotTask {
            index,
            job,
            meta,
            group,
        }
    }

    /// Encodes the state and writes the snapshot's file ahead (blocks on
    /// the disk); returns the encoded state.
    pub fn run(self, wal: &Wal) -> Bytes {
        let data = (self.job)();
        // The file is written here, off the group commit, so the sync
        // that writes the compaction record stays small.
        if let Some(meta) = self.meta {
            let snap = Snapshot {
                meta,
                data: data.clone(),
            };
            if let Err(e) = wal.prepare_snapshot(self.group, &snap) {
                tracing::warn!(error = %e, "writing the snapshot file ahead failed; the next sync writes it");
            }
        }
        data
    }
}

/// Fills the data of the outgoing snapshot chunks whose snapshot the core
/// no longer holds in memory (empty data short of the end) from the
/// snapshot's file, at most `chunk_bytes` each. A chunk that cannot be
/// read (its snapshot was replaced meanwhile, or the read failed) is not
/// sent: the follower asks again, and the leader sends its current one.
pub(crate) fn fill_chunks(storage: &GroupHandle, chunk_bytes: u64, messages: &mut Vec<Message>) {
    messages.retain_mut(|m| {
        let MessageBody::Snapshot(c) = &mut m.body else {
            return true;
        };
        if !c.data.is_empty() || c.offset >= c.total_len {
            return true;
        }
        let len = chunk_bytes.min(c.total_len - c.offset);
        match storage.read_snapshot_data(&c.meta, c.offset, len) {
            Ok(Some(data)) => {
                c.data = data;
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(to = %m.to, index = %c.meta.index, error = %e, "reading a snapshot chunk back failed; not sent");
                false
            }
        }
    });
}

#[cfg(test)]
mod tests;
