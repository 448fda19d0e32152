//! The follower's side of replication: merging appends (§5.3), following
//! the leader's commit index, and receiving snapshots in chunks (§7).
//!
//! A rejection carries a hint for fast backtracking: the last index at or
//! before the rejected one whose term is at most the leader's `prev_term`,
//! so the leader skips a whole term per round trip instead of one entry.

use bytes::Bytes;

use crate::log::AppendOutcome;
use crate::message::{Append, AppendResp, MessageBody, RejectHint, SnapshotChunk};
use crate::raft::{IncomingSnapshot, Raft, StepError};
use crate::types::{LogIndex, NodeId, Snapshot};

impl Raft {
    pub(crate) fn handle_append(&mut self, from: NodeId, a: Append) -> Result<(), StepError> {
        let resp = match self.log.maybe_append(a.prev_index, a.prev_term, &a.entries) {
            AppendOutcome::Appended(last_new) => {
                self.log.commit_to(a.commit.min(last_new));
                self.commit_advanced();
                AppendResp {
                    index: last_new,
                    reject: None,
                }
            }
            AppendOutcome::Mismatch => {
                let hint_index = a.prev_index.min(self.log.last_index());
                let (index, term) = self.log.find_conflict_by_term(hint_index, a.prev_term);
                AppendResp {
                    index: a.prev_index,
                    reject: Some(RejectHint { index, term }),
                }
            }
            AppendOutcome::CommittedConflict(index) => {
                return Err(StepError::CommittedConflict { from, index });
            }
        };
        self.send(from, MessageBody::AppendResp(resp));
        Ok(())
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: LogIndex, read_seq: u64) {
        // The leader caps `commit` at what it knows we match, so every
        // entry up to it is the leader's.
        self.log.commit_to(commit);
        self.commit_advanced();
        self.send(from, MessageBody::HeartbeatResp { read_seq });
    }

    pub(crate) fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        chunk: SnapshotChunk,
    ) -> Result<(), StepError> {
        let index = chunk.meta.index;
        if chunk
            .offset
            .checked_add(chunk.data.len() as u64)
            .is_none_or(|end| end > chunk.total_len)
        {
            return Err(StepError::MalformedSnapshot {
                from,
                what: "chunk ends past the total length",
            });
        }
        if index.get() == 0 {
            return Err(StepError::MalformedSnapshot {
                from,
                what: "snapshot at index 0",
            });
        }
        if index <= self.log.committed {
            // Nothing to install: we already hold everything it covers.
            self.incoming_snapshot = None;
            let committed = self.log.committed;
            self.send(
                from,
                MessageBody::AppendResp(AppendResp {
                    index: committed,
                    reject: None,
                }),
            );
            return Ok(());
        }
        let Some(data) = self.accept_chunk(chunk) else {
            let next_offset = self
                .incoming_snapshot
                .as_ref()
                .filter(|s| s.meta.index == index)
                .map_or(0, |s| s.data.len() as u64);
            self.send(from, MessageBody::SnapshotResp { index, next_offset });
            return Ok(());
        };
        self.install_snapshot(from, data);
        Ok(())
    }

    /// Adds a chunk to the snapshot being received. Returns the whole
    /// snapshot once its last chunk is in, `None` while more is expected or
    /// when the chunk does not continue what we hold.
    fn accept_chunk(&mut self, chunk: SnapshotChunk) -> Option<Snapshot> {
        let fresh = chunk.offset == 0;
        let continues = self.incoming_snapshot.as_ref().is_some_and(|s| {
            s.meta == chunk.meta
                && s.total_len == chunk.total_len
                && s.data.len() as u64 == chunk.offset
        });
        if fresh && !continues {
            self.incoming_snapshot = Some(IncomingSnapshot {
                meta: chunk.meta.clone(),
                total_len: chunk.total_len,
                data: Vec::new(),
            });
        } else if !continues {
            return None;
        }
        let incoming = self.incoming_snapshot.as_mut()?;
        incoming.data.extend_from_slice(&chunk.data);
        if (incoming.data.len() as u64) < incoming.total_len {
            return None;
        }
        let done = self.incoming_snapshot.take()?;
        Some(Snapshot {
            meta: done.meta,
            data: Bytes::from(done.data),
        })
    }

    /// Installs a complete snapshot (§7): if our log already has its last
    /// entry, it only moves the commit index; otherwise it replaces the log
    /// and the application restores from it.
    fn install_snapshot(&mut self, from: NodeId, snap: Snapshot) {
        let index = snap.meta.index;
        if self.log.match_term(index, snap.meta.term) {
            self.log.commit_to(index);
            self.commit_advanced();
        } else {
            self.reset_conf(snap.meta.conf_state.clone(), index);
            self.log.restore(snap);
        }
        self.send(
            from,
            MessageBody::AppendResp(AppendResp {
                index,
                reject: None,
            }),
        );
    }
}
