//! The KV server of one Raft node: it turns client requests into proposals
//! and read-index requests on the node's [`RawNode`], and the node's
//! [`Ready`]s into replies. It owns the [`Replica`]; the driver owns the
//! node, the network and the disk, and calls in:
//!
//! 1. [`KvServer::on_request`] when a client's request arrives;
//! 2. [`KvServer::on_ready`] for each Ready, after persisting it and before
//!    `advance` (it restores a snapshot, applies committed entries, serves
//!    confirmed reads);
//! 3. [`KvServer::snapshot_if_due`] after `advance`, and hands what it
//!    returns to [`RawNode::compact`].
//!
//! Each returns the replies to send. Invariants:
//! - a write is answered only after the entry carrying it is applied, with
//!   the outcome recorded by the replica; if a different entry lands at its
//!   index, or this node stops leading first, the client is told
//!   [`Outcome::WrongLeader`] (with the leader if known), never left hanging
//!   while the node lives;
//! - a linearizable read is answered from a state that has applied at least
//!   the read index Raft confirmed for it (Raft thesis §6.4); a dropped
//!   read is answered `WrongLeader`;
//! - a serializable read is answered at once from the local state;
//! - a read that fails [`crate::check::check_op`] is refused at once.

use std::collections::BTreeMap;

use flotilla_raft::{LogIndex, RawNode, Ready, Role, Snapshot, Term};
use thiserror::Error;

use crate::command::{Command, Op, Outcome, ReadConsistency, Reply, Request};
use crate::replica::{ApplyError, Replica};
use crate::session::SessionLimits;
use crate::snapshot::SnapshotError;

/// How a server behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Keep the Raft log held since the last snapshot under this many
    /// bytes: snapshot once it reaches half of it (`None`: never snapshot,
    /// the course's `maxraftstate = -1`).
    pub max_raft_state: Option<u64>,
    /// Bounds of the session table.
    pub sessions: SessionLimits,
    /// Keep the store's history (etcd's MVCC: reads at older revisions,
    /// compaction); the course's KV keeps none.
    pub history: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_raft_state: Some(1 << 20),
            sessions: SessionLimits::default(),
            history: false,
        }
    }
}

/// A reply to send to the client at address `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Where the request came from.
    pub to: u64,
    /// The reply.
    pub reply: Reply,
}

/// What stops a server: its state can no longer be trusted.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ServerError {
    /// A snapshot to restore was refused.
    #[error("cannot restore the snapshot at {index}: {source}")]
    Restore {
        /// The snapshot's index.
        index: LogIndex,
        /// Why.
        source: SnapshotError,
    },
    /// The driver handed entries out of order.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

#[derive(Clone, Debug)]
struct Waiting {
    from: u64,
    client: u64,
    seq: u64,
}

#[derive(Clone, Debug)]
struct Proposal {
    term: Term,
    who: Waiting,
}

#[derive(Clone, Debug)]
struct Read {
    who: Waiting,
    op: Op,
}

/// The server. See the module docs.
#[derive(Debug)]
pub struct KvServer {
    cfg: ServerConfig,
    replica: Replica,
    proposals: BTreeMap<LogIndex, Proposal>,
    reads: BTreeMap<u64, Read>,
    confirmed: BTreeMap<(LogIndex, u64), Read>,
    next_ctx: u64,
    last_snapshot: LogIndex,
    /// Committed entries that were not KV commands (skipped the same way on
    /// every replica).
    pub skipped_entries: u64,
}

fn reply(w: &Waiting, outcome: Outcome) -> Outgoing {
    Outgoing {
        to: w.from,
        reply: Reply {
            client: w.client,
            seq: w.seq,
            outcome,
        },
    }
}

impl KvServer {
    /// A server for a node starting from `snapshot` (the one on its disk,
    /// if any); Raft then hands it the committed entries after it.
    pub fn new(cfg: ServerConfig, snapshot: Option<&Snapshot>) -> Result<KvServer, ServerError> {
        let mut replica = if cfg.history {
            Replica::with_history(cfg.sessions)
        } else {
            Replica::new(cfg.sessions)
        };
        let mut last_snapshot = LogIndex(0);
        if let Some(s) = snapshot {
            replica
                .restore(&s.data)
                .map_err(|source| ServerError::Restore {
                    index: s.meta.index,
                    source,
                })?;
            last_snapshot = s.meta.index;
        }
        Ok(KvServer {
            cfg,
            replica,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            next_ctx: 0,
            last_snapshot,
            skipped_entries: 0,
        })
    }

