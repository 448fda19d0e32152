//! `flotilla bench`: benchmarks that print figures.

mod corpus;
mod mr;

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
    /// Word count over a generated corpus: sequential, 1 worker, 2 workers.
    Mr(mr::MrBenchArgs),
}

/// Runs `flotilla bench`.
pub fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Mr(a) => mr::main(a),
    }
}
