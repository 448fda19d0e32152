//! `flotilla shard`: the sharded store. `shard server` runs one server of
//! a sharded cluster (a replica of the controller and of every data
//! group, `flotilla_shardserver`); the other subcommands are its
//! clients: the controller's `join`, `leave`, `move` and `query`, each
//! server's `status`, and `get`, `put` and `append` on keys, which any
//! server routes to the group that owns the key's shard.
//!
//! A client tries the endpoints in turn. A write carries a session (a
//! random client id, sequence number 1) that stays the same across its
//! retries, so a write retried after a timeout or on another server is
//! applied once.
//!
//! Exit codes: 0 on success, 1 on an error (the message says which
//! server answered what).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use flotilla_proto::shard::v1 as pb;
use flotilla_proto::shard::v1::shard_client::ShardClient;
use flotilla_raft::NodeId;
use flotilla_shardserver::{ShardServerConfig, run};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::{default_endpoints, runtime, server_runtime, shutdown_signal};

/// `flotilla shard` arguments.
#[derive(Debug, Args)]
pub struct ShardArgs {
    #[command(subcommand)]
    pub command: ShardCommand,
    /// Comma-separated `host:port` list of the sharded cluster's servers
    /// (default: the cluster `flotilla up --groups` started here).
    #[arg(long, global = true, env = "FLOTILLA_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// How long a command may take, retries included, in seconds.
    #[arg(long, global = true, default_value_t = 15)]
    pub timeout_secs: u64,
    /// TLS toward the servers (`--cacert`, `--cert`, `--key`).
    #[command(flatten)]
    pub tls: super::tls::ClientTlsArgs,
}

/// What `flotilla shard` does.
#[derive(Debug, Subcommand)]
pub enum ShardCommand {
    /// Runs one server of a sharded cluster in the foreground.
    Server(Box<ShardServerArgs>),
    /// Gives groups to the controller: shards move onto them.
    Join {
        /// The groups (ids the servers host: --groups).
        #[arg(required = true)]
        gids: Vec<u64>,
    },
    /// Takes groups away: their shards move to the others.
    Leave {
        #[arg(required = true)]
        gids: Vec<u64>,
    },
    /// Moves one shard to a group.
    Move { shard: u64, gid: u64 },
    /// Prints a configuration (the latest by default).
    Query { num: Option<u64> },
    /// Prints each server's view: every group's leader, term, indexes,
    /// configuration and shards.
    Status,
    /// Prints a key's value (nothing if it has none).
    Get { key: String },
    /// Sets a key's value.
    Put { key: String, value: String },
    /// Appends to a key's value.
    Append { key: String, value: String },
}

/// `flotilla shard server` arguments.
#[derive(Debug, Args)]
pub struct ShardServerArgs {
    /// This server's id (a positive integer, listed in --peers).
    #[arg(long)]
    pub id: u64,
    /// Every server: ID=HOST:PORT, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub peers: Vec<String>,
    /// Where to listen (default: this server's address in --peers).
    #[arg(long)]
    pub listen: Option<String>,
    /// Where the server keeps its state.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The data groups every server hosts: ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub groups: Vec<u64>,
    /// Shards per configuration (the course's 10 by default).
    #[arg(long, default_value_t = 10)]
    pub shards: usize,
    /// The Raft tick, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub tick_ms: u64,
    /// Entries after which each group snapshots and compacts its log.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_entries: u64,
    /// The cluster is its member ids and this token, not their
    /// addresses: servers may reach one another at different addresses
    /// (proxies, NAT), each listing the others as it reaches them.
    #[arg(long)]
    pub cluster_token: Option<String>,
    /// Serve the console (`GET /`), `/api/shards` and `/metrics` over
    /// HTTP here (HOST:PORT).
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS on the port and toward the other servers: one certificate,
    /// served and presented (etcd's flag names).
    #[command(flatten)]
    pub tls: crate::mr::tls::MrTlsArgs,
    /// Stop when standard input closes (`flotilla up` holds it).
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

/// Runs `flotilla shard`.
pub fn main(args: ShardArgs) -> anyhow::Result<ExitCode> {
    let command = match args.command {
        ShardCommand::Server(server) => return serve(*server),
        other => other,
    };
    let endpoints = match args.endpoints.is_empty() {
        true => default_endpoints(),
        false => args.endpoints,
    };
    let tls_dir = std::path::Path::new(super::DEFAULT_DATA_DIR).join("tls");
    let tls = args.tls.resolve(&endpoints, &tls_dir)?;
    let client = Shards::new(endpoints, Duration::from_secs(args.timeout_secs)).with_tls(tls);
    runtime()?.block_on(client.run(command))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs one server until SIGTERM or Ctrl-C (or, with
/// --exit-with-parent, its standard input closes).
fn serve(args: ShardServerArgs) -> anyhow::Result<ExitCode> {
    super::server::init_logging();
    let peers = super::server::parse_peers(&args.peers)?;
    let id = NodeId(args.id);
    let listen = match args.listen {
        Some(l) => l,
        None => {
            (peers.get(&id).cloned()).with_context(|| format!("--id {id} is not in --peers"))?
        }
    };
    let cfg = ShardServerConfig {
        id,
        peers,
        groups: args.groups,
        shards: args.shards,
        data_dir: args.data_dir,
        tick: Duration::from_millis(args.tick_ms.max(1)),
        snapshot_entries: args.snapshot_entries.max(1),
        cluster_token: args.cluster_token,
        metrics_listen: args.metrics_listen,
        tls: (args.tls)
            .peer("a server checks the other servers' certificates")?
            .map(|t| flotilla_shardserver::ShardTls {
                serve: t.serve,
                dial: t.dial,
            }),
    };
    cfg.check()?;
    let exit_with_parent = args.exit_with_parent;
    server_runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(member = id.get(), %listen, "serving the sharded store");
        let shutdown = async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = super::server::stdin_closed(exit_with_parent) => {
                    tracing::warn!("standard input closed: the parent is gone; stopping");
                }
            }
        };
        run(cfg, listener, shutdown).await?;
        tracing::info!(member = id.get(), "stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// A client of a sharded cluster's servers.
pub struct Shards {
    endpoints: Vec<String>,
    timeout: Duration,
    /// This client's session id: random, nonzero, top bit clear.
    client_id: u64,
    /// Dial over TLS with this.
    tls: Option<std::sync::Arc<flotilla_tls::ClientTls>>,
}

/// What a transport error most likely means about TLS, when it does not
/// say ([`flotilla_tls::mismatch`]).
fn tls_hint(error: &str, tls: bool) -> &'static str {
    use flotilla_tls::mismatch::{Mismatch, mismatch};
    match mismatch(error, tls) {
        Some(Mismatch::PlaintextToTls) => {
            " (is the server serving TLS? give --cacert, and --cert and --key if it checks clients)"
        }
        Some(Mismatch::CertificateRefused) => {
            " (the server may have refused this client's certificate: give --cert and --key)"
        }
        None => "",
    }
}

/// Whether another server, or the same one later, may answer.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

impl Shards {
    /// A client of `endpoints`, each command taking at most `timeout`.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Shards {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        Shards {
            endpoints,
            timeout,
            client_id: (h.finish() >> 1).max(1),
            tls: None,
        }
    }

