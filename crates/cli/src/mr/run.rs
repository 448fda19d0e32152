//! `flotilla mr run`: the embedded default. The coordinator runs in this
//! process on a loopback port; N worker processes (this same binary, as
//! `flotilla mr worker`) share an intermediate directory inside the output
//! directory. A worker that dies while the job runs is restarted (up to
//! `--max-restarts` times), unless it exited because the job failed. When
//! the job ends: the summary on stdout, the intermediate directory removed,
//! exit 0 (done) or 1 (failed).
//!
//! With `--tls` the coordinator and the workers speak mutual TLS with a CA
//! made for the job inside the intermediate directory (keys readable by
//! their owner only), so it goes with it.

use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
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
use super::worker::EXIT_NO_RESTART;

/// The intermediate directory's name inside the output directory.
const SHARED_DIR: &str = ".mr-intermediate";

/// `flotilla mr run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Number of worker processes.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Restart dead workers at most this many times in all.
    #[arg(long, default_value_t = 100)]
    max_restarts: u32,
    /// Mutual TLS between the coordinator and the workers, with a
    /// throwaway CA made for this job (removed with the intermediate
    /// directory when the job ends).
    #[arg(long, conflicts_with_all = ["cert_file", "key_file", "trusted_ca_file"])]
    tls: bool,
    #[command(flatten)]
    tls_files: MrTlsArgs,
    #[command(flatten)]
    console: super::ConsoleArgs,
    #[command(flatten)]
    job: JobArgs,
}

/// Runs `flotilla mr run`.
pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.workers == 0 {
        anyhow::bail!("--workers must be at least 1");
    }
    // Given files are checked before anything is written, as the
    // workers will check them.
    args.tls_files.worker()?;
    let shared = args.job.out.join(SHARED_DIR);
    let job = prepare(args.job.config(Some(shared.clone()))?)?;
    let tls = match args.tls {
        true => MrTlsArgs::generated(&shared.join("tls")),
        false => Ok(args.tls_files.clone()),
    };
    let options = tls.and_then(|tls| {
        let options = ServeOptions {
            tls: tls.server()?,
            ..ServeOptions::default()
        };
        Ok((tls, options))
    });
    let (tls, options) = match options {
        Ok(both) => both,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&shared);
            return Err(e);
        }
    };
    let exe = std::env::current_exe().context("finding the flotilla binary to start workers")?;
    let out_dir = job.spec.output_dir.clone();
    let work_root = shared.join("workers");
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("listening on a loopback port")?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let display = Arc::new(Display::new());
        let console = args.console.listen().await?;
        let server = tokio::spawn(serve(listener, job, options, display.clone(), console));
        let mut pool = Pool::start(&exe, &addr.to_string(), &work_root, &tls, args.workers)?;
        while !server.is_finished() {
            pool.restart_dead(args.max_restarts)?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let summary_result = server.await.context("coordinator task")??;
        pool.stop(Duration::from_secs(5)).await;
        // A worker killed while it wrote a backup copy leaves a hidden temp.
        flotilla_mr::files::remove_stale_temps(&out_dir);
        display.finish();
        anyhow::Ok(summary_result)
    });
    let _ = std::fs::remove_dir_all(&shared);
    let result = result?;
    println!("{}", summary(&result));
    Ok(match result.outcome {
        Outcome::Done => {
            println!(
                "output: {}/mr-out-0 .. mr-out-{}",
                args.job.out.display(),
                args.job.reduces - 1
            );
            ExitCode::SUCCESS
        }
        Outcome::Failed(msg) => {
            eprintln!("flotilla: error: {msg}");
            ExitCode::FAILURE
        }
        Outcome::Running => ExitCode::FAILURE,
    })
}

/// The worker processes.
struct Pool {
    exe: std::path::PathBuf,
    addr: String,
    work_root: std::path::PathBuf,
    tls_args: Vec<std::ffi::OsString>,
    spawned: u32,
    children: Vec<Child>,
    restarts: u32,
}

impl Pool {
    fn start(
        exe: &Path,
        addr: &str,
        work_root: &Path,
        tls: &MrTlsArgs,
        n: u32,
    ) -> anyhow::Result<Pool> {
        let mut pool = Pool {
            exe: exe.to_path_buf(),
            addr: addr.to_string(),
            work_root: work_root.to_path_buf(),
            tls_args: tls.to_args(),
            spawned: 0,
            children: Vec::new(),
            restarts: 0,
        };
        for _ in 0..n {
            let child = pool.spawn()?;
            pool.children.push(child);
        }
        Ok(pool)
    }

    /// Starts a worker whose work directory lies inside the intermediate
    /// directory, so even a crashed worker leaves nothing behind.
    fn spawn(&mut self) -> anyhow::Result<Child> {
        self.spawned += 1;
        let work_dir = self.work_root.join(format!("worker-{}", self.spawned));
        Command::new(&self.exe)
            .args(["mr", "worker", "--coordinator", &self.addr, "--work-dir"])
            .arg(work_dir)
            .args(&self.tls_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting worker {}", self.exe.display()))
    }

    /// Replaces workers that exited with an error while the job runs.
    fn restart_dead(&mut self, max_restarts: u32) -> anyhow::Result<()> {
        for i in 0..self.children.len() {
            let status = self.children[i].try_wait().context("checking a worker")?;
            match status {
                Some(status)
                    if !status.success() && status.code() != Some(i32::from(EXIT_NO_RESTART)) =>
                {
                    if self.restarts >= max_restarts {
                        anyhow::bail!(
                            "workers died {} times (last: {status}); giving up",
                            self.restarts
                        );
                    }
                    self.restarts += 1;
                    self.children[i] = self.spawn()?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Waits for every worker to exit, killing those still running after
    /// `grace`.
    async fn stop(mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let running = self
                .children
                .iter_mut()
                .map(|c| c.try_wait())
                .filter(|s| matches!(s, Ok(None)))
                .count();
            if running == 0 || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
