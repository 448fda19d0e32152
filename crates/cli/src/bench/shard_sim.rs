//! `flotilla bench shard sim-load` and `sim-move`: the sharded store's
//! figures in the simulator's virtual time, with a per-server
//! service-time model (`flotilla_shardsim::bench`), where this machine's
//! 2 cores cannot show them for real.
//!
//! - `sim-load`: for each count in `--groups`, closed-loop writers on
//!   uniformly spread keys over 256 shards, `--clerks-per-group` per
//!   group; puts per virtual second, latency percentiles, the busiest
//!   processor's share, and each count against the first. With
//!   `--colocated` every group's server `i` shares processor `i` (as
//!   `flotilla up --groups` places them); without, each group has
//!   processors of its own (the course's fleet: 3 groups on 9 servers).
//! - `sim-move`: the virtual time to move a shard of `--mib` MiB.

use clap::Args;
use flotilla_shardsim::bench::{Costs, LoadConfig, load, migrate};
use flotilla_sim::MS;

/// The service-time model's costs, in µs.
#[derive(Debug, Args)]
pub struct CostArgs {
    /// Processor time per client request entering a server.
    #[arg(long, default_value_t = 40.0)]
    request_us: f64,
    /// Processor time per message received, before its bytes.
    #[arg(long, default_value_t = 10.0)]
    message_us: f64,
    /// Processor time per KiB received.
    #[arg(long, default_value_t = 1.0)]
    kib_us: f64,
    /// Processor time per entry applied.
    #[arg(long, default_value_t = 5.0)]
    apply_us: f64,
}

impl CostArgs {
    fn costs(&self) -> anyhow::Result<Costs> {
        let ns = |what: &str, us: f64| -> anyhow::Result<u64> {
            if !(0.0..=1e6).contains(&us) {
                anyhow::bail!("--{what} {us}: give 0 to 1000000 µs");
            }
            Ok((us * 1e3).round() as u64)
        };
        Ok(Costs {
            request_ns: ns("request-us", self.request_us)?,
            message_ns: ns("message-us", self.message_us)?,
            kib_ns: ns("kib-us", self.kib_us)?,
            apply_ns: ns("apply-us", self.apply_us)?,
        })
    }
}

/// `flotilla bench shard sim-load` arguments.
#[derive(Debug, Args)]
pub struct SimLoadArgs {
    /// Group counts to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    groups: Vec<usize>,
    /// Closed-loop writers per group.
    #[arg(long, default_value_t = 250)]
    clerks_per_group: usize,
    /// Virtual milliseconds measured, after as many of warm-up.
    #[arg(long, default_value_t = 500)]
    window_ms: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Every group's server `i` on processor `i` (`flotilla up --groups`).
    #[arg(long)]
    colocated: bool,
    /// The simulation's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    costs: CostArgs,
}

/// Runs `sim-load`.
pub fn sim_load(a: &SimLoadArgs) -> anyhow::Result<()> {
    let costs = a.costs.costs()?;
    if a.groups.iter().any(|&g| g == 0 || g > 64) || a.clerks_per_group == 0 || a.window_ms == 0 {
        anyhow::bail!("give 1 to 64 groups per count, at least one clerk and a window over 0 ms");
    }
    let layout = if a.colocated {
        "every group on the same 3 processors"
    } else {
        "each group on 3 processors of its own"
    };
    println!("virtual time, {layout}, costs {costs:?}");
    let mut first = None;
    for &groups in &a.groups {
        let cfg = LoadConfig {
            groups,
            nshards: 256,
            clerks_per_group: a.clerks_per_group,
            value_bytes: a.value_size,
            warmup_ns: a.window_ms * MS,
            window_ns: a.window_ms * MS,
            costs,
            colocated: a.colocated,
            seed: a.seed,
        };
        let r = load(&cfg).map_err(|f| anyhow::anyhow!("seed {}: {}", f.seed, f.what))?;
        let base = *first.get_or_insert(r.per_sec);
        println!(
            "{groups} groups: {:.0} puts/s, p50 {:.2} ms, p99 {:.2} ms, busiest processor {:.0}% ({:.2}x the first)",
            r.per_sec,
            r.p50_ms,
            r.p99_ms,
            r.busiest * 100.0,
            r.per_sec / base.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

/// `flotilla bench shard sim-move` arguments.
#[derive(Debug, Args)]
pub struct SimMoveArgs {
    /// MiB in the shard moved (1 MiB values).
    #[arg(long, default_value_t = 100)]
    mib: u64,
    /// The simulation's seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    costs: CostArgs,
}

/// Runs `sim-move`.
pub fn sim_move(a: &SimMoveArgs) -> anyhow::Result<()> {
    let costs = a.costs.costs()?;
    if a.mib == 0 || a.mib > 4096 {
        anyhow::bail!("--mib {}: give 1 to 4096", a.mib);
    }
    let r = migrate(a.mib, costs, a.seed)
        .map_err(|f| anyhow::anyhow!("seed {}: {}", f.seed, f.what))?;
    let secs = r.ms / 1e3;
    println!(
        "moved {} MiB in {:.1} ms of virtual time ({:.0} MiB/s), costs {costs:?}",
        a.mib,
        r.ms,
        a.mib as f64 / secs.max(f64::MIN_POSITIVE)
    );
    Ok(())
}
