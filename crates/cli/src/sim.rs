//! `flotilla sim ...`: run the deterministic simulator from the command
//! line. `sim raft` runs random workloads under random faults over many
//! seeds, in parallel, on the production replica host (`flotilla_sim::
//! swarm`), and prints the command that replays any failure; `sim kv`
//! does so for the KV service, `sim hosted` for the host with its own
//! fixed faults (and etcd's KV machine with `--kv`).

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::{Args, Subcommand};
use flotilla_sim::MS;
use flotilla_sim::swarm::{self, Faults, SwarmConfig, SwarmReport};

/// Simulate a cluster on virtual time with injected faults.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// A Raft group of production hosts under random faults chosen by
    /// the seed; checks every safety invariant after every event, then
    /// that the group recovers once faults stop.
    /// Exit code: 0 if every seed passed, 1 on any violation.
    Raft(RaftArgs),
    /// The KV service under random faults: random clients' histories are
    /// checked for linearizability, replicas must agree once faults stop.
    /// Exit code: 0 if every seed passed, 1 on any violation.
    Kv(crate::sim_kv::KvArgs),
    /// The production replica host on virtual time, with the real WAL on
    /// a crashing in-memory disk; every answer is checked as it leaves.
    /// Exit code: 0 if every seed passed, 1 on any violation.
    Hosted(crate::sim_hosted::HostedArgs),
    /// The sharded store (a controller and three replica groups) under
    /// random joins, leaves, moves, crashes and partitions; random
    /// clients' histories are checked for linearizability.
    /// Exit code: 0 if every seed passed, 1 on any violation.
    Shard(crate::sim_shard::ShardArgs),
}

#[derive(Debug, Args)]
pub struct RaftArgs {
    /// Nodes in the group (0: the seed chooses 3 or 5); with membership
    /// changes, more than 3 start as 3 voters and spares.
    #[arg(long, default_value_t = 5)]
    nodes: u64,
    #[command(flatten)]
    run: SeedArgs,
    /// Faults to inject: a comma-separated list of partition, crash, drop,
    /// reorder, snapshot, membership, transfer, reads; or all, none.
    #[arg(long, default_value = "all", value_parser = parse_faults)]
    faults: Faults,
    /// Clients beyond the two every run has (each writes and, with the
    /// `reads` fault, asks for linearizable reads).
    #[arg(long, default_value_t = 2)]
    readers: u32,
    /// Virtual seconds of faults per seed.
    #[arg(long, default_value_t = 20)]
    safety_secs: u64,
    /// Virtual seconds allowed to recover once the faults stop.
    #[arg(long, default_value_t = 30)]
    liveness_secs: u64,
    /// Print a trace of the events of a failing seed (use with --seed).
    #[arg(long)]
    trace: bool,
}

/// Which seeds to run, and on how many threads (shared by the `sim`
/// commands).
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many seeds to run (at least 1).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// The first seed (seeds are numbered from 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    start: u64,
    /// Run this one seed (a replay); overrides --seeds and --start.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    seed: Option<u64>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub(crate) jobs: Option<usize>,
}

impl SeedArgs {
    /// The first seed and how many: `--seed` alone, or `--seeds` from
    /// `--start`.
    pub(crate) fn first_and_count(&self) -> (u64, u64) {
        match self.seed {
            Some(s) => (s, 1),
            None => (self.start, self.seeds),
        }
    }
}

pub(crate) fn parse_faults(s: &str) -> Result<Faults, String> {
    s.parse()
}

/// Runs `run(seed)` once for every seed of `first..=last`, on `jobs`
/// threads (default: one per core), each taking the next seed not yet run.
pub(crate) fn for_each_seed(first: u64, last: u64, jobs: Option<usize>, run: impl Fn(u64) + Sync) {
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let next = AtomicU64::new(first);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed > last {
                        break;
                    }
                    run(seed);
                }
            });
        }
    });
}

