//! The simulator's Raft driver: it carries out each Ready exactly as the
//! crate docs of `flotilla_raft` prescribe (send, persist and sync, send
//! what needed durability, restore, apply, advance; or, with asynchronous
//! writes, hand the writes over and go on: `sync.rs`), and checks the
//! safety invariants as it goes.
//!
//! The application it drives is a model: a digest chain over the applied
//! entries. Its snapshots hold `(last applied index, digest)` plus padding,
//! so a restored snapshot is checked against the committed log.

use bytes::Bytes;
use flotilla_raft::codec::{Decode, Decoder, Encode, put_u64};
use flotilla_raft::message::{MessageBody, VoteRequest};
use flotilla_raft::{
    ConfState, Entry, EntryKind, LogIndex, Message, Ready, Role, StepError, Term, Writes, persist,
};

use crate::cluster::{Cluster, Event};
use crate::invariants::Violation;
use crate::invariants::durable_commit;
use crate::invariants::leader_completeness::check_new_leader;

/// Encodes the model application's snapshot.
pub(crate) fn encode_app_snapshot(index: LogIndex, digest: u64, padding: usize) -> Bytes {
    let mut out = Vec::with_capacity(20 + padding);
    put_u64(&mut out, index.get());
    put_u64(&mut out, digest);
    out.resize(out.len() + padding, 0xa5);
    Bytes::from(out)
}

/// Decodes the model application's snapshot.
pub(crate) fn decode_app_snapshot(data: &Bytes) -> Option<(LogIndex, u64)> {
    let mut d = Decoder::new(data.clone());
    let index = d.u64("snapshot index").ok()?;
    let digest = d.u64("snapshot digest").ok()?;
    Some((LogIndex(index), digest))
}

impl Cluster {
    pub(crate) fn violation(&mut self, v: Violation) {
        let f = self.fail(v.to_string());
        self.failure.get_or_insert(f);
    }

    /// Processes every Ready node `idx` has, then its snapshot policy.
    pub(crate) fn drain(&mut self, idx: usize) {
        loop {
            let Some(raft) = self.nodes[idx].raft.as_mut() else {
                return;
            };
            if !raft.has_ready() {
                break;
            }
            let rd = raft.ready();
            // Asynchronous writes (`sync.rs`), but a snapshot syncs at once.
            let asynchronous = self.cfg.async_sync_ns.is_some() && rd.snapshot.is_none();
            self.handle_ready(idx, &rd, asynchronous);
            let Some(raft) = self.nodes[idx].raft.as_mut() else {
                return;
            };
            if asynchronous {
                raft.advance_handed(&rd);
            } else {
                raft.advance(&rd);
                self.persisted_all(idx);
            }
        }
        // As the production driver does: one sync for every Ready handed
        // out above, unless one runs already.
        self.start_sync(idx);
        if self.maybe_snapshot(idx) {
            self.drain(idx);
        }
        if self.cfg.checks {
            self.check_node(idx);
        }
    }

    fn handle_ready(&mut self, idx: usize, rd: &Ready, asynchronous: bool) {
        let id = self.nodes[idx].id;
        if let Some(ss) = rd.soft_state {
            self.trace(|| format!("n{id} is {} (leader {:?})", ss.role, ss.leader));
            if ss.role == Role::Leader && self.cfg.checks {
                self.check_leader(idx);
            }
        }
        self.send_all(&rd.messages);
        let written = self.written_entries(idx, rd);
        if self.cfg.checks {
            self.check_durable_commit(idx, rd);
        }
        let node = &mut self.nodes[idx];
        if asynchronous {
            let writes = Writes {
                must_sync: false,
                ..rd.writes()
            };
            let Ok(()) = persist(&mut node.disk, writes);
            node.syncs.push(rd, written);
        } else {
            let Ok(()) = persist(&mut node.disk, rd.writes());
            self.check_log_matching(idx, &written);
            self.send_all(&rd.persisted_messages);
        }
        if rd.restore_snapshot
            && let Some(snap) = &rd.snapshot
        {
            self.restore(idx, &snap.data);
        }
        if !self.cfg.checks {
            // Benchmarks: apply without recording the committed log.
            if let Some(last) = rd.committed_entries.last() {
                self.nodes[idx].app.last_applied = last.index;
            }
        }
        // The applier's current term bounds the entries' commit term (see
        // `CommittedLog::learned_in`); read only when there is work to check.
        let term = match &self.nodes[idx].raft {
            Some(r) if self.cfg.checks && !rd.committed_entries.is_empty() => r.status().term,
            _ => Term(0),
        };
        for e in rd.committed_entries.iter().filter(|_| self.cfg.checks) {
            let node = &self.nodes[idx];
            let (last, digest) = (node.app.last_applied, node.app.digest);
            match self.committed.observe_apply((id, term), last, digest, e) {
                Ok(d) => {
                    let app = &mut self.nodes[idx].app;
                    app.last_applied = e.index;
                    app.digest = d;
                }
                Err(v) => return self.violation(v),
            }
        }
        self.check_reads(idx, rd);
        let node = &mut self.nodes[idx];
        node.reads.extend_from_slice(&rd.read_states);
        node.dropped_reads.extend_from_slice(&rd.dropped_reads);
    }

