//! `flotilla bench`: benchmarks that print figures. The load generators
//! over etcd's API (`kv`, `watch`) share their timing and value arguments
//! ([`LoadArgs`]) and their connections ([`connect`]: spread over the
//! endpoints, TLS when the endpoints ask for it, carrying `--user`'s
//! token when one is given ([`token`])).

mod authn;
mod corpus;
mod floor;
mod kv;
mod mr;
mod noop;
mod raft;
mod shard;
mod shard_sim;
mod watch;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use flotilla_client::auth::Token;
use flotilla_client::{Client, Conn};
use flotilla_tls::ClientTls;
use tonic::transport::Endpoint;

use crate::cluster::EndpointArgs;
use crate::units::parse_duration;

/// The timing and values of a closed-loop load.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// How long each measured phase runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long the load runs, unmeasured, before measuring.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Bytes per value written.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
}

/// The token the load's requests carry: none without `--user`, else the
/// one `--user` authenticates for (once, before the load: a run longer
/// than the server's token TTL sees its requests refused once it ends).
pub async fn token(
    args: &EndpointArgs,
    endpoints: &[String],
    tls: Option<&Arc<ClientTls>>,
) -> anyhow::Result<Token> {
    let Some(credentials) = args.credentials()? else {
        return Ok(Token::default());
    };
    let timeout = Duration::from_secs(args.timeout_secs);
    let client = Client::with_tls(endpoints, timeout, tls.cloned())?.with_credentials(credentials);
    client.authenticate().await?;
    Ok(client.token())
}

/// `conns` gRPC connections, connection `i` to endpoint `i mod n`, over
/// TLS when `tls` is given, carrying `token`, each request cut off after
/// `request_timeout` if one is given (a Watch stream lives longer than
/// any); the error names the endpoint that failed.
pub async fn connect(
    endpoints: &[String],
    conns: usize,
    (tls, token): (Option<&Arc<ClientTls>>, &Token),
    request_timeout: Option<Duration>,
) -> anyhow::Result<Vec<Conn>> {
    let mut channels = Vec::with_capacity(conns);
    for i in 0..conns {
        let e = &endpoints[i % endpoints.len()];
        let endpoint = Endpoint::from_shared(flotilla_tls::tonic_uri(e))
            .with_context(|| format!("bad endpoint {e}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10));
        let endpoint = match request_timeout {
            Some(t) => endpoint.timeout(t),
            None => endpoint,
        };
        let channel = match tls {
            Some(tls) => endpoint.connect_with_connector(tls.connector()).await,
            None => endpoint.connect().await,
        };
        let channel = channel.with_context(|| format!("cannot reach {e}"))?;
        channels.push(Conn::new(channel, token.clone()));
    }
    Ok(channels)
}

/// `flotilla bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Whether Authenticate's time tells which users exist: the right
    /// password, a wrong one and a missing user, timed on one member.
    Authenticate(authn::AuthnBenchArgs),
    /// The latency floor of a 1-client write: p50 of one fsync (append +
    /// fdatasync in --dir) plus one loopback round trip.
    Floor(floor::FloorBenchArgs),
    /// Closed-loop load over etcd's v3 API (Flotilla or etcd): throughput
    /// and latency percentiles.
    Kv(kv::KvBenchArgs),
    /// Word count over a generated corpus: sequential, 1 worker, 2 workers.
    Mr(mr::MrBenchArgs),
    /// etcd's KV service answering at once (no Raft, no disk): the floor
    /// of the gRPC layer, to drive with `bench kv`.
    NoopServer(noop::NoopServerArgs),
    /// Committed entries per second of the Raft core in the simulator
    /// (one thread, no faults, no message encoding).
    Raft(raft::RaftBenchArgs),
    /// The sharded store as processes: moving a large shard, and what
    /// idle groups cost a server.
    Shard(shard::ShardBenchArgs),
    /// What watchers cost (etcd's v3 API, Flotilla or etcd): write
    /// throughput with and without them, and event delivery latency.
    Watch(watch::WatchBenchArgs),
}

/// Runs `flotilla bench`.
pub fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Authenticate(a) => authn::main(a),
        BenchCommand::Floor(a) => floor::main(a),
        BenchCommand::Kv(a) => kv::main(a),
        BenchCommand::Mr(a) => mr::main(a),
        BenchCommand::NoopServer(a) => noop::main(a),
        BenchCommand::Raft(a) => raft::main(a),
        BenchCommand::Shard(a) => shard::main(a),
        BenchCommand::Watch(a) => watch::main(a),
    }
}
