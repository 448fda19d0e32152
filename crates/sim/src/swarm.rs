//! Random workloads under random faults, for `flotilla sim raft` (the
//! swarm testing of TigerBeetle's VOPR and FoundationDB's simulator): the
//! seed decides the cluster's size when not given, the fault rates and the
//! schedule.
//!
//! A run has two phases. The *safety* phase runs writers and readers while
//! a nemesis crashes, restarts, partitions and heals nodes, changes
//! membership and moves leadership, with every invariant checked after
//! every step. The *liveness* phase stops the faults and requires the group
//! to converge: a leader, and a fresh command applied by every member.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;

use flotilla_raft::{ConfChange, ConfChangeOp, NodeId};

use crate::cluster::{Actor, Cluster, ClusterConfig, Failure};
use crate::lab::Tester;
use crate::lab::cmd;
use crate::net::MS;

/// The faults a run may inject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Partitions of random shape, and isolated nodes.
    pub partition: bool,
    /// Crashes (losing unsynced writes) and restarts.
    pub crash: bool,
    /// Message loss and delay (an unreliable network).
    pub drop: bool,
    /// Long reordering of answers, and duplicated messages.
    pub reorder: bool,
    /// Frequent snapshots, so nodes install them.
    pub snapshot: bool,
    /// Membership changes (voters, learners, joint consensus).
    pub membership: bool,
    /// Leadership transfers.
    pub transfer: bool,
    /// Linearizable reads, checked against the committed log.
    pub reads: bool,
}

const FAULT_NAMES: [&str; 8] = [
    "partition",
    "crash",
    "drop",
    "reorder",
    "snapshot",
    "membership",
    "transfer",
    "reads",
];

impl Faults {
    /// Every fault.
    pub fn all() -> Faults {
        Faults {
            partition: true,
            crash: true,
            drop: true,
            reorder: true,
            snapshot: true,
            membership: true,
            transfer: true,
            reads: true,
        }
    }

    fn flag(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "partition" => &mut self.partition,
            "crash" => &mut self.crash,
            "drop" => &mut self.drop,
            "reorder" => &mut self.reorder,
            "snapshot" => &mut self.snapshot,
            "membership" => &mut self.membership,
            "transfer" => &mut self.transfer,
            "reads" => &mut self.reads,
            _ => return None,
        })
    }
}

impl FromStr for Faults {
    type Err = String;

    /// A comma-separated list of fault names, `all`, or `none`.
    fn from_str(s: &str) -> Result<Faults, String> {
        let mut f = Faults::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => f = Faults::all(),
                "none" => f = Faults::default(),
                _ => {
                    let flag = f.flag(name).ok_or_else(|| {
                        format!(
                            "unknown fault {name:?}; known: all, none, {}",
                            FAULT_NAMES.join(", ")
                        )
                    })?;
                    *flag = true;
                }
            }
        }
        Ok(f)
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut copy = *self;
        let on: Vec<&str> = FAULT_NAMES
            .iter()
            .copied()
            .filter(|n| copy.flag(n).is_some_and(|b| *b))
            .collect();
        if on.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&on.join(","))
        }
    }
}

/// How to run one seed.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// Cluster size; 0 lets the seed choose 3 or 5.
    pub nodes: u64,
    /// Faults to inject.
    pub faults: Faults,
    /// Length of the safety phase, virtual ns.
    pub safety_ns: u64,
    /// Time allowed to converge after the faults stop, virtual ns.
    pub liveness_ns: u64,
    /// Concurrent readers (when `reads` is on, at least one).
    pub readers: u32,
    /// Keep a step-by-step trace (printed on failure).
    pub trace: bool,
}

impl Default for SwarmConfig {
    fn default() -> SwarmConfig {
        SwarmConfig {
            nodes: 0,
            faults: Faults::all(),
            safety_ns: 20_000 * MS,
            liveness_ns: 30_000 * MS,
            readers: 2,
            trace: false,
        }
    }
}

/// What a passing run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwarmReport {
    /// Entries committed (applied somewhere).
    pub commits: u64,
    /// Virtual time simulated, ns.
    pub virtual_ns: u64,
    /// Reads confirmed and checked.
    pub reads: u64,
    /// Events processed.
    pub steps: u64,
}

/// Proposes a command to the leader (or a random node) now and then.
struct Writer {
    stop: Rc<Cell<bool>>,
}

