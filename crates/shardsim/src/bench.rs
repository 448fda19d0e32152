//! Figures of the sharded store in virtual time, with a per-server
//! service-time model ([`flotilla_sim::hosted::ServiceModel`]), where a
//! 2-core machine cannot show them for real:
//! - [`load`]: closed-loop writers on uniformly spread keys against a
//!   fleet of G groups (puts per virtual second, latency percentiles,
//!   each processor's busy share), to compare 3 groups with 1;
//! - [`migrate`]: the virtual time to move one shard of a given size
//!   between two groups, the bytes paying the model's per-KiB cost.
//!
//! The network is reliable and nothing crashes: these are figures, not
//! tests of faults (the tests are the course's and `flotilla sim shard`).
//! Invariant: a figure counts only what was answered within its window.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use flotilla_raft::NodeId;
use flotilla_shardkv::{CtrlOp, Gid, KvOp, KvReply};
use flotilla_sim::hosted::{Cpus, ServiceModel};
use flotilla_sim::{Failure, MS, Tester};

use crate::clerk::{KvClerk, Next, Workload};
use crate::fleet::{Fleet, FleetConfig, FleetService};
use crate::tester::ShardTester;

/// The first group's id; the others follow.
const FIRST_GID: Gid = 100;

/// Clerks' ids start here (the tester's own start at 1).
const BENCH_CLIENTS: u64 = 1 << 20;

/// The costs of a server's work, as the simulator prices them.
pub use flotilla_sim::hosted::Costs;

/// A fleet of `groups` groups of 3 servers over `nshards` shards on
/// `cpus`, priced by `costs`.
fn fleet_config(
    groups: usize,
    nshards: usize,
    (costs, cpus): (Costs, Cpus),
    colocated: bool,
) -> FleetConfig {
    let model = ServiceModel {
        costs,
        cpus,
        slots: Vec::new(),
    };
    FleetConfig {
        gids: (0..groups as u64).map(|i| FIRST_GID + i).collect(),
        n: 3,
        nshards,
        maxraftstate: None,
        unreliable: false,
        // A LAN's one-way latency.
        latency_ns: MS / 5,
        service: Some(FleetService { model, colocated }),
    }
}

/// What [`load`] runs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Data groups.
    pub groups: usize,
    /// Shards (256 spreads load within 1 % of even over 3 groups; the
    /// course's 10 cannot: 4, 3 and 3).
    pub nshards: usize,
    /// Closed-loop writers per group (enough to keep each group's
    /// busiest processor saturated).
    pub clerks_per_group: usize,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Virtual time before the window opens.
    pub warmup_ns: u64,
    /// The measured window.
    pub window_ns: u64,
    /// The servers' costs.
    pub costs: Costs,
    /// Every group's server `i` on one processor `i`, the controller's
    /// too (`flotilla up --groups`), with the groups' leaders spread over
    /// the servers; otherwise each group on processors of its own.
    pub colocated: bool,
    /// The seed.
    pub seed: u64,
}

/// What [`load`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadReport {
    /// Puts answered in the window.
    pub puts: u64,
    /// Puts per virtual second.
    pub per_sec: f64,
    /// Latency percentiles of the window's puts, ms.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// The busiest processor's busy share in the window.
    pub busiest: f64,
}

/// What the writers share: the window, and the latencies in it (ns).
struct Tally {
    from: u64,
    to: u64,
    latencies: Vec<u64>,
}

/// A closed-loop writer of random keys (uniform first byte, so uniform
/// over the shards).
struct Writer {
    value: Bytes,
    started: u64,
    tally: Rc<RefCell<Tally>>,
}

impl Workload for Writer {
    fn next(&mut self, f: &mut Fleet, now: u64) -> Next {
        if now >= self.tally.borrow().to {
            return Next::Stop;
        }
        self.started = now;
        let key: Vec<u8> = (0..8).map(|_| f.rng.range(0, 256) as u8).collect();
        Next::Op(KvOp::Put(Bytes::from(key), self.value.clone()))
    }

    fn done(&mut self, _op: &KvOp, reply: &KvReply, now: u64) -> Result<(), String> {
        if *reply != KvReply::Done {
            return Err(format!("a put answered {reply:?}"));
        }
        let mut tally = self.tally.borrow_mut();
        if self.started >= tally.from && now <= tally.to {
            tally.latencies.push(now - self.started);
        }
        Ok(())
    }
}

