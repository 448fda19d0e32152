//! `flotilla lock` and `flotilla elect`: etcd's lock and election
//! services, holding a lease of their own that they keep alive.
//!
//! - `lock NAME [-- CMD ARGS...]` waits for the lock, then runs CMD
//!   while holding it (with `FLOTILLA_LOCK_KEY` and `FLOTILLA_LOCK_REV`,
//!   the fencing token, in its environment) and releases it when CMD
//!   ends, exiting with CMD's status; without CMD it prints the lock key
//!   and holds the lock until interrupted.
//! - `elect NAME PROPOSAL` campaigns, prints the leader key once it
//!   leads, and resigns when interrupted; `elect NAME --listen` prints
//!   each proclaimed value as the election's leaders make them.
//!
//! The lease is renewed every third of its TTL; if a renewal finds it
//! gone (the member lost contact for longer than the TTL), the lock or
//! leadership is lost too: the command is stopped (SIGTERM) and this
//! exits 1. Interrupted (Ctrl-C, SIGTERM), it revokes the lease, which
//! releases what it held at once.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use flotilla_client::{Client, Conn};
use flotilla_proto::v3electionpb as epb;
use flotilla_proto::v3electionpb::election_client::ElectionClient;
use flotilla_proto::v3lockpb as lpb;
use flotilla_proto::v3lockpb::lock_client::LockClient;
use tokio::sync::watch;

use super::{EndpointArgs, runtime, shutdown_signal};

/// `flotilla lock` arguments.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The lock's name.
    name: String,
    /// The command to run while holding the lock (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
    /// The TTL of the session lease, in seconds: how long the lock
    /// outlives this process if it dies.
    #[arg(long, default_value_t = 10)]
    ttl: i64,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

/// `flotilla elect` arguments.
#[derive(Debug, Args)]
pub struct ElectArgs {
    /// The election's name.
    name: String,
    /// The value to proclaim once leading (not with `--listen`).
    #[arg(required_unless_present = "listen")]
    proposal: Option<String>,
    /// Print each leader's values instead of campaigning.
    #[arg(long, short = 'l')]
    listen: bool,
    /// The TTL of the session lease, in seconds.
    #[arg(long, default_value_t = 10)]
    ttl: i64,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

/// A lease kept alive in the background; `lost` turns true if it ends.
struct Session {
    client: Arc<Client>,
    lease: i64,
    lost: watch::Receiver<bool>,
}

impl Session {
    async fn start(client: Arc<Client>, ttl: i64) -> anyhow::Result<Session> {
        let lease = client
            .lease_grant(ttl, 0)
            .await
            .context("granting the session lease")?;
        let (tx, lost) = watch::channel(false);
        let every = Duration::from_millis(u64::try_from(lease.ttl).unwrap_or(1) * 1000 / 3);
        let (c, id) = (Arc::clone(&client), lease.id);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every.max(Duration::from_millis(300))).await;
                // A failed call is retried; only the lease's end is final.
                if let Ok(0) = c.lease_keep_alive_once(id).await {
                    let _ = tx.send(true);
                    return;
                }
            }
        });
        Ok(Session {
            client,
            lease: lease.id,
            lost,
        })
    }

    /// Revokes the lease: what it held is released at once.
    async fn end(&self) {
        if let Err(e) = self.client.lease_revoke(self.lease).await {
            eprintln!("flotilla: revoking the session lease: {e}");
        }
    }
}

/// Calls `f` on each endpoint's channel in turn until one answers (the
/// call is safe to repeat: the same lease finds its own key again).
async fn on_any<T, F, Fut>(client: &Client, f: F) -> anyhow::Result<T>
where
    F: Fn(Conn) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut last = None;
    for i in 0..client.endpoints().len() {
        match f(client.conn(i).await?).await {
            Ok(t) => return Ok(t),
            Err(s) if s.code() == tonic::Code::Unavailable => last = Some(s),
            Err(s) => bail!("{}", s.message()),
        }
    }
    bail!(
        "no endpoint answered: {}",
        last.map(|s| s.message().to_string()).unwrap_or_default()
    )
}