pub fn run(cmd: SimCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SimCommand::Raft(args) => run_raft(&args),
        SimCommand::Kv(args) => crate::sim_kv::run_kv(&args),
        SimCommand::Hosted(args) => crate::sim_hosted::run_hosted(&args),
        SimCommand::Shard(args) => crate::sim_shard::run_shard(&args),
    }
}

/// Results of finished seeds, printed in seed order per block of 100.
#[derive(Default)]
struct Tally {
    done: std::collections::BTreeMap<u64, Result<SwarmReport, String>>,
    printed_to: u64,
    seeds: u64,
    violations: u64,
    commits: u64,
    virtual_ns: u64,
    /// The passing seeds' figures, summed.
    hosted: flotilla_sim::hosted::HostedReport,
}

impl Tally {
    fn record(&mut self, seed: u64, r: Result<SwarmReport, String>, last: u64, began: Instant) {
        self.done.insert(seed, r);
        // Print every complete block of 100 seeds, in order.
        loop {
            let block_end = (self.printed_to + 100).min(last);
            if !(self.printed_to + 1..=block_end).all(|s| self.done.contains_key(&s)) {
                break;
            }
            let block: Vec<_> = (self.printed_to + 1..=block_end)
                .filter_map(|s| self.done.remove(&s))
                .collect();
            let fails = block.iter().filter(|r| r.is_err()).count();
            let commits: u64 = block
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(|r| r.commits)
                .sum();
            println!(
                "seeds {}..={}: passed={} violations={} commits={} wall_s={:.1}",
                self.printed_to + 1,
                block_end,
                block.len() - fails,
                fails,
                commits,
                began.elapsed().as_secs_f64()
            );
            self.printed_to = block_end;
            if block_end == last {
                break;
            }
        }
    }
}

fn run_raft(args: &RaftArgs) -> anyhow::Result<ExitCode> {
    let cfg = SwarmConfig {
        nodes: args.nodes,
        faults: args.faults,
        safety_ns: args.safety_secs * 1000 * MS,
        liveness_ns: args.liveness_secs * 1000 * MS,
        readers: args.readers,
        trace: args.trace,
    };
    let (first, count) = args.run.first_and_count();
    let last = first.saturating_add(count - 1);
    let tally = Mutex::new(Tally {
        printed_to: first - 1,
        ..Tally::default()
    });
    let began = Instant::now();
    for_each_seed(first, last, args.run.jobs, |seed| {
        let result = swarm::run(seed, &cfg);
        let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
        t.seeds += 1;
        match &result {
            Ok(r) => {
                t.commits += r.commits;
                t.virtual_ns += r.virtual_ns;
                t.hosted.add(&r.hosted);
            }
            Err(what) => {
                t.violations += 1;
                println!("VIOLATION {what}");
                println!(
                    "  replay: flotilla sim raft --nodes {} --seed {seed} --faults {} --readers {} --safety-secs {} --liveness-secs {} --trace",
                    args.nodes, args.faults, args.readers, args.safety_secs, args.liveness_secs
                );
            }
        }
        t.record(seed, result, last, began);
    });
    let t = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    println!(
        "seeds={} violations={} commits={} virtual_s={:.0} wall_s={:.1}",
        t.seeds,
        t.violations,
        t.commits,
        t.virtual_ns as f64 / 1e9,
        began.elapsed().as_secs_f64()
    );
    let h = &t.hosted;
    println!(
        "acked_writes={} reads={} crashes={} transfers={} membership_changes={} removals={} \
         snapshot_jobs={} entries_matched={} leaders_checked={} commits_checked={} events={}",
        h.acked_writes,
        h.reads,
        h.crashes,
        h.transfers,
        h.membership_changes,
        h.removals,
        h.snapshot_jobs,
        h.entries_matched,
        h.leaders_checked,
        h.commits_checked,
        h.events
    );
    Ok(if t.violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
