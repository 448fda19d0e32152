//! The cluster commands: `flotilla server`, `flotilla up`, and the clients
//! `flotilla kv`, `flotilla lease`, `flotilla lock`, `flotilla elect`,
//! `flotilla watch`, `flotilla status`, `flotilla member`, `flotilla health`;
//! and the sharded store's `flotilla shard`.
//!
//! Client commands default to the cluster that `flotilla up` started in
//! this directory: `up` writes its endpoints to `flotilla-data/endpoints`;
//! without that file the default is `up`'s default ports.

pub mod config;
pub mod health;
pub mod kv;
pub mod kv_print;
pub mod lease;
pub mod listen;
pub mod maintenance;
pub mod member;
pub mod output;
pub mod recipes;
pub mod server;
pub mod shard;
pub mod shard_up;
pub mod snapshot;
pub mod status;
pub mod tls;
pub mod txn;
pub mod up;
pub mod watch;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flotilla_client::{Client, Credentials};

/// `--user NAME:PASSWORD`, or `--user NAME` with `--password` (then
/// `NAME` is all of `--user`, colons too, as etcdctl reads it), or `--user
/// NAME` alone, when `ask` gets the password (the terminal's prompt, as
/// etcdctl's): the credentials, checked.
fn credentials(
    user: Option<&str>,
    password: Option<&str>,
    ask: impl FnOnce(&str) -> std::io::Result<String>,
) -> anyhow::Result<Option<Credentials>> {
    let Some(user) = user else {
        if password.is_some() {
            anyhow::bail!("--password needs --user NAME");
        }
        return Ok(None);
    };
    let (name, password) = match (password, user.split_once(':')) {
        (Some(p), _) => (user, p.to_string()),
        (None, Some((name, p))) => (name, p.to_string()),
        (None, None) if !user.is_empty() => match ask(user) {
            Ok(p) => (user, p),
            Err(e) => anyhow::bail!(
                "--user {user} has no password and none could be asked on a terminal ({e}): \
                 give --user {user}:PASSWORD, --password or FLOTILLA_PASSWORD"
            ),
        },
        (None, None) => ("", String::new()),
    };
    if name.is_empty() {
        anyhow::bail!("--user needs a name (NAME[:PASSWORD])");
    }
    Ok(Some(Credentials::new(name, &password)))
}

/// Asks for `user`'s password on the terminal (`/dev/tty`), without echo.
fn ask_on_terminal(user: &str) -> std::io::Result<String> {
    rpassword::prompt_password(format!("Password for {user}: "))
}

/// `up`'s default data directory.
pub const DEFAULT_DATA_DIR: &str = "flotilla-data";
/// `up`'s first port.
pub const DEFAULT_BASE_PORT: u16 = 12379;

/// Where client commands connect.
#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// Comma-separated `host:port` list (default: the cluster `flotilla up`
    /// started here, from ./flotilla-data/endpoints, else
    /// 127.0.0.1:12379,127.0.0.1:12380,127.0.0.1:12381).
    #[arg(long, global = true, env = "FLOTILLA_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Per-request timeout, in seconds.
    #[arg(long, global = true, default_value_t = 5)]
    pub timeout_secs: u64,
    /// TLS toward the endpoints.
    #[command(flatten)]
    pub tls: tls::ClientTlsArgs,
    /// Authenticates as this user on a cluster with auth on (etcdctl's
    /// `--user`): `NAME:PASSWORD`, or `NAME` with `--password`.
    #[arg(
        long,
        global = true,
        env = "FLOTILLA_USER",
        value_name = "NAME[:PASSWORD]"
    )]
    pub user: Option<String>,
    /// The password of `--user NAME` (etcdctl's `--password`).
    #[arg(long, global = true, env = "FLOTILLA_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

impl EndpointArgs {
    /// The endpoints to use.
    pub fn resolve(&self) -> Vec<String> {
        if !self.endpoints.is_empty() {
            return self.endpoints.clone();
        }
        default_endpoints()
    }

    /// A client for the endpoints (its connections belong to `rt`).
    pub fn client(&self, rt: &tokio::runtime::Runtime) -> anyhow::Result<Client> {
        let _guard = rt.enter();
        let endpoints = self.resolve();
        let tls = self.tls(&endpoints)?;
        let client = Client::with_tls(&endpoints, Duration::from_secs(self.timeout_secs), tls)
            .context("creating the client")?;
        Ok(match self.credentials()? {
            Some(c) => client.with_credentials(c),
            None => client,
        })
    }