impl Actor for Writer {
    fn wake(&mut self, c: &mut Cluster) -> Result<Option<u64>, Failure> {
        if self.stop.get() {
            return Ok(None);
        }
        let target = c
            .leader()
            .unwrap_or_else(|| c.rng.range(0, c.n() as u64) as usize);
        let x = c.rng.next_u64();
        c.start(target, cmd(x));
        let pause = c.rng.range(2, 40);
        Ok(Some(c.now + pause * MS))
    }
}

/// Issues linearizable reads at random nodes.
struct Reader {
    stop: Rc<Cell<bool>>,
    next_ctx: u64,
}

impl Actor for Reader {
    fn wake(&mut self, c: &mut Cluster) -> Result<Option<u64>, Failure> {
        if self.stop.get() {
            return Ok(None);
        }
        let node = c.rng.range(0, c.n() as u64) as usize;
        self.next_ctx += 1;
        c.read(node, self.next_ctx);
        let pause = c.rng.range(5, 50);
        Ok(Some(c.now + pause * MS))
    }
}

/// Asks the leader for a random, valid-looking membership change (it may
/// still be refused, e.g. while another change is pending).
pub fn random_membership_change(c: &mut Cluster) {
    let Some(leader) = c.leader() else { return };
    let Some(conf) = c.nodes[leader].raft.as_ref().map(|r| r.status().conf_state) else {
        return;
    };
    let all: Vec<NodeId> = c.nodes.iter().map(|n| n.id).collect();
    let outsiders: Vec<NodeId> = all
        .iter()
        .copied()
        .filter(|id| !conf.members().contains(id))
        .collect();
    let pick = |c: &mut Cluster, v: &[NodeId]| {
        v.get(c.rng.range(0, v.len().max(1) as u64) as usize)
            .copied()
    };
    let op = match c.rng.range(0, 5) {
        0 => pick(c, &outsiders).map(ConfChangeOp::AddLearner),
        1 => pick(c, &conf.learners).map(ConfChangeOp::AddVoter),
        2 => pick(c, &outsiders).map(ConfChangeOp::AddVoter),
        3 if conf.voters.len() > 2 => pick(c, &conf.voters).map(ConfChangeOp::Remove),
        4 => pick(c, &conf.learners).map(ConfChangeOp::Remove),
        _ => None,
    };
    if let Some(op) = op {
        let _ = c.propose_conf_change(leader, &ConfChange::new(vec![op]));
    }
}

/// Ends every fault, then requires a leader and a fresh command applied by
/// every member of its configuration, and all members to agree on the
/// configuration.
pub fn converge(c: &mut Cluster) -> Result<(), Failure> {
    c.net.heal();
    c.net.cfg.reliable = true;
    c.net.cfg.long_reordering = false;
    for i in 0..c.n() {
        if !c.nodes[i].alive() {
            c.restart(i);
        }
    }
    c.run_until_cond(30_000 * MS, "no leader after the faults stopped", |c| {
        c.leader().is_some_and(|l| {
            c.nodes[l]
                .raft
                .as_ref()
                .is_some_and(|r| !r.status().conf_state.is_joint())
        })
    })?;
    // A change proposed before the faults stopped may still commit (and a
    // joint configuration must be left): commit a fresh command anywhere,
    // which commits everything before it, until the leader's configuration
    // is final; then require every member to apply one more.
    let leader_conf = |c: &Cluster| {
        c.leader()
            .and_then(|l| c.nodes[l].raft.as_ref())
            .map(|r| r.status().conf_state)
    };
    let mut conf = leader_conf(c).unwrap_or_default();
    for attempt in 0.. {
        let x = c.rng.next_u64();
        c.one(cmd(x), 1, true)?;
        conf = leader_conf(c).unwrap_or_default();
        if !conf.is_joint() {
            break;
        }
        if attempt == 5 {
            return Err(c.fail(format!("still in a joint configuration: {conf:?}")));
        }
    }
    let x = c.rng.next_u64();
    c.one(cmd(x), conf.members().len(), true)?;
    let members = conf.members();
    for id in members {
        let idx = Cluster::idx(id);
        let theirs = c.nodes[idx].raft.as_ref().map(|r| r.status().conf_state);
        if theirs.as_ref() != Some(&conf) {
            return Err(c.fail(format!(
                "member {id} has configuration {theirs:?}, leader has {conf:?}"
            )));
        }
    }
    Ok(())
}

