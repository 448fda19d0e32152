//! `flotilla sim shard`: random schedules of the sharded store (joins,
//! leaves and moves at the controller, crashes, partitions, an unreliable
//! network on some seeds) under random clients, over many seeds in
//! parallel; prints the figures and, for any violation, the seed and the
//! command that replays it.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use flotilla_shardsim::swarm::{self, SwarmConfig};
use flotilla_sim::MS;

#[derive(Debug, Args)]
pub struct ShardArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 5)]
    clients: usize,
    /// Distinct keys the clients use ("0", "1", ...).
    #[arg(long, default_value_t = 10)]
    keys: usize,
    #[command(flatten)]
    run: crate::sim::SeedArgs,
    /// Leave out crashes, partitions and the unreliable network.
    #[arg(long)]
    no_faults: bool,
    /// Virtual seconds of the random schedule per seed.
    #[arg(long, default_value_t = 10)]
    safety_secs: u64,
    /// Virtual seconds allowed to finish once the faults stop.
    #[arg(long, default_value_t = 60)]
    liveness_secs: u64,
}

impl ShardArgs {
    fn replay(&self, seed: u64) -> String {
        let faults = if self.no_faults { " --no-faults" } else { "" };
        format!(
            "flotilla sim shard --clients {} --keys {} --seed {seed}{faults} --safety-secs {} --liveness-secs {}",
            self.clients, self.keys, self.safety_secs, self.liveness_secs
        )
    }
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    violations: u64,
    ops: u64,
    configs: u64,
    virtual_ns: u64,
    sim_wall: Duration,
    check_wall: Duration,
}

pub fn run_shard(args: &ShardArgs) -> anyhow::Result<ExitCode> {
    if args.keys == 0 {
        anyhow::bail!("--keys must be at least 1");
    }
    let cfg = SwarmConfig {
        clients: args.clients,
        keys: args.keys,
        faults: !args.no_faults,
        safety_ns: args.safety_secs.saturating_mul(1000 * MS),
        liveness_ns: args.liveness_secs.saturating_mul(1000 * MS),
    };
    let (first, count) = args.run.first_and_count();
    let last = first.saturating_add(count.max(1) - 1);
    let totals = Mutex::new(Totals::default());
    let began = Instant::now();
    crate::sim::for_each_seed(first, last, args.run.jobs, |seed| {
        let began = Instant::now();
        let result = swarm::run(seed, &cfg).and_then(|(r, tester)| {
            let sim_wall = began.elapsed();
            let checked = Instant::now();
            tester.check_history()?;
            Ok((r, sim_wall, checked.elapsed()))
        });
        let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
        t.seeds += 1;
        match result {
            Ok((r, sim_wall, check_wall)) => {
                t.ops += r.ops as u64;
                t.configs += r.configs;
                t.virtual_ns += r.virtual_ns;
                t.sim_wall += sim_wall;
                t.check_wall += check_wall;
            }
            Err(f) => {
                t.violations += 1;
                println!("VIOLATION {f}");
                println!("  replay: {}", args.replay(seed));
            }
        }
    });
    let t = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    println!(
        "seeds={} violations={} ops={} configurations={} virtual_s={:.0} sim_thread_s={:.1} \
         check_thread_s={:.2} wall_s={:.1}",
        t.seeds,
        t.violations,
        t.ops,
        t.configs,
        t.virtual_ns as f64 / 1e9,
        t.sim_wall.as_secs_f64(),
        t.check_wall.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    Ok(if t.violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
