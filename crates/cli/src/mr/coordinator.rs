//! `flotilla mr coordinator`: serves one job's coordinator on `--listen`
//! for workers anywhere, then exits when the job ends (0 done, 1 failed).
//! `--addr-file` receives the bound address (useful with port 0).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flotilla_mapreduce::coordinator::Outcome;
use flotilla_mr::coordinator::{ServeOptions, serve};
use flotilla_mr::job::prepare;

use super::JobArgs;
use super::progress::{Display, summary};
use super::tls::MrTlsArgs;
use crate::units::parse_duration;

/// `flotilla mr coordinator` arguments.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7440")]
    listen: SocketAddr,
    /// Write the bound address to this file once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// A directory every worker can reach (shared file system) for map
    /// outputs; without it, workers serve their outputs to each other.
    #[arg(long)]
    shared_dir: Option<PathBuf>,
    /// After the job ends, keep telling workers to exit for this long.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    linger: Duration,
    #[command(flatten)]
    tls: MrTlsArgs,
    #[command(flatten)]
    console: super::ConsoleArgs,
    #[command(flatten)]
    job: JobArgs,
}

/// Runs `flotilla mr coordinator`.
pub fn main(args: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    // Warnings only: the progress lines are the coordinator's own output,
    // and a refused TLS handshake is a warning an operator should see.
    crate::cluster::server::init_logging_at("warn");
    let tls = args.tls.server()?;
    let job = prepare(args.job.config(args.shared_dir.clone())?)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let over = if tls.is_some() { " over TLS" } else { "" };
        eprintln!("coordinator listening on {addr}{over}");
        if let Some(path) = &args.addr_file {
            write_atomically(path, addr.to_string().as_bytes())?;
        }
        let display = Arc::new(Display::new());
        let options = ServeOptions {
            linger: args.linger,
            tls,
            ..ServeOptions::default()
        };
        let shared_dir = job.spec.shared_dir.clone();
        let console = args.console.listen().await?;
        let result = serve(listener, job, options, display.clone(), console).await?;
        display.finish();
        if let Some(dir) = shared_dir {
            flotilla_mr::files::remove_map_outputs(&dir);
        }
        println!("{}", summary(&result));
        Ok(match result.outcome {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::Failed(msg) => {
                eprintln!("flotilla: error: {msg}");
                ExitCode::FAILURE
            }
            Outcome::Running => ExitCode::FAILURE,
        })
    })
}

/// Writes `data` to `path` through a temporary file, so readers never see
/// a partial address.
pub fn write_atomically(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}
