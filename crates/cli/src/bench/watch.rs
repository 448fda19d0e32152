//! `flotilla bench watch`: what watchers cost a cluster, over etcd's v3
//! API, so the same command measures Flotilla and etcd alike.
//!
//! After `--warmup`, two phases of `--duration` each, with the same
//! closed-loop writers (`--writers` tasks, each with one put of a `--value-size` value in
//! flight, to one of `--keys` keys): first without watchers, then with
//! `--watchers` watches (watcher `w` on key `w mod keys`, spread over
//! `--conns` Watch streams across the endpoints). Every value starts with
//! the time its put was sent, so each event's delivery latency is the
//! time from the put's sending to the event's arrival. It prints the
//! write throughput of both phases and their ratio, the events received
//! against those expected (each put's key has `watchers / keys`
//! watchers), and the delivery latency percentiles.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use flotilla_client::Conn;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::kv_client::KvClient;
use flotilla_proto::etcdserverpb::watch_client::WatchClient;
use flotilla_tls::ClientTls;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::UnboundedReceiverStream;

use super::LoadArgs;
use crate::cluster::{EndpointArgs, runtime};

/// `flotilla bench watch` arguments.
#[derive(Debug, Args)]
pub struct WatchBenchArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// Watches, spread over the keys and the streams.
    #[arg(long, default_value_t = 10_000)]
    watchers: u64,
    /// Distinct keys written and watched.
    #[arg(long, default_value_t = 1_000)]
    keys: u64,
    /// Writers, each with one put in flight.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// gRPC connections (each one Watch stream and its share of writers).
    #[arg(long, default_value_t = 8)]
    conns: usize,
    /// How long the load runs and each value's size (at least 8 bytes:
    /// the sending time).
    #[command(flatten)]
    load: LoadArgs,
}

/// The largest latency recorded, in µs; slower events count as this.
const MAX_LATENCY_US: u64 = 60_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

/// Runs `flotilla bench watch`.
pub fn main(args: WatchBenchArgs) -> anyhow::Result<ExitCode> {
    if args.watchers == 0 || args.keys == 0 || args.writers == 0 || args.conns == 0 {
        bail!("--watchers, --keys, --writers and --conns must be at least 1");
    }
    if args.load.value_size < 8 {
        bail!("--value-size must be at least 8 (the value carries its sending time)");
    }
    let endpoints = args.endpoints.resolve();
    let tls = args.endpoints.tls(&endpoints)?;
    let rt = runtime()?;
    rt.block_on(run(&args, &endpoints, tls))?;
    Ok(ExitCode::SUCCESS)
}

async fn run(
    args: &WatchBenchArgs,
    endpoints: &[String],
    tls: Option<Arc<ClientTls>>,
) -> anyhow::Result<()> {
    let token = super::token(&args.endpoints, endpoints, tls.as_ref()).await?;
    let channels = super::connect(endpoints, args.conns, (tls.as_ref(), &token), None).await?;
    let epoch = Instant::now();
    write_phase(args, &channels, epoch, args.load.warmup).await?;
    let alone = write_phase(args, &channels, epoch, args.load.duration).await?;
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let received = Arc::new(AtomicU64::new(0));
    let mut streams = Vec::new();
    for (i, ch) in channels.iter().enumerate() {
        let mine: Vec<u64> = (0..args.watchers)
            .filter(|w| w % args.conns as u64 == i as u64)
            .collect();
        // Every watch starts right after the first phase's last put,
        // whichever member it is on: one created on a follower that has
        // not applied all of them yet would otherwise see some.
        let stream = watch_stream(
            ch.clone(),
            (args.keys, alone.revision + 1),
            mine,
            epoch,
            received.clone(),
            events_tx.clone(),
        );
        streams.push(tokio::spawn(stream));
    }
    drop(events_tx);
    // Every watch is created before the second phase starts.
    let mut created = 0;
    while created < args.watchers {
        match events_rx.recv().await {
            Some(Event::Created) => created += 1,
            Some(Event::Failed(e)) => bail!("a watch stream failed: {e}"),
            Some(Event::Latency(_)) => {}
            None => bail!("the watch streams ended before every watch was created"),
        }
    }
    let before = received.load(Ordering::Relaxed);
    let with = write_phase(args, &channels, epoch, args.load.duration).await?;
    // Let the last events arrive (or give up on them after 5 s: the
    // report then shows fewer than expected).
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::Relaxed) - before < with.events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = histogram();
    while let Ok(e) = events_rx.try_recv() {
        if let Event::Latency(us) = e {
            latencies.saturating_record(us.clamp(1, MAX_LATENCY_US));
        }
    }
    streams.iter().for_each(|s| s.abort());
    let events = received.load(Ordering::Relaxed) - before;
    report(args, alone, with, events, &latencies);
    Ok(())
}