/// Runs `flotilla lock`.
pub fn lock_main(args: LockArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let client = Arc::new(args.endpoints.client(&rt)?);
    rt.block_on(async {
        let session = Session::start(Arc::clone(&client), args.ttl).await?;
        let name = Bytes::from(args.name.clone());
        let lease = session.lease;
        let held = tokio::select! {
            held = on_any(&client, |ch| {
                let name = name.clone();
                async move { LockClient::new(ch).lock(lpb::LockRequest { name, lease }).await }
            }) => held?.into_inner(),
            _ = shutdown_signal() => {
                session.end().await;
                return Ok(ExitCode::FAILURE);
            }
        };
        let key = String::from_utf8_lossy(&held.key).into_owned();
        // The fencing token: the lock key's create revision.
        let rev = client
            .range(flotilla_proto::etcdserverpb::RangeRequest {
                key: held.key.clone(),
                ..Default::default()
            })
            .await
            .context("reading the lock key")?
            .kvs
            .first()
            .map_or(0, |kv| kv.create_revision);
        let code = if args.command.is_empty() {
            println!("{key}");
            hold(&session).await
        } else {
            run_holding(&session, &args.command, &key, rev).await?
        };
        session.end().await;
        Ok(code)
    })
}

/// Waits for an interrupt (success) or the session's loss (failure).
async fn hold(session: &Session) -> ExitCode {
    let mut lost = session.lost.clone();
    tokio::select! {
        _ = shutdown_signal() => ExitCode::SUCCESS,
        _ = lost.wait_for(|l| *l) => {
            eprintln!("flotilla: the session lease expired: the lock or leadership is lost");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` while the lock is held; stops it if the lock is lost.
async fn run_holding(
    session: &Session,
    command: &[String],
    key: &str,
    rev: i64,
) -> anyhow::Result<ExitCode> {
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("FLOTILLA_LOCK_KEY", key)
        .env("FLOTILLA_LOCK_REV", rev.to_string())
        .spawn()
        .with_context(|| format!("starting {:?}", command[0]))?;
    let mut lost = session.lost.clone();
    tokio::select! {
        status = child.wait() => {
            let status = status.context("waiting for the command")?;
            Ok(ExitCode::from(status.code().map_or(1, |c| c.clamp(0, 255) as u8)))
        }
        _ = lost.wait_for(|l| *l) => {
            eprintln!("flotilla: the session lease expired: the lock is lost; stopping the command");
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
            }
            let _ = child.wait().await;
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Runs `flotilla elect`.
pub fn elect_main(args: ElectArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let client = Arc::new(args.endpoints.client(&rt)?);
    let name = Bytes::from(args.name.clone());
    rt.block_on(async {
        if args.listen {
            return observe(&client, name).await;
        }
        let session = Session::start(Arc::clone(&client), args.ttl).await?;
        let value = Bytes::from(args.proposal.unwrap_or_default());
        let lease = session.lease;
        let led = tokio::select! {
            led = on_any(&client, |ch| {
                let (name, value) = (name.clone(), value.clone());
                async move {
                    ElectionClient::new(ch).campaign(epb::CampaignRequest { name, lease, value }).await
                }
            }) => led?.into_inner(),
            _ = shutdown_signal() => {
                session.end().await;
                return Ok(ExitCode::FAILURE);
            }
        };
        if let Some(leader) = &led.leader {
            println!("{}", String::from_utf8_lossy(&leader.key));
        }
        let code = hold(&session).await;
        session.end().await;
        Ok(code)
    })
}

/// Prints each value the election's leaders proclaim, until interrupted.
async fn observe(client: &Client, name: Bytes) -> anyhow::Result<ExitCode> {
    let mut stream = on_any(client, |ch| {
        let name = name.clone();
        async move {
            ElectionClient::new(ch)
                .observe(epb::LeaderRequest { name })
                .await
        }
    })
    .await?
    .into_inner();
    loop {
        let next = tokio::select! {
            next = stream.message() => next.context("observing the election")?,
            _ = shutdown_signal() => return Ok(ExitCode::SUCCESS),
        };
        let Some(r) = next else {
            bail!("the member ended the observation");
        };
        if let Some(kv) = r.kv {
            println!("{}", String::from_utf8_lossy(&kv.value));
        }
    }
}
