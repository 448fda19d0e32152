//! `flotilla server`: runs one member of a cluster in the foreground until
//! Ctrl-C or SIGTERM, then shuts down gracefully (stops accepting, finishes
//! in-flight requests, syncs the log) and exits 0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use flotilla_etcd::auth::AuthConfig;
use flotilla_etcd::auth::jwt::{JwtKey, TokenSpec};
use flotilla_etcd::auth::token::Tokens;
use flotilla_etcd::compactor::{DEFAULT_RETENTION, Retention};
use flotilla_etcd::core::{DEFAULT_MAX_REQUEST_BYTES, MAX_REQUEST_BYTES_LIMIT};
use flotilla_etcd::server::{Listeners, ServerConfig, run};
use flotilla_raft::NodeId;

use super::config::{self, required};
use super::{server_runtime, shutdown_signal};

/// Where settings come from, for `--help`.
pub const PRECEDENCE: &str = "Each setting comes from, in order of precedence: its flag, its \
FLOTILLA_* environment variable, the --config file (key = the flag without dashes), \
its default. Unknown keys and values of the wrong type in the file are errors.";

/// `flotilla server` arguments. Each setting may also come from its
/// environment variable or from the `--config` file, which is read into
/// this same struct (every key optional, unknown keys refused); a flag
/// beats its variable, which beats the file, which beats the default.
#[derive(Debug, Default, Args, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerArgs {
    /// A TOML file of settings, keyed as the flags without dashes, e.g.
    /// `id = 1`, `listen = "10.0.0.1:2379"`, `peers = ["1=10.0.0.1:2379",
    /// ...]`, `data-dir = "/var/lib/flotilla"`, `tick-ms = 10`.
    #[arg(long, env = "FLOTILLA_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This member's id (a positive integer listed in --peers; with
    /// --join, the id given to `flotilla member add`). Required.
    #[arg(long, env = "FLOTILLA_ID")]
    pub id: Option<u64>,
    /// The address to serve clients and peers on: `HOST:PORT` (TLS with
    /// --cert-file, else plaintext), or etcd-style URLs: `https://HOST:PORT`,
    /// `http://HOST:PORT`, or both for the same port,
    /// `http://HOST:PORT,https://HOST:PORT`, to serve plaintext clients
    /// beside TLS ones. Required.
    #[arg(long, env = "FLOTILLA_LISTEN")]
    pub listen: Option<String>,
    /// Every founding member, this one included: `1=127.0.0.1:12379,2=...`.
    /// With --join: members of the running cluster to ask (`ID=HOST:PORT`
    /// or `HOST:PORT`), on the first start only (the data directory then
    /// keeps the cluster's initial member list; restart with --join too).
    /// Required.
    #[arg(long, env = "FLOTILLA_PEERS", value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// Join a running cluster instead of founding one (etcd's
    /// `--initial-cluster-state existing`): add the member first with
    /// `flotilla member add --id ID --peer-url HOST:PORT [--learner]`; it
    /// starts without a vote and learns the membership from the leader.
    /// Restart a joined member with --join as well.
    #[arg(long, env = "FLOTILLA_JOIN")]
    #[serde(default)]
    pub join: bool,
    /// Where this member keeps its state (created if missing). Required.
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Serve Prometheus metrics (`GET /metrics`) on this address.
    #[arg(long, env = "FLOTILLA_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// The Raft tick in milliseconds (heartbeats every 10 ticks, elections
    /// after 100-200) [default: 10].
    #[arg(long, env = "FLOTILLA_TICK_MS")]
    pub tick_ms: Option<u64>,
    /// Compact the log (snapshot the store) every this many applied
    /// entries (etcd's default) [default: 100000].
    #[arg(long, env = "FLOTILLA_SNAPSHOT_ENTRIES")]
    pub snapshot_entries: Option<u64>,
    /// Derive the cluster's identity from the member ids and this token
    /// instead of the --peers addresses, so that members may list one
    /// another at different addresses (through proxies or NAT). Every
    /// member must be given the same token, always. A founding member
    /// then keeps reaching the founders at the addresses its own --peers
    /// gives, whatever the replicated member table says (so moving a
    /// founder with `member update` needs new --peers here too).
    #[arg(long, env = "FLOTILLA_CLUSTER_TOKEN")]
    pub cluster_token: Option<String>,
    /// Refuse a membership change that would put the quorum at risk, as
    /// etcd does: adding a member or removing a live voter while some
    /// voter is not answering the leader, or promoting a learner without
    /// enough live members [default: true].
    #[arg(long, env = "FLOTILLA_STRICT_RECONFIG_CHECK", value_name = "BOOL")]
    pub strict_reconfig_check: Option<bool>,
    /// The largest write a client may make, in bytes, as it is stored in
    /// the log (etcd's flag); larger ones get "etcdserver: request is too
    /// large". At most 33554432 [default: 1572864].
    #[arg(long, env = "FLOTILLA_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// How much data the store may hold, in bytes (etcd's flag): past it,
    /// writes that add data get "etcdserver: mvcc: database space
    /// exceeded" and a NOSPACE alarm is raised until compaction,
    /// defragmentation and `alarm disarm` [default: 2147483648; 0: the
    /// default, as etcd].
    #[arg(long, env = "FLOTILLA_QUOTA_BACKEND_BYTES")]
    pub quota_backend_bytes: Option<u64>,
    /// How automatic compaction of the key history counts its retention
    /// (etcd's flag): `revision` or `periodic` [default: revision, with
    /// retention 10000; with only a retention given, periodic, as etcd].
    #[arg(long, env = "FLOTILLA_AUTO_COMPACTION_MODE")]
    pub auto_compaction_mode: Option<String>,
    /// How much key history to keep (etcd's flag): a number of revisions,
    /// or for periodic mode a duration (`90s`, `30m`, `1h`) or a number of
    /// hours; `0` keeps everything until `etcdctl compaction` [default:
    /// 10000 revisions].
    #[arg(long, env = "FLOTILLA_AUTO_COMPACTION_RETENTION")]
    pub auto_compaction_retention: Option<String>,
    /// How often the leader compares every member's hash of the key
    /// history (etcd's flag: `500ms`, `30s`, `5m`); if they differ it
    /// raises a CORRUPT alarm, which stops writes until `alarm disarm`
    /// [default: 0s, never].
    #[arg(long, env = "FLOTILLA_EXPERIMENTAL_CORRUPT_CHECK_TIME")]
    pub experimental_corrupt_check_time: Option<String>,
    /// Before serving, compare this member's hash of the key history with
    /// its peers' and refuse to start if one with the same compaction
    /// differs (etcd's flag).
    #[arg(long, env = "FLOTILLA_EXPERIMENTAL_INITIAL_CORRUPT_CHECK")]
    #[serde(default)]
    pub experimental_initial_corrupt_check: bool,
    /// This member's certificate for clients (etcd's flag; PEM). With it
    /// the port speaks TLS only, to clients and peers alike.
    #[arg(long, env = "FLOTILLA_CERT_FILE", help_heading = "TLS")]
    pub cert_file: Option<PathBuf>,
    /// The key of --cert-file (PEM).
    #[arg(long, env = "FLOTILLA_KEY_FILE", help_heading = "TLS")]
    pub key_file: Option<PathBuf>,
    /// The CA that clients' certificates must chain to (PEM).
    #[arg(long, env = "FLOTILLA_TRUSTED_CA_FILE", help_heading = "TLS")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate from --trusted-ca-file.
    #[arg(long, env = "FLOTILLA_CLIENT_CERT_AUTH", help_heading = "TLS")]
    #[serde(default)]
    pub client_cert_auth: bool,
    /// This member's certificate toward its peers, as server and as
    /// client (PEM); the client port and the peer transport share one
    /// port, so it goes with --cert-file (it may be the same file).
    #[arg(long, env = "FLOTILLA_PEER_CERT_FILE", help_heading = "TLS")]
    pub peer_cert_file: Option<PathBuf>,
    /// The key of --peer-cert-file (PEM).
    #[arg(long, env = "FLOTILLA_PEER_KEY_FILE", help_heading = "TLS")]
    pub peer_key_file: Option<PathBuf>,
    /// The CA that peers' certificates must chain to (PEM).
    #[arg(long, env = "FLOTILLA_PEER_TRUSTED_CA_FILE", help_heading = "TLS")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Refuse peers (Raft messages, forwarded writes, joins) without a
    /// certificate from --peer-trusted-ca-file.
    #[arg(long, env = "FLOTILLA_PEER_CLIENT_CERT_AUTH", help_heading = "TLS")]
    #[serde(default)]
    pub peer_client_cert_auth: bool,
    /// bcrypt's cost for users' passwords (etcd's flag; 4 to 31)
    /// [default: 10].
    #[arg(long, env = "FLOTILLA_BCRYPT_COST", help_heading = "Auth")]
    pub bcrypt_cost: Option<u32>,
    /// How long a token from Authenticate is good for, in seconds (etcd's
    /// flag) [default: 300].
    #[arg(long, env = "FLOTILLA_AUTH_TOKEN_TTL", help_heading = "Auth")]
    pub auth_token_ttl: Option<u64>,
    /// How Authenticate's tokens are made (etcd's flag): `simple`, or
    /// `jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256[,ttl=5m]` with the
    /// same key pair on every member [default: simple].
    #[arg(long, env = "FLOTILLA_AUTH_TOKEN", help_heading = "Auth")]
    pub auth_token: Option<String>,
    /// Refuse peers whose certificate's common name is not this one.
    #[arg(long, env = "FLOTILLA_PEER_CERT_ALLOWED_CN", help_heading = "TLS")]
    pub peer_cert_allowed_cn: Option<String>,
    /// Stop, as on SIGTERM, when standard input closes: the supervisor
    /// that started this server holds its other end (`flotilla up`
    /// does), so the server dies with it, even when it is killed.
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub exit_with_parent: bool,
}