fn build(seed: u64, cfg: &SwarmConfig) -> Cluster {
    let mut rng = flotilla_raft::rng::SplitMix64::new(seed ^ 0x5eed_5eed);
    let nodes = if cfg.nodes == 0 {
        [3, 5][rng.range(0, 2) as usize]
    } else {
        cfg.nodes
    };
    let mut cc = ClusterConfig::new(nodes, seed);
    cc.trace = cfg.trace;
    let f = cfg.faults;
    if f.drop {
        cc.net.reliable = false;
        cc.net.drop_request_per_mille = rng.range(0, 200);
        cc.net.drop_response_per_mille = rng.range(0, 200);
    }
    if f.reorder {
        cc.net.reliable = false;
        cc.net.long_reordering = rng.range(0, 2) == 0;
        cc.net.duplicate_per_mille = rng.range(0, 100);
    }
    if f.snapshot {
        cc.snapshot_every = Some(rng.range(3, 40));
        cc.snapshot_padding = rng.range(0, 1000) as usize;
    }
    if f.membership && nodes > 3 {
        cc.initial_voters = Some((1..=3).map(NodeId).collect());
    }
    // Half the runs drive the nodes as production does: asynchronous
    // writes.
    if rng.range(0, 2) == 1 {
        cc.async_sync_ns = Some(crate::sync::ASYNC_SYNC_NS);
    }
    Cluster::new(cc)
}

/// One nemesis action among the enabled faults.
fn nemesis_step(c: &mut Cluster, f: Faults) {
    let n = c.n() as u64;
    let victim = c.rng.range(0, n) as usize;
    match c.rng.range(0, 6) {
        0 if f.crash => {
            if c.nodes[victim].alive() {
                c.crash(victim);
            } else {
                c.restart(victim);
            }
        }
        1 if f.partition => {
            let mut groups = vec![Vec::new(), Vec::new()];
            for id in 1..=n {
                groups[c.rng.range(0, 2) as usize].push(id);
            }
            c.net.partition(&groups);
        }
        2 if f.partition => c.net.heal(),
        3 if f.transfer => {
            if let Some(l) = c.leader() {
                let _ = c.transfer_leader(l, victim);
            }
        }
        4 if f.membership => random_membership_change(c),
        5 if f.crash && !c.nodes[victim].alive() => c.restart(victim),
        _ => {}
    }
}

/// Runs one seed: faults, then convergence.
pub fn run(seed: u64, cfg: &SwarmConfig) -> Result<SwarmReport, Failure> {
    let mut c = build(seed, cfg);
    let stop = Rc::new(Cell::new(false));
    c.spawn(Box::new(Writer { stop: stop.clone() }));
    c.spawn(Box::new(Writer { stop: stop.clone() }));
    let readers = if cfg.faults.reads {
        cfg.readers.max(1)
    } else {
        cfg.readers
    };
    for r in 0..readers {
        // Disjoint request ids per reader.
        let next_ctx = u64::from(r) << 40;
        c.spawn(Box::new(Reader {
            stop: stop.clone(),
            next_ctx,
        }));
    }
    while c.now < cfg.safety_ns {
        let pause = c.rng.range(50, 1000);
        c.run_for(pause * MS)?;
        nemesis_step(&mut c, cfg.faults);
    }
    stop.set(true);
    c.run_for(100 * MS)?;
    let deadline = c.now + cfg.liveness_ns;
    if let Err(mut f) = converge(&mut c) {
        f.what.push_str(&c.status_dump());
        return Err(f);
    }
    if c.now > deadline {
        return Err(c.fail("converging took longer than the liveness budget"));
    }
    Ok(SwarmReport {
        commits: c.committed.len().get(),
        virtual_ns: c.now,
        reads: c.reads_checked,
        steps: c.steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_print() {
        let f: Faults = "crash, partition".parse().unwrap();
        assert!(f.crash && f.partition && !f.drop);
        assert_eq!(f.to_string(), "partition,crash");
        assert_eq!("all".parse::<Faults>().unwrap(), Faults::all());
        let err = "crash,fire".parse::<Faults>().unwrap_err();
        assert!(err.contains("unknown fault \"fire\""), "{err}");
    }

    #[test]
    fn a_few_seeds_with_every_fault_pass() {
        let cfg = SwarmConfig {
            safety_ns: 5_000 * MS,
            ..SwarmConfig::default()
        };
        for seed in 1..=4 {
            if let Err(f) = run(seed, &cfg) {
                panic!("{f}\nreplay: flotilla sim raft --seed {seed} --faults all --trace");
            }
        }
    }
}
