//! `flotilla mr worker`: works for a coordinator until the job is done
//! (exit 0), the job failed (exit 1) or the coordinator is gone (exit 0: a
//! coordinator exits once its job has ended).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flotilla_mapreduce::worker::{WorkerConfig, WorkerExit};
use flotilla_node::mr::worker::{WorkerOptions, run};

use super::millis;
use crate::units::parse_duration;

/// `flotilla mr worker` arguments.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The coordinator's address, host:port.
    #[arg(long)]
    coordinator: String,
    /// Where this worker's shuffle service listens (port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:0")]
    shuffle_listen: SocketAddr,
    /// The host:port other workers use to reach the shuffle service.
    #[arg(long)]
    advertise: Option<String>,
    /// Work directory (default: a temporary one, removed at exit).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep trying to reach the coordinator this long at start.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Once connected, exit after the coordinator is unreachable this long.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    gone_after: Duration,
}

/// Runs `flotilla mr worker`.
pub fn main(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let options = WorkerOptions {
        coordinator: args.coordinator.clone(),
        shuffle_listen: args.shuffle_listen,
        advertise: args.advertise,
        work_dir: args.work_dir,
        config: WorkerConfig {
            connect_timeout: millis(args.connect_timeout),
            gone_after: millis(args.gone_after),
            ..WorkerConfig::default()
        },
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let exit = runtime.block_on(run(options))?;
    Ok(match exit {
        WorkerExit::JobDone => ExitCode::SUCCESS,
        WorkerExit::JobFailed(msg) => {
            eprintln!("flotilla: worker: the job failed: {msg}");
            ExitCode::FAILURE
        }
        WorkerExit::UnknownWorker => {
            eprintln!(
                "flotilla: worker: the coordinator at {} does not know this worker",
                args.coordinator
            );
            ExitCode::FAILURE
        }
        WorkerExit::CoordinatorGone { error } => {
            eprintln!(
                "flotilla: worker: coordinator at {} unreachable ({error}); exiting",
                args.coordinator
            );
            ExitCode::SUCCESS
        }
    })
}
