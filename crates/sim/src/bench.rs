//! A benchmark harness for the consensus core alone (`flotilla bench
//! raft`): a group of [`RawNode`]s over [`MemStorage`], with no clock, no
//! faults, no checks and no host, driven as fast as it goes: each Ready
//! is persisted, its messages delivered at once in the order sent, its
//! committed entries counted as applied. What is measured is the core's
//! own work (stepping, log bookkeeping, Ready assembly); the caller
//! measures wall time.
//!
//! It is not the simulator: figures of the production path (the host, the
//! WAL, group commit) are `flotilla bench kv`'s and the hosted world's;
//! these isolate what the core costs, which those include.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use flotilla_raft::{
    Config, Decode, Encode, LogIndex, MemStorage, Message, NodeId, RawNode, Role, persist,
};

/// Why a benchmark could not run to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchError(String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

/// Compaction keeps memory flat over millions of entries.
const SNAPSHOT_ENTRIES: u64 = 50_000;

/// One member: the core, its storage, and what its application applied.
struct Member {
    raw: RawNode,
    storage: MemStorage,
    applied: LogIndex,
    last_snapshot: LogIndex,
    /// Reads confirmed to it.
    reads: u64,
}

/// A group with every message in flight in one queue.
struct Group {
    members: Vec<Member>,
    in_flight: VecDeque<Message>,
    /// Encode every message (so its bytes count).
    serialize: bool,
    /// Messages delivered.
    messages: u64,
    /// Bytes of the messages delivered, when encoded.
    bytes: u64,
}

impl Group {
    /// A `nodes`-node group whose member 1 campaigned and leads.
    fn elected(nodes: u64, serialize: bool) -> Result<Group, BenchError> {
        let voters: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
        let mut members = Vec::new();
        for &id in &voters {
            let mut cfg = Config::new(id, voters.clone());
            cfg.seed = id.get();
            let raw = RawNode::new(cfg, Default::default())
                .map_err(|e| BenchError(format!("member {id} cannot start: {e}")))?;
            members.push(Member {
                raw,
                storage: MemStorage::new(),
                applied: LogIndex(0),
                last_snapshot: LogIndex(0),
                reads: 0,
            });
        }
        let mut g = Group {
            members,
            in_flight: VecDeque::new(),
            serialize,
            messages: 0,
            bytes: 0,
        };
        g.members[0].raw.campaign();
        g.settle()?;
        if g.members[0].raw.status().role != Role::Leader {
            return Err(BenchError("member 1 campaigned and did not win".into()));
        }
        Ok(g)
    }

    /// Handles every Ready member `i` has, as a synchronous driver does:
    /// persist, send, count what is applied, advance; then compacts.
    fn drain(&mut self, i: usize) {
        let m = &mut self.members[i];
        while m.raw.has_ready() {
            let rd = m.raw.ready();
            let Ok(()) = persist(&mut m.storage, rd.writes());
            self.in_flight.extend(rd.messages.iter().cloned());
            self.in_flight.extend(rd.persisted_messages.iter().cloned());
            if let Some(snap) = rd.snapshot.as_ref().filter(|_| rd.restore_snapshot) {
                m.applied = snap.meta.index;
            }
            if let Some(last) = rd.committed_entries.last() {
                m.applied = last.index;
            }
            m.reads += rd.read_states.len() as u64;
            m.raw.advance(&rd);
            if m.applied.get() >= m.last_snapshot.get() + SNAPSHOT_ENTRIES
                && m.raw.compact(m.applied, Bytes::new()).is_ok()
            {
                m.last_snapshot = m.applied;
            }
        }
    }

    /// Delivers every message in flight, and what they cause, until none
    /// is left.
    fn settle(&mut self) -> Result<(), BenchError> {
        self.drain(0);
        while let Some(msg) = self.in_flight.pop_front() {
            let to = msg.to.get() as usize - 1;
            let msg = if self.serialize {
                let bytes = msg.to_bytes();
                self.bytes += bytes.len() as u64;
                Message::from_bytes(&bytes)
                    .map_err(|e| BenchError(format!("{msg} does not decode: {e}")))?
            } else {
                msg
            };
            self.messages += 1;
            let member = self
                .members
                .get_mut(to)
                .ok_or_else(|| BenchError(format!("a message to unknown member {}", to + 1)))?;
            member
                .raw
                .step(msg)
                .map_err(|e| BenchError(format!("member {} refused a message: {e}", to + 1)))?;
            self.drain(to);
        }
        Ok(())
    }

