//! A Flotilla server process: one Raft group replicating the KV store,
//! serving etcd's v3 API and the peer transport on one port.
//!
//! [`run`] takes bound listeners (the caller binds, so tests use port 0
//! and the CLI reports "port in use" itself) and a shutdown future. On
//! shutdown it stops accepting, lets in-flight requests finish, stops the
//! Raft task (which syncs the WAL) and returns.
//!
//! The data directory holds `member` (which cluster and member it belongs
//! to, checked at every start so a directory is never reused by another
//! cluster or node), `initial-cluster` (the founding members, see
//! [`crate::join`]) and `wal/` (the Raft log, [`flotilla_wal`]).
//!
//! Members come and go through the log (`Cluster.MemberAdd` and friends);
//! a member that learns it was removed stops, as etcd's does.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_proto::etcdserverpb::cluster_server::ClusterServer;
use flotilla_proto::etcdserverpb::kv_server::KvServer;
use flotilla_proto::etcdserverpb::lease_server::LeaseServer;
use flotilla_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use flotilla_proto::etcdserverpb::watch_server::WatchServer;
use flotilla_proto::health::v1::health_server::HealthServer;
use flotilla_proto::kv::v1::kv_server::KvServer as SessionServer;
use flotilla_proto::raft::v1::proposals_server::ProposalsServer;
use flotilla_proto::raft::v1::raft_transport_server::RaftTransportServer;
use flotilla_proto::v3electionpb::election_server::ElectionServer;
use flotilla_proto::v3lockpb::lock_server::LockServer;
use flotilla_raft::{Config, NodeId};
use flotilla_wal::{GroupHandle, GroupId, Options, Wal, WalError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;

use crate::{ClusterService, Core, KvMachine, KvService, SessionService, WatchService};
use flotilla_runtime::{
    FatalError, InboundService, NodeOptions, PeerTls, RaftNode, StartError, Transport,
};
use flotilla_tls::ServerTls;

/// What a server needs to know.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This node's id.
    pub id: NodeId,
    /// Every founding member (this one included) and its `host:port`;
    /// with `join`, members of the running cluster to ask.
    pub peers: BTreeMap<NodeId, String>,
    /// Join a running cluster (which has added this member) instead of
    /// founding one: start with no vote, learn the configuration from the
    /// leader.
    pub join: bool,
    /// Where the node keeps its state.
    pub data_dir: PathBuf,
    /// The Raft tick.
    pub tick: Duration,
    /// Compact the log once this many entries are applied past the last
    /// snapshot. A snapshot clones the store on the Raft task (the
    /// encoding runs on the blocking pool) and its file is written and
    /// synced before the next Ready goes on, so it must be rare; etcd's
    /// default is 100,000.
    pub snapshot_entries: u64,
    /// With a token, the cluster's id is derived from the member ids and
    /// the token instead of the member list with its addresses, so that
    /// members may reach one another at different addresses (through
    /// proxies, NAT, or per-host names).
    pub cluster_token: Option<String>,
    /// Refuse membership changes that would put the quorum at risk given
    /// the members the leader hears from (etcd's
    /// `--strict-reconfig-check`).
    pub strict_reconfig_check: bool,
    /// The largest write, as its command in the log (etcd's
    /// `--max-request-bytes`; at most
    /// [`crate::core::MAX_REQUEST_BYTES_LIMIT`]).
    pub max_request_bytes: usize,
    /// How much of the store's history the leader keeps before it
    /// compacts ([`crate::compactor`]).
    pub auto_compaction: crate::compactor::Retention,
    /// How much data the store may hold (etcd's `--quota-backend-bytes`,
    /// [`Core::with_quota_bytes`]).
    pub quota_backend_bytes: u64,
    /// How often the leader compares members' hashes of the key history
    /// ([`crate::corrupt`], etcd's `--experimental-corrupt-check-time`);
    /// none: never.
    pub corrupt_check_every: Option<Duration>,
    /// Compare this member's hash with its peers' before serving, and
    /// refuse to start if one differs (etcd's
    /// `--experimental-initial-corrupt-check`).
    pub initial_corrupt_check: bool,
    /// TLS for clients and peers (etcd's `--cert-file` ... flags); none:
    /// plaintext.
    pub tls: Option<flotilla_tls::ServerTlsFiles>,
    /// With `tls`, serve plaintext connections on the same port too
    /// (etcd's `--listen-client-urls` naming both `http://` and
    /// `https://` for one address), told apart by their first byte. Peer
    /// calls on a plaintext connection still need a peer certificate when
    /// one is required, so only clients gain a plaintext way in.
    pub plaintext_too: bool,
    /// Password hashing and token lifetime (etcd's `--bcrypt-cost`,
    /// `--auth-token-ttl`).
    pub auth: crate::auth::AuthConfig,
}