    /// The replica state machine.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Requests waiting for their entry or read index.
    pub fn waiting(&self) -> usize {
        self.proposals.len() + self.reads.len() + self.confirmed.len()
    }

    /// A request from the client at address `from`; `now_ms` is this node's
    /// clock, stamped on the entry (the replicated clock of sessions).
    pub fn on_request(
        &mut self,
        raft: &mut RawNode,
        from: u64,
        req: Request,
        now_ms: u64,
    ) -> Vec<Outgoing> {
        let who = Waiting {
            from,
            client: req.client,
            seq: req.seq,
        };
        if req.op.is_read_only() {
            // A read never reaches the log, where apply refuses what fails
            // the checks: it is checked here. A write is left to apply, so
            // that every replica refuses it the same way (and the
            // simulator exercises that path).
            if let Err(refusal) = crate::check::check_op(&req.op) {
                return vec![reply(&who, Outcome::Refused(refusal))];
            }
            if req.read == ReadConsistency::Serializable {
                return vec![reply(&who, self.replica.read(&req.op))];
            }
            self.next_ctx += 1;
            let ctx = self.next_ctx;
            self.reads.insert(ctx, Read { who, op: req.op });
            raft.read_index(ctx);
            return Vec::new();
        }
        if let Some(done) = self.replica.cached(req.client, req.seq) {
            return vec![reply(&who, done)];
        }
        let status = raft.status();
        if status.role != Role::Leader {
            let leader = status.leader.map(|l| l.get());
            return vec![reply(&who, Outcome::WrongLeader { leader })];
        }
        let data = Command {
            stamp_ms: now_ms,
            request: req,
        }
        .encode();
        match raft.propose(data) {
            Ok(index) => {
                let p = Proposal {
                    term: status.term,
                    who,
                };
                match self.proposals.insert(index, p) {
                    Some(old) => vec![reply(&old.who, Outcome::WrongLeader { leader: None })],
                    None => Vec::new(),
                }
            }
            Err(flotilla_raft::ProposeError::NotLeader { leader_hint }) => {
                let leader = leader_hint.map(|l| l.get());
                vec![reply(&who, Outcome::WrongLeader { leader })]
            }
            Err(_) => vec![reply(&who, Outcome::WrongLeader { leader: None })],
        }
    }

    /// Handles a Ready of `raft` (persisted, not yet advanced past).
    pub fn on_ready(&mut self, raft: &RawNode, rd: &Ready) -> Result<Vec<Outgoing>, ServerError> {
        let mut out = Vec::new();
        let status = raft.status();
        if status.role != Role::Leader || self.proposals.values().any(|p| p.term != status.term) {
            let leader = status.leader.map(|l| l.get());
            let keep = |p: &Proposal| status.role == Role::Leader && p.term == status.term;
            let (kept, lost): (BTreeMap<_, _>, BTreeMap<_, _>) =
                std::mem::take(&mut self.proposals)
                    .into_iter()
                    .partition(|(_, p)| keep(p));
            self.proposals = kept;
            out.extend(
                lost.values()
                    .map(|p| reply(&p.who, Outcome::WrongLeader { leader })),
            );
        }
        if rd.restore_snapshot
            && let Some(snap) = &rd.snapshot
        {
            self.restore(snap, &mut out)?;
        }
        for e in &rd.committed_entries {
            self.apply(e, &mut out)?;
        }
        for rs in &rd.read_states {
            if let Some(r) = self.reads.remove(&rs.ctx) {
                self.confirmed.insert((rs.index, rs.ctx), r);
            }
        }
        let leader = status.leader.map(|l| l.get());
        for ctx in &rd.dropped_reads {
            if let Some(r) = self.reads.remove(ctx) {
                out.push(reply(&r.who, Outcome::WrongLeader { leader }));
            }
        }
        self.serve_reads(&mut out);
        Ok(out)
    }

