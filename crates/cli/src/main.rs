//! The `flotilla` command line. It stays thin: each subcommand lives in its
//! own module, parses its flags with clap and calls into the library crates.
//!
//! Exit codes: every subcommand returns its own [`ExitCode`] (documented in its
//! `--help`); an error that escapes a subcommand is printed with its whole
//! context chain and exits with 1. A command-line usage error exits with 3
//! (bad input), not clap's usual 2, because `flotilla check` gives 2 the
//! meaning "unknown"; `--help` and `--version` exit with 0.

mod bench;
mod check;
mod cluster;
mod mr;
mod pipe;
mod sim;
mod sim_hosted;
mod sim_kv;
mod sim_shard;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: under load a server's requests,
/// messages and entries are many small short-lived allocations, where
/// glibc's arenas cost ~9% of the leader's CPU (perf, writes at 64
/// clients).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Lists or clears the alarms raised (etcd's: NOSPACE past the quota).
    Alarm(cluster::maintenance::AlarmArgs),
    /// Benchmarks that print figures.
    Bench(bench::BenchArgs),
    /// Makes a CA and member and client certificates for a TLS cluster.
    Certs(cluster::tls::CertsArgs),
    /// Checks recorded histories (linearizability).
    #[command(subcommand)]
    Check(check::CheckCommand),
    /// Makes each member forget at once what compactions made obsolete
    /// (etcd's defragmentation), freeing room under the quota.
    Defrag(cluster::maintenance::DefragArgs),
    /// Campaigns in an election (etcd's) and holds leadership until
    /// interrupted, or (`--listen`) prints each leader's values.
    Elect(cluster::recipes::ElectArgs),
    /// Reads and writes keys of a running cluster (etcd's v3 API).
    Kv(cluster::kv::KvArgs),
    /// Grants, revokes, inspects and keeps alive leases (etcd's): keys
    /// attached to a lease are deleted when it ends.
    Lease(cluster::lease::LeaseArgs),
    /// Takes a lock (etcd's) and runs a command while holding it, or holds
    /// it until interrupted.
    Lock(cluster::recipes::LockArgs),
    /// Asks each member's `GET /health` (a container's health check):
    /// exits 0 if every one is healthy, else 1.
    Health(cluster::health::HealthArgs),
    /// Lists, adds, removes and promotes the members of a running cluster.
    Member(cluster::member::MemberArgs),
    /// Run MapReduce jobs: embedded (`run`), or a coordinator and workers.
    Mr(Box<mr::MrArgs>),
    /// Runs one member of a cluster in the foreground.
    #[command(after_help = cluster::server::PRECEDENCE)]
    Server(Box<cluster::server::ServerArgs>),
    /// The sharded store: runs a server, administers the shard
    /// controller, reads and writes keys.
    Shard(cluster::shard::ShardArgs),
    /// Saves a backup of a running cluster, checks one, or builds a new
    /// cluster's data directories from one.
    Snapshot(cluster::snapshot::SnapshotArgs),
    /// Shows each member's role, term, commit and applied index.
    Status(cluster::status::StatusArgs),
    /// Starts a local cluster on loopback (3 members by default).
    Up(cluster::up::UpArgs),
    /// Run the deterministic simulator.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Prints the changes to a key or a prefix, from now or from a past
    /// revision (etcdctl's format), across member failures.
    Watch(cluster::watch::WatchArgs),
}

fn main() -> ExitCode {
    pipe::quiet_on_broken_pipe();
    let command = match Cli::try_parse() {
        Ok(Cli { command }) => command,
        Err(err) => {
            let code = if err.use_stderr() {
                check::BAD_INPUT
            } else {
                0
            };
            // Printing help or a usage error; nothing useful to do if stdout is gone.
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let result: anyhow::Result<ExitCode> = match command {
        Command::Bench(args) => bench::main(args),
        Command::Certs(args) => cluster::tls::certs_main(args),
        Command::Kv(args) => cluster::kv::main(args),
        Command::Watch(args) => cluster::watch::main(args),
        Command::Lease(args) => cluster::lease::main(args),
        Command::Alarm(args) => cluster::maintenance::alarm_main(args),
        Command::Defrag(args) => cluster::maintenance::defrag_main(args),
        Command::Lock(args) => cluster::recipes::lock_main(args),
        Command::Elect(args) => cluster::recipes::elect_main(args),
        Command::Health(args) => cluster::health::main(args),
        Command::Member(args) => cluster::member::main(args),
        Command::Mr(args) => mr::main(*args),
        Command::Server(args) => cluster::server::main(*args),
        Command::Status(args) => cluster::status::main(args),
        Command::Shard(args) => cluster::shard::main(args),
        Command::Snapshot(args) => cluster::snapshot::main(args),
        Command::Up(args) => cluster::up::main(args),
        Command::Check(command) => check::run(command),
        Command::Sim(cmd) => sim::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("flotilla: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
