//! The KV replica and the member table as one state machine
//! ([`KvMachine`]), and its snapshot: `FLOTILLA-MEMBERS-1`, the table,
//! then the replica's own snapshot. A snapshot without that prefix
//! (written before the table existed) restores the replica and keeps the
//! bootstrap table.
//!
//! The KV replica knows nothing of membership; this wrapper applies
//! conf-change entries to the member table as well. While anyone listens
//! ([`Publish::active`]), each applied entry's store changes are published
//! under the machine's lock, and a restore that moves the revision
//! publishes a reset.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use flotilla_kv::{Applied, Outcome, Replica};
use flotilla_raft::codec::Decoder;
use flotilla_raft::{ConfChange, Decode, Entry, EntryKind, NodeId};

use super::members::Members;
use super::{Batch, Publish};
use crate::{ApplyError, PeerTable, RestoreError, SnapshotJob, StateMachine};

/// Opens a snapshot that carries the member table.
const SNAPSHOT_MAGIC: &[u8] = b"FLOTILLA-MEMBERS-1";

/// What applying one entry gave: the request's answer, `None` for an
/// entry that is not a command.
pub type KvOutput = Option<flotilla_kv::Applied>;

/// The replicated KV state machine; `P` is where applied changes go.
#[derive(Debug)]
pub struct KvMachine<P> {
    /// The replica.
    pub replica: Replica,
    /// The member table.
    pub members: Members,
    /// Where applied changes go while anyone listens.
    pub watch: Arc<P>,
}

impl<P: Publish> KvMachine<P> {
    /// The machine of a cluster whose initial members are `initial`,
    /// publishing to `watch`.
    pub fn new(initial: &BTreeMap<NodeId, String>, watch: Arc<P>) -> KvMachine<P> {
        Self::with_sessions(initial, watch, flotilla_kv::SessionLimits::default())
    }

    /// As [`KvMachine::new`], with sessions kept within `limits` (the
    /// simulator expires them within its short runs).
    pub fn with_sessions(
        initial: &BTreeMap<NodeId, String>,
        watch: Arc<P>,
        limits: flotilla_kv::SessionLimits,
    ) -> KvMachine<P> {
        KvMachine {
            // etcd's store: every revision until compacted, from 1.
            replica: Replica::etcd(limits),
            members: Members::bootstrap(initial),
            watch,
        }
    }
}

impl<P: Publish> StateMachine for KvMachine<P> {
    type Output = KvOutput;

    /// Conf-change entries also update the member table. A command that
    /// decodes but fails the replica's checks (an empty key, which an
    /// older build let into the log) is answered with a refusal on every
    /// replica and stops nothing. What stops the node is only what no
    /// replica of this build can interpret: a command it cannot decode
    /// (a newer version's op, during a rolling upgrade: see
    /// [`UnreadableCommand`]), or an entry out of order (a driver bug).
    /// Commands are encoded by servers of this cluster from requests they
    /// checked; a follower forwards its own encoding inside Raft's
    /// messages (a leader takes those only from members), and one
    /// forwarded over the `Proposals` RPC (by an earlier build) is
    /// decoded before it is proposed, so no client can make a member
    /// stop this way.
    fn apply(&mut self, entry: &Entry) -> Result<KvOutput, ApplyError> {
        if entry.kind == EntryKind::ConfChange {
            // One the Raft core cannot decode it skips, and so do we.
            if let Ok(cc) = ConfChange::from_bytes(&entry.data) {
                self.members.apply(&cc);
            }
        }
        // Events are recorded only while someone watches.
        let mut events = Vec::new();
        let sink = self.watch.active().then_some(&mut events);
        let out = self
            .replica
            .apply_recording(entry, sink)
            .map_err(|e| ApplyError {
                index: entry.index,
                source: match e {
                    flotilla_kv::ApplyError::BadCommand { source, .. } => {
                        Box::new(UnreadableCommand {
                            index: entry.index,
                            term: entry.term,
                            what: source,
                        })
                    }
                    e => Box::new(e),
                },
            })?;
        if let Some(Applied {
            outcome: Outcome::Refused(refusal),
            ..
        }) = &out
        {
            tracing::warn!(index = %entry.index, %refusal, "refused a committed command");
        }
        if !events.is_empty() {
            let revision = self.replica.store().revision();
            self.watch.publish(Batch::Events { revision, events });
        }
        Ok(out)
    }

