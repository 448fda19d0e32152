//! `flotilla bench`: benchmarks that print figures.

mod corpus;
mod floor;
mod kv;
mod mr;
mod noop;
mod raft;
mod watch;

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// `flotilla bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The latency floor of a 1-client write: p50 of one fsync (append +
    /// fdatasync in --dir) plus one loopback round trip.
    Floor(floor::FloorBenchArgs),
    /// Closed-loop load over etcd's v3 API (Flotilla or etcd): throughput
    /// and latency percentiles.
    Kv(kv::KvBenchArgs),
    /// Word count over a generated corpus: sequential, 1 worker, 2 workers.
    Mr(mr::MrBenchArgs),
    /// etcd's KV service answering at once (no Raft, no disk): the floor
    /// of the gRPC layer, to drive with `bench kv`.
    NoopServer(noop::NoopServerArgs),
    /// Committed entries per second of the Raft core in the simulator
    /// (one thread, no faults, no message encoding).
    Raft(raft::RaftBenchArgs),
    /// What watchers cost (etcd's v3 API, Flotilla or etcd): write
    /// throughput with and without them, and event delivery latency.
    Watch(watch::WatchBenchArgs),
}

/// Runs `flotilla bench`.
pub fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Floor(a) => floor::main(a),
        BenchCommand::Kv(a) => kv::main(a),
        BenchCommand::Mr(a) => mr::main(a),
        BenchCommand::NoopServer(a) => noop::main(a),
        BenchCommand::Raft(a) => raft::main(a),
        BenchCommand::Watch(a) => watch::main(a),
    }
}
