//! The simulator as a benchmark harness for the consensus core: a group
//! with no faults, no invariant checks and no message encoding, driven as
//! fast as it goes, so what is measured is the core's own work (stepping,
//! log bookkeeping, Ready assembly) plus the simulator's event queue. The
//! caller measures wall time.

use bytes::Bytes;
use flotilla_raft::LogIndex;

use crate::cluster::{Cluster, ClusterConfig, Failure};
use crate::lab::Tester;

/// What a throughput run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throughput {
    /// Entries applied by the leader.
    pub entries: u64,
    /// Events processed.
    pub steps: u64,
}

/// A `nodes`-node group without faults or invariant checks, with its
/// leader elected; `serialize` encodes messages (so their bytes count).
fn quiet_group(nodes: u64, serialize: bool) -> Result<(Cluster, usize), Failure> {
    let mut cfg = ClusterConfig::new(nodes, 1);
    cfg.checks = false;
    cfg.serialize = serialize;
    // Compaction keeps memory flat over millions of entries.
    cfg.snapshot_every = Some(50_000);
    let mut c = Cluster::new(cfg);
    let leader = c.check_one_leader()?;
    Ok((c, leader))
}

/// Commits `entries` commands of `payload` bytes through a `nodes`-node
/// group, proposing `batch` commands per proposal call.
pub fn throughput(
    nodes: u64,
    batch: usize,
    entries: u64,
    payload: usize,
) -> Result<Throughput, Failure> {
    let (mut c, leader) = quiet_group(nodes, false)?;
    let data = Bytes::from(vec![0x5a; payload]);
    let start = c.nodes[leader].app.last_applied;
    let target = LogIndex(start.get() + entries);
    while c.nodes[leader].app.last_applied < target {
        let n = batch
            .min((target.get() - c.nodes[leader].app.last_applied.get()) as usize)
            .max(1);
        if c.start_batch(leader, std::iter::repeat_n(data.clone(), n)) == 0 {
            return Err(c.fail("the leader lost leadership during the benchmark"));
        }
        // Deliver everything in flight (the network has no delay).
        c.run_until(c.now)?;
    }
    Ok(Throughput {
        entries: c.nodes[leader].app.last_applied.get() - start.get(),
        steps: c.steps,
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
pub fn reads(nodes: u64, path: ReadPath, reads: u64, burst: u64) -> Result<Reads, Failure> {
    let (mut c, leader) = quiet_group(nodes, true)?;
    // Settle the election's own traffic before counting.
    c.run_until(c.now)?;
    let sent = |c: &Cluster| c.net.counters.sent_to.values().sum::<u64>();
    let (msgs0, bytes0) = (sent(&c), c.net.counters.bytes);
    let key = Bytes::from_static(b"get k");
    let mut done = 0;
    let mut ctx = 0;
    while done < reads {
        let n = burst.min(reads - done).max(1);
        match path {
            ReadPath::ReadIndex => {
                let before = c.nodes[leader].reads.len();
                c.read_batch(leader, ctx + 1..=ctx + n);
                ctx += n;
                let want = before + n as usize;
                c.run_until_cond(10_000_000_000, "reads confirmed", |c| {
                    c.nodes[leader].reads.len() >= want
                })?;
                // Confirmed reads are only counted, not kept.
                c.nodes[leader].reads.clear();
            }
            ReadPath::Log => {
                let target = LogIndex(c.nodes[leader].app.last_applied.get() + n);
                if c.start_batch(leader, std::iter::repeat_n(key.clone(), n as usize)) == 0 {
                    return Err(c.fail("the leader lost leadership during the benchmark"));
                }
                c.run_until_cond(10_000_000_000, "reads applied", |c| {
                    c.nodes[leader].app.last_applied >= target
                })?;
            }
        }
        done += n;
    }
    Ok(Reads {
        reads: done,
        messages: sent(&c) - msgs0,
        bytes: c.net.counters.bytes - bytes0,
    })
}