/// Runs [`LoadConfig`]: see the module docs.
pub fn load(cfg: &LoadConfig) -> Result<LoadReport, Failure> {
    let cpus = Cpus::new();
    let fc = fleet_config(
        cfg.groups,
        cfg.nshards,
        (cfg.costs, cpus.clone()),
        cfg.colocated,
    );
    let mut t = ShardTester::new(fc, cfg.seed);
    let gids = t.f.cfg.gids.clone();
    t.join(&gids)?;
    settle(&mut t)?;
    if cfg.colocated {
        spread_leaders(&mut t.f)?;
    }
    let start = t.f.now() + cfg.warmup_ns;
    let tally = Rc::new(RefCell::new(Tally {
        from: start,
        to: start + cfg.window_ns,
        latencies: Vec::new(),
    }));
    // One value for every writer: each put shares its bytes.
    let value = Bytes::from(vec![b'v'; cfg.value_bytes]);
    for c in 0..cfg.clerks_per_group * cfg.groups {
        let writer = Writer {
            value: value.clone(),
            started: 0,
            tally: tally.clone(),
        };
        let clerk = KvClerk::new(BENCH_CLIENTS + c as u64, Box::new(writer), None);
        t.f.spawn(Box::new(clerk));
    }
    t.f.run_until(start)?;
    let before = cpus.all_worked();
    t.f.run_until(start + cfg.window_ns)?;
    let busiest = cpus.busiest_since(&before);
    let mut latencies = std::mem::take(&mut tally.borrow_mut().latencies);
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(i).map_or(0.0, |&ns| ns as f64 / MS as f64)
    };
    Ok(LoadReport {
        puts: latencies.len() as u64,
        per_sec: latencies.len() as f64 * 1e9 / cfg.window_ns as f64,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        busiest: busiest as f64 / cfg.window_ns as f64,
    })
}

/// Waits until every group serves every shard the latest configuration
/// gives it.
fn settle(t: &mut ShardTester) -> Result<(), Failure> {
    let config = t.query()?;
    let limit = 60_000 * MS;
    t.f.run_until_cond(limit, "the groups did not settle", |f| {
        config.shards.iter().enumerate().all(|(s, gid)| {
            let g = &f.groups[gid];
            let leader = g.leader();
            leader.is_some_and(|l| {
                g.with_machine(l, |m| m.config().num == config.num && m.serves(s))
                    .unwrap_or(false)
            })
        })
    })
}

/// Hands group k's leadership to server `k mod 3`, and waits until each
/// leads, as a placement driver spreads leaders over processes.
fn spread_leaders(f: &mut Fleet) -> Result<(), Failure> {
    let gids: Vec<Gid> = f.groups.keys().copied().collect();
    let limit = 30_000 * MS;
    for (k, gid) in gids.iter().enumerate() {
        let want = k % 3;
        let what = format!("group {gid} has no leader");
        f.run_until_cond(limit, &what, |f| f.groups[gid].leader().is_some())?;
        let g = f.groups.get_mut(gid);
        if let Some((g, l)) = g.and_then(|g| g.leader().map(|l| (g, l)))
            && l != want
        {
            // A refused transfer shows as the wait's failure below.
            let _ = g.transfer_leader(l, NodeId(want as u64 + 1));
        }
        let what = format!("group {gid}'s leadership did not move to server {want}");
        f.run_until_cond(limit, &what, |f| f.groups[gid].leader() == Some(want))?;
    }
    Ok(())
}

/// What [`migrate`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct MigrateReport {
    /// Bytes of values in the shard moved.
    pub bytes: u64,
    /// Virtual time from the move's configuration to the new owner
    /// serving the shard on every server and the old owner holding none
    /// of it, ms.
    pub ms: f64,
}

/// Fills one shard of group 100 with `mib` values of 1 MiB, moves it to
/// group 101, and times the move in virtual time.
pub fn migrate(mib: u64, costs: Costs, seed: u64) -> Result<MigrateReport, Failure> {
    let mut t = ShardTester::new(fleet_config(2, 10, (costs, Cpus::new()), false), seed);
    t.join(&[FIRST_GID])?;
    settle(&mut t)?;
    t.join(&[FIRST_GID + 1])?;
    settle(&mut t)?;
    let config = t.query()?;
    let shard = (config.shards.iter())
        .position(|&g| g == FIRST_GID)
        .ok_or_else(|| t.f.fail("group 100 holds no shard"))?;
    let value = Bytes::from(vec![b'm'; 1 << 20]);
    // Keys whose first byte is the shard's number are the shard's.
    let puts = (0..mib)
        .map(|i| {
            let mut key = vec![shard as u8];
            key.extend_from_slice(format!("{i:06}").as_bytes());
            KvOp::Put(Bytes::from(key), value.clone())
        })
        .collect();
    t.ops(puts)?;
    let started = t.f.now();
    let to = FIRST_GID + 1;
    t.ctrl(CtrlOp::Move {
        shard: shard as u64,
        gid: to,
    })?;
    t.f.run_until_cond(600_000 * MS, "the shard did not move", |f| {
        moved(f, shard, FIRST_GID, to)
    })?;
    Ok(MigrateReport {
        bytes: mib << 20,
        ms: (t.f.now() - started) as f64 / MS as f64,
    })
}

/// Whether every server of group `to` serves `shard` (settled) and no
/// server of `from` holds any of it.
fn moved(f: &Fleet, shard: usize, from: Gid, to: Gid) -> bool {
    let serves = |g: Gid| {
        let c = &f.groups[&g];
        (0..c.n()).all(|i| {
            c.with_machine(i, |m| m.serves(shard) && m.settled())
                .unwrap_or(false)
        })
    };
    let gone = |g: Gid| {
        let c = &f.groups[&g];
        (0..c.n()).all(|i| {
            c.with_machine(i, |m| !m.states().contains_key(&shard))
                .unwrap_or(false)
        })
    };
    serves(to) && gone(from)
}