    /// Whom `--user` and `--password` name, if anyone.
    pub fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        credentials(
            self.user.as_deref(),
            self.password.as_deref(),
            ask_on_terminal,
        )
    }

    /// The TLS toward `endpoints` (see [`tls::ClientTlsArgs::resolve`]).
    pub fn tls(
        &self,
        endpoints: &[String],
    ) -> anyhow::Result<Option<std::sync::Arc<flotilla_tls::ClientTls>>> {
        self.tls
            .resolve(endpoints, &Path::new(DEFAULT_DATA_DIR).join("tls"))
    }
}

/// The endpoints of the cluster `flotilla up` started here (from
/// `./flotilla-data/endpoints`), else `up`'s default ports.
pub fn default_endpoints() -> Vec<String> {
    let file = Path::new(DEFAULT_DATA_DIR).join("endpoints");
    if let Ok(s) = std::fs::read_to_string(file) {
        let list: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        if !list.is_empty() {
            return list;
        }
    }
    (0..3)
        .map(|i| format!("127.0.0.1:{}", DEFAULT_BASE_PORT + i))
        .collect()
}

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The runtime of a server process (`flotilla server`, the no-op bench
/// server): multi-threaded, with tokio's LIFO slot turned off where the
/// build allows it (`--cfg tokio_unstable`, set in `.cargo/config.toml`).
///
/// Why: the Raft task answers a whole batch of applied writes at once; with
/// the LIFO slot each woken request task ran next, its response then woke
/// its connection's task into the slot, and that task flushed the one
/// response with a `writev` of its own (~0.9 per write). From the run
/// queue, the connection tasks run after the batch's request tasks and
/// flush several responses each. Measured (3 members on 2 cores, fresh
/// cluster each, pairs A/B): linearizable reads at 64 clients 25.1k–27.6k/s
/// → 33.3k–36.1k/s at 45–50 → 32–36 µs of CPU per read; writes at 64
/// clients 43–48 against 50–52 µs of the leader's CPU per write.
pub fn server_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_terminal(_: &str) -> std::io::Result<String> {
        Err(std::io::Error::other("No such device or address"))
    }

    fn named(user: Option<&str>, password: Option<&str>) -> Result<Option<String>, String> {
        credentials(user, password, no_terminal)
            .map(|c| c.map(|c| c.user))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_user_without_a_password_is_asked_for_one() {
        let mut asked = None;
        let c = credentials(Some("alice"), None, |user| {
            asked = Some(user.to_string());
            Ok("secret".to_string())
        })
        .unwrap()
        .unwrap();
        assert_eq!(asked.as_deref(), Some("alice"));
        assert_eq!(c.user, "alice");
        assert!(!format!("{c:?}").contains("secret"));
        let never = |_: &str| -> std::io::Result<String> { panic!("asked needlessly") };
        credentials(Some("alice:pw"), None, never).unwrap();
        credentials(Some("alice"), Some("pw"), never).unwrap();
        credentials(Some(""), None, never).unwrap_err();
    }

    #[test]
    fn user_and_password_are_read_as_etcdctl_reads_them() {
        assert_eq!(named(None, None), Ok(None));
        assert_eq!(named(Some("alice:pw"), None), Ok(Some("alice".into())));
        assert_eq!(named(Some("a:b:c"), None), Ok(Some("a".into())));
        assert_eq!(named(Some("a:b"), Some("pw")), Ok(Some("a:b".into())));
        assert_eq!(named(Some("alice"), Some("")), Ok(Some("alice".into())));
        let no_password = named(Some("alice"), None).unwrap_err();
        assert!(
            no_password.contains("--user alice has no password")
                && no_password.contains("No such device or address"),
            "{no_password}"
        );
        let no_name = named(Some(":pw"), None).unwrap_err();
        assert!(no_name.contains("needs a name"), "{no_name}");
        assert!(named(Some(""), Some("pw")).is_err());
        let alone = named(None, Some("pw")).unwrap_err();
        assert!(alone.contains("--password needs --user"), "{alone}");
    }
}