    fn snapshot(&self) -> Bytes {
        encode_snapshot(&self.members, &self.replica)
    }

    /// A clone of the replica shares its chunks of keys (copy-on-write,
    /// one pointer per 512 keys: 0.1 ms at 100,000 keys in `cargo bench
    /// -p flotilla-kv --bench snapshot`), so the Raft task barely pauses;
    /// the encoding runs off it. The member table goes with it, through
    /// [`encode_snapshot`].
    fn snapshot_job(&self) -> SnapshotJob {
        let copy = self.replica.clone();
        let members = self.members.clone();
        Box::new(move || encode_snapshot(&members, &copy))
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), RestoreError> {
        let replica = if data.starts_with(SNAPSHOT_MAGIC) {
            let mut d = Decoder::new(data.slice(SNAPSHOT_MAGIC.len()..));
            let members = Members::decode(&mut d).map_err(|e| RestoreError(Box::new(e)))?;
            let rest = data.slice(SNAPSHOT_MAGIC.len() + d.offset()..);
            self.members = members;
            rest
        } else {
            data.clone()
        };
        let before = self.replica.store().revision();
        self.replica
            .restore(&replica)
            .map_err(|e| RestoreError(Box::new(e)))?;
        let revision = self.replica.store().revision();
        if revision != before {
            self.watch.publish(Batch::Reset { revision });
        }
        Ok(())
    }

    fn peer_table(&self) -> Option<PeerTable> {
        Some(PeerTable {
            addrs: self.members.addrs.clone(),
            // A removed voter still votes while the group is joint.
            removed: self
                .members
                .removed
                .iter()
                .copied()
                .filter(|&id| !self.members.is_member(id))
                .collect(),
        })
    }
}

/// A committed command this build cannot read: the node stops rather than
/// skip it, since members that can read it would apply it and diverge
/// from this one. The message names the entry, what was wrong and what
/// the operator can do.
#[derive(Debug, thiserror::Error)]
#[error(
    "entry {index} (term {term}) holds a command this build cannot read ({what}); \
     the member stops here rather than diverge from members that can apply it. \
     Recovery: if a newer Flotilla wrote it (a rolling upgrade), run that build on \
     this member: the entry stays in the log and is applied on restart; otherwise \
     replace the member (flotilla member remove, a fresh --data-dir, member add)"
)]
pub struct UnreadableCommand {
    /// The entry's index.
    pub index: flotilla_raft::LogIndex,
    /// The entry's term.
    pub term: flotilla_raft::Term,
    /// What was wrong with it (in the message, so not a `source` too).
    pub what: flotilla_kv::CodecError,
}