/// A server's settings, from flags, environment and file.
#[derive(Debug)]
pub struct Settings {
    pub cfg: ServerConfig,
    pub listen: String,
    pub metrics_listen: Option<String>,
}

/// Merges the flags (and environment) with the file, then checks the
/// result. One line per setting: the flag's value, else the file's, else
/// the default.
pub fn resolve(args: ServerArgs, file: ServerArgs) -> anyhow::Result<Settings> {
    let tls = super::tls::server_files(&args, &file)?;
    let auth = auth_config(&args, &file)?;
    let id = required(args.id.or(file.id), "id", "FLOTILLA_ID")?;
    let listen = required(args.listen.or(file.listen), "listen", "FLOTILLA_LISTEN")?;
    let listen = super::listen::parse(&listen, tls.is_some())?;
    let peers = required(args.peers.or(file.peers), "peers", "FLOTILLA_PEERS")?;
    let data_dir = required(
        args.data_dir.or(file.data_dir),
        "data-dir",
        "FLOTILLA_DATA_DIR",
    )?;
    let metrics_listen = args.metrics_listen.or(file.metrics_listen);
    let tick_ms = tick_ms(args.tick_ms.or(file.tick_ms))?;
    let snapshot_entries = args.snapshot_entries.or(file.snapshot_entries);
    let cluster_token = args.cluster_token.or(file.cluster_token);

    let join = args.join || file.join;
    let peers = if join {
        parse_join_peers(&peers)?
    } else {
        parse_peers(&peers)?
    };
    if id == 0 || (!join && !peers.contains_key(&NodeId(id))) {
        bail!("--id {id} is not one of the members in --peers");
    }
    if !join {
        check_listen_matches_peers(id, &listen.addr, &peers, cluster_token.is_some())?;
    }
    let max_request_bytes = max_request_bytes(args.max_request_bytes.or(file.max_request_bytes))?;
    let auto_compaction = auto_compaction(
        args.auto_compaction_mode.or(file.auto_compaction_mode),
        args.auto_compaction_retention
            .or(file.auto_compaction_retention),
    )?;
    let corrupt_check_every = corrupt_check_every(
        args.experimental_corrupt_check_time
            .or(file.experimental_corrupt_check_time),
    )?;
    let cfg = ServerConfig {
        id: NodeId(id),
        peers,
        join,
        data_dir,
        tick: Duration::from_millis(tick_ms),
        snapshot_entries: snapshot_entries.unwrap_or(100_000).max(1),
        cluster_token,
        strict_reconfig_check: args
            .strict_reconfig_check
            .or(file.strict_reconfig_check)
            .unwrap_or(true),
        max_request_bytes,
        auto_compaction,
        quota_backend_bytes: quota(args.quota_backend_bytes.or(file.quota_backend_bytes)),
        corrupt_check_every,
        initial_corrupt_check: args.experimental_initial_corrupt_check
            || file.experimental_initial_corrupt_check,
        tls,
        plaintext_too: listen.plaintext_too,
        auth,
    };
    Ok(Settings {
        cfg,
        listen: listen.addr,
        metrics_listen,
    })
}

