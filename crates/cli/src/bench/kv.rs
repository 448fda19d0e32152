//! `flotilla bench kv`: a closed-loop load generator over etcd's v3 API,
//! so the same command measures Flotilla and etcd alike.
//!
//! `--clients` tasks share `--conns` HTTP/2 connections (spread over the
//! endpoints); each task keeps one request in flight: a put of a
//! `--value-size` value, or (with probability `--read-ratio`) a
//! linearizable (or `--serializable`) get, of a random 8-byte key. The
//! first `--warmup` is not measured. It prints throughput, latency
//! percentiles (from an HdrHistogram per client, merged: 3 significant
//! digits, microseconds from 1 to 60 s) and the CPU this process used.
//! With `--session` the puts go through Flotilla's exactly-once sessions
//! (`flotilla.kv.v1.Kv`, one session per client) instead of etcd's `Put`,
//! to measure what exactly-once costs.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use flotilla_client::Conn;
use flotilla_client::session::{Session, SessionOptions};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::kv_client::KvClient;
use flotilla_tls::ClientTls;
use hdrhistogram::Histogram;

use super::LoadArgs;
use crate::cluster::{EndpointArgs, runtime};

/// `flotilla bench kv` arguments.
#[derive(Debug, Args)]
pub struct KvBenchArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// gRPC connections the clients share.
    #[arg(long, default_value_t = 8)]
    conns: usize,
    #[command(flatten)]
    load: LoadArgs,
    /// Fraction of requests that are gets (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    read_ratio: f64,
    /// Gets are serializable (served by the contacted member) rather than
    /// linearizable.
    #[arg(long)]
    serializable: bool,
    /// Distinct keys to draw from.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Puts go through Flotilla's exactly-once sessions (one per client)
    /// rather than etcd's plain `Put` (Flotilla only).
    #[arg(long)]
    session: bool,
    /// Stop once this many requests were sent in all (etcd's benchmark
    /// `--total`), or at the end of `--duration`, whichever comes first;
    /// the rate is then over the time it took. Warm-up requests count.
    #[arg(long)]
    total: Option<u64>,
    /// Keys in turn (0, 1, 2, ... over all clients, from 0 again after
    /// `--keys`) rather than at random: with `--total` equal to `--keys`,
    /// every key written exactly once (etcd's benchmark `--sequential-keys`).
    #[arg(long)]
    sequential: bool,
}

/// The largest latency recorded, in µs; slower requests count as this.
const MAX_LATENCY_US: u64 = 60_000_000;

