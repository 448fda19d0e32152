//! A sharded store's server process: the controller's replica and a
//! replica of every data group (`--groups`), in one process, over one
//! WAL (`<data-dir>/wal`, one WAL group per Raft group) and one set of
//! peer links, serving the Shard service and the peer transport on one
//! port.
//!
//! The data directory's `member` file names the cluster (a hash of the
//! members, the groups and the shard count) and the member, and is
//! checked at every start: a directory is never reused by another
//! cluster, member or layout (a changed `--groups` or `--shards` would
//! replay the logs into other machines).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_proto::raft::v1::raft_transport_server::RaftTransportServer;
use flotilla_proto::shard::v1::shard_server::ShardServer;
use flotilla_raft::{Config, NodeId};
use flotilla_runtime::metrics::Metrics;
use flotilla_runtime::{
    FatalError, InboundService, NodeOptions, RaftNode, StartError, StateMachine, Transport,
};
use flotilla_shardkv::{Ctrler, Gid, ShardKv};
use flotilla_wal::{GroupId, Options, Wal, WalError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::hosted::{Hosted, Replica};
use crate::service::ShardService;
use crate::{CTRL_TAG, GID_MAX};

/// What a server needs to know.
#[derive(Clone, Debug)]
pub struct ShardServerConfig {
    /// This server's id (its id in every group).
    pub id: NodeId,
    /// Every server (this one included) and its `host:port`.
    pub peers: BTreeMap<NodeId, String>,
    /// The data groups every server hosts.
    pub groups: Vec<Gid>,
    /// Shards per configuration.
    pub shards: usize,
    /// Where the server keeps its state.
    pub data_dir: PathBuf,
    /// The Raft tick.
    pub tick: Duration,
    /// Each group compacts its log once this many entries are applied
    /// past its last snapshot.
    pub snapshot_entries: u64,
    /// With a token, the cluster is its member ids and the token rather
    /// than the member list with its addresses, so that servers may reach
    /// one another at different addresses (proxies, NAT, per-host names),
    /// as the one-group server's `--cluster-token`.
    pub cluster_token: Option<String>,
    /// Where to serve the console, `/api/shards` and `/metrics` over
    /// HTTP (`console.rs`); `None`: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS on the port and on the links to the other servers; `None`:
    /// plaintext.
    pub tls: Option<ShardTls>,
}

/// A shard server's TLS. Servers are peers, as a MapReduce job's
/// processes are: one certificate, served on the port (clients and other
/// servers alike; with client certificate checks on, only holders of a
/// certificate from the CA get in) and presented when dialing the other
/// servers, whose certificates the same CA checks.
#[derive(Clone, Debug)]
pub struct ShardTls {
    /// The port's side.
    pub serve: Arc<flotilla_tls::ServerTls>,
    /// The dialing side.
    pub dial: Arc<flotilla_tls::ClientTls>,
}

/// The most shards a configuration may have.
pub const SHARDS_MAX: usize = 4096;
/// Most concurrent calls (HTTP/2 streams) per connection, as the
/// one-group server: a client that wants more waits for one to end.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1024;
/// How often an idle connection is pinged, and how long a ping may go
/// unanswered before the connection and its calls end: a client whose
/// host died otherwise holds its calls until TCP gives up.
pub const CLIENT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// See [`CLIENT_KEEPALIVE_INTERVAL`].
pub const CLIENT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration cannot be served.
    #[error("{0}")]
    Config(String),
    /// The data directory cannot be used.
    #[error("data directory {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The data directory was made for another cluster, member or layout.
    #[error(
        "data directory {dir} belongs to {found}, not to {want}; use another --data-dir, or \
         remove it to start this member afresh"
    )]
    OtherCluster {
        /// The directory.
        dir: PathBuf,
        /// What its `member` file says.
        found: String,
        /// What this server is.
        want: String,
    },
    /// The WAL could not be opened (in use by another process, corrupt).
    #[error("opening the write-ahead log in {dir}")]
    Wal {
        /// The WAL directory.
        dir: PathBuf,
        /// Why.
        source: WalError,
    },
    /// A group's replica did not start.
    #[error("starting group {gid}'s replica")]
    Start {
        /// The group (0: the controller's).
        gid: Gid,
        /// Why.
        source: StartError,
    },
    /// A group's replica stopped on a fatal error.
    #[error("a group's replica failed")]
    Fatal(#[from] FatalError),
    /// A replica's task panicked.
    #[error("a replica's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The gRPC server failed.
    #[error("serving gRPC")]
    Serve(#[from] tonic::transport::Error),
}

impl ShardServerConfig {
    /// Checks what no server could serve.
    pub fn check(&self) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        if !self.peers.contains_key(&self.id) {
            return bad(format!(
                "member {} is not in the member list (--peers)",
                self.id
            ));
        }
        if self.groups.is_empty() {
            return bad("a sharded server hosts at least one data group (--groups)".into());
        }
        if let Some(g) = self.groups.iter().find(|&&g| g == 0 || g > GID_MAX) {
            return bad(format!("group id {g} is out of range: 1 to {GID_MAX}"));
        }
        let mut sorted = self.groups.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.groups.len() {
            return bad(format!("--groups names a group twice: {:?}", self.groups));
        }
        if !(1..=SHARDS_MAX).contains(&self.shards) {
            return bad(format!(
                "--shards {} is out of range: 1 to {SHARDS_MAX}",
                self.shards
            ));
        }
        Ok(())
    }

    /// What the `member` file says of this server: the cluster is its
    /// members (with their addresses, or with the cluster token), groups
    /// and shard count.
    fn identity(&self) -> String {
        let mut groups = self.groups.clone();
        groups.sort_unstable();
        let members: Vec<String> = match &self.cluster_token {
            None => self
                .peers
                .iter()
                .map(|(id, a)| format!("{id}={a}"))
                .collect(),
            Some(token) => (self.peers.keys().map(NodeId::to_string))
                .chain([format!("token={token}")])
                .collect(),
        };
        format!(
            "flotilla shard data v1: members {} groups {groups:?} shards {} member {}\n",
            members.join(","),
            self.shards,
            self.id
        )
    }

    /// The cluster's id: a hash (FNV-1a) of the identity without the
    /// member, so that servers configured differently refuse each
    /// other's messages.
    pub fn cluster_id(&self) -> u64 {
        let identity = self.identity();
        let cluster = identity
            .rsplit_once(" member ")
            .map_or(&*identity, |(c, _)| c);
        cluster.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
}

/// Checks (or, in a new directory, writes) the `member` file.
fn claim_data_dir(cfg: &ShardServerConfig) -> Result<(), ServerError> {
    let dir = &cfg.data_dir;
    let io = |source| ServerError::DataDir {
        dir: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir.join("wal")).map_err(io)?;
    let path = dir.join("member");
    let want = cfg.identity();
    match std::fs::read_to_string(&path) {
        Ok(found) if found == want => Ok(()),
        Ok(found) => Err(ServerError::OtherCluster {
            dir: dir.clone(),
            found: found.trim().to_string(),
            want: want.trim().to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join("member.tmp");
            std::fs::write(&tmp, want).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

fn node_options(cfg: &ShardServerConfig, tag: u64, metrics: &Arc<Metrics>) -> NodeOptions {
    let mut raft = Config::new(cfg.id, cfg.peers.keys().copied().collect());
    raft.seed = flotilla_runtime::start_seed() ^ tag.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    NodeOptions {
        metrics: Arc::clone(metrics),
        ..NodeOptions::server(raft, cfg.snapshot_entries, cfg.tick)
    }
}

/// What starting the groups gives: the hosted replicas, their tasks, and
/// the peer service that steps each group's messages into its replica.
struct Started {
    hosted: Hosted,
    metrics: Arc<Metrics>,
    tasks: JoinSet<Result<(), FatalError>>,
    inbound: InboundService,
}

/// Starts one group's replica over `sm`.
struct Starter<'a> {
    cfg: &'a ShardServerConfig,
    wal: &'a Wal,
    transport: &'a Transport,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    tasks: JoinSet<Result<(), FatalError>>,
}

impl Starter<'_> {
    fn start<SM: StateMachine>(
        &mut self,
        gid: Gid,
        tag: u64,
        sm: SM,
    ) -> Result<(Replica<SM>, mpsc::Sender<flotilla_raft::Message>), ServerError> {
        let wal_err = |source| ServerError::Wal {
            dir: self.cfg.data_dir.join("wal"),
            source,
        };
        let storage = self.wal.group(GroupId(tag + 1)).map_err(wal_err)?;
        let (tx, rx) = mpsc::channel(4096);
        let sm = Arc::new(Mutex::new(sm));
        let opts = node_options(self.cfg, tag, &self.metrics);
        let transport = self.transport.for_group(tag);
        let node = RaftNode::start(
            opts,
            storage,
            Arc::clone(&sm),
            transport,
            rx,
            self.stop.clone(),
        )
        .map_err(|source| ServerError::Start { gid, source })?;
        self.tasks
            .spawn(async move { node.task.await.unwrap_or(Ok(())) });
        Ok((
            Replica {
                node: node.handle,
                sm,
            },
            tx,
        ))
    }
}

/// Opens the WAL and starts the controller's and every data group's
/// replica.
fn start_groups(
    cfg: &ShardServerConfig,
    cluster: u64,
    stop: &watch::Receiver<bool>,
    closing: watch::Receiver<bool>,
) -> Result<Started, ServerError> {
    let wal_dir = cfg.data_dir.join("wal");
    let wal = Wal::open(&wal_dir, Options::default()).map_err(|source| ServerError::Wal {
        dir: wal_dir.clone(),
        source,
    })?;
    // The port's TLS, when on, checks every caller's certificate itself
    // (with --client-cert-auth), so the peer service asks no more.
    let peer_tls = cfg.tls.as_ref().map(|t| flotilla_runtime::PeerTls {
        dial: Arc::clone(&t.dial),
        require_cert: false,
    });
    let transport = Transport::start_with_tls(cluster, cfg.id, &cfg.peers, stop.clone(), peer_tls);
    let metrics = Arc::new(Metrics::default());
    let mut starter = Starter {
        cfg,
        wal: &wal,
        transport: &transport,
        metrics: Arc::clone(&metrics),
        stop: stop.clone(),
        tasks: JoinSet::new(),
    };
    let (ctrl, ctrl_tx) = starter.start(0, CTRL_TAG, Ctrler::new(cfg.shards))?;
    let mut inbound = InboundService::new(cluster, cfg.id, ctrl_tx, closing);
    let mut groups = BTreeMap::new();
    for &gid in &cfg.groups {
        let (replica, tx) = starter.start(gid, gid, ShardKv::new(gid, cfg.shards))?;
        inbound = inbound.with_group(gid, tx);
        groups.insert(gid, replica);
    }
    let hosted = Hosted {
        me: cfg.id,
        nshards: cfg.shards,
        ctrl,
        groups,
    };
    Ok(Started {
        hosted,
        metrics,
        tasks: starter.tasks,
        inbound: inbound.with_removed_from(transport),
    })
}

/// Runs a server on `listener` until `shutdown` resolves, or a replica
/// fails.
pub async fn run(
    cfg: ShardServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    cfg.check()?;
    claim_data_dir(&cfg)?;
    let cluster = cfg.cluster_id();
    let (stop_tx, stop) = watch::channel(false);
    let (closing_tx, closing) = watch::channel(false);
    let console = bind_console(&cfg).await?;
    let Started {
        hosted,
        metrics,
        mut tasks,
        inbound,
    } = start_groups(&cfg, cluster, &stop, closing.clone())?;
    let hosted = Arc::new(hosted);
    // Aborted when dropped, on every way out of here.
    let mut console_task = JoinSet::new();
    if let Some(l) = console {
        let pages = crate::console::pages(Arc::clone(&hosted), metrics);
        console_task.spawn(flotilla_tls::pages::serve(l, pages));
    }
    let movers: Vec<_> = (cfg.groups.iter())
        .map(|&gid| crate::mover::spawn(Arc::clone(&hosted), gid, stop.clone()))
        .collect();
    let service = ShardService::new(Arc::clone(&hosted), cfg.peers.values().cloned().collect());
    let mut closed = closing.clone();
    let serve = tonic::transport::Server::builder()
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
        .http2_keepalive_interval(Some(CLIENT_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(CLIENT_KEEPALIVE_TIMEOUT))
        .add_service(
            ShardServer::new(service)
                .max_decoding_message_size(crate::service::VALUE_MAX + (512 << 10)),
        )
        .add_service(
            RaftTransportServer::new(inbound)
                .max_decoding_message_size(flotilla_runtime::transport::BATCH_DECODE_MAX),
        )
        .serve_with_incoming_shutdown(incoming(listener, cfg.tls.as_ref()), async move {
            drop(closed.wait_for(|c| *c).await);
        });
    tokio::spawn(async move {
        shutdown.await;
        let _ = closing_tx.send(true);
    });
    tracing::info!(member = %cfg.id, cluster = %format!("{cluster:016x}"), groups = ?cfg.groups, "started");
    let failed = tokio::select! {
        served = serve => { served?; None }
        ended = tasks.join_next() => ended,
    };
    let _ = stop_tx.send(true);
    if let Some(ended) = failed {
        ended??;
    }
    while let Some(ended) = tasks.join_next().await {
        ended??;
    }
    for mover in movers {
        let _ = mover.await;
    }
    drop(console_task);
    Ok(())
}

/// The console's listener, if one is asked for.
async fn bind_console(cfg: &ShardServerConfig) -> Result<Option<TcpListener>, ServerError> {
    let Some(addr) = cfg.metrics_listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        ServerError::Config(format!("--metrics-listen {addr}: cannot listen there: {e}"))
    })?;
    Ok(Some(listener))
}

/// Accepted connections: over TLS with `tls` (each handshake on its own
/// task, so a stalled client holds up no one), plaintext without.
fn incoming(listener: TcpListener, tls: Option<&ShardTls>) -> flotilla_tls::Incoming {
    flotilla_tls::incoming(listener, tls.map(|t| Arc::clone(&t.serve)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: PathBuf) -> ShardServerConfig {
        ShardServerConfig {
            id: NodeId(1),
            peers: BTreeMap::from([(NodeId(1), "h1:1".into()), (NodeId(2), "h2:1".into())]),
            groups: vec![1, 2],
            shards: 10,
            data_dir: dir,
            tick: Duration::from_millis(10),
            snapshot_entries: 100,
            cluster_token: None,
            metrics_listen: None,
            tls: None,
        }
    }

    fn refused(c: &ShardServerConfig) -> String {
        match c.check() {
            Err(ServerError::Config(m)) => m,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_configuration_no_server_could_serve_is_refused_with_what_is_wrong() {
        let good = cfg(PathBuf::from("d"));
        assert!(good.check().is_ok());
        let with = |f: &dyn Fn(&mut ShardServerConfig)| {
            let mut c = good.clone();
            f(&mut c);
            refused(&c)
        };
        assert_eq!(
            with(&|c| c.id = NodeId(3)),
            "member 3 is not in the member list (--peers)"
        );
        assert!(with(&|c| c.groups.clear()).contains("at least one data group"));
        assert_eq!(
            with(&|c| c.groups = vec![1, 0]),
            "group id 0 is out of range: 1 to 1000000"
        );
        assert_eq!(
            with(&|c| c.groups = vec![GID_MAX + 1]),
            "group id 1000001 is out of range: 1 to 1000000"
        );
        assert_eq!(
            with(&|c| c.groups = vec![2, 1, 2]),
            "--groups names a group twice: [2, 1, 2]"
        );
        assert_eq!(
            with(&|c| c.shards = 0),
            "--shards 0 is out of range: 1 to 4096"
        );
        assert_eq!(
            with(&|c| c.shards = SHARDS_MAX + 1),
            "--shards 4097 is out of range: 1 to 4096"
        );
        let mut edge = good.clone();
        edge.groups = vec![GID_MAX];
        edge.shards = SHARDS_MAX;
        assert!(edge.check().is_ok(), "the bounds themselves are allowed");
    }

    #[test]
    fn the_cluster_is_its_members_groups_and_shards_whatever_the_member() {
        let a = cfg(PathBuf::from("d"));
        let mut other_member = a.clone();
        other_member.id = NodeId(2);
        assert_eq!(a.cluster_id(), other_member.cluster_id());
        let mut regrouped = a.clone();
        regrouped.groups = vec![2, 1];
        assert_eq!(
            a.cluster_id(),
            regrouped.cluster_id(),
            "order does not matter"
        );
        for change in [
            &(|c: &mut ShardServerConfig| c.groups = vec![1, 2, 3])
                as &dyn Fn(&mut ShardServerConfig),
            &|c| c.shards = 11,
            &|c| drop(c.peers.insert(NodeId(2), "h2:2".into())),
            &|c| c.cluster_token = Some("t".into()),
        ] {
            let mut b = a.clone();
            change(&mut b);
            assert_ne!(a.cluster_id(), b.cluster_id(), "{:?}", b.identity());
        }
        // With a token, members may see one another at other addresses.
        let mut t1 = a.clone();
        t1.cluster_token = Some("t".into());
        let mut t2 = t1.clone();
        t2.peers.insert(NodeId(2), "proxy:9".into());
        assert_eq!(t1.cluster_id(), t2.cluster_id());
        t2.cluster_token = Some("u".into());
        assert_ne!(t1.cluster_id(), t2.cluster_id(), "another token");
    }

    #[test]
    fn a_data_directory_serves_only_the_layout_it_was_made_for() {
        let scratch =
            std::env::temp_dir().join(format!("flotilla-shard-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let a = cfg(scratch.clone());
        claim_data_dir(&a).unwrap();
        claim_data_dir(&a).unwrap();
        assert!(scratch.join("wal").is_dir());
        let mut b = a.clone();
        b.groups = vec![1, 2, 3];
        let e = claim_data_dir(&b).unwrap_err().to_string();
        assert!(
            e.contains("groups [1, 2] shards 10 member 1, not to"),
            "{e}"
        );
        assert!(e.contains("groups [1, 2, 3]"), "{e}");
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