/// `--tick-ms`, at least 1 [default: 10].
fn tick_ms(given: Option<u64>) -> anyhow::Result<u64> {
    match given.unwrap_or(10) {
        0 => bail!("--tick-ms must be at least 1"),
        ms => Ok(ms),
    }
}

/// `--max-request-bytes`, checked against etcd's bounds.
/// `--bcrypt-cost`, `--auth-token-ttl` and `--auth-token`, checked (a JWT
/// key's files read now, so a bad one stops the server naming it). A JWT
/// `ttl=` wins over `--auth-token-ttl`, as etcd reads each for its kind.
fn auth_config(args: &ServerArgs, file: &ServerArgs) -> anyhow::Result<AuthConfig> {
    let cost = args.bcrypt_cost.or(file.bcrypt_cost);
    let ttl_s = args.auth_token_ttl.or(file.auth_token_ttl);
    let token = args.auth_token.as_deref().or(file.auth_token.as_deref());
    let d = AuthConfig::default();
    let bcrypt_cost = cost.unwrap_or(d.bcrypt_cost);
    if !(4..=31).contains(&bcrypt_cost) {
        bail!("--bcrypt-cost {bcrypt_cost} is outside bcrypt's 4 to 31");
    }
    let token_ttl = match ttl_s {
        None => d.token_ttl,
        Some(0) => bail!("--auth-token-ttl must be at least 1 second"),
        Some(s) => Duration::from_secs(s),
    };
    let spec: TokenSpec = match token {
        None => TokenSpec::Simple,
        Some(text) => text.parse().map_err(anyhow::Error::msg)?,
    };
    let (tokens, token_ttl) = match spec {
        TokenSpec::Simple => (Tokens::Simple, token_ttl),
        TokenSpec::Jwt {
            public,
            private,
            method,
            ttl,
        } => {
            let key = JwtKey::load(&public, &private, &method)
                .map_err(|e| anyhow::anyhow!("--auth-token: {e}"))?;
            (
                Tokens::Jwt(std::sync::Arc::new(key)),
                ttl.unwrap_or(token_ttl),
            )
        }
    };
    Ok(AuthConfig {
        bcrypt_cost,
        token_ttl,
        tokens,
    })
}

