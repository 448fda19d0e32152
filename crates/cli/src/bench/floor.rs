//! `flotilla bench floor`: the latency floor of one replicated write on
//! this machine, to judge `flotilla bench kv --clients 1` against.
//!
//! A write acknowledged to one client needs at least one fsync on the
//! leader (its log entry must be durable before it counts towards the
//! quorum) and one client round trip (request in, reply out). The
//! leader-to-follower round trip and the follower's fsync run in parallel
//! with the leader's own fsync, so on an idle loopback cluster they add
//! little on top; the floor is therefore "one fsync + one loopback round
//! trip". Both are measured here:
//!
//! - fsync: append a `--value-size` record plus a 16-byte header to a
//!   temporary file in `--dir` (which should be on the data dirs' disk)
//!   and `fdatasync` it (`File::sync_data`), like a WAL append; the file
//!   grows, so the size change is flushed too, as for a WAL. The file is
//!   removed afterwards.
//! - round trip: a ping-pong of a gRPC-sized message (value plus 48 bytes
//!   of framing) over TCP on 127.0.0.1 with `TCP_NODELAY`, to an echo
//!   thread. This leaves out the HTTP/2 and protobuf work of a real gRPC
//!   call, so it is a (slightly) lower floor than a no-op gRPC server.
//!
//! Each measure runs a short warm-up, then `--samples` timed repetitions.
//! The last line is machine-readable:
//! `fsync_p50_ms=.. rtt_p50_ms=.. floor_p50_ms=..`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

/// Bytes of header in front of each appended record (length, sequence).
const RECORD_HEADER: usize = 16;
/// Bytes of framing a gRPC put adds to its value (HTTP/2 and gRPC frame
/// headers, protobuf tags, an 8-byte key), roughly.
const GRPC_FRAMING: usize = 48;
/// Most samples accepted, to keep a run bounded.
const MAX_SAMPLES: usize = 1_000_000;
/// Longest a socket read or write may block.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// `flotilla bench floor` arguments.
#[derive(Debug, Args)]
pub struct FloorBenchArgs {
    /// Directory whose filesystem to measure fsync on (put it on the same
    /// disk as the data dirs). A temporary file is created and removed.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Timed repetitions of each measure (after a short warm-up).
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    /// Bytes of payload per record appended and per message sent.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
}

/// p50 and p99 of a set of samples, in milliseconds.
struct Stats {
    p50: f64,
    p99: f64,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort_unstable();
        let pct = |p: f64| {
            let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
            samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        Stats {
            p50: pct(0.50),
            p99: pct(0.99),
        }
    }
}

/// Runs `flotilla bench floor`.
pub fn main(args: FloorBenchArgs) -> anyhow::Result<ExitCode> {
    if args.samples == 0 || args.samples > MAX_SAMPLES {
        bail!("--samples must be between 1 and {MAX_SAMPLES}");
    }
    let warmup = (args.samples / 10).clamp(10, 100);
    let record = args.value_size + RECORD_HEADER;
    let fsync = Stats::of(fsync_samples(&args.dir, warmup, args.samples, record)?);
    println!(
        "fsync: {} appends of {record} B + fdatasync in {}: p50={:.3}ms p99={:.3}ms",
        args.samples,
        args.dir.display(),
        fsync.p50,
        fsync.p99
    );
    let message = args.value_size + GRPC_FRAMING;
    let rtt = Stats::of(rtt_samples(warmup, args.samples, message)?);
    println!(
        "rtt: {} TCP ping-pongs of {message} B on 127.0.0.1 (TCP_NODELAY): p50={:.3}ms p99={:.3}ms",
        args.samples, rtt.p50, rtt.p99
    );
    let floor = fsync.p50 + rtt.p50;
    println!("floor (one fsync + one loopback round trip): p50={floor:.3}ms");
    println!(
        "fsync_p50_ms={:.3} rtt_p50_ms={:.3} floor_p50_ms={floor:.3}",
        fsync.p50, rtt.p50
    );
    Ok(ExitCode::SUCCESS)
}

/// Removes the temporary file when dropped (also on an error).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        // Best effort: a leftover file is harmless and named after us.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Times `samples` appends of a `record`-byte record, each followed by
/// `fdatasync`, to a fresh file in `dir`, after `warmup` untimed ones.
fn fsync_samples(
    dir: &Path,
    warmup: usize,
    samples: usize,
    record: usize,
) -> anyhow::Result<Vec<Duration>> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("--dir {}: cannot access it", dir.display()))?;
    if !meta.is_dir() {
        bail!("--dir {}: not a directory", dir.display());
    }
    let path = dir.join(format!(".flotilla-bench-floor-{}.tmp", std::process::id()));
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| {
            format!(
                "--dir {}: cannot create {} (is the directory writable?)",
                dir.display(),
                path.display()
            )
        })?;
    let _guard = TempFile(path.clone());
    let mut buf = vec![b'v'; record.max(RECORD_HEADER)];
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        buf[..8].copy_from_slice(&(record as u64).to_le_bytes());
        buf[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        let t0 = Instant::now();
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("--dir {}: cannot write {}", dir.display(), path.display()))?;
        if i >= warmup {
            out.push(t0.elapsed());
        }
    }
    Ok(out)
}

/// Times `samples` ping-pongs of a `message`-byte message with an echo
/// thread over TCP on 127.0.0.1, after `warmup` untimed ones.
fn rtt_samples(warmup: usize, samples: usize, message: usize) -> anyhow::Result<Vec<Duration>> {
    let rounds = warmup + samples;
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot listen on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let echo = thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        configure(&s)?;
        let mut buf = vec![0u8; message];
        for _ in 0..rounds {
            s.read_exact(&mut buf)?;
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .with_context(|| format!("cannot connect to the echo listener on {addr}"))?;
    configure(&s)?;
    let ping = vec![b'p'; message];
    let mut pong = vec![0u8; message];
    let mut out = Vec::with_capacity(samples);
    for i in 0..rounds {
        let t0 = Instant::now();
        s.write_all(&ping)
            .and_then(|()| s.read_exact(&mut pong))
            .context("loopback ping-pong failed")?;
        if i >= warmup {
            out.push(t0.elapsed());
        }
    }
    drop(s);
    match echo.join() {
        Ok(result) => result.context("the echo thread failed")?,
        Err(_) => bail!("the echo thread panicked"),
    }
    Ok(out)
}

/// TCP_NODELAY and bounded blocking, as the gRPC client and server use.
fn configure(s: &TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))
}
