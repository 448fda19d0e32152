//! `flotilla server`: runs one member of a cluster in the foreground until
//! Ctrl-C or SIGTERM, then shuts down gracefully (stops accepting, finishes
//! in-flight requests, syncs the log) and exits 0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use flotilla_node::server::{Listeners, ServerConfig, run};
use flotilla_raft::NodeId;

use super::{runtime, shutdown_signal};

/// `flotilla server` arguments.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// This member's id (a positive integer listed in --peers).
    #[arg(long, env = "FLOTILLA_ID")]
    pub id: u64,
    /// The address to serve clients and peers on (host:port).
    #[arg(long, env = "FLOTILLA_LISTEN")]
    pub listen: String,
    /// Every member, this one included: `1=127.0.0.1:12379,2=...`.
    #[arg(long, env = "FLOTILLA_PEERS", value_delimiter = ',', required = true)]
    pub peers: Vec<String>,
    /// Where this member keeps its state (created if missing).
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Serve Prometheus metrics (`GET /metrics`) on this address.
    #[arg(long, env = "FLOTILLA_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// The Raft tick in milliseconds (heartbeats every 10 ticks, elections
    /// after 100-200).
    #[arg(long, default_value_t = 10)]
    pub tick_ms: u64,
    /// Compact the log (snapshot the store) every this many applied
    /// entries (etcd's default: 100,000).
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_entries: u64,
    /// Derive the cluster's identity from the member ids and this token
    /// instead of the --peers addresses, so that members may list one
    /// another at different addresses (through proxies or NAT). Every
    /// member must be given the same token, always.
    #[arg(long, env = "FLOTILLA_CLUSTER_TOKEN")]
    pub cluster_token: Option<String>,
}

/// Parses `1=host:port` items.
pub fn parse_peers(items: &[String]) -> anyhow::Result<BTreeMap<NodeId, String>> {
    let mut peers = BTreeMap::new();
    for item in items {
        let Some((id, addr)) = item.split_once('=') else {
            bail!("--peers item {item:?} is not ID=HOST:PORT");
        };
        let id: u64 =
            id.parse().ok().filter(|&i| i > 0).with_context(|| {
                format!("--peers item {item:?}: the id must be a positive integer")
            })?;
        if peers.insert(NodeId(id), addr.to_string()).is_some() {
            bail!("--peers lists member {id} twice");
        }
    }
    Ok(peers)
}

/// Logs to stderr with `tracing`; `RUST_LOG` picks the level (default
/// `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `flotilla server`.
pub fn main(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let peers = parse_peers(&args.peers)?;
    if args.id == 0 || !peers.contains_key(&NodeId(args.id)) {
        bail!("--id {} is not one of the members in --peers", args.id);
    }
    if args.tick_ms == 0 {
        bail!("--tick-ms must be at least 1");
    }
    let cfg = ServerConfig {
        id: NodeId(args.id),
        peers,
        data_dir: args.data_dir,
        tick: Duration::from_millis(args.tick_ms),
        snapshot_entries: args.snapshot_entries.max(1),
        cluster_token: args.cluster_token,
    };
    init_logging();
    let rt = runtime()?;
    rt.block_on(async move {
        let grpc = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let metrics = match &args.metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for metrics"))?,
            ),
            None => None,
        };
        tracing::info!(
            member = args.id,
            listen = %args.listen,
            data_dir = %cfg.data_dir.display(),
            "serving"
        );
        run(cfg, Listeners { grpc, metrics }, shutdown_signal()).await?;
        tracing::info!(member = args.id, "stopped");
        Ok(ExitCode::SUCCESS)
    })
}