fn max_request_bytes(bytes: Option<usize>) -> anyhow::Result<usize> {
    let bytes = bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES);
    if !(1..=MAX_REQUEST_BYTES_LIMIT).contains(&bytes) {
        bail!(
            "--max-request-bytes {bytes} is out of range: it must be 1 to \
             {MAX_REQUEST_BYTES_LIMIT}"
        );
    }
    Ok(bytes)
}

/// `--experimental-corrupt-check-time`: none or zero is never, as in etcd.
fn corrupt_check_every(every: Option<String>) -> anyhow::Result<Option<Duration>> {
    let Some(every) = every else {
        return Ok(None);
    };
    let every = crate::units::parse_duration(&every)
        .map_err(|e| anyhow::anyhow!("--experimental-corrupt-check-time: {e}"))?;
    Ok(Some(every).filter(|d| !d.is_zero()))
}

/// `--quota-backend-bytes`: none or 0 is the default, as in etcd.
fn quota(bytes: Option<u64>) -> u64 {
    match bytes {
        None | Some(0) => flotilla_etcd::core::DEFAULT_QUOTA_BYTES,
        Some(bytes) => bytes,
    }
}

/// The compaction policy of etcd's two flags: neither given is
/// Flotilla's default; a retention alone is periodic, as in etcd; a mode
/// alone is an error (etcd would take it as off, silently).
fn auto_compaction(mode: Option<String>, retention: Option<String>) -> anyhow::Result<Retention> {
    let parsed = match (mode, retention) {
        (None, None) => return Ok(DEFAULT_RETENTION),
        (Some(mode), None) => bail!(
            "--auto-compaction-mode {mode} needs --auto-compaction-retention (0 turns it off)"
        ),
        (mode, Some(retention)) => {
            Retention::parse(mode.as_deref().unwrap_or("periodic"), &retention)
        }
    };
    parsed.map_err(anyhow::Error::msg)
}