    /// The same client, dialing over TLS when `tls` is given.
    pub fn with_tls(mut self, tls: Option<std::sync::Arc<flotilla_tls::ClientTls>>) -> Shards {
        self.tls = tls;
        self
    }

    /// This command's session: one write per command, so seq 1.
    fn session(&self) -> Option<pb::Session> {
        Some(pb::Session {
            client_id: self.client_id,
            seq: 1,
        })
    }

    /// Calls `f` on each endpoint in turn until one answers, retrying
    /// what may clear up until the timeout.
    pub(crate) async fn call<T, F, Fut>(&self, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut(ShardClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        if self.endpoints.is_empty() {
            bail!("no endpoints given");
        }
        let deadline = Instant::now() + self.timeout;
        let mut last: String;
        loop {
            for e in &self.endpoints {
                let endpoint = Endpoint::from_shared(flotilla_tls::tonic_uri(e))
                    .with_context(|| format!("endpoint {e:?} is not host:port"))?
                    .connect_timeout(Duration::from_secs(1));
                let channel = match &self.tls {
                    Some(tls) => flotilla_tls::lazy_channel(endpoint, tls),
                    None => endpoint.connect_lazy(),
                };
                let answer = f(ShardClient::new(channel)).await;
                // The message with its causes (a refused handshake is said
                // underneath tonic's own), and what it most likely means.
                let said = |s: &Status| {
                    let text = flotilla_proto::signal::with_causes(s.message().to_string(), s);
                    let hint = tls_hint(&text, self.tls.is_some());
                    format!("{e}: {text}{hint}")
                };
                match answer {
                    Ok(r) => return Ok(r.into_inner()),
                    Err(s) if retryable(s.code()) => last = said(&s),
                    Err(s) => bail!("{}", said(&s)),
                }
                if Instant::now() >= deadline {
                    bail!("no server answered within {:?}; last: {last}", self.timeout);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The latest configuration.
    pub async fn latest(&self) -> anyhow::Result<pb::Configuration> {
        self.call(|mut c| async move { c.query(pb::QueryRequest { num: 0 }).await })
            .await
    }

    /// Runs one client command and prints its answer.
    pub async fn run(&self, command: ShardCommand) -> anyhow::Result<()> {
        match command {
            ShardCommand::Server(_) => bail!("shard server is not a client command"),
            ShardCommand::Join { gids } => {
                let groups: BTreeMap<u64, pb::Servers> =
                    gids.iter().map(|&g| (g, pb::Servers::default())).collect();
                let r = pb::JoinRequest {
                    session: self.session(),
                    groups: groups.into_iter().collect(),
                };
                let done = self
                    .call(|mut c| {
                        let r = r.clone();
                        async move { c.join(r).await }
                    })
                    .await?;
                print_config(done.config.as_ref());
            }
            ShardCommand::Leave { gids } => {
                let r = pb::LeaveRequest {
                    session: self.session(),
                    gids,
                };
                let done = self
                    .call(|mut c| {
                        let r = r.clone();
                        async move { c.leave(r).await }
                    })
                    .await?;
                print_config(done.config.as_ref());
            }
            ShardCommand::Move { shard, gid } => {
                let r = pb::MoveRequest {
                    session: self.session(),
                    shard,
                    gid,
                };
                let done = self.call(|mut c| async move { c.r#move(r).await }).await?;
                print_config(done.config.as_ref());
            }
            ShardCommand::Query { num } => {
                let r = pb::QueryRequest {
                    num: num.unwrap_or(0),
                };
                let config = self.call(|mut c| async move { c.query(r).await }).await?;
                print_config(Some(&config));
            }
            ShardCommand::Status => self.status().await?,
            other => self.key_command(other).await?,
        }
        Ok(())
    }

    /// `get`, `put` and `append`.
    async fn key_command(&self, command: ShardCommand) -> anyhow::Result<()> {
        let (key, value, append) = match command {
            ShardCommand::Get { key } => {
                let r = pb::GetRequest { key: key.into() };
                let got = self
                    .call(|mut c| {
                        let r = r.clone();
                        async move { c.get(r).await }
                    })
                    .await?;
                if got.found {
                    println!("{}", String::from_utf8_lossy(&got.value));
                }
                return Ok(());
            }
            ShardCommand::Put { key, value } => (key, value, false),
            ShardCommand::Append { key, value } => (key, value, true),
            other => bail!("{other:?} is not a key command"),
        };
        let r = pb::PutRequest {
            session: self.session(),
            key: key.into(),
            value: value.into(),
            append,
        };
        self.call(|mut c| {
            let r = r.clone();
            async move { c.put(r).await }
        })
        .await?;
        println!("OK");
        Ok(())
    }

    /// Every server's view, one block each; a server that does not
    /// answer is said so, and the others still shown.
    async fn status(&self) -> anyhow::Result<()> {
        let mut answered = 0;
        for e in &self.endpoints {
            let one = Shards {
                endpoints: vec![e.clone()],
                timeout: Duration::from_secs(2).min(self.timeout),
                client_id: self.client_id,
                tls: self.tls.clone(),
            };
            match one
                .call(|mut c| async move { c.status(pb::StatusRequest {}).await })
                .await
            {
                Ok(s) => {
                    answered += 1;
                    print_status(e, &s);
                }
                Err(err) => println!("server {e}: no answer ({err:#})"),
            }
        }
        if answered == 0 {
            bail!("no server answered");
        }
        Ok(())
    }
}

/// Prints a configuration: its number, each group's shards and servers.
fn print_config(config: Option<&pb::Configuration>) {
    let Some(c) = config else {
        println!("(no configuration)");
        return;
    };
    println!("configuration {}", c.num);
    let mut by_group: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (s, &g) in c.shards.iter().enumerate() {
        by_group.entry(g).or_default().push(s);
    }
    let groups: BTreeMap<&u64, &pb::Servers> = c.groups.iter().collect();
    for (g, servers) in &groups {
        let shards = by_group.get(g).map_or_else(Vec::new, Clone::clone);
        println!(
            "  group {g}: shards {shards:?} servers {}",
            servers.addrs.join(",")
        );
    }
    if let Some(none) = by_group.get(&0) {
        println!("  no group: shards {none:?}");
    }
}

fn print_status(endpoint: &str, s: &pb::StatusResponse) {
    let latest = s.latest.as_ref().map_or(0, |c| c.num);
    println!(
        "server {endpoint} (member {}): latest configuration {latest}",
        s.member
    );
    println!(
        "  {:>5} {:>6} {:>5} {:>8} {:>8} {:>6} {:>10}  shards",
        "group", "leader", "term", "commit", "applied", "config", "bytes"
    );
    for g in &s.groups {
        let shards: BTreeMap<&u64, &String> = g.shards.iter().collect();
        let shards: Vec<String> = shards.iter().map(|(s, st)| format!("{s}:{st}")).collect();
        let name = if g.gid == 0 {
            "ctrl".to_string()
        } else {
            g.gid.to_string()
        };
        println!(
            "  {name:>5} {:>6} {:>5} {:>8} {:>8} {:>6} {:>10}  {}",
            g.leader,
            g.term,
            g.commit,
            g.applied,
            g.config_num,
            g.data_bytes,
            shards.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::tls_hint;

    #[test]
    fn hints_name_the_likely_tls_mismatch() {
        let h2 = "h2 protocol error: http2 error";
        assert!(tls_hint(h2, false).contains("serving TLS"));
        assert_eq!(tls_hint(h2, true), "");
        let closed = "operation was canceled: transport error: connection closed";
        assert!(tls_hint(closed, true).contains("refused this client's certificate"));
        assert!(tls_hint(closed, false).contains("serving TLS"));
        assert_eq!(tls_hint("connection refused", false), "");
        assert_eq!(tls_hint("connection refused", true), "");
    }
}
