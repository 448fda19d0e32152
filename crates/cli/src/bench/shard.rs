//! `flotilla bench shard`: the sharded store as real processes (three
//! `flotilla shard server` children on loopback, in a scratch directory
//! removed afterwards).
//!
//! - `move`: fills one shard with `--mb` MiB (1 MiB values, 8 writers),
//!   then moves it to the other group and times the move from the
//!   controller's answer until every server's replica of the new owner
//!   serves it and the old owner's copy is deleted.
//! - `load`: for each count in `--groups`, a fresh store with that many
//!   groups joined, and `--clients` closed-loop writers (each one put of
//!   a `--value-size` value in flight, on uniformly random keys, so
//!   every shard gets its share; client `i` asks server `i mod 3`) for
//!   `--duration`: puts per second and latency percentiles, and each
//!   count's throughput against the first's.
//! - `idle`: for each count in `--groups`, starts the servers hosting
//!   that many idle groups (no client, no configuration), lets elections
//!   settle, and reports one server's CPU (share of one core, from
//!   `/proc/<pid>/stat`) over `--duration` and its resident memory.
//! - `sim-load`, `sim-move`: the same figures in the simulator
//!   (`shard_sim.rs`).

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use flotilla_proto::shard::v1 as pb;

use crate::cluster::runtime;
use crate::cluster::shard::Shards;
use crate::units::parse_duration;

/// `flotilla bench shard` arguments.
#[derive(Debug, Args)]
pub struct ShardBenchArgs {
    #[command(subcommand)]
    command: ShardBench,
    /// Where the servers' scratch directories go.
    #[arg(long, global = true, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// The servers' first port on 127.0.0.1.
    #[arg(long, global = true, default_value_t = 32379)]
    base_port: u16,
}

#[derive(Debug, Subcommand)]
enum ShardBench {
    /// Times moving one shard of `--mb` MiB between groups.
    Move {
        #[arg(long, default_value_t = 100)]
        mb: u64,
    },
    /// Write throughput with 1 and with several data groups.
    Load {
        /// Group counts to compare, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,3")]
        groups: Vec<u64>,
        /// Closed-loop writers.
        #[arg(long, default_value_t = 32)]
        clients: u64,
        /// How long each count is measured.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Bytes per value.
        #[arg(long, default_value_t = 256)]
        value_size: usize,
    },
    /// Write throughput with 1 and several groups in the simulator, with
    /// a per-server service-time model (virtual time).
    SimLoad(super::shard_sim::SimLoadArgs),
    /// Times moving a shard in the simulator (virtual time).
    SimMove(super::shard_sim::SimMoveArgs),
    /// CPU and memory of a server hosting idle groups.
    Idle {
        /// Group counts to measure, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
        groups: Vec<u64>,
        /// How long CPU is measured for each count.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: Duration,
    },
}

/// Three server processes and their scratch directory.
struct Fleet {
    dir: PathBuf,
    endpoints: Vec<String>,
    children: Vec<Child>,
}

