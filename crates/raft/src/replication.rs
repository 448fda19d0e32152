//! The leader's side of log replication (§5.3): sending appends, heartbeats
//! and snapshot chunks within each follower's flow-control limits, reading
//! the answers, and advancing the commit index (§5.4.2: only entries of the
//! leader's own term are committed by counting replicas).

use crate::message::{Append, AppendResp, MessageBody, SnapshotChunk};
use crate::progress::ProgressState;
use crate::quorum::quorum_value;
use crate::raft::Raft;
use crate::types::{LogIndex, NodeId};

impl Raft {
    /// Sends every follower what its flow control allows.
    pub(crate) fn bcast_append(&mut self) {
        let peers: Vec<NodeId> = self
            .progress
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect();
        for id in peers {
            self.send_appends(id);
        }
        self.needs_bcast = false;
    }

    /// Sends `to` as many appends as its flow control allows.
    pub(crate) fn send_appends(&mut self, to: NodeId) {
        while self.maybe_send_append(to, false) {}
    }

    /// Sends one append to `to` (or starts a snapshot if the entries it
    /// needs were compacted). With `allow_empty`, sends even without
    /// entries, as a probe. Returns whether a message was sent.
    pub(crate) fn maybe_send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let Some(pr) = self.progress.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next;
        let prev_index = next.prev();
        let Some(prev_term) = self.log.term(prev_index) else {
            return self.start_snapshot(to);
        };
        let last = self.log.last_index();
        let entries = if next <= last {
            self.log.slice(next, last, self.cfg.max_msg_bytes)
        } else {
            Vec::new()
        };
        if entries.is_empty() && !allow_empty {
            return false;
        }
        let sent = entries
            .last()
            .map(|e| (e.index, entries.iter().map(|e| e.size_bytes()).sum::<u64>()));
        let commit = self.log.committed;
        let body = MessageBody::Append(Append {
            prev_index,
            prev_term,
            entries,
            commit,
        });
        self.send(to, body);
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.sent_append(sent);
            pr.commit_sent = commit;
        }
        true
    }

    /// Tells each follower in replication that waits for an index now
    /// committed (one it forwarded, or a read index it was given) and was
    /// not told yet, with an empty append if no entries go to it: it
    /// answers those writes and reads only once it has applied them, which
    /// would otherwise wait for the next heartbeat. (etcd raft tells every
    /// follower at each commit; telling only those that wait keeps an idle
    /// follower's traffic, and the course's RPC counts, as they were.)
    pub(crate) fn tell_commit(&mut self) {
        self.commit_to_tell = false;
        let committed = self.log.committed;
        let me = self.id;
        let behind: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(id, pr)| {
                **id != me
                    && pr.state == ProgressState::Replicate
                    && pr.commit_sent < pr.awaits_commit.min(committed)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in behind {
            self.maybe_send_append(id, true);
        }
    }

    /// Switches `to` to snapshot transfer and sends the first chunk.
    fn start_snapshot(&mut self, to: NodeId) -> bool {
        let Some(index) = self.log.snapshot().map(|s| s.meta.index) else {
            // The log was never compacted, so every entry is in memory: the
            // only way to get here is a bug in `next`.
            debug_assert!(
                false,
                "no snapshot although entries before {to}'s next are gone"
            );
            return false;
        };
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.become_snapshot(index);
        }
        self.send_snapshot_chunk(to);
        true
    }

    /// Sends `to` the snapshot chunk at its acknowledged offset. A follower
    /// that was sent an older snapshot restarts with the current one.
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(snap) = self.log.snapshot() else {
            return;
        };
        let Some(pr) = self.progress.get_mut(&to) else {
            return;
        };
        if pr.snapshot_index != snap.meta.index {
            pr.become_snapshot(snap.meta.index);
        }
        let total = self.log.snapshot_len();
        let offset = pr.snapshot_offset.min(total);
        let end = (offset + self.cfg.snapshot_chunk_bytes).min(total);
        // Released data (`Config::snapshot_data_in_storage`): the driver
        // fills the chunk from storage.
        let data = if snap.data.len() as u64 == total {
            snap.data.slice(offset as usize..end as usize)
        } else {
            bytes::Bytes::new()
        };
        let chunk = SnapshotChunk {
            meta: snap.meta.clone(),
            offset,
            total_len: total,
            data,
        };
        self.send(to, MessageBody::Snapshot(chunk));
    }

    /// Sends heartbeats, opening ReadIndex round `read_seq`.
    pub(crate) fn bcast_heartbeat(&mut self) {
        let read_seq = self.read_only.open_round(self.ticks);
        let committed = self.log.committed;
        let beats: Vec<(NodeId, LogIndex)> = self
            .progress
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(&id, pr)| (id, pr.matched.min(committed)))
            .collect();
        for (id, commit) in beats {
            self.send(id, MessageBody::Heartbeat { commit, read_seq });
            if let Some(pr) = self.progress.get_mut(&id) {
                pr.commit_sent = pr.commit_sent.max(commit);
            }
        }
        self.heartbeat_elapsed = 0;
        // Our own acknowledgement of the round.
        self.check_read_rounds();
    }

    /// Commits the highest index a quorum holds, if it is of this term.
    /// Returns whether the commit index moved.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let progress = &self.progress;
        let index = quorum_value(&self.conf, |id| {
            progress.get(&id).map_or(0, |p| p.matched.get())
        });
        let index = LogIndex(index);
        if index > self.log.committed && self.log.term(index) == Some(self.term) {
            self.log.commit_to(index);
            self.commit_advanced();
            return true;
        }
        false
    }

    pub(crate) fn handle_append_resp(&mut self, from: NodeId, resp: &AppendResp) {
        let now = self.ticks;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.heard(now);
        if let Some(hint) = resp.reject {
            let probe_to = if hint.term.get() > 0 {
                self.log.find_conflict_by_term(hint.index, hint.term).0
            } else {
                hint.index
            };
            let Some(pr) = self.progress.get_mut(&from) else {
                return;
            };
            if pr.maybe_decrease_to(resp.index, probe_to) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.maybe_send_append(from, true);
            }
            return;
        }
        if !pr.maybe_update(resp.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched >= pr.snapshot_index => {
                pr.become_probe();
                pr.become_replicate();
            }
            _ => {}
        }
        let caught_up = pr.matched == self.log.last_index();
        self.maybe_commit();
        if self.lead_transferee == Some(from) && caught_up {
            self.send_timeout_now(from);
        }
        self.send_appends(from);
    }

    pub(crate) fn handle_heartbeat_resp(&mut self, from: NodeId, read_seq: u64) {
        let now = self.ticks;
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.heard(now);
        pr.probe_sent = false;
        pr.read_seq = pr.read_seq.max(read_seq);
        let mut resend_chunk = false;
        match pr.state {
            // Appends in flight but no progress over two heartbeat answers:
            // some were lost. Probe from the match index again.
            ProgressState::Replicate
                if pr.matched < last && pr.matched == pr.matched_at_heartbeat =>
            {
                pr.become_probe();
            }
            ProgressState::Snapshot => {
                resend_chunk = pr.snapshot_offset == pr.snapshot_offset_at_heartbeat;
                pr.snapshot_offset_at_heartbeat = pr.snapshot_offset;
            }
            _ => {}
        }
        pr.matched_at_heartbeat = pr.matched;
        let behind = pr.matched < last;
        let probing = pr.state == ProgressState::Probe;
        if resend_chunk {
            self.send_snapshot_chunk(from);
        } else if behind && probing {
            self.maybe_send_append(from, true);
        } else if behind {
            self.send_appends(from);
        }
        self.check_read_rounds();
    }

    pub(crate) fn handle_snapshot_resp(&mut self, from: NodeId, index: LogIndex, next_offset: u64) {
        let now = self.ticks;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.heard(now);
        if pr.state != ProgressState::Snapshot || pr.snapshot_index != index {
            return;
        }
        pr.snapshot_offset = next_offset;
        let total = self.log.snapshot_len();
        if next_offset < total || total == 0 {
            self.send_snapshot_chunk(from);
        }
    }
}