struct ClientResult {
    latencies_us: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    /// When it sent no more.
    ended: Instant,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

/// Runs `flotilla bench kv`.
pub fn main(args: KvBenchArgs) -> anyhow::Result<ExitCode> {
    if args.clients == 0 || args.conns == 0 || args.keys == 0 {
        bail!("--clients, --conns and --keys must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        bail!("--read-ratio must be between 0 and 1");
    }
    let endpoints = args.endpoints.resolve();
    let tls = args.endpoints.tls(&endpoints)?;
    let rt = runtime()?;
    let cpu_before = cpu_secs();
    let (results, secs) = rt.block_on(run(&args, &endpoints, tls))?;
    let cpu = cpu_secs() - cpu_before;
    report(&args, &endpoints, (results, secs), cpu);
    Ok(ExitCode::SUCCESS)
}

async fn run(
    args: &KvBenchArgs,
    endpoints: &[String],
    tls: Option<Arc<ClientTls>>,
) -> anyhow::Result<(Vec<ClientResult>, f64)> {
    let timeout = Some(Duration::from_secs(10));
    let token = super::token(&args.endpoints, endpoints, tls.as_ref()).await?;
    let channels = super::connect(endpoints, args.conns, (tls.as_ref(), &token), timeout).await?;
    let budget = args.total.map(|n| Arc::new(AtomicU64::new(n)));
    let next_key = args.sequential.then(|| Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let measure_from = start + args.load.warmup;
    let end = measure_from + args.load.duration;
    let named: Vec<(String, Conn)> = channels
        .iter()
        .enumerate()
        .map(|(i, c)| (endpoints[i % endpoints.len()].clone(), c.clone()))
        .collect();
    let tasks: Vec<_> = (0..args.clients)
        .map(|c| {
            let channel = channels[c % channels.len()].clone();
            let session = args.session.then(|| {
                Session::over_conns(named.clone(), SessionOptions::default()).starting_at(c)
            });
            let load = Load {
                value: Bytes::from(vec![b'v'; args.load.value_size]),
                read_ratio: args.read_ratio,
                serializable: args.serializable,
                keys: args.keys,
                budget: budget.clone(),
                next_key: next_key.clone(),
            };
            tokio::spawn(client(
                channel,
                session,
                load,
                c as u64,
                (measure_from, end),
            ))
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.context("a client task failed")?);
    }
    // Measured until the last client stopped: the end of the window, or
    // earlier once `--total` requests were sent.
    let ended = results.iter().map(|r| r.ended).max().unwrap_or(end);
    let secs = ended.saturating_duration_since(measure_from).as_secs_f64();
    Ok((results, secs))
}

#[derive(Clone)]
struct Load {
    value: Bytes,
    read_ratio: f64,
    serializable: bool,
    keys: u64,
    /// Requests left to send in all, with `--total`.
    budget: Option<Arc<AtomicU64>>,
    /// The next key, with `--sequential`.
    next_key: Option<Arc<AtomicU64>>,
}

impl Load {
    /// Takes one request from the budget: false once it is spent.
    fn take_one(&self) -> bool {
        self.budget.as_ref().is_none_or(|b| {
            b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        })
    }
}

/// One closed-loop client, measuring from `window.0` until `window.1`.
async fn client(
    channel: Conn,
    mut session: Option<Session>,
    load: Load,
    seed: u64,
    window: (Instant, Instant),
) -> ClientResult {
    let (measure_from, end) = window;
    let mut kv = KvClient::new(channel);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = ClientResult {
        latencies_us: histogram(),
        errors: 0,
        first_error: None,
        ended: end,
    };
    loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = match &load.next_key {
            Some(next) => next.fetch_add(1, Ordering::Relaxed),
            None => x,
        };
        let key = Bytes::copy_from_slice(&(n % load.keys).to_be_bytes());
        let read = ((x >> 11) as f64 / (1u64 << 53) as f64) < load.read_ratio;
        let t0 = Instant::now();
        if t0 >= end || !load.take_one() {
            out.ended = t0;
            return out;
        }
        let result = if read {
            let req = pb::RangeRequest {
                key,
                serializable: load.serializable,
                ..Default::default()
            };
            kv.range(req).await.map(|_| ()).map_err(|e| e.to_string())
        } else {
            let req = pb::PutRequest {
                key,
                value: load.value.clone(),
                ..Default::default()
            };
            match session.as_mut() {
                Some(s) => s.put(req).await.map(|_| ()).map_err(|e| e.to_string()),
                None => kv.put(req).await.map(|_| ()).map_err(|e| e.to_string()),
            }
        };
        if t0 < measure_from {
            continue;
        }
        match result {
            Ok(()) => {
                let us = t0.elapsed().as_micros().min(u128::from(MAX_LATENCY_US)) as u64;
                out.latencies_us.saturating_record(us.max(1));
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
}

/// Prints the figures of `results`, measured over `secs`.
fn report(
    args: &KvBenchArgs,
    endpoints: &[String],
    (results, secs): (Vec<ClientResult>, f64),
    cpu: f64,
) {
    let mut all = histogram();
    let mut errors = 0;
    let mut first_error = None;
    for r in results {
        // Same bounds on both sides: adding cannot fail.
        let _ = all.add(&r.latencies_us);
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let pct = |q: f64| ms(all.value_at_quantile(q));
    println!(
        "endpoints={} clients={} conns={} value_size={} read_ratio={} serializable={} session={}",
        endpoints.join(","),
        args.clients,
        args.conns,
        args.load.value_size,
        args.read_ratio,
        args.serializable,
        args.session
    );
    println!(
        "requests={} errors={} throughput={:.0}/s p50={:.2}ms p99={:.2}ms p999={:.2}ms max={:.2}ms client_cpu={:.0}%",
        all.len(),
        errors,
        all.len() as f64 / secs.max(1e-9),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        ms(all.max()),
        cpu / (secs + args.load.warmup.as_secs_f64()) * 100.0
    );
    if let Some(e) = first_error {
        println!("first error: {e}");
    }
}

/// CPU seconds (user + system) this process used so far, from
/// /proc/self/stat (0 where that is unavailable).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}