    fn restore(&mut self, snap: &Snapshot, out: &mut Vec<Outgoing>) -> Result<(), ServerError> {
        let index = snap.meta.index;
        self.replica
            .restore(&snap.data)
            .map_err(|source| ServerError::Restore { index, source })?;
        self.last_snapshot = index;
        let later = self.proposals.split_off(&index.next());
        for p in std::mem::replace(&mut self.proposals, later).into_values() {
            let w = &p.who;
            let outcome = self
                .replica
                .cached(w.client, w.seq)
                .unwrap_or(Outcome::WrongLeader { leader: None });
            out.push(reply(w, outcome));
        }
        Ok(())
    }

    fn apply(
        &mut self,
        e: &flotilla_raft::Entry,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), ServerError> {
        let applied = match self.replica.apply(e) {
            Ok(a) => a,
            Err(ApplyError::BadCommand { .. }) => {
                self.skipped_entries += 1;
                None
            }
            Err(err) => return Err(err.into()),
        };
        let Some(p) = self.proposals.remove(&e.index) else {
            return Ok(());
        };
        let outcome = match applied {
            Some(a) if a.term == p.term && a.client == p.who.client && a.seq == p.who.seq => {
                a.outcome
            }
            // Another entry took the slot: the request may still be in the
            // log elsewhere, or lost; the client retries.
            _ => Outcome::WrongLeader { leader: None },
        };
        out.push(reply(&p.who, outcome));
        Ok(())
    }

    fn serve_reads(&mut self, out: &mut Vec<Outgoing>) {
        let applied = self.replica.applied();
        while let Some(entry) = self.confirmed.first_entry() {
            if entry.key().0 > applied {
                break;
            }
            let r = entry.remove();
            out.push(reply(&r.who, self.replica.read(&r.op)));
        }
    }

    /// The snapshot to hand to [`RawNode::compact`] if the log held since
    /// the last one (`log_bytes`) reached `max_raft_state`: its index and
    /// data.
    pub fn snapshot_if_due(&mut self, log_bytes: u64) -> Option<(LogIndex, bytes::Bytes)> {
        let applied = self.replica.applied();
        if applied <= self.last_snapshot
            || !self
                .replica
                .snapshot_due(log_bytes, self.cfg.max_raft_state)
        {
            return None;
        }
        self.last_snapshot = applied;
        Some((applied, self.replica.snapshot()))
    }
}

#[cfg(test)]
mod tests {
    use flotilla_raft::{
        Config, Entry, EntryKind, InitialState, MemStorage, NodeId, Role, persist,
    };

    use super::*;
    use crate::command::Response;

    fn request(client: u64, seq: u64, op: Op, read: ReadConsistency) -> Request {
        Request {
            client,
            seq,
            read,
            resumed: seq > 1,
            op,
        }
    }

    fn leader() -> (RawNode, MemStorage, KvServer) {
        leader_with(ServerConfig::default())
    }

    fn leader_with(server_cfg: ServerConfig) -> (RawNode, MemStorage, KvServer) {
        let cfg = Config::new(NodeId(1), vec![NodeId(1)]);
        let mut node = RawNode::new(cfg, InitialState::default()).unwrap();
        node.campaign();
        let mut storage = MemStorage::new();
        let mut server = KvServer::new(server_cfg, None).unwrap();
        drive(&mut node, &mut storage, &mut server);
        assert_eq!(node.status().role, Role::Leader);
        (node, storage, server)
    }

    fn drive(node: &mut RawNode, storage: &mut MemStorage, server: &mut KvServer) -> Vec<Outgoing> {
        let mut out = Vec::new();
        while node.has_ready() {
            let rd = node.ready();
            let Ok(()) = persist(storage, rd.writes());
            out.extend(server.on_ready(node, &rd).unwrap());
            node.advance(&rd);
        }
        out
    }

    fn ok(to: u64, client: u64, seq: u64, revision: u64, response: Response) -> Outgoing {
        Outgoing {
            to,
            reply: Reply {
                client,
                seq,
                outcome: Outcome::Ok { revision, response },
            },
        }
    }