    /// Proposes `n` copies of `data` at the leader.
    fn propose(&mut self, data: &Bytes, n: usize) -> Result<(), BenchError> {
        let batch = std::iter::repeat_n(data.clone(), n);
        self.members[0]
            .raw
            .propose_batch(batch)
            .map_err(|e| BenchError(format!("the leader refused a proposal: {e}")))?;
        self.settle()
    }
}

/// What a throughput run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throughput {
    /// Entries applied by the leader.
    pub entries: u64,
    /// Messages delivered.
    pub steps: u64,
}

/// Commits `entries` commands of `payload` bytes through a `nodes`-node
/// group, proposing `batch` commands per proposal call.
pub fn throughput(
    nodes: u64,
    batch: usize,
    entries: u64,
    payload: usize,
) -> Result<Throughput, BenchError> {
    let mut g = Group::elected(nodes, false)?;
    let data = Bytes::from(vec![0x5a; payload]);
    let start = g.members[0].applied;
    let target = LogIndex(start.get() + entries);
    while g.members[0].applied < target {
        let left = target.get() - g.members[0].applied.get();
        g.propose(&data, batch.min(left as usize).max(1))?;
    }
    Ok(Throughput {
        entries: g.members[0].applied.get() - start.get(),
        steps: g.messages,
    })
}

/// What a read benchmark did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reads {
    /// Reads confirmed (ReadIndex) or applied (through the log).
    pub reads: u64,
    /// Messages the group sent for them.
    pub messages: u64,
    /// Payload bytes the group sent for them.
    pub bytes: u64,
}

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPath {
    /// ReadIndex: one leadership-confirmation round, no log write.
    ReadIndex,
    /// A read committed through the log as an entry (the course's way).
    Log,
}

/// Serves `reads` linearizable reads at the leader of a `nodes`-node group,
/// `burst` issued together, and counts what the group sent for them
/// (messages are encoded, so their bytes are real).
pub fn reads(nodes: u64, path: ReadPath, reads: u64, burst: u64) -> Result<Reads, BenchError> {
    let mut g = Group::elected(nodes, true)?;
    let (messages0, bytes0) = (g.messages, g.bytes);
    let key = Bytes::from_static(b"get k");
    let mut done = 0;
    let mut ctx = 0;
    while done < reads {
        let n = burst.min(reads - done).max(1);
        match path {
            ReadPath::ReadIndex => {
                let want = g.members[0].reads + n;
                for _ in 0..n {
                    ctx += 1;
                    g.members[0].raw.read_index(ctx);
                }
                g.settle()?;
                if g.members[0].reads < want {
                    return Err(BenchError(format!("reads up to {ctx} were not confirmed")));
                }
            }
            ReadPath::Log => {
                let target = LogIndex(g.members[0].applied.get() + n);
                g.propose(&key, n as usize)?;
                if g.members[0].applied < target {
                    return Err(BenchError(format!("reads up to {target} were not applied")));
                }
            }
        }
        done += n;
    }
    Ok(Reads {
        reads: done,
        messages: g.messages - messages0,
        bytes: g.bytes - bytes0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_commits_what_it_is_asked_and_batches_cost_fewer_messages() {
        let one = throughput(3, 1, 200, 10).unwrap();
        let batched = throughput(3, 50, 200, 10).unwrap();
        assert_eq!((one.entries, batched.entries), (200, 200));
        assert!(batched.steps * 10 < one.steps, "{one:?} {batched:?}");
    }

    #[test]
    fn read_index_writes_nothing_and_a_burst_shares_one_round() {
        let single = reads(3, ReadPath::ReadIndex, 100, 1).unwrap();
        let burst = reads(3, ReadPath::ReadIndex, 100, 100).unwrap();
        assert_eq!((single.reads, burst.reads), (100, 100));
        // A heartbeat to each follower and its answer, per round.
        assert_eq!(single.messages, 400, "{single:?}");
        assert_eq!(burst.messages, 4, "{burst:?}");
        let log = reads(3, ReadPath::Log, 100, 1).unwrap();
        assert!(log.bytes > single.bytes, "{log:?} {single:?}");
    }

    #[test]
    fn compaction_keeps_the_log_short() {
        let mut g = Group::elected(3, false).unwrap();
        let data = Bytes::from_static(b"x");
        for _ in 0..(SNAPSHOT_ENTRIES / 1000 + 1) {
            g.propose(&data, 1000).unwrap();
        }
        let status = g.members[0].raw.status();
        assert!(status.first_index > LogIndex(1), "{status:?}");
    }
}
