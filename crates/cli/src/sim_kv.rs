//! `flotilla sim kv`: random KV workloads under random faults over many
//! seeds, in parallel; prints the figures and, for any violation, the seed
//! and the command that replays it.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use flotilla_kvsim::swarm::{self, KvSwarmConfig};
use flotilla_sim::MS;
use flotilla_sim::swarm::Faults;

#[derive(Debug, Args)]
pub struct KvArgs {
    /// Servers (0: the seed chooses 3 or 5).
    #[arg(long, default_value_t = 0)]
    nodes: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// Distinct keys the clients use.
    #[arg(long, default_value_t = 4)]
    keys: u64,
    #[command(flatten)]
    run: crate::sim::SeedArgs,
    /// Faults to inject: a comma-separated list of partition, crash, drop,
    /// reorder, snapshot; or all, none.
    #[arg(long, default_value = "all", value_parser = crate::sim::parse_faults)]
    faults: Faults,
    /// Virtual seconds of faults per seed.
    #[arg(long, default_value_t = 10)]
    safety_secs: u64,
    /// Virtual seconds allowed to finish once the faults stop.
    #[arg(long, default_value_t = 30)]
    liveness_secs: u64,
    /// Per mille of operations that are invalid (an empty key), which
    /// every replica must refuse.
    #[arg(long, default_value_t = 20)]
    invalid_per_mille: u64,
    /// Per mille of operations that compact the store's history or read
    /// every key at an older revision (0: servers keep no history).
    #[arg(long, default_value_t = 50)]
    mvcc_per_mille: u64,
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    violations: u64,
    ops: u64,
    checked_ops: u64,
    virtual_ns: u64,
    sim_wall: Duration,
    check_wall: Duration,
}

impl KvArgs {
    fn replay(&self, seed: u64) -> String {
        format!(
            "flotilla sim kv --nodes {} --clients {} --keys {} --seed {seed} --faults {} \
             --safety-secs {} --liveness-secs {} --invalid-per-mille {} --mvcc-per-mille {}",
            self.nodes,
            self.clients,
            self.keys,
            self.faults,
            self.safety_secs,
            self.liveness_secs,
            self.invalid_per_mille,
            self.mvcc_per_mille
        )
    }
}

pub fn run_kv(args: &KvArgs) -> anyhow::Result<ExitCode> {
    let cfg = KvSwarmConfig {
        nodes: args.nodes,
        clients: args.clients,
        keys: args.keys,
        faults: args.faults,
        safety_ns: args.safety_secs * 1000 * MS,
        liveness_ns: args.liveness_secs * 1000 * MS,
        invalid_per_mille: args.invalid_per_mille,
        mvcc_per_mille: args.mvcc_per_mille,
    };
    let (first, count) = args.run.first_and_count();
    let last = first.saturating_add(count.max(1) - 1);
    let totals = Mutex::new(Totals::default());
    let began = Instant::now();
    crate::sim::for_each_seed(first, last, args.run.jobs, |seed| {
        let result = swarm::run(seed, &cfg);
        let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
        t.seeds += 1;
        match result {
            Ok(r) => {
                t.ops += r.ops;
                t.checked_ops += r.checked_ops;
                t.virtual_ns += r.virtual_ns;
                t.sim_wall += r.sim_wall;
                t.check_wall += r.check_wall;
            }
            Err(f) => {
                t.violations += 1;
                println!("VIOLATION {f}");
                println!("  replay: {}", args.replay(seed));
            }
        }
    });
    let t = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    print_totals(&t, began);
    Ok(if t.violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_totals(t: &Totals, began: Instant) {
    let vs = t.virtual_ns as f64 / 1e9;
    let ws = t.sim_wall.as_secs_f64();
    println!(
        "seeds={} violations={} ops={} virtual_s={vs:.0} ops_per_virtual_s={:.0} \
         sim_thread_s={ws:.1} ops_per_thread_s={:.0} checked_ops={} check_thread_s={:.2} wall_s={:.1}",
        t.seeds,
        t.violations,
        t.ops,
        t.ops as f64 / vs.max(1e-9),
        t.ops as f64 / ws.max(1e-9),
        t.checked_ops,
        t.check_wall.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}
