//! `flotilla bench raft` measures the consensus core alone
//! (`flotilla_sim::bench`: Raft cores over in-memory storage, every
//! message delivered at once, no host, WAL or faults): committed entries
//! per wall second for 3- and 5-node groups, with one command per
//! proposal and with batches; then reads per wall second and messages per
//! read, ReadIndex against reads through the log.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct RaftBenchArgs {
    /// Entries to commit per configuration.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Bytes per command.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Commands per proposal call in the batched runs.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Reads per configuration in the read table.
    #[arg(long, default_value_t = 200_000)]
    reads: u64,
    /// Reads issued together at the leader (one confirmation round or one
    /// append can serve them all).
    #[arg(long, default_value_t = 64)]
    read_burst: u64,
}

pub fn main(args: RaftBenchArgs) -> anyhow::Result<ExitCode> {
    println!(
        "{:>5} {:>6} {:>10} {:>8} {:>12} {:>12}",
        "nodes", "batch", "entries", "wall_s", "entries/s", "msgs/s"
    );
    for nodes in [3, 5] {
        for batch in [1, args.batch] {
            // Unbatched runs are slower: a tenth of the entries suffices.
            let entries = if batch == 1 {
                (args.entries / 10).max(1)
            } else {
                args.entries
            };
            let began = Instant::now();
            let r = flotilla_sim::bench::throughput(nodes, batch, entries, args.payload)
                .with_context(|| format!("benchmark of {nodes} nodes, batch {batch}"))?;
            let wall = began.elapsed().as_secs_f64();
            println!(
                "{:>5} {:>6} {:>10} {:>8.2} {:>12.0} {:>12.0}",
                nodes,
                batch,
                r.entries,
                wall,
                r.entries as f64 / wall,
                r.steps as f64 / wall
            );
        }
    }
    println!();
    read_table(&args)?;
    Ok(ExitCode::SUCCESS)
}

fn read_table(args: &RaftBenchArgs) -> anyhow::Result<()> {
    use flotilla_sim::bench::ReadPath;
    println!(
        "{:>5} {:>9} {:>6} {:>9} {:>8} {:>12} {:>10} {:>10}",
        "nodes", "read_path", "burst", "reads", "wall_s", "reads/s", "msgs/read", "bytes/read"
    );
    for nodes in [3, 5] {
        for burst in [1, args.read_burst] {
            for path in [ReadPath::ReadIndex, ReadPath::Log] {
                let began = Instant::now();
                let r = flotilla_sim::bench::reads(nodes, path, args.reads, burst)
                    .with_context(|| format!("read benchmark of {nodes} nodes, {path:?}"))?;
                let wall = began.elapsed().as_secs_f64();
                let name = match path {
                    ReadPath::ReadIndex => "readindex",
                    ReadPath::Log => "log",
                };
                println!(
                    "{:>5} {:>9} {:>6} {:>9} {:>8.2} {:>12.0} {:>10.2} {:>10.1}",
                    nodes,
                    name,
                    burst,
                    r.reads,
                    wall,
                    r.reads as f64 / wall,
                    r.messages as f64 / r.reads as f64,
                    r.bytes as f64 / r.reads as f64
                );
            }
        }
    }
    Ok(())
}