impl Fleet {
    fn start(args: &ShardBenchArgs, groups: u64) -> anyhow::Result<Fleet> {
        let dir = args
            .dir
            .join(format!("flotilla-bench-shard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let endpoints: Vec<String> = (0..3)
            .map(|i| format!("127.0.0.1:{}", args.base_port + i))
            .collect();
        let peers: Vec<String> = (endpoints.iter().enumerate())
            .map(|(i, e)| format!("{}={e}", i + 1))
            .collect();
        let gids: Vec<String> = (1..=groups).map(|g| g.to_string()).collect();
        let exe = std::env::current_exe().context("finding the flotilla binary")?;
        let mut fleet = Fleet {
            dir,
            endpoints,
            children: Vec::new(),
        };
        for i in 1..=3 {
            let log = std::fs::File::create(fleet.dir.join(format!("node{i}.log")))?;
            let child = Command::new(&exe)
                .args(["shard", "server", "--id", &i.to_string()])
                .args(["--peers", &peers.join(","), "--groups", &gids.join(",")])
                .arg("--data-dir")
                .arg(fleet.dir.join(format!("node{i}")))
                .arg("--exit-with-parent")
                .stdin(Stdio::piped())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting a server")?;
            fleet.children.push(child);
        }
        Ok(fleet)
    }

    fn client(&self) -> Shards {
        Shards::new(self.endpoints.clone(), Duration::from_secs(30))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `flotilla bench shard`.
pub fn main(args: ShardBenchArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ShardBench::SimLoad(a) => return super::shard_sim::sim_load(a).map(|()| ExitCode::SUCCESS),
        ShardBench::SimMove(a) => return super::shard_sim::sim_move(a).map(|()| ExitCode::SUCCESS),
        _ => {}
    }
    let rt = runtime()?;
    match &args.command {
        ShardBench::Move { mb } => rt.block_on(bench_move(&args, *mb))?,
        ShardBench::Load {
            groups,
            clients,
            duration,
            value_size,
        } => {
            let mut first = None;
            for &g in groups {
                let (rate, p50, p99) =
                    rt.block_on(bench_load(&args, g, *clients, *duration, *value_size))?;
                let base = *first.get_or_insert(rate);
                println!(
                    "{g} groups: {rate:.0} puts/s, p50 {p50:.2} ms, p99 {p99:.2} ms ({:.2}x the first)",
                    rate / base
                );
            }
        }
        ShardBench::SimLoad(_) | ShardBench::SimMove(_) => {}
        ShardBench::Idle { groups, duration } => {
            println!("{:>7} {:>12} {:>10}", "groups", "cpu (1 core)", "rss MiB");
            for &g in groups {
                let (cpu, rss) = rt.block_on(bench_idle(&args, g, *duration))?;
                println!("{g:>7} {:>11.1}% {rss:>10.1}", cpu * 100.0);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fills shard `L`'s group with `mb` MiB, moves the shard, and prints
/// both times.
async fn bench_move(args: &ShardBenchArgs, mb: u64) -> anyhow::Result<()> {
    let fleet = Fleet::start(args, 2)?;
    let c = fleet.client();
    let session = |seq| Some(pb::Session { client_id: 7, seq });
    let groups = [(1, pb::Servers::default()), (2, pb::Servers::default())];
    let join = pb::JoinRequest {
        session: session(1),
        groups: groups.into(),
    };
    let joined = c
        .call(|mut s| {
            let r = join.clone();
            async move { s.join(r).await }
        })
        .await?;
    let config = joined
        .config
        .context("the join answered no configuration")?;
    let shard = usize::from(b'L') % config.shards.len();
    let from = config.shards[shard];
    let to = if from == 1 { 2 } else { 1 };
    let started = Instant::now();
    fill(&fleet.endpoints, mb).await?;
    let filled = started.elapsed().as_secs_f64();
    println!(
        "filled shard {shard} (group {from}) with {mb} MiB in {filled:.1} s ({:.1} MiB/s)",
        mb as f64 / filled
    );
    let mv = pb::MoveRequest {
        session: session(2),
        shard: shard as u64,
        gid: to,
    };
    let started = Instant::now();
    let moved = c.call(|mut s| async move { s.r#move(mv).await }).await?;
    let num = moved
        .config
        .context("the move answered no configuration")?
        .num;
    let deadline = started + Duration::from_secs(600);
    while !moved_everywhere(&fleet.endpoints, shard as u64, from, to, num).await {
        if Instant::now() > deadline {
            bail!(
                "the shard did not move within 600 s; logs in {}",
                fleet.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "moved {mb} MiB from group {from} to group {to} in {secs:.2} s ({:.1} MiB/s), old copy deleted on every server",
        mb as f64 / secs
    );
    Ok(())
}

/// Puts `mb` values of 1 MiB on keys of shard `L`, from 8 writers.
async fn fill(endpoints: &[String], mb: u64) -> anyhow::Result<()> {
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let c = Shards::new(endpoints.to_vec(), Duration::from_secs(60));
            tokio::spawn(async move {
                for (seq, i) in (w..mb).step_by(8).enumerate() {
                    let r = pb::PutRequest {
                        session: Some(pb::Session {
                            client_id: 100 + w,
                            seq: seq as u64 + 1,
                        }),
                        key: format!("L{i}").into(),
                        value: vec![b'v'; 1 << 20].into(),
                        append: false,
                    };
                    c.call(|mut s| {
                        let r = r.clone();
                        async move { s.put(r).await }
                    })
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await.context("a writer failed")??;
    }
    Ok(())
}

/// Whether every server's replica of `to` serves `shard` at `num` and
/// `from`'s replica no longer holds it.
async fn moved_everywhere(endpoints: &[String], shard: u64, from: u64, to: u64, num: u64) -> bool {
    for e in endpoints {
        let one = Shards::new(vec![e.clone()], Duration::from_secs(2));
        let Ok(s) = one
            .call(|mut c| async move { c.status(pb::StatusRequest {}).await })
            .await
        else {
            return false;
        };
        let group = |gid| s.groups.iter().find(|g| g.gid == gid);
        let arrived = group(to).is_some_and(|g| {
            g.config_num >= num && g.shards.get(&shard).is_some_and(|st| st == "serving")
        });
        let deleted = group(from).is_some_and(|g| !g.shards.contains_key(&shard));
        if !arrived || !deleted {
            return false;
        }
    }
    true
}

/// One server's CPU share of one core over `duration`, and its resident
/// MiB, while it hosts `groups` idle groups.
async fn bench_idle(
    args: &ShardBenchArgs,
    groups: u64,
    duration: Duration,
) -> anyhow::Result<(f64, f64)> {
    let fleet = Fleet::start(args, groups)?;
    let first = Shards::new(fleet.endpoints[..1].to_vec(), Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = first
            .call(|mut c| async move { c.status(pb::StatusRequest {}).await })
            .await?;
        if s.groups.iter().all(|g| g.leader != 0) {
            break;
        }
        if Instant::now() > deadline {
            bail!("not every group elected a leader within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = fleet.children[0].id();
    let (started, before) = (Instant::now(), cpu_ticks(pid)?);
    tokio::time::sleep(duration).await;
    let used = (cpu_ticks(pid)? - before) as f64 / CLOCK_TICKS_PER_SEC;
    Ok((used / started.elapsed().as_secs_f64(), rss_mib(pid)?))
}

/// Linux's USER_HZ, the unit of `/proc/<pid>/stat`'s times, on every
/// architecture Linux supports today.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// A process's user plus system time so far, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("stat is too short")?.parse()?)
    };
    // utime and stime: fields 14 and 15, counting from the pid as 1.
    Ok(field(11)? + field(12)?)
}

/// A process's resident memory, in MiB.
fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("no VmRSS value")?
        .parse()?;
    Ok(kib / 1024.0)
}

/// Puts per second, p50 and p99 in ms, of `clients` writers for
/// `duration` against a fresh store of `groups` joined groups.
async fn bench_load(
    args: &ShardBenchArgs,
    groups: u64,
    clients: u64,
    duration: Duration,
    value_size: usize,
) -> anyhow::Result<(f64, f64, f64)> {
    let fleet = Fleet::start(args, groups)?;
    let join = pb::JoinRequest {
        session: Some(pb::Session {
            client_id: 7,
            seq: 1,
        }),
        groups: (1..=groups).map(|g| (g, pb::Servers::default())).collect(),
    };
    let c = fleet.client();
    c.call(|mut s| {
        let r = join.clone();
        async move { s.join(r).await }
    })
    .await?;
    // Every shard served before the clock starts: one put each.
    for b in 0..10u8 {
        let r = pb::PutRequest {
            session: Some(pb::Session {
                client_id: 8,
                seq: u64::from(b) + 1,
            }),
            key: vec![b'0' + b].into(),
            value: vec![b'w'; value_size].into(),
            append: false,
        };
        c.call(|mut s| {
            let r = r.clone();
            async move { s.put(r).await }
        })
        .await?;
    }
    let until = Instant::now() + duration;
    let writers: Vec<_> = (0..clients)
        .map(|i| {
            let endpoint = fleet.endpoints[i as usize % fleet.endpoints.len()].clone();
            tokio::spawn(writer(endpoint, 1000 + i, until, value_size))
        })
        .collect();
    let mut all = hdrhistogram::Histogram::<u64>::new(3)?;
    for w in writers {
        all.add(w.await.context("a writer failed")??)?;
    }
    let rate = all.len() as f64 / duration.as_secs_f64();
    let ms = |q| all.value_at_quantile(q) as f64 / 1000.0;
    Ok((rate, ms(0.5), ms(0.99)))
}

/// One closed-loop writer until `until`: its latencies in µs.
async fn writer(
    endpoint: String,
    client_id: u64,
    until: Instant,
    value_size: usize,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let c = Shards::new(vec![endpoint], Duration::from_secs(30));
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3)?;
    let mut rng = flotilla_raft::rng::SplitMix64::new(client_id);
    let mut seq = 0;
    while Instant::now() < until {
        seq += 1;
        // The first byte picks the shard: the ten shards alike.
        let r = rng.next_u64();
        let key = format!("{}{:x}", char::from(b'0' + (r % 10) as u8), r / 10);
        let r = pb::PutRequest {
            session: Some(pb::Session { client_id, seq }),
            key: key.into(),
            value: vec![b'v'; value_size].into(),
            append: false,
        };
        let sent = Instant::now();
        c.call(|mut s| {
            let r = r.clone();
            async move { s.put(r).await }
        })
        .await?;
        latencies.record(sent.elapsed().as_micros() as u64)?;
    }
    Ok(latencies)
}