    /// Linearizable reads (§6.4 of the thesis): a read index is at least
    /// every index committed before the read was issued.
    fn check_reads(&mut self, idx: usize, rd: &Ready) {
        for &ctx in &rd.dropped_reads {
            self.pending_reads.remove(&(idx, ctx));
        }
        for r in &rd.read_states {
            let Some(floor) = self.pending_reads.remove(&(idx, r.ctx)) else {
                continue;
            };
            self.reads_checked += 1;
            if r.index < floor {
                let id = self.nodes[idx].id;
                return self.violation(Violation {
                    invariant: "linearizable read (§6.4 of the thesis)",
                    detail: format!(
                        "node {id} read {} at index {}, but {floor} was committed before it was issued",
                        r.ctx, r.index
                    ),
                });
            }
        }
    }

    fn restore(&mut self, idx: usize, data: &Bytes) {
        let id = self.nodes[idx].id;
        let Some((index, digest)) = decode_app_snapshot(data) else {
            return self.violation(Violation {
                invariant: "snapshot integrity",
                detail: format!("node {id} received a snapshot it cannot decode"),
            });
        };
        if let Err(v) = self.committed.check_restore(id, index, digest) {
            return self.violation(v);
        }
        let app = &mut self.nodes[idx].app;
        app.last_applied = index;
        app.digest = digest;
        self.trace(|| format!("n{id} restored snapshot at {index}"));
    }

    /// The model application's snapshot policy: every `snapshot_every`
    /// applied entries. Returns whether it took one.
    fn maybe_snapshot(&mut self, idx: usize) -> bool {
        let Some(every) = self.cfg.snapshot_every else {
            return false;
        };
        let padding = self.cfg.snapshot_padding;
        let node = &mut self.nodes[idx];
        let app = node.app;
        let Some(raft) = node.raft.as_mut() else {
            return false;
        };
        if app.last_applied.get() < app.last_snapshot.get() + every {
            return false;
        }
        let data = encode_app_snapshot(app.last_applied, app.digest, padding);
        if raft.compact(app.last_applied, data).is_ok() {
            node.app.last_snapshot = app.last_applied;
            return true;
        }
        false
    }

    pub(crate) fn send_all(&mut self, msgs: &[Message]) {
        for m in msgs {
            let pre = matches!(
                &m.body,
                MessageBody::Vote(VoteRequest { pre: true, .. })
                    | MessageBody::VoteResp { pre: true, .. }
            );
            let sender = self.nodes.iter_mut().find(|n| n.id == m.from);
            if let Some(node) = sender.filter(|_| !pre) {
                node.sent_term = node.sent_term.max(m.term);
            }
            let is_request = m.body.is_request();
            let msg = if self.cfg.serialize {
                let bytes = m.to_bytes();
                match Message::from_bytes(&bytes) {
                    Ok(copy) if copy == *m => (copy, bytes.len() as u64),
                    other => {
                        return self.violation(Violation {
                            invariant: "codec round trip",
                            detail: format!("{m} decoded as {other:?}"),
                        });
                    }
                }
            } else {
                (m.clone(), 0)
            };
            let (msg, bytes) = msg;
            let fates = self.net.route(
                &mut self.rng,
                self.now,
                (m.from.get(), m.to.get()),
                is_request,
                bytes,
            );
            self.trace(|| format!("send {m}{}", if fates.is_empty() { " (lost)" } else { "" }));
            for at in fates {
                self.schedule(at, Event::Deliver { msg: msg.clone() });
            }
        }
    }