/// The port of a `host:port` address (`[v6]:port` too), if it has one.
fn port_of(addr: &str) -> Option<&str> {
    addr.rsplit_once(':')
        .map(|(_, port)| port)
        .filter(|p| !p.is_empty() && !p.contains(']'))
}

/// A founder's peers reach it at its own `--peers` entry, so `--listen`
/// must serve that port (the host may differ: `0.0.0.0` serves every
/// address), as etcd refuses advertised URLs that `--initial-cluster`
/// does not list. With a cluster token members may see one another at
/// other addresses (a proxy, NAT), so a mismatch is only a warning.
fn check_listen_matches_peers(
    id: u64,
    listen: &str,
    peers: &BTreeMap<NodeId, String>,
    token: bool,
) -> anyhow::Result<()> {
    let Some(own) = peers.get(&NodeId(id)) else {
        return Ok(());
    };
    if port_of(listen) == port_of(own) {
        return Ok(());
    }
    if token {
        tracing::warn!(
            listen,
            peers_entry = %own,
            "--listen serves another port than this member's --peers entry; with \
             --cluster-token, peers are expected to reach it through that address"
        );
        return Ok(());
    }
    bail!(
        "--listen {listen} does not serve this member's --peers entry {id}={own}: its peers \
         would send to {own}. Listen on that port, fix --peers, or, if members reach one \
         another at other addresses (a proxy, NAT), give every member the same --cluster-token"
    )
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

/// Parses `--peers` of `--join`: `ID=HOST:PORT` or `HOST:PORT` items
/// (only the addresses are used; they are numbered in order).
fn parse_join_peers(items: &[String]) -> anyhow::Result<BTreeMap<NodeId, String>> {
    let mut peers = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let addr = item.split_once('=').map_or(item.as_str(), |(_, a)| a);
        if addr.is_empty() {
            bail!("--peers item {item:?} has no address");
        }
        peers.insert(NodeId(i as u64 + 1), addr.to_string());
    }
    Ok(peers)
}

/// Logs to stderr with `tracing`; `RUST_LOG` picks the level (default
/// `info`).
pub fn init_logging() {
    init_logging_at("info");
}

