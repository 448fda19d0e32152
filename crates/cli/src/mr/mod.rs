//! `flotilla mr`: MapReduce jobs.
//!
//! - `run`: the embedded default; a coordinator in this process and N worker
//!   processes (this binary again, as `mr worker`), sharing an
//!   intermediate directory, restarted if they crash.
//! - `coordinator` and `worker`: the same pieces for several machines; map
//!   outputs then travel through each worker's shuffle service.
//! - `sequential`: the single-process reference (the course's
//!   `mrsequential`).
//!
//! Exit codes: 0 when the job is done, 1 when it failed or could not start
//! (the message says why).

mod coordinator;
mod progress;
mod run;
pub(crate) mod tls;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use flotilla_mapreduce::coordinator::Config as CoreConfig;
use flotilla_mapreduce::time::Millis;
use flotilla_mr::job::{AppSpec, JobConfig};
use flotilla_mr::streaming::ReduceInput;

use crate::units::{parse_duration, parse_size};

/// `flotilla mr` arguments.
#[derive(Debug, Args)]
pub struct MrArgs {
    #[command(subcommand)]
    command: MrCommand,
}

#[derive(Debug, Subcommand)]
enum MrCommand {
    /// Run a job on this machine: a coordinator and N worker processes.
    Run(run::RunArgs),
    /// Serve a job's coordinator for workers on any machine.
    Coordinator(coordinator::CoordinatorArgs),
    /// Work for a coordinator until its job is done.
    Worker(worker::WorkerArgs),
    /// Run a job in this one process, with no coordinator (the reference).
    Sequential(SequentialArgs),
}

/// Runs `flotilla mr`.
pub fn main(args: MrArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MrCommand::Run(a) => run::main(a),
        MrCommand::Coordinator(a) => coordinator::main(a),
        MrCommand::Worker(a) => worker::main(a),
        MrCommand::Sequential(a) => sequential(a),
    }
}

/// How a streaming reduce command reads its input.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReduceInputArg {
    /// Once per reduce task, every `key<TAB>value` line sorted by key.
    Sorted,
    /// Once per key, `MR_KEY` set, the key's values one per line.
    Group,
}

/// The app a job runs.
#[derive(Debug, Args)]
struct AppArgs {
    /// Built-in app: wc, indexer, mtiming, rtiming, jobcount, early_exit,
    /// crash, nocrash.
    #[arg(long, conflicts_with = "map_cmd")]
    app: Option<String>,
    /// An app parameter, NAME=VALUE (for example probe_sleep_ms=100).
    #[arg(long = "app-param", value_name = "NAME=VALUE")]
    app_params: Vec<String>,
    /// Streaming map: a shell command that reads a split on stdin and
    /// writes `key<TAB>value` lines.
    #[arg(long, requires = "reduce_cmd")]
    map_cmd: Option<String>,
    /// Streaming reduce: a shell command (see --reduce-input).
    #[arg(long, requires = "map_cmd")]
    reduce_cmd: Option<String>,
    /// How the reduce command reads its input.
    #[arg(long, value_enum, default_value = "sorted")]
    reduce_input: ReduceInputArg,
}

impl AppArgs {
    fn spec(&self) -> anyhow::Result<AppSpec> {
        match (&self.app, &self.map_cmd, &self.reduce_cmd) {
            (Some(name), None, None) => {
                let mut params = BTreeMap::new();
                for p in &self.app_params {
                    let (k, v) = p
                        .split_once('=')
                        .with_context(|| format!("--app-param `{p}` is not NAME=VALUE"))?;
                    params.insert(k.trim().to_string(), v.trim().to_string());
                }
                Ok(AppSpec::BuiltIn {
                    name: name.clone(),
                    params,
                })
            }
            (None, Some(map_cmd), Some(reduce_cmd)) => {
                if !self.app_params.is_empty() {
                    bail!("--app-param applies to built-in apps, not to --map-cmd");
                }
                Ok(AppSpec::Streaming {
                    map_cmd: map_cmd.clone(),
                    reduce_cmd: reduce_cmd.clone(),
                    reduce_input: match self.reduce_input {
                        ReduceInputArg::Sorted => ReduceInput::Sorted,
                        ReduceInputArg::Group => ReduceInput::Group,
                    },
                })
            }
            _ => bail!("give an app: --app NAME, or --map-cmd CMD with --reduce-cmd CMD"),
        }
    }
}