    #[test]
    fn writes_are_answered_once_applied_and_retries_from_the_table() {
        let (mut node, mut storage, mut server) = leader();
        let put = request(7, 1, Op::put("k", "v"), ReadConsistency::Linearizable);
        assert_eq!(server.on_request(&mut node, 100, put.clone(), 5), vec![]);
        let out = drive(&mut node, &mut storage, &mut server);
        assert_eq!(out, vec![ok(100, 7, 1, 1, Response::Written)]);
        // The retry of an applied request is answered at once, not applied.
        let again = server.on_request(&mut node, 101, put, 6);
        assert_eq!(again, vec![ok(101, 7, 1, 1, Response::Written)]);
        assert_eq!(server.replica().store().revision(), 1);
    }

    #[test]
    fn reads_wait_for_their_read_index_and_serializable_ones_do_not() {
        let (mut node, mut storage, mut server) = leader();
        let put = request(7, 1, Op::put("k", "v"), ReadConsistency::Linearizable);
        server.on_request(&mut node, 100, put, 5);
        drive(&mut node, &mut storage, &mut server);
        let get = request(7, 2, Op::get("k"), ReadConsistency::Linearizable);
        assert_eq!(server.on_request(&mut node, 100, get, 6), vec![]);
        let out = drive(&mut node, &mut storage, &mut server);
        let kv = server.replica().store().get(b"k");
        assert_eq!(out, vec![ok(100, 7, 2, 1, Response::Get(kv.clone()))]);
        let stale_ok = request(8, 1, Op::get("k"), ReadConsistency::Serializable);
        let out = server.on_request(&mut node, 200, stale_ok, 7);
        assert_eq!(out, vec![ok(200, 8, 1, 1, Response::Get(kv))]);
    }

    #[test]
    fn a_follower_sends_writes_elsewhere() {
        let cfg = Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)]);
        let mut node = RawNode::new(cfg, InitialState::default()).unwrap();
        let mut server = KvServer::new(ServerConfig::default(), None).unwrap();
        let put = request(7, 1, Op::put("k", "v"), ReadConsistency::Linearizable);
        let out = server.on_request(&mut node, 100, put, 5);
        assert_eq!(out[0].reply.outcome, Outcome::WrongLeader { leader: None });
    }

    #[test]
    fn another_entry_at_the_index_fails_the_proposal() {
        let (mut node, _storage, mut server) = leader();
        let put = request(7, 1, Op::put("k", "v"), ReadConsistency::Linearizable);
        server.on_request(&mut node, 100, put, 5);
        // Pretend a new leader overwrote the slot with another client's entry.
        let other = Command {
            stamp_ms: 9,
            request: request(8, 1, Op::put("k", "w"), ReadConsistency::Linearizable),
        };
        let index = server.replica().applied().next();
        let rd = Ready {
            committed_entries: vec![Entry {
                term: node.status().term,
                index,
                kind: EntryKind::Command,
                data: other.encode(),
            }],
            ..Ready::default()
        };
        let out = server.on_ready(&node, &rd).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].to, 100);
        assert_eq!(out[0].reply.outcome, Outcome::WrongLeader { leader: None });
        assert_eq!(server.waiting(), 0);
    }

    #[test]
    fn snapshots_are_due_at_half_the_limit_and_restore_on_restart() {
        let cfg = ServerConfig {
            max_raft_state: Some(200),
            ..ServerConfig::default()
        };
        let (mut node, mut storage, mut server) = leader_with(cfg);
        for seq in 1..=20 {
            let put = request(7, seq, Op::append("k", "x"), ReadConsistency::Linearizable);
            server.on_request(&mut node, 100, put, seq);
            drive(&mut node, &mut storage, &mut server);
        }
        let (index, data) = server
            .snapshot_if_due(node.status().log_bytes)
            .expect("a snapshot is due");
        assert_eq!(index, server.replica().applied());
        let snap = flotilla_raft::Snapshot {
            meta: flotilla_raft::SnapshotMeta {
                index,
                term: node.status().term,
                conf_state: node.status().conf_state,
            },
            data,
        };
        let restarted = KvServer::new(cfg, Some(&snap)).unwrap();
        assert_eq!(restarted.replica(), server.replica());
        let mut corrupt = snap.clone();
        corrupt.data = corrupt.data.slice(..corrupt.data.len() - 1);
        let err = KvServer::new(cfg, Some(&corrupt)).unwrap_err();
        assert!(err.to_string().contains("cannot restore"), "{err}");
    }
}
