//! Random schedules for `flotilla sim shard`: the seed decides the
//! fleet's snapshot bound, whether the network is unreliable, and a
//! schedule of joins, leaves (now and then of the last group) and moves
//! at the controller, crashes and
//! restarts of servers and whole groups, and partitions inside groups,
//! all while random clients read, put and append.
//!
//! A run has two phases. The *safety* phase runs the schedule, with every
//! invariant checked after every step (each group's log and snapshots
//! the same on every member, answers only once durable on a quorum, no
//! shard served by two groups at one configuration). The *liveness*
//! phase heals the network, restarts every server and stops the
//! clients: each must finish its operation out in time; then the whole
//! history must be linearizable (the caller checks it).

use flotilla_shardkv::{CtrlOp, Gid};
use flotilla_sim::{Failure, MS, Tester};

use crate::fleet::FleetConfig;
use crate::tester::ShardTester;
use crate::workloads::{Control, Random};

/// What a run does.
#[derive(Clone, Copy, Debug)]
pub struct SwarmConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Distinct keys ("0", "1", ...).
    pub keys: usize,
    /// Crashes, restarts and partitions.
    pub faults: bool,
    /// Virtual time of the safety phase.
    pub safety_ns: u64,
    /// Virtual time allowed to finish once the faults stop.
    pub liveness_ns: u64,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            clients: 5,
            keys: 10,
            faults: true,
            safety_ns: 10_000 * MS,
            liveness_ns: 60_000 * MS,
        }
    }
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct SwarmReport {
    /// Client operations recorded.
    pub ops: usize,
    /// Configurations the controller made.
    pub configs: u64,
    /// Virtual time simulated.
    pub virtual_ns: u64,
}

const GIDS: [Gid; 3] = [100, 101, 102];

/// Runs seed `seed` to the end of its liveness phase; the caller checks
/// the history ([`ShardTester::check_history`]), timing it apart.
pub fn run(seed: u64, cfg: &SwarmConfig) -> Result<(SwarmReport, ShardTester), Failure> {
    let mut probe = flotilla_raft::rng::SplitMix64::new(seed);
    let maxraftstate = [None, Some(300), Some(1000), Some(4000)][probe.range(0, 4) as usize];
    let unreliable = cfg.faults && probe.range(0, 2) == 0;
    let mut t = ShardTester::new(FleetConfig::course(maxraftstate, unreliable), seed);
    t.join(&[GIDS[probe.range(0, 3) as usize]])?;
    let control = Control::default();
    let keys: Vec<String> = (0..cfg.keys).map(|k| k.to_string()).collect();
    for _ in 0..cfg.clients {
        t.clerk(Box::new(Random::new(keys.clone(), control.clone())));
    }
    let end = t.f.now() + cfg.safety_ns;
    while t.f.now() < end {
        step(&mut t, cfg)?;
        let pause = t.f.rng.range(100, 800) * MS;
        t.f.run_for(pause)?;
    }
    heal(&mut t);
    t.f.set_reliable(true);
    if t.query()?.groups.is_empty() {
        t.join(&[GIDS[0]])?;
    }
    control.stop.set(true);
    let stopped = control.stopped.clone();
    let clients = cfg.clients;
    let what = "clients did not finish once the faults stopped";
    t.f.run_until_cond(cfg.liveness_ns, what, |_| stopped.get() == clients)?;
    let report = SwarmReport {
        ops: t.history.len(),
        configs: t.query()?.num,
        virtual_ns: t.f.now(),
    };
    Ok((report, t))
}

/// One random step of the schedule.
fn step(t: &mut ShardTester, cfg: &SwarmConfig) -> Result<(), Failure> {
    let roll = t.f.rng.range(0, 10);
    let gid = GIDS[t.f.rng.range(0, 3) as usize];
    match roll {
        0..=3 => membership(t, gid),
        4 => {
            let shard = t.f.rng.range(0, t.f.cfg.nshards as u64);
            // Refused when the group has not joined: fine, as asked.
            t.ctrl(CtrlOp::Move { shard, gid }).map(drop)
        }
        5..=6 if cfg.faults => {
            let i = t.f.rng.range(0, t.f.cfg.n) as usize;
            if t.f.rng.range(0, 4) == 0 {
                t.f.shutdown_group(gid);
            } else {
                t.f.shutdown_server(gid, i);
            }
            Ok(())
        }
        7 if cfg.faults => {
            let i = t.f.rng.range(0, t.f.cfg.n) as usize;
            if let Some(g) = t.f.groups.get_mut(&gid) {
                g.disconnect(i);
            }
            Ok(())
        }
        _ => {
            heal(t);
            Ok(())
        }
    }
}

/// Joins `gid` if it is out, or makes it leave; the last group leaves
/// only now and then (its shards then stay with it, unserved, until a
/// group joins).
fn membership(t: &mut ShardTester, gid: Gid) -> Result<(), Failure> {
    let latest = t.query()?;
    if !latest.groups.contains_key(&gid) {
        return t.join(&[gid]);
    }
    if latest.groups.len() > 1 || t.f.rng.range(0, 4) == 0 {
        return t.leave(&[gid]);
    }
    Ok(())
}

/// Restarts every server that is down and reconnects everyone.
fn heal(t: &mut ShardTester) {
    for g in t.f.groups.values_mut() {
        for i in 0..g.n() {
            if !g.alive(i) {
                g.restart(i);
            }
            g.connect(i);
        }
    }
}