/// A job's definition and scheduling, shared by `run` and `coordinator`.
#[derive(Debug, Args)]
struct JobArgs {
    #[command(flatten)]
    app: AppArgs,
    /// Number of reduce tasks (and of mr-out-* files).
    #[arg(long, default_value_t = 10)]
    reduces: u32,
    /// Output directory for mr-out-*.
    #[arg(long, default_value = "mr-out")]
    out: PathBuf,
    /// Replace the mr-out-* files of an existing output directory.
    #[arg(long)]
    force: bool,
    /// Split input files into map tasks of about this size, at line ends.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    split_size: u64,
    /// Memory a map task buffers before it spills a sorted run to disk.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    sort_buffer: u64,
    /// A task attempt not heard from for this long is handed out again.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    task_timeout: Duration,
    /// Near the end of a phase, start a backup copy of a task running this
    /// long ("off" disables).
    #[arg(long, default_value = "10s")]
    speculate_after: String,
    /// A task failing this many times stops the job.
    #[arg(long, default_value_t = 4)]
    max_task_failures: u32,
    /// How often workers report progress (their heartbeat).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    progress_interval: Duration,
    /// How long an idle worker waits before asking again.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    wait_hint: Duration,
    /// Input files (also the document names the apps see).
    #[arg(value_name = "FILES")]
    inputs: Vec<String>,
}

fn millis(d: Duration) -> Millis {
    Millis(d.as_millis() as u64)
}

impl JobArgs {
    fn config(&self, shared_dir: Option<PathBuf>) -> anyhow::Result<JobConfig> {
        let speculate_after = match self.speculate_after.as_str() {
            "off" | "never" => None,
            s => Some(millis(parse_duration(s).map_err(anyhow::Error::msg)?)),
        };
        if self.progress_interval >= self.task_timeout {
            bail!(
                "--progress-interval ({:?}) must be shorter than --task-timeout ({:?}), or every attempt times out",
                self.progress_interval,
                self.task_timeout
            );
        }
        Ok(JobConfig {
            app: self.app.spec()?,
            inputs: self.inputs.clone(),
            output_dir: self.out.clone(),
            force: self.force,
            split_bytes: self.split_size,
            shared_dir,
            sort_buffer_bytes: self.sort_buffer,
            progress_interval: self.progress_interval,
            core: CoreConfig {
                n_reduce: self.reduces,
                task_timeout: millis(self.task_timeout),
                speculate_after,
                max_task_failures: self.max_task_failures,
                wait_hint: millis(self.wait_hint),
            },
        })
    }
}

/// `flotilla mr sequential` arguments.
#[derive(Debug, Args)]
struct SequentialArgs {
    /// Built-in app.
    #[arg(long)]
    app: String,
    /// An app parameter, NAME=VALUE.
    #[arg(long = "app-param", value_name = "NAME=VALUE")]
    app_params: Vec<String>,
    /// Output file (sorted `key value` lines).
    #[arg(long, default_value = "mr-out-0")]
    out: PathBuf,
    /// Input files.
    #[arg(value_name = "FILES", required = true)]
    inputs: Vec<String>,
}

fn sequential(args: SequentialArgs) -> anyhow::Result<ExitCode> {
    let app = AppArgs {
        app: Some(args.app),
        app_params: args.app_params,
        map_cmd: None,
        reduce_cmd: None,
        reduce_input: ReduceInputArg::Sorted,
    };
    let AppSpec::BuiltIn { name, params } = app.spec()? else {
        bail!("mr sequential runs built-in apps only");
    };
    let marker_dir = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let out = flotilla_mr::sequential::run(&name, &params, &args.inputs, &marker_dir)?;
    std::fs::write(&args.out, out).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Where the job's web console listens.
#[derive(Debug, Args)]
struct ConsoleArgs {
    /// Serve the job's web console (progress, throughput, every task and
    /// its attempts) on this address; its URL is printed at the start.
    /// Port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    console_listen: std::net::SocketAddr,
    /// Serve no console.
    #[arg(long, conflicts_with = "console_listen")]
    no_console: bool,
}

impl ConsoleArgs {
    /// The console's listener, its URL printed on stderr; `None` with
    /// `--no-console`.
    async fn listen(&self) -> anyhow::Result<Option<tokio::net::TcpListener>> {
        if self.no_console {
            return Ok(None);
        }
        let addr = self.console_listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--console-listen {addr}"))?;
        let bound = listener
            .local_addr()
            .context("reading the console's address")?;
        eprintln!("console: http://{bound}/");
        Ok(Some(listener))
    }
}
