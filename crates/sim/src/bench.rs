//! The simulator as a benchmark harness for the consensus core: a group
//! with no faults, no invariant checks and no message encoding, driven as
//! fast as it goes, so what is measured is the core's own work (stepping,
//! log bookkeeping, Ready assembly) plus the simulator's event queue. The
//! caller measures wall time.

use bytes::Bytes;
use flotilla_raft::LogIndex;

use crate::cluster::{Cluster, ClusterConfig, Failure};

/// What a throughput run did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throughput {
    /// Entries applied by the leader.
    pub entries: u64,
    /// Events processed.
    pub steps: u64,
}

/// Commits `entries` commands of `payload` bytes through a `nodes`-node
/// group, proposing `batch` commands per proposal call.
pub fn throughput(
    nodes: u64,
    batch: usize,
    entries: u64,
    payload: usize,
) -> Result<Throughput, Failure> {
    let mut cfg = ClusterConfig::new(nodes, 1);
    cfg.checks = false;
    cfg.serialize = false;
    // Compaction keeps memory flat over millions of entries.
    cfg.snapshot_every = Some(50_000);
    let mut c = Cluster::new(cfg);
    let leader = c.check_one_leader()?;
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