impl ServerConfig {
    /// Member `id` founding a cluster of one at `endpoint`, its data in
    /// `data_dir`, every other setting etcd's default (and `flotilla
    /// server`'s): plaintext, 10 ms ticks, no automatic compaction, no
    /// corruption checks.
    pub fn founder(id: NodeId, endpoint: String, data_dir: PathBuf) -> ServerConfig {
        ServerConfig {
            id,
            peers: BTreeMap::from([(id, endpoint)]),
            join: false,
            data_dir,
            tick: Duration::from_millis(10),
            snapshot_entries: 100_000,
            cluster_token: None,
            strict_reconfig_check: true,
            max_request_bytes: crate::core::DEFAULT_MAX_REQUEST_BYTES,
            auto_compaction: crate::compactor::Retention::Off,
            quota_backend_bytes: crate::core::DEFAULT_QUOTA_BYTES,
            corrupt_check_every: None,
            initial_corrupt_check: false,
            tls: None,
            plaintext_too: false,
            auth: crate::auth::AuthConfig::default(),
        }
    }
}

/// The sockets a server serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// etcd's API and the peer transport.
    pub grpc: TcpListener,
    /// `GET /metrics`, if wanted.
    pub metrics: Option<TcpListener>,
}

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// `--id` is not among `--peers`.
    #[error("node {0} is not in the member list (--peers)")]
    NotAMember(NodeId),
    /// The data directory cannot be used.
    #[error("data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The data directory was made for another cluster or member.
    #[error(
        "data directory {dir} belongs to {found}, not to cluster {cluster:016x} member {member}; \
         use another --data-dir, or remove it to start this member afresh"
    )]
    OtherCluster {
        /// The directory.
        dir: PathBuf,
        /// What its `member` file says.
        found: String,
        /// This cluster.
        cluster: u64,
        /// This member.
        member: NodeId,
    },
    /// The WAL could not be opened (in use by another process, corrupt).
    #[error("opening the write-ahead log in {dir}")]
    Wal {
        /// The WAL directory.
        dir: PathBuf,
        /// Why.
        source: WalError,
    },
    /// The Raft node did not start.
    #[error("starting the Raft node")]
    Start(#[from] StartError),
    /// The Raft node stopped on a fatal error.
    #[error("the Raft node failed")]
    Fatal(#[from] FatalError),
    /// The Raft task panicked.
    #[error("the Raft task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The gRPC server failed.
    #[error("serving gRPC")]
    Serve(#[from] tonic::transport::Error),
    /// The TLS files or flags cannot be used.
    #[error("TLS")]
    Tls(#[from] flotilla_tls::TlsError),
    /// The initial member list could not be had.
    #[error("finding the cluster's initial members")]
    Join(#[from] crate::join::JoinError),
    /// The initial corruption check found this member's data differing
    /// from a peer's.
    #[error("{0}")]
    Corrupt(String),
}

/// The cluster's id: a hash (FNV-1a) of its member list, so that nodes
/// configured with different member lists refuse each other's messages.
pub fn cluster_id(peers: &BTreeMap<NodeId, String>) -> u64 {
    fnv1a(peers.iter().map(|(id, addr)| format!("{id}={addr};")))
}

/// The cluster's id given a cluster token: a hash of the member ids and
/// the token, whatever addresses the members use for one another.
pub fn cluster_id_with_token(ids: impl Iterator<Item = NodeId>, token: &str) -> u64 {
    let parts = ids.map(|id| format!("{id};"));
    fnv1a(parts.chain(std::iter::once(format!("token={token}"))))
}

fn fnv1a(parts: impl Iterator<Item = String>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Checks (or, in a new directory, writes) the `member` file.
fn claim_data_dir(dir: &Path, cluster: u64, member: NodeId) -> Result<(), ServerError> {
    let io = |source| ServerError::DataDir {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir.join("wal")).map_err(io)?;
    let path = dir.join("member");
    let want = format!("flotilla data v1: cluster {cluster:016x} member {member}\n");
    match std::fs::read_to_string(&path) {
        Ok(found) if found == want => Ok(()),
        Ok(found) => Err(ServerError::OtherCluster {
            dir: dir.to_path_buf(),
            found: found.trim().to_string(),
            cluster,
            member,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join("member.tmp");
            std::fs::write(&tmp, want).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

/// Accepted connections, with Nagle's algorithm off: Raft messages and
/// replies are small and latency-bound.
pub fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(c) = &conn {
            let _ = c.set_nodelay(true);
        }
        conn
    })
}

/// The founding members: `--peers` for a founder (its data directory's
/// `member` file then refuses another list, as it always did); for a
/// joining member, the list saved in its data directory, else asked of
/// the running cluster. Saved for later starts.
async fn initial_members(
    cfg: &ServerConfig,
    tls: Option<&PeerTls>,
) -> Result<BTreeMap<NodeId, String>, ServerError> {
    let saved = crate::join::read_saved(&cfg.data_dir)?;
    let initial = if !cfg.join {
        if !cfg.peers.contains_key(&cfg.id) {
            return Err(ServerError::NotAMember(cfg.id));
        }
        cfg.peers.clone()
    } else if let Some(saved) = saved.clone() {
        saved
    } else {
        let addrs: Vec<String> = cfg.peers.values().cloned().collect();
        crate::join::ask(cfg.id, &addrs, tls.map(|t| &t.dial)).await?
    };
    if saved.is_none() {
        crate::join::save(&cfg.data_dir, &initial)?;
    }
    Ok(initial)
}

/// Checks the configuration and the data directory; opens the WAL.
fn open_storage(
    cfg: &ServerConfig,
    initial: &BTreeMap<NodeId, String>,
) -> Result<(u64, GroupHandle), ServerError> {
    open_storage_at(&cfg.data_dir, cfg.id, cfg.cluster_token.as_deref(), initial)
}

/// [`open_storage`] of member `id` in `data_dir`, for a cluster founded by
/// `initial` (with `token`, if any): also what a restore writes into.
pub(crate) fn open_storage_at(
    data_dir: &Path,
    id: NodeId,
    token: Option<&str>,
    initial: &BTreeMap<NodeId, String>,
) -> Result<(u64, GroupHandle), ServerError> {
    let cluster = match token {
        Some(token) => cluster_id_with_token(initial.keys().copied(), token),
        None => cluster_id(initial),
    };
    claim_data_dir(data_dir, cluster, id)?;
    let wal_dir = data_dir.join("wal");
    let wal_err = |source| ServerError::Wal {
        dir: wal_dir.clone(),
        source,
    };
    let wal = Wal::open(&wal_dir, Options::default()).map_err(wal_err)?;
    let storage = wal.group(GroupId(1)).map_err(wal_err)?;
    Ok((cluster, storage))
}

/// Turns the shutdown future into a flag that several parties can watch.
fn closing_flag(shutdown: impl Future<Output = ()> + Send + 'static) -> watch::Receiver<bool> {
    let (closing_tx, closing) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = closing_tx.send(true);
    });
    closing
}

/// Most connections (clients' and peers') a server holds at once
/// ([`crate::conns`]); more wait to be accepted until one closes.
pub const CONNECTIONS_MAX: usize = 4096;
/// Most concurrent calls (HTTP/2 streams) per connection: each holds its
/// request, its task and, for a watch, its watches; a client that wants
/// more waits for one to end (gRPC clients queue them). etcd's Go
/// clients open one stream per concurrent call and one per watch
/// context.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1024;
/// How often the server pings an idle client connection: a client whose
/// host died or whose network dropped it otherwise keeps its connection,
/// streams and watches until TCP gives up (minutes to hours).
pub const CLIENT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection, and every
/// call on it, is ended.
pub const CLIENT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Every gRPC service of a node on one port: etcd's KV, Lease, Lock,
/// Election, Maintenance and Cluster, Watch, Flotilla's sessions and write
/// forwarding, the peer transport. The JSON gateway calls the same routes
/// ([`crate::gateway`]).
fn routes(
    core: Core,
    keeper: Arc<crate::leases::Keeper>,
    inbound: InboundService,
    closing: watch::Receiver<bool>,
) -> Routes {
    // Writes larger than the limit get etcd's "request is too large" from
    // `Core`; gRPC's own limit only stops what is far larger.
    let writes = core.max_request_bytes + crate::core::GRPC_OVERHEAD_BYTES;
    let cs = ClusterService::new(core.clone());
    let health = crate::health::HealthService::new(core.clone(), closing.clone());
    let leases = crate::lease_service::LeaseService::new(core.clone(), keeper, closing.clone());
    let elections = crate::election_service::ElectionService::new(core.clone(), closing.clone());
    let locks = crate::lock_service::LockService::new(core.clone());
    let watches = WatchService::new(core.clone(), closing);
    let auth = crate::auth_service::AuthService::new(core.clone());
    Routes::new(
        SessionServer::new(SessionService::new(core.clone())).max_decoding_message_size(writes),
    )
    .add_service(KvServer::new(KvService::new(core)).max_decoding_message_size(writes))
    .add_service(WatchServer::new(watches))
    .add_service(LeaseServer::new(leases))
    .add_service(LockServer::new(locks))
    .add_service(flotilla_proto::etcdserverpb::auth_server::AuthServer::new(
        auth,
    ))
    .add_service(ElectionServer::new(elections))
    .add_service(HealthServer::new(health))
    .add_service(MaintenanceServer::new(cs.clone()))
    .add_service(ClusterServer::new(cs.clone()))
    .add_service(ProposalsServer::new(cs).max_decoding_message_size(writes))
    .add_service(
        RaftTransportServer::new(inbound)
            .max_decoding_message_size(flotilla_runtime::transport::BATCH_DECODE_MAX),
    )
}

/// The gRPC server of `routes`.
fn grpc_server(routes: Routes) -> tonic::transport::server::Router {
    tonic::transport::Server::builder()
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
        .http2_keepalive_interval(Some(CLIENT_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(CLIENT_KEEPALIVE_TIMEOUT))
        .add_routes(routes)
}

/// Resolves when this member learns it was removed: it applied its
/// removal, or a peer refused its messages as a removed member's.
async fn removal(
    mut status: watch::Receiver<flotilla_runtime::NodeStatus>,
    mut evicted: watch::Receiver<bool>,
) {
    let applied = async move {
        if status.wait_for(|s| s.removed).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let told = async move {
        if evicted.wait_for(|e| *e).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = applied => {}
        _ = told => {}
    }
    tracing::warn!("this member was removed from the cluster; shutting down");
}

fn node_options(cfg: &ServerConfig, initial: &BTreeMap<NodeId, String>) -> NodeOptions {
    // A joining member is not among these: it does not campaign until the
    // log makes it a voter.
    let voters: Vec<NodeId> = initial.keys().copied().collect();
    let mut raft = Config::new(cfg.id, voters);
    raft.seed = flotilla_runtime::start_seed();
    NodeOptions::server(raft, cfg.snapshot_entries, cfg.tick)
}

/// The peer transport, linked to the initial members. With a cluster
/// token members may see one another at different addresses (proxies,
/// NAT): a founder then keeps reaching the founders at the addresses its
/// own --peers gives (local routes), whatever the replicated member table
/// (the leader's view, in a snapshot) says.
fn start_transport(
    cfg: &ServerConfig,
    cluster: u64,
    initial: &BTreeMap<NodeId, String>,
    stop: watch::Receiver<bool>,
    tls: Option<PeerTls>,
) -> Transport {
    let transport = Transport::start_with_tls(cluster, cfg.id, initial, stop, tls);
    if cfg.cluster_token.is_some() && !cfg.join {
        transport.set_routes(initial.clone());
    }
    transport
}

/// Serves the metrics port's `GET` endpoints (`/metrics`, `/health`,
/// `/version` and the console: [`crate::http::serve_metrics_port`]) on
/// `listener`, if there is one, until `stop`.
fn serve_metrics(listener: Option<TcpListener>, core: &Core, stop: watch::Receiver<bool>) {
    if let Some(l) = listener {
        tokio::spawn(crate::http::serve_metrics_port(l, core.clone(), stop));
    }
}

/// The member's background tasks: automatic compaction, the lessor,
/// and recording its start if it joined.
fn spawn_tasks(
    core: &Core,
    cfg: &ServerConfig,
    keeper: &Arc<crate::leases::Keeper>,
    closing: &watch::Receiver<bool>,
) {
    crate::compactor::spawn(core.clone(), cfg.auto_compaction, closing.clone());
    crate::leases::spawn(core.clone(), Arc::clone(keeper), closing.clone());
    if let Some(every) = cfg.corrupt_check_every {
        crate::corrupt::spawn(core.clone(), every, closing.clone());
    }
    let (core, closing) = (core.clone(), closing.clone());
    tokio::spawn(async move { core.publish_start(closing).await });
}

/// With `--experimental-initial-corrupt-check`, compares this member's
/// hash with its peers' before it serves, as etcd (peers not up yet are
/// skipped).
async fn initial_corrupt_check(cfg: &ServerConfig, core: &Core) -> Result<(), ServerError> {
    if !cfg.initial_corrupt_check {
        return Ok(());
    }
    crate::corrupt::initial_check(core)
        .await
        .map_err(ServerError::Corrupt)
}

/// The lessor of a member whose elections take `election_ticks` ticks.
fn keeper(cfg: &ServerConfig, opts: &NodeOptions) -> Arc<crate::leases::Keeper> {
    let election_ms = u64::from(opts.host.raft.election_ticks)
        .saturating_mul(u64::try_from(cfg.tick.as_millis()).unwrap_or(u64::MAX));
    crate::leases::Keeper::new(crate::lessor::LessorConfig::for_election_timeout(
        election_ms,
    ))
}

/// The port's TLS and the peers' dialing TLS, from `cfg`'s files, read
/// and checked now.
fn tls(cfg: &ServerConfig) -> Result<Option<(Arc<ServerTls>, PeerTls)>, ServerError> {
    let Some(files) = &cfg.tls else {
        return Ok(None);
    };
    let server = Arc::new(ServerTls::new(files)?);
    let peers = PeerTls {
        dial: Arc::new(flotilla_tls::ClientTls::for_peers(&files.peer)?),
        require_cert: server.peer_cert_auth(),
    };
    Ok(Some((server, peers)))
}

impl Core {
    /// This core with `cfg`'s limits, checks and auth settings, and the
    /// URL schemes its port speaks (`tls`: certificates are configured).
    fn configured(self, cfg: &ServerConfig, tls: bool) -> Core {
        self.with_strict_reconfig(cfg.strict_reconfig_check)
            .with_max_request_bytes(cfg.max_request_bytes)
            .with_quota_bytes(cfg.quota_backend_bytes)
            .with_auth_config(cfg.auth.clone())
            .with_url_schemes(crate::membership::UrlSchemes {
                plain: !tls || cfg.plaintext_too,
                tls,
            })
    }
}

/// Runs a server on `listeners` until `shutdown` resolves (or the member
/// is removed from the cluster).
pub async fn run(
    cfg: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (server_tls, peer_tls) = tls(&cfg)?.unzip();
    let initial = initial_members(&cfg, peer_tls.as_ref()).await?;
    let (cluster, storage) = open_storage(&cfg, &initial)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let transport = start_transport(&cfg, cluster, &initial, stop_rx.clone(), peer_tls);
    let (inbound_tx, inbound_rx) = mpsc::channel(4096);
    let opts = node_options(&cfg, &initial);
    let metrics = Arc::clone(&opts.metrics);
    let keeper = keeper(&cfg, &opts);
    let sm = Arc::new(Mutex::new(KvMachine::new(&initial, Arc::default())));
    let node = RaftNode::start(
        opts,
        storage,
        Arc::clone(&sm),
        transport.clone(),
        inbound_rx,
        stop_rx.clone(),
    )?;
    let removed = removal(node.handle.watch_status(), transport.evicted());
    let core = Core::new(
        cluster,
        cfg.id,
        node.handle,
        sm,
        Arc::new(initial),
        Arc::clone(&metrics),
        transport.clone(),
    )
    .configured(&cfg, server_tls.is_some());
    serve_metrics(listeners.metrics, &core, stop_rx);
    initial_corrupt_check(&cfg, &core).await?;
    let closing = closing_flag(async move {
        tokio::select! {
            _ = shutdown => {}
            _ = removed => {}
        }
    });
    let mut closed = closing.clone();
    let shutdown = async move { drop(closed.wait_for(|c| *c).await) };
    let inbound = InboundService::new(cluster, cfg.id, inbound_tx, closing.clone())
        .with_removed_from(transport)
        .with_metrics(metrics);
    spawn_tasks(&core, &cfg, &keeper, &closing);
    let routes = routes(core.clone(), keeper, inbound, closing);
    let conns = crate::accept::split(listeners.grpc, core, routes.clone(), server_tls)
        .map(|conn| conn.map(crate::authority::Normalized::new));
    let serve = grpc_server(routes).serve_with_incoming_shutdown(conns, shutdown);
    let mut task = node.task;
    tracing::info!(member = %cfg.id, cluster = %format!("{cluster:016x}"), "started");
    tokio::select! {
        served = serve => served?,
        ended = &mut task => {
            ended??;
            return Ok(());
        }
    }
    let _ = stop_tx.send(true);
    task.await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &[(u64, &str)]) -> BTreeMap<NodeId, String> {
        list.iter()
            .map(|&(id, a)| (NodeId(id), a.to_string()))
            .collect()
    }

    #[test]
    fn without_a_token_the_addresses_are_part_of_the_identity() {
        let a = peers(&[(1, "h1:1"), (2, "h2:1")]);
        let b = peers(&[(1, "h1:1"), (2, "proxy:9")]);
        assert_ne!(cluster_id(&a), cluster_id(&b));
        assert_eq!(cluster_id(&a), cluster_id(&a.clone()));
    }

    #[test]
    fn with_a_token_only_the_ids_and_the_token_are() {
        let a = peers(&[(1, "h1:1"), (2, "h2:1")]);
        let b = peers(&[(1, "h1:1"), (2, "proxy:9")]);
        let id = |p: &BTreeMap<NodeId, String>, t| cluster_id_with_token(p.keys().copied(), t);
        assert_eq!(id(&a, "t"), id(&b, "t"));
        assert_ne!(id(&a, "t"), id(&a, "u"), "another token, another cluster");
        let c = peers(&[(1, "h1:1"), (3, "h2:1")]);
        assert_ne!(id(&a, "t"), id(&c, "t"), "other members, another cluster");
    }
}