/// The machine's snapshot: `SNAPSHOT_MAGIC`, the member table, then the
/// replica's own snapshot, encoded behind them in one buffer. Whatever
/// takes a snapshot of the machine must go through here, or the member
/// table would be lost.
pub fn encode_snapshot(members: &Members, replica: &Replica) -> Bytes {
    let mut prefix = SNAPSHOT_MAGIC.to_vec();
    members.encode(&mut prefix);
    replica.snapshot_behind(&prefix)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use flotilla_kv::{Command, Op, ReadConsistency, Request};
    use flotilla_raft::{ConfChangeOp, Encode, LogIndex, Term};

    use super::*;
    use crate::kv_app::NoWatch;
    use crate::kv_app::members::encode_context;

    /// Keeps what is published while `listening`.
    #[derive(Debug, Default)]
    struct Recorder {
        listening: AtomicBool,
        batches: Mutex<Vec<Batch>>,
    }

    impl Publish for Recorder {
        fn active(&self) -> bool {
            self.listening.load(Ordering::Relaxed)
        }
        fn publish(&self, batch: Batch) {
            self.batches.lock().unwrap().push(batch);
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<Batch> {
            std::mem::take(&mut self.batches.lock().unwrap())
        }
    }

    fn machine() -> KvMachine<NoWatch> {
        KvMachine::new(&initial(), Arc::new(NoWatch))
    }

    fn entry(index: u64, kind: EntryKind, data: Bytes) -> Entry {
        Entry {
            term: Term(1),
            index: LogIndex(index),
            kind,
            data,
        }
    }

    fn initial() -> BTreeMap<NodeId, String> {
        (1..=3)
            .map(|i| (NodeId(i), format!("127.0.0.1:{}", 9000 + i)))
            .collect()
    }

    #[test]
    fn conf_changes_reach_the_table_and_the_snapshot_keeps_it() {
        let mut m = machine();
        let add = ConfChange {
            ops: vec![ConfChangeOp::AddLearner(NodeId(4))],
            context: encode_context(&BTreeMap::from([(NodeId(4), "h:4".to_string())])),
        };
        m.apply(&entry(1, EntryKind::ConfChange, add.to_bytes()))
            .unwrap();
        let remove = ConfChange::new(vec![ConfChangeOp::Remove(NodeId(1))]);
        m.apply(&entry(2, EntryKind::ConfChange, remove.to_bytes()))
            .unwrap();
        let leave = ConfChange::leave_joint().to_bytes();
        m.apply(&entry(3, EntryKind::ConfChange, leave)).unwrap();
        let table = m.peer_table().unwrap();
        assert_eq!(table.addrs.get(&NodeId(4)).map(String::as_str), Some("h:4"));
        assert!(table.removed.contains(&NodeId(1)));
        assert!(!table.addrs.contains_key(&NodeId(1)));

        let mut restored = machine();
        restored.restore(&m.snapshot()).unwrap();
        assert_eq!(restored.members, m.members);
        assert_eq!(restored.replica.applied(), LogIndex(3));
    }

    #[test]
    fn changes_are_published_only_while_watched_and_a_restore_resets() {
        let hub = Arc::new(Recorder::default());
        let mut m = KvMachine::new(&initial(), Arc::clone(&hub));
        m.apply(&entry_at((1, Op::put("a", "1")))).unwrap();
        assert!(hub.take().is_empty(), "nobody listened");
        let snapshot = m.snapshot();
        hub.listening.store(true, Ordering::Relaxed);
        m.apply(&entry_at((2, Op::get("a")))).unwrap();
        m.apply(&entry_at((3, Op::put("a", "2")))).unwrap();
        let batches = hub.take();
        let [Batch::Events { revision, events }] = batches.as_slice() else {
            panic!("{batches:?}")
        };
        assert_eq!(*revision, 3, "the read published nothing");
        assert_eq!(events[0].prev.as_ref().unwrap().value.as_ref(), b"1");
        m.restore(&snapshot).unwrap();
        let batches = hub.take();
        assert!(matches!(batches.as_slice(), [Batch::Reset { revision: 2 }]));
        m.restore(&snapshot).unwrap();
        assert!(
            hub.take().is_empty(),
            "a restore that keeps the revision resets nothing"
        );
    }

    /// Issue 19: an empty key that an older build let into the log is
    /// answered as refused; the machine goes on.
    #[test]
    fn a_committed_empty_key_is_refused_not_fatal() {
        let mut m = machine();
        let out = m.apply(&entry_at((1, Op::put("", "v")))).unwrap();
        let refused = flotilla_kv::Refusal::EmptyKey {
            role: flotilla_kv::KeyRole::Write,
        };
        assert_eq!(out.unwrap().outcome, Outcome::Refused(refused));
        assert_eq!(m.replica.store().revision(), 1, "etcd's empty store");
        let next = m.apply(&entry_at((2, Op::put("k", "v")))).unwrap();
        assert!(matches!(
            next.unwrap().outcome,
            Outcome::Ok { revision: 2, .. }
        ));
    }

    /// The command at `index` of a session-less request (a fresh client
    /// per entry, as the server mints them).
    fn entry_at((index, op): (u64, Op)) -> Entry {
        let command = Command {
            stamp_ms: 0,
            request: Request {
                client: (1 << 63) | index,
                seq: 1,
                read: ReadConsistency::Linearizable,
                resumed: false,
                op,
            },
        };
        entry(index, EntryKind::Command, command.encode())
    }

    #[test]
    fn old_snapshots_restore_and_damaged_ones_are_errors() {
        let mut m = machine();
        // A snapshot written before the member table existed: the bare
        // replica's.
        let old = Replica::default().snapshot();
        m.restore(&old).unwrap();
        assert_eq!(m.members, Members::bootstrap(&initial()));
        let mut cut = machine().snapshot().to_vec();
        cut.truncate(SNAPSHOT_MAGIC.len() + 2);
        assert!(m.restore(&Bytes::from(cut)).is_err());
    }
}