/// Logs to stderr with `tracing` at `RUST_LOG`'s level, else `default`.
pub fn init_logging_at(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `flotilla server`.
pub fn main(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let file = config::load(args.config.as_deref())?;
    // Before the settings are checked, which may warn.
    init_logging();
    let args_exit_with_parent = args.exit_with_parent;
    let Settings {
        cfg,
        listen,
        metrics_listen,
    } = resolve(args, file)?;
    let member = cfg.id.get();
    let exit_with_parent = args_exit_with_parent;
    let rt = server_runtime()?;
    rt.block_on(async move {
        let grpc = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let metrics = match &metrics_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for metrics"))?,
            ),
            None => None,
        };
        tracing::info!(
            member,
            listen = %listen,
            data_dir = %cfg.data_dir.display(),
            "serving"
        );
        let shutdown = async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = stdin_closed(exit_with_parent) => {
                    tracing::warn!(member, "standard input closed: the parent is gone; stopping");
                }
            }
        };
        run(cfg, Listeners { grpc, metrics }, shutdown).await?;
        tracing::info!(member, "stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// With `enabled`, resolves once standard input reaches its end or
/// fails (the parent that held it is gone); otherwise never. The read
/// blocks a thread of its own, not one of the runtime's blocking pool,
/// which the runtime would wait for when it shuts down.
pub async fn stdin_closed(enabled: bool) {
    if !enabled {
        return std::future::pending().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 256];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> ServerArgs {
        config::parse(std::path::Path::new("s.toml"), text).unwrap()
    }

    const FULL: &str = r#"
id = 2
listen = "127.0.0.1:2002"
peers = ["1=127.0.0.1:2001", "2=127.0.0.1:2002"]
data-dir = "/var/lib/f"
metrics-listen = "127.0.0.1:3002"
tick-ms = 7
snapshot-entries = 500
cluster-token = "t"
max-request-bytes = 2000000
"#;

    #[test]
    fn a_file_alone_gives_every_setting() {
        let s = resolve(ServerArgs::default(), file(FULL)).unwrap();
        assert_eq!(s.cfg.id, NodeId(2));
        assert_eq!(s.listen, "127.0.0.1:2002");
        assert_eq!(s.cfg.peers.len(), 2);
        assert_eq!(s.cfg.data_dir, PathBuf::from("/var/lib/f"));
        assert_eq!(s.metrics_listen.as_deref(), Some("127.0.0.1:3002"));
        assert_eq!(s.cfg.tick, Duration::from_millis(7));
        assert_eq!(s.cfg.snapshot_entries, 500);
        assert_eq!(s.cfg.cluster_token.as_deref(), Some("t"));
        assert_eq!(s.cfg.max_request_bytes, 2_000_000);
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let args = ServerArgs {
            id: Some(1),
            tick_ms: Some(3),
            ..ServerArgs::default()
        };
        let s = resolve(args, file(FULL)).unwrap();
        assert_eq!(s.cfg.id, NodeId(1), "flag");
        assert_eq!(s.cfg.tick, Duration::from_millis(3), "flag");
        assert_eq!(s.cfg.snapshot_entries, 500, "file");
        let minimal = "id = 1\nlisten = \"a:1\"\npeers = [\"1=a:1\"]\ndata-dir = \"d\"\n";
        let s = resolve(ServerArgs::default(), file(minimal)).unwrap();
        assert_eq!(s.cfg.tick, Duration::from_millis(10), "default");
        assert_eq!(s.cfg.snapshot_entries, 100_000, "default");
        assert_eq!(s.cfg.max_request_bytes, 1536 * 1024, "etcd's default");
        assert_eq!(s.cfg.auto_compaction, DEFAULT_RETENTION);
        assert_eq!(s.metrics_listen, None);
    }

    #[test]
    fn auto_compaction_takes_etcd_s_flags() {
        let with = |mode: Option<&str>, retention: Option<&str>| {
            let args = ServerArgs {
                auto_compaction_mode: mode.map(String::from),
                auto_compaction_retention: retention.map(String::from),
                ..ServerArgs::default()
            };
            resolve(args, file(FULL)).map(|s| s.cfg.auto_compaction)
        };
        let r = with(Some("revision"), Some("5")).unwrap();
        assert_eq!(r, Retention::Revisions(5));
        let hours = with(None, Some("2")).unwrap();
        assert_eq!(
            hours,
            Retention::Period(Duration::from_secs(7200)),
            "etcd: periodic"
        );
        assert_eq!(with(Some("revision"), Some("0")).unwrap(), Retention::Off);
        let e = with(Some("revision"), None).unwrap_err().to_string();
        assert!(e.contains("needs --auto-compaction-retention"), "{e}");
        let e = with(Some("yearly"), Some("1")).unwrap_err().to_string();
        assert!(e.contains("periodic or revision"), "{e}");
    }

    #[test]
    fn auth_flags_are_etcd_s_and_checked() {
        let with = |cost: Option<u32>, ttl: Option<u64>| {
            let args = ServerArgs {
                bcrypt_cost: cost,
                auth_token_ttl: ttl,
                ..ServerArgs::default()
            };
            resolve(args, file(FULL)).map(|s| s.cfg.auth)
        };
        assert_eq!(with(None, None).unwrap(), AuthConfig::default());
        let set = with(Some(4), Some(60)).unwrap();
        assert_eq!((set.bcrypt_cost, set.token_ttl.as_secs()), (4, 60));
        let e = with(Some(3), None).unwrap_err().to_string();
        assert!(e.contains("--bcrypt-cost 3"), "{e}");
        let e = with(Some(32), None).unwrap_err().to_string();
        assert!(e.contains("--bcrypt-cost 32"), "{e}");
        let e = with(None, Some(0)).unwrap_err().to_string();
        assert!(e.contains("--auth-token-ttl"), "{e}");

        let token = |spec: &str| {
            let args = ServerArgs {
                auth_token: Some(spec.to_string()),
                auth_token_ttl: Some(60),
                ..ServerArgs::default()
            };
            resolve(args, file(FULL)).map(|s| s.cfg.auth)
        };
        let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/jwt");
        let (public, private) = (keys.join("ec256.pub.pem"), keys.join("ec256.pem"));
        let jwt = format!(
            "jwt,pub-key={},priv-key={},sign-method=ES256",
            public.display(),
            private.display()
        );
        let set = token(&jwt).unwrap();
        assert!(matches!(set.tokens, Tokens::Jwt(_)));
        assert_eq!(set.token_ttl, Duration::from_secs(60), "--auth-token-ttl");
        let set = token(&format!("{jwt},ttl=10m")).unwrap();
        assert_eq!(set.token_ttl, Duration::from_secs(600), "ttl= wins");
        assert_eq!(token("simple").unwrap().tokens, Tokens::Simple);
        let e = token(&jwt.replace("ES256", "RS256"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--auth-token: ") && e.contains("not an RSA key"),
            "{e}"
        );
        let e = token("jwt").unwrap_err().to_string();
        assert!(e.contains("needs pub-key="), "{e}");
    }

    #[test]
    fn corruption_checks_take_etcd_s_flags() {
        let with = |every: Option<&str>, initial: bool| {
            let args = ServerArgs {
                experimental_corrupt_check_time: every.map(String::from),
                experimental_initial_corrupt_check: initial,
                ..ServerArgs::default()
            };
            resolve(args, file(FULL))
                .map(|s| (s.cfg.corrupt_check_every, s.cfg.initial_corrupt_check))
        };
        assert_eq!(with(None, false).unwrap(), (None, false));
        assert_eq!(with(Some("0s"), true).unwrap(), (None, true));
        assert_eq!(
            with(Some("250ms"), false).unwrap(),
            (Some(Duration::from_millis(250)), false)
        );
        let e = with(Some("often"), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--experimental-corrupt-check-time: `often` is not a duration (try 500ms, 10s or 2m)"
        );
        let in_file = format!("{FULL}experimental-corrupt-check-time = \"1m\"\n");
        let s = resolve(ServerArgs::default(), file(&in_file)).unwrap();
        assert_eq!(s.cfg.corrupt_check_every, Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_missing_required_setting_names_its_sources() {
        let e = resolve(ServerArgs::default(), file("id = 1\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--listen is required (the flag, FLOTILLA_LISTEN, or `listen` in the --config file)"
        );
    }

    #[test]
    fn settings_from_the_file_are_checked_like_flags() {
        let text = "id = 3\nlisten = \"a:1\"\npeers = [\"1=a:1\"]\ndata-dir = \"d\"\n";
        let e = resolve(ServerArgs::default(), file(text)).unwrap_err();
        assert_eq!(e.to_string(), "--id 3 is not one of the members in --peers");
    }

    #[test]
    fn a_request_limit_out_of_range_is_refused() {
        for bytes in [0, (32 << 20) + 1] {
            let args = ServerArgs {
                max_request_bytes: Some(bytes),
                ..ServerArgs::default()
            };
            let e = resolve(args, file(FULL)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("--max-request-bytes {bytes} is out of range: it must be 1 to 33554432")
            );
        }
    }
}
