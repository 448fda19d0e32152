//! The KV service on the deterministic simulator. Every simulated member
//! is the production replica host (`flotilla_sim::hosted`) running the KV
//! machine every server runs; clients speak the session service's
//! requests across the simulated network with its faults; every
//! operation is recorded and the history is checked with
//! `flotilla-linearize`.
//!
//! - `lab`: the course's kvraft tester (`config.go`), its `GenericTest`
//!   and `GenericTestSpeed`, on the production replica host, with clerks
//!   that speak the session service's requests (the Lab 3 tests);
//! - `client`: workloads and what the history records of them;
//! - `swarm`: random KV workloads under random faults (`flotilla sim kv`),
//!   on the same hosted cluster;
//! - `hosted`: etcd's KV machine on the production host (`flotilla sim
//!   hosted --kv`), with checked histories, sessions and watches.
//!
//! This crate sits above `flotilla-kv` and `flotilla-sim` so that neither
//! depends on the other, and so that the Lab 3 tests (`tests/`) and the
//! `flotilla` CLI share one harness.

pub mod client;
pub mod hosted;
pub mod lab;
pub mod swarm;

use std::time::Duration;

use flotilla_sim::Failure;
use flotilla_sim::runner::seeds;

pub use lab::generic::{Generic, RunStats, generic_test, speed_test};
pub use lab::{Ck, KvCluster};

/// Figures over the seeds of one test.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Seeds run (all passed).
    pub seeds: u64,
    /// Client operations completed.
    pub ops: u64,
    /// Virtual time simulated, ns.
    pub virtual_ns: u64,
    /// Wall time simulating.
    pub sim_wall: Duration,
    /// Wall time checking histories.
    pub check_wall: Duration,
    /// Operations checked.
    pub checked_ops: u64,
}

impl Totals {
    /// Adds one run.
    pub fn add(&mut self, r: &RunStats) {
        self.seeds += 1;
        self.ops += r.ops;
        self.virtual_ns += r.virtual_ns;
        self.sim_wall += r.sim_wall;
        self.check_wall += r.check.wall;
        self.checked_ops += r.check.ops as u64;
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vs = self.virtual_ns as f64 / 1e9;
        let ws = self.sim_wall.as_secs_f64();
        write!(
            f,
            "seeds={} violations=0 ops={} virtual_s={vs:.1} ops_per_virtual_s={:.0} sim_wall_s={ws:.2} ops_per_wall_s={:.0} checked_ops={} check_wall_s={:.3}",
            self.seeds,
            self.ops,
            self.ops as f64 / vs.max(1e-9),
            self.ops as f64 / ws.max(1e-9),
            self.checked_ops,
            self.check_wall.as_secs_f64()
        )
    }
}

/// Runs `scenario` for one pinned seed (a regression test).
pub fn run_seed(test: &str, seed: u64, scenario: impl Fn(u64) -> Result<RunStats, Failure>) {
    if let Err(f) = scenario(seed) {
        panic!(
            "{test} failed: {f}\nreplay: \
             cargo test -p flotilla-kvsim {test} -- --exact --nocapture"
        );
    }
}

/// Runs `scenario` for every seed (`FLOTILLA_SEEDS`, `FLOTILLA_SEED`, ...,
/// see `flotilla_sim::runner`); panics on the first failure with the seed,
/// what went wrong and the command that replays it. Prints the figures.
pub fn run_seeds(
    test: &str,
    default_count: u64,
    scenario: impl Fn(u64) -> Result<RunStats, Failure>,
) -> Totals {
    let mut t = Totals::default();
    for seed in seeds(default_count) {
        match scenario(seed) {
            Ok(r) => t.add(&r),
            Err(f) => panic!(
                "{test} failed: {f}\nreplay: FLOTILLA_SEED={seed} \
                 cargo test -p flotilla-kvsim {test} -- --exact --nocapture"
            ),
        }
    }
    println!("{test}: {t}");
    t
}
