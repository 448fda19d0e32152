//! Random workloads under random faults, for `flotilla sim raft` (the
//! swarm testing of TigerBeetle's VOPR and FoundationDB's simulator), on
//! the hosted world ([`crate::hosted`]: the production replica host over
//! the real WAL on a crashing in-memory disk): the seed decides the
//! group's size when not given, the fault rates and the schedule.
//!
//! A run has two phases. The *safety* phase runs clients (writes, and
//! linearizable reads with `reads`) while a nemesis crashes, restarts,
//! partitions and heals members, an operator changes the membership and
//! leadership moves, with every invariant checked after every event
//! (`hosted::safety`, `hosted::machine`, `hosted::quorum`, and every
//! answer as it leaves a host). The *liveness* phase stops the faults and
//! requires the group to converge within its budget: writes acknowledged
//! again, the configuration left joint by no one and the same at every
//! member of it, and every member of it caught up with what was
//! acknowledged halfway through.
//!
//! [`Faults`] is also the fault vocabulary of `flotilla sim kv`.

use std::fmt;
use std::str::FromStr;

use flotilla_raft::rng::SplitMix64;
use flotilla_raft::{Config, NodeId, ReadMode};

use crate::hosted::{self, Bare, HostedConfig, HostedReport};
use crate::net::{MS, NetConfig};

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
    /// Group size (voters, and spares with `membership`); 0 lets the seed
    /// choose 3 or 5.
    pub nodes: u64,
    /// Faults to inject.
    pub faults: Faults,
    /// Length of the safety phase, virtual ns.
    pub safety_ns: u64,
    /// Length of the liveness phase, virtual ns: the group must have
    /// converged by its end.
    pub liveness_ns: u64,
    /// Clients beyond the two every run has (each writes, and with
    /// `reads` also reads).
    pub readers: u32,
    /// Keep a trace of the events, printed to stderr on failure.
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwarmReport {
    /// Entries committed (applied somewhere).
    pub commits: u64,
    /// Virtual time simulated, ns.
    pub virtual_ns: u64,
    /// Reads answered and checked.
    pub reads: u64,
    /// Events processed.
    pub steps: u64,
    /// Everything the hosted world counted.
    pub hosted: HostedReport,
}

/// The network's faults a seed draws for `f`.
fn net_config(rng: &mut SplitMix64, f: Faults) -> NetConfig {
    let mut net = NetConfig {
        reliable: !(f.drop || f.reorder),
        drop_request_per_mille: 0,
        drop_response_per_mille: 0,
        // Every message takes a little while, as on a real network.
        base_delay_ns: MS / 2,
        ..NetConfig::default()
    };
    if f.drop {
        net.drop_request_per_mille = rng.range(0, 200);
        net.drop_response_per_mille = rng.range(0, 200);
    }
    if f.reorder {
        net.long_reordering = rng.range(0, 2) == 0;
        net.duplicate_per_mille = rng.range(0, 100);
    }
    net
}

/// The core's settings a seed draws: the randomized runs' timing (10 ms
/// ticks, elections after 200–400 ms), small snapshot chunks, committed
/// entries handed over one at a time in half the runs (so applying lags
/// committing), and lease reads in a quarter of them.
fn raft_template(rng: &mut SplitMix64) -> Config {
    let mut raft = Config::new(NodeId(1), Vec::new());
    raft.election_ticks = 20;
    raft.heartbeat_ticks = 2;
    raft.snapshot_chunk_bytes = 256;
    raft.max_apply_bytes = if rng.range(0, 2) == 0 { 1 } else { 8 << 20 };
    if rng.range(0, 4) == 0 {
        raft.read_mode = ReadMode::Lease;
    }
    raft
}

/// The hosted world's settings and the app for `seed`.
pub fn build(seed: u64, cfg: &SwarmConfig) -> (HostedConfig, Bare) {
    let mut rng = SplitMix64::new(seed ^ 0x5eed_5eed);
    let nodes = match cfg.nodes {
        0 => [3, 5][rng.range(0, 2) as usize],
        n => n,
    };
    let f = cfg.faults;
    // With membership changes, a group of more than 3 starts with 3
    // voters, and the operator adds the others.
    let members = if f.membership && nodes > 3 { 3 } else { nodes };
    let net = net_config(&mut rng, f);
    let raft = raft_template(&mut rng);
    let (snapshot_entries, padding) = if f.snapshot {
        (rng.range(3, 40), rng.range(0, 1000) as usize)
    } else {
        // Never, in practice (an index plus the host's phase must not
        // overflow).
        (1 << 62, 0)
    };
    let hosted = HostedConfig {
        members,
        spares: nodes - members,
        membership: f.membership,
        clients: 2 + u64::from(cfg.readers),
        duration_ns: cfg.safety_ns,
        liveness_ns: Some(cfg.liveness_ns),
        crashes: f.crash,
        partitions: f.partition,
        transfers: f.transfer,
        trace: cfg.trace,
        unreliable: !net.reliable,
        snapshot_entries,
        raft: Some(raft),
        net: Some(net),
        ..HostedConfig::default()
    };
    let app = Bare::new(f.reads, padding);
    (hosted, app)
}

/// Runs one seed: faults, then convergence. `Err` names the seed, the
/// virtual time and the first rule broken (a panic of the core's own
/// invariant checks included).
pub fn run(seed: u64, cfg: &SwarmConfig) -> Result<SwarmReport, String> {
    let (hosted, app) = build(seed, cfg);
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        hosted::run_app(seed, &hosted, app)
    }));
    let (r, _) = match ran {
        Ok(result) => result?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            return Err(format!("seed {seed}: panicked: {what}"));
        }
    };
    Ok(SwarmReport {
        commits: r.commits,
        virtual_ns: r.virtual_ns,
        reads: r.reads,
        steps: r.events,
        hosted: r,
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
                panic!(
                    "{f}\nreplay: flotilla sim raft --seed {seed} --faults all --safety-secs 5 --trace"
                );
            }
        }
    }
}
