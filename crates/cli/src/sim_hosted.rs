//! `flotilla sim hosted`: the production replica host (`flotilla_host`)
//! on virtual time, over many seeds in parallel: the real WAL on an
//! in-memory disk that crashes lose unsynced writes from, a faulty
//! network, and every answer checked as it leaves the host
//! (`flotilla_sim::hosted`). With `--kv` the members run etcd's KV
//! machine and the clients its session requests, with checked histories
//! and watchers (`flotilla_kvsim::hosted`). Prints the figures and, for
//! any violation, the seed and the command that replays it.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use clap::Args;
use flotilla_kvsim::hosted::{KvHostedConfig, KvHostedReport};
use flotilla_sim::MS;
use flotilla_sim::hosted::{self, HostedConfig, HostedReport};

#[derive(Debug, Args)]
pub struct HostedArgs {
    /// Members of the group (its voters at bootstrap).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    members: u64,
    /// Change the membership while the faults run: an operator adds the
    /// spares, promotes, removes and replaces members through the host.
    #[arg(long)]
    membership: bool,
    /// Members started outside the configuration, for `--membership` to
    /// add.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=6))]
    spares: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    clients: u64,
    #[command(flatten)]
    run: crate::sim::SeedArgs,
    /// Virtual seconds of faults per seed (as long again follows without).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    secs: u64,
    /// Compact the log every this many applied entries.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_entries: u64,
    /// Run etcd's KV machine, with sessions, linearizable gets, a checked
    /// history and watchers across restarts (instead of the bare chain).
    #[arg(long)]
    kv: bool,
}

/// One seed: the KV app's figures too with `--kv`.
fn run_seed(
    seed: u64,
    cfg: &HostedConfig,
    kv: bool,
) -> Result<(HostedReport, Option<KvHostedReport>), String> {
    if kv {
        let (r, k) = flotilla_kvsim::hosted::run(seed, cfg, &KvHostedConfig::default())?;
        Ok((r, Some(k)))
    } else {
        hosted::run(seed, cfg).map(|r| (r, None))
    }
}

/// Runs the seeds; exit code 1 on any violation.
pub fn run_hosted(args: &HostedArgs) -> anyhow::Result<ExitCode> {
    let cfg = HostedConfig {
        members: args.members,
        spares: if args.membership { args.spares } else { 0 },
        membership: args.membership,
        clients: args.clients,
        duration_ns: args.secs * 1000 * MS,
        snapshot_entries: args.snapshot_entries,
        ..HostedConfig::default()
    };
    let (first, count) = args.run.first_and_count();
    let last = first.saturating_add(count.max(1) - 1);
    let totals = Mutex::new((
        0u64,
        0u64,
        HostedReport::default(),
        KvHostedReport::default(),
    ));
    let began = Instant::now();
    crate::sim::for_each_seed(first, last, args.run.jobs, |seed| {
        let result = run_seed(seed, &cfg, args.kv);
        let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
        t.0 += 1;
        match result {
            Ok((r, k)) => {
                t.2.add(&r);
                if let Some(k) = k {
                    t.3.add(&k);
                }
            }
            Err(f) => {
                t.1 += 1;
                println!("VIOLATION {f}");
                let mut membership = if args.membership {
                    format!(" --membership --spares {}", args.spares)
                } else {
                    String::new()
                };
                if args.kv {
                    membership.push_str(" --kv");
                }
                println!(
                    "  replay: flotilla sim hosted --members {}{membership} --clients {} --secs {} \
                     --snapshot-entries {} --seed {seed}",
                    args.members, args.clients, args.secs, args.snapshot_entries
                );
            }
        }
    });
    let (seeds, violations, r, k) = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    let wall = began.elapsed().as_secs_f64();
    print_totals(seeds, violations, &r, args.kv.then_some(&k), wall);
    Ok(if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The sweep's totals, as one line (and one more for `--kv`).
fn print_totals(
    seeds: u64,
    violations: u64,
    r: &HostedReport,
    kv: Option<&KvHostedReport>,
    wall: f64,
) {
    println!(
        "seeds={seeds} violations={violations} commits={} acked_writes={} reads={} crashes={} \
         snapshot_jobs={} membership_changes={} removals={} wall_s={wall:.1}",
        r.commits,
        r.acked_writes,
        r.reads,
        r.crashes,
        r.snapshot_jobs,
        r.membership_changes,
        r.removals,
    );
    if let Some(k) = kv {
        let [puts, appends, deletes, cas_version, cas_value] = k.by_kind;
        println!(
            "kv: writes={} (puts={puts} appends={appends} deletes={deletes} \
             cas_version={cas_version} cas_value={cas_value} swapped={:?}) gets={} sessions={} \
             sessions_expired={} history_ops={} published={} watched={} watch_resumes={}",
            k.writes,
            k.swapped,
            k.reads,
            k.sessions,
            k.sessions_expired,
            k.history_ops,
            k.published,
            k.watched,
            k.watch_resumes
        );
    }
}