/// What a watch stream reports.
enum Event {
    Created,
    Latency(u64),
    Failed(String),
}

/// One Watch stream with watches for `watchers` (watcher `w` on key
/// `w mod keys`) from `start_revision`, reporting creations and each
/// event's latency.
async fn watch_stream(
    channel: Conn,
    (keys, start_revision): (u64, i64),
    watchers: Vec<u64>,
    epoch: Instant,
    received: Arc<AtomicU64>,
    out: mpsc::UnboundedSender<Event>,
) {
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    for w in watchers {
        let create = pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: key(w % keys),
            start_revision,
            ..Default::default()
        });
        // The receiver lives in the stream below.
        let _ = req_tx.send(pb::WatchRequest {
            request_union: Some(create),
        });
    }
    let requests = UnboundedReceiverStream::new(req_rx);
    let mut responses = match WatchClient::new(channel).watch(requests).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            let _ = out.send(Event::Failed(e.to_string()));
            return;
        }
    };
    loop {
        match responses.message().await {
            Ok(Some(resp)) => {
                if resp.created {
                    let _ = out.send(Event::Created);
                }
                let now = epoch.elapsed().as_micros() as u64;
                for ev in resp.events {
                    received.fetch_add(1, Ordering::Relaxed);
                    let sent = ev.kv.as_ref().and_then(|kv| kv.value.get(..8)).map(|b| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        u64::from_le_bytes(a)
                    });
                    if let Some(sent) = sent {
                        let _ = out.send(Event::Latency(now.saturating_sub(sent)));
                    }
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = out.send(Event::Failed(e.to_string()));
                return;
            }
        }
    }
    // `req_tx` is dropped only here: the request stream stays open while
    // the responses are read.
}

fn key(k: u64) -> bytes::Bytes {
    format!("bench-watch/{k:06}").into_bytes().into()
}

/// What a phase of writes did.
#[derive(Clone, Copy)]
struct Phase {
    /// Puts acknowledged.
    puts: u64,
    /// Over how many seconds (the last puts end after the phase's end).
    secs: f64,
    /// Events the puts make for the watchers (each put counts its key's).
    events: u64,
    /// The store's revision after the last put acknowledged.
    revision: i64,
}

/// Closed-loop puts for `duration`.
async fn write_phase(
    args: &WatchBenchArgs,
    channels: &[Conn],
    epoch: Instant,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let began = Instant::now();
    let end = began + duration;
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let mut kv = KvClient::new(channels[w % channels.len()].clone());
        let (keys, size, watchers) = (args.keys, args.load.value_size, args.watchers);
        tasks.push(tokio::spawn(async move {
            let (mut n, mut events, mut revision) = (0u64, 0u64, 0i64);
            let mut x = (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            while Instant::now() < end {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let sent = epoch.elapsed().as_micros() as u64;
                let mut value = sent.to_le_bytes().to_vec();
                value.resize(size, b'v');
                let put = pb::PutRequest {
                    key: key(x % keys),
                    value: value.into(),
                    ..Default::default()
                };
                let resp = kv.put(put).await.map_err(|e| anyhow::anyhow!("put: {e}"))?;
                let at = resp.into_inner().header.map_or(0, |h| h.revision);
                revision = revision.max(at);
                n += 1;
                events += watchers_of(watchers, keys, x % keys);
            }
            anyhow::Ok((n, events, revision))
        }));
    }
    let (mut puts, mut events, mut revision) = (0, 0, 0);
    for t in tasks {
        let (n, e, r) = t.await.context("a writer panicked")??;
        puts += n;
        events += e;
        revision = revision.max(r);
    }
    let secs = began.elapsed().as_secs_f64();
    Ok(Phase {
        puts,
        secs,
        events,
        revision,
    })
}

/// Puts per second of a phase.
fn rate(p: Phase) -> f64 {
    p.puts as f64 / p.secs.max(1e-9)
}

/// Watchers of key `k` out of `watchers` over `keys`: those `w` with
/// `w mod keys = k`.
fn watchers_of(watchers: u64, keys: u64, k: u64) -> u64 {
    watchers / keys + u64::from(k < watchers % keys)
}

fn report(args: &WatchBenchArgs, alone: Phase, with: Phase, events: u64, lat: &Histogram<u64>) {
    let expected = with.events;
    let (alone, with) = (rate(alone), rate(with));
    let ms = |q: f64| lat.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "watchers={} keys={} writers={} writes_without={alone:.0}/s writes_with={with:.0}/s ratio={:.2} \
         events={events} expected={expected} delivery_p50={:.2}ms p99={:.2}ms p999={:.2}ms max={:.2}ms",
        args.watchers,
        args.keys,
        args.writers,
        with / alone.max(1e-9),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        lat.max() as f64 / 1000.0,
    );
}
