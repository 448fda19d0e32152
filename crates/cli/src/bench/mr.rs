//! `flotilla bench mr`: word count over a generated corpus (default 1 GiB,
//! deterministic, with Unicode), run three ways in one go: the sequential
//! single-process baseline (`mr sequential`), `mr run` with 1 worker and
//! with 2 workers. Prints wall time, MB/s, CPU time (user + system of every
//! process, from /proc) and the peak RSS of every process (VmHWM, polled),
//! checks that every run's output equals the baseline's, and deletes the
//! corpus afterwards. The load average is printed too: on a shared machine
//! the wall-clock ratios mean little when other work holds a core.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::corpus;
use crate::units::{bytes, parse_size};

/// `flotilla bench mr` arguments.
#[derive(Debug, Args)]
pub struct MrBenchArgs {
    /// Corpus size.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Directory for the corpus and outputs (default: a temporary one).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Split size for map tasks.
    #[arg(long, default_value = "64MiB")]
    split_size: String,
    /// Reduce tasks.
    #[arg(long, default_value_t = 10)]
    reduces: u32,
    /// Keep the corpus and outputs.
    #[arg(long)]
    keep: bool,
}

/// One measured run.
struct Measured {
    name: String,
    wall: Duration,
    /// Peak RSS in KiB per process (the command itself, then its children).
    peaks: BTreeMap<u32, (String, u64)>,
    /// CPU time (user + system, clock ticks) last seen per process.
    cpu_ticks: BTreeMap<u32, u64>,
}

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Runs `flotilla bench mr`.
pub fn main(args: MrBenchArgs) -> anyhow::Result<ExitCode> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("flotilla-bench-mr-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_all(&args, &dir);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn run_all(args: &MrBenchArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the flotilla binary")?;
    let corpus_path = dir.join("corpus.txt");
    let t = Instant::now();
    let size = corpus::generate(&corpus_path, args.size, 6824)?;
    println!(
        "corpus: {} ({size} bytes) generated in {:.1}s",
        bytes(size),
        t.elapsed().as_secs_f64()
    );
    let corpus_arg = corpus_path.to_string_lossy().into_owned();
    let seq_out = dir.join("sequential.out");
    let seq = measure(
        "sequential",
        Command::new(&exe)
            .args(["mr", "sequential", "--app", "wc", "--out"])
            .arg(&seq_out)
            .arg(&corpus_arg),
    )?;
    let expected = std::fs::read(&seq_out).context("reading the sequential output")?;
    let mut runs = vec![seq];
    for workers in [1u32, 2] {
        let out = dir.join(format!("out-{workers}"));
        let reduces = args.reduces.to_string();
        let w = workers.to_string();
        let mut cmd = Command::new(&exe);
        cmd.args([
            "mr",
            "run",
            "--app",
            "wc",
            "--workers",
            &w,
            "--reduces",
            &reduces,
        ])
        .args(["--split-size", &args.split_size, "--force", "--out"])
        .arg(&out)
        .arg(&corpus_arg);
        let m = measure(&format!("mr run, {workers} worker(s)"), &mut cmd)?;
        if sorted_output(&out)? != expected {
            bail!(
                "{} produced output that differs from the sequential run",
                m.name
            );
        }
        runs.push(m);
    }
    report(size, &runs);
    Ok(ExitCode::SUCCESS)
}

/// The concatenated `mr-out-*` files, lines sorted.
fn sorted_output(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("mr-out-") {
            let data = std::fs::read(entry.path())?;
            lines.extend(
                data.split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
    }
    lines.sort();
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&l);
        out.push(b'\n');
    }
    Ok(out)
}

/// VmHWM (peak resident set) of `pid` in KiB, if it still exists.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Children of `parent` (scanning /proc), with their command lines.
fn children(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(parent) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd: Vec<String> = cmd
                .split(|&b| b == 0)
                .skip(1)
                .take(2)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            out.push((pid, cmd.join(" ")));
        }
    }
    out
}

/// Runs `cmd`, polling the peak RSS of it and its children.
fn measure(name: &str, cmd: &mut Command) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let pid = child.id();
    let mut peaks: BTreeMap<u32, (String, u64)> = BTreeMap::new();
    let mut cpu: BTreeMap<u32, u64> = BTreeMap::new();
    let mut procs = vec![(pid, "main".to_string())];
    // Polling costs CPU the run needs (2 cores): look for new children
    // every 10th round only, and read just the peaks in between.
    let mut round = 0u32;
    let status = loop {
        if round.is_multiple_of(10) {
            procs.truncate(1);
            procs.extend(children(pid));
        }
        round += 1;
        for (p, label) in &procs {
            if let Some(kib) = peak_rss_kib(*p) {
                let entry = peaks.entry(*p).or_insert((label.clone(), 0));
                entry.1 = entry.1.max(kib);
            }
            if let Some(t) = cpu_ticks(*p) {
                cpu.insert(*p, t);
            }
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let wall = start.elapsed();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        bail!("{name} failed ({status}): {}", err.trim());
    }
    Ok(Measured {
        name: name.to_string(),
        wall,
        peaks,
        cpu_ticks: cpu,
    })
}

fn report(size: u64, runs: &[Measured]) {
    let mb = size as f64 / 1e6;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nmachine: {} cores, load average {}",
        cores(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<24} {:>7} {:>7} {:>8} {:>11}   peak RSS per process",
        "run", "wall s", "MB/s", "CPU s", "MB/CPU-s"
    );
    for r in runs {
        let secs = r.wall.as_secs_f64();
        let cpu = r.cpu_ticks.values().sum::<u64>() as f64 / TICKS_PER_SEC;
        let rss: Vec<String> = r
            .peaks
            .values()
            .map(|(label, kib)| format!("{label}: {}", bytes(kib * 1024)))
            .collect();
        println!(
            "{:<24} {:>7.2} {:>7.1} {:>8.2} {:>11.1}   {}",
            r.name,
            secs,
            mb / secs,
            cpu,
            mb / cpu.max(0.01),
            rss.join(", ")
        );
    }
    if let [seq, one, two] = runs {
        let speedup = one.wall.as_secs_f64() / two.wall.as_secs_f64();
        let per_worker = seq.wall.as_secs_f64() / one.wall.as_secs_f64();
        println!("\n2 workers vs 1 worker (wall): {speedup:.2}x (target >= 1.7x)");
        println!("1 worker vs sequential throughput (wall): {per_worker:.2} (target >= 0.5)");
        let worst = two
            .peaks
            .values()
            .chain(one.peaks.values())
            .filter(|(label, _)| label.contains("worker"))
            .map(|(_, kib)| *kib)
            .max()
            .unwrap_or(0);
        println!(
            "largest worker peak RSS: {} (target <= 512 MiB)",
            bytes(worst * 1024)
        );
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}