    pub(crate) fn deliver(&mut self, msg: Message) {
        let (from, to) = (msg.from.get(), msg.to.get());
        let Some(idx) = (to as usize)
            .checked_sub(1)
            .filter(|&i| i < self.nodes.len())
        else {
            return;
        };
        if !self.net.link_up(from, to) || !self.nodes[idx].alive() {
            self.net.counters.dropped += 1;
            return;
        }
        self.net.delivered(to, msg.body.is_request());
        self.trace(|| format!("recv {msg}"));
        let Some(raft) = self.nodes[idx].raft.as_mut() else {
            return;
        };
        match raft.step(msg) {
            Ok(()) => {}
            // Honest peers never cause these: in the simulator they are bugs.
            Err(e @ (StepError::TwoLeaders { .. } | StepError::CommittedConflict { .. })) => {
                return self.violation(Violation {
                    invariant: "peer input",
                    detail: e.to_string(),
                });
            }
            Err(e) => {
                return self.violation(Violation {
                    invariant: "message routing",
                    detail: e.to_string(),
                });
            }
        }
        self.drain(idx);
    }

    fn check_leader(&mut self, idx: usize) {
        let Some(raft) = self.nodes[idx].raft.as_ref() else {
            return;
        };
        let status = raft.status();
        let result = self
            .election
            .observe_leader(status.term, status.id)
            .and_then(|()| check_new_leader(raft, &self.committed));
        if let Err(v) = result {
            self.violation(v);
        }
    }

    /// Before the Ready's writes: the entries a leader hands out to apply are
    /// durable on a majority already (the production driver applies them
    /// meanwhile). Checked where commits are decided, on the leader; a
    /// follower's commit index follows the leader's in steps of its own.
    fn check_durable_commit(&mut self, idx: usize, rd: &Ready) {
        let (Some(last), Some(raft)) = (rd.committed_entries.last(), &self.nodes[idx].raft) else {
            return;
        };
        if raft.status().role != Role::Leader {
            return;
        }
        let first = rd.committed_entries[0].index;
        let confs: Vec<ConfState> = std::iter::once(raft.conf_at(first.prev()))
            .chain(
                rd.committed_entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::ConfChange)
                    .map(|e| raft.conf_at(e.index)),
            )
            .collect();
        let id = raft.status().id;
        let nodes = &self.nodes;
        let disk = |id| nodes.iter().find(|n| n.id == id).map(|n| &n.disk);
        if let Err(v) = durable_commit::check(id, last, &confs, disk) {
            self.violation(v);
        }
    }

    /// The entries a Ready writes, each with the term before it, for the
    /// log-matching check.
    pub(crate) fn written_entries(&self, idx: usize, rd: &Ready) -> Vec<(Entry, Term)> {
        let Some(raft) = self.nodes[idx].raft.as_ref().filter(|_| self.cfg.checks) else {
            return Vec::new();
        };
        rd.entries
            .iter()
            .filter_map(|e| Some((e.clone(), raft.term_at(e.index.prev())?)))
            .collect()
    }

    /// Log matching over what node `idx` wrote durably (with asynchronous
    /// writes, checked once they sync: entries lost in a crash before, along
    /// with the term they were written in, never existed for anyone else).
    pub(crate) fn check_log_matching(&mut self, idx: usize, written: &[(Entry, Term)]) {
        let id = self.nodes[idx].id;
        for (e, prev_term) in written {
            if let Err(v) = self.log_matching.observe(id, e, *prev_term) {
                return self.violation(v);
            }
        }
    }

    /// Per-node invariants: the core's own, a commit index that never goes
    /// back within an incarnation, and a term that never goes back (with
    /// asynchronous writes, a crash may lose a term taken but not yet synced,
    /// never one the node sent in a message).
    fn check_node(&mut self, idx: usize) {
        let node = &mut self.nodes[idx];
        let Some(raft) = node.raft.as_ref() else {
            return;
        };
        raft.check_invariants();
        let status = raft.status();
        let id = node.id;
        if status.commit < node.last_commit {
            let detail = format!(
                "node {id} commit went from {} to {}",
                node.last_commit, status.commit
            );
            return self.violation(Violation {
                invariant: "monotonic commit",
                detail,
            });
        }
        if status.term < node.last_term {
            let detail = format!(
                "node {id} term went from {} to {}",
                node.last_term, status.term
            );
            return self.violation(Violation {
                invariant: "monotonic term",
                detail,
            });
        }
        node.last_commit = status.commit;
        node.last_term = status.term;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_snapshot_round_trips_with_padding() {
        let data = encode_app_snapshot(LogIndex(42), 0xdead_beef, 100);
        assert!(data.len() > 100);
        assert_eq!(
            decode_app_snapshot(&data),
            Some((LogIndex(42), 0xdead_beef))
        );
    }
}
