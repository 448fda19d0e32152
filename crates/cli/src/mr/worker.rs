//! `flotilla mr worker`: works for a coordinator until the job is done.
//!
//! Exit codes: 0 when the job is done or its coordinator, once reached, is
//! gone (a coordinator exits when its job ends); 2 when the job failed or the
//! coordinator rejected this worker (restarting it would not help); 1 for
//! anything else, including a coordinator that was never reached.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flotilla_mapreduce::worker::{WorkerConfig, WorkerExit};
use flotilla_mr::worker::{WorkerOptions, run};

use super::millis;
use super::tls::MrTlsArgs;
use crate::units::parse_duration;

/// The exit code that tells `mr run` not to restart a worker.
pub const EXIT_NO_RESTART: u8 = 2;

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
    #[command(flatten)]
    tls: MrTlsArgs,
}

/// Runs `flotilla mr worker`.
pub fn main(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    crate::cluster::server::init_logging_at("warn");
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
        tls: args.tls.worker()?,
    };
    let tls = options.tls.is_some();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let exit = runtime.block_on(run(options))?;
    Ok(match exit {
        WorkerExit::JobDone => ExitCode::SUCCESS,
        WorkerExit::JobFailed(msg) => {
            eprintln!("flotilla: worker: the job failed: {msg}");
            ExitCode::from(EXIT_NO_RESTART)
        }
        WorkerExit::UnknownWorker => {
            let addr = &args.coordinator;
            eprintln!("flotilla: worker: the coordinator at {addr} does not know this worker");
            ExitCode::from(EXIT_NO_RESTART)
        }
        WorkerExit::CoordinatorGone {
            error,
            was_connected: true,
        } => {
            let addr = &args.coordinator;
            eprintln!("flotilla: worker: coordinator at {addr} is gone ({error}); exiting");
            ExitCode::SUCCESS
        }
        WorkerExit::CoordinatorGone {
            error,
            was_connected: false,
        } => {
            let (addr, limit) = (&args.coordinator, args.connect_timeout);
            let hint = unreached_hint(&error, tls);
            eprintln!(
                "flotilla: error: cannot reach the coordinator at {addr} within {limit:?}: {error}{hint}"
            );
            ExitCode::FAILURE
        }
    })
}

/// What a failure to reach the coordinator most likely means, when its
/// error does not say ([`flotilla_tls::mismatch`]).
fn unreached_hint(error: &str, tls: bool) -> &'static str {
    use flotilla_tls::mismatch::{Mismatch, mismatch};
    match mismatch(error, tls) {
        Some(Mismatch::PlaintextToTls) => {
            " (is the coordinator serving TLS? give --trusted-ca-file, --cert-file and --key-file)"
        }
        Some(Mismatch::CertificateRefused) => {
            " (the coordinator may have refused this worker's certificate; its log says why)"
        }
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::unreached_hint;

    #[test]
    fn hints_name_the_likely_tls_mismatch() {
        let h2 = "Internal error: h2 protocol error: frame with invalid size";
        assert!(unreached_hint(h2, false).contains("serving TLS"));
        assert_eq!(unreached_hint(h2, true), "");
        let pipe = "Unknown error: transport error: stream closed because of a broken pipe";
        assert!(unreached_hint(pipe, true).contains("refused this worker's certificate"));
        assert!(unreached_hint(pipe, false).contains("serving TLS"));
        assert_eq!(unreached_hint("connection refused", false), "");
        assert_eq!(unreached_hint("connection refused", true), "");
    }
}
