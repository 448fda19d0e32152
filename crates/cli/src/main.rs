//! The `flotilla` command line. It stays thin: each subcommand lives in its
//! own module, parses its flags with clap and calls into the library crates.
//!
//! Exit codes: every subcommand returns its own [`ExitCode`] (documented in its
//! `--help`); an error that escapes a subcommand is printed with its whole
//! context chain and exits with 1.

mod bench;
mod mr;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Flotilla: Raft, a linearizable replicated KV store, a sharded store and
/// MapReduce, with a deterministic simulator to prove them.
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run MapReduce jobs: embedded (`run`), or a coordinator and workers.
    Mr(Box<mr::MrArgs>),
    /// Benchmarks that print figures.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let result: anyhow::Result<ExitCode> = match command {
        Command::Mr(args) => mr::main(*args),
        Command::Bench(args) => bench::main(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("flotilla: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
