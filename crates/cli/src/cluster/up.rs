//! `flotilla up`: a whole cluster on loopback in one command. It starts
//! `--nodes` copies of this binary as `flotilla server` child processes on
//! consecutive ports, with their data under `./flotilla-data/nodeN` and
//! their logs in `./flotilla-data/nodeN.log`, waits for a leader, prints
//! the endpoints and stays in the foreground. On Ctrl-C, SIGTERM or
//! SIGHUP it stops its children (SIGTERM by PID, then SIGKILL after a
//! grace period) and exits 0; if a child dies on its own, it stops the
//! others and exits with 1. Running it again in the same directory
//! restarts the same cluster with its data. With `--groups` it starts the
//! sharded store's servers instead ([`super::shard_up`]).
//!
//! Invariant: no member outlives `up`. The signals are taken before the
//! first member starts, so one that arrives at any moment (while members
//! start, while `up` waits for a leader) stops them. A death that no
//! handler sees (SIGKILL, a panic that aborts) closes the members' stdin,
//! whose other end only `up` holds, and a member started with
//! `--exit-with-parent` stops when its stdin closes. (Linux's
//! `PR_SET_PDEATHSIG` would need an `unsafe` call, which the workspace
//! forbids, and fires when the spawning *thread* ends, not the process.)

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use flotilla_client::Client;
use flotilla_tls::{ClientTls, ClientTlsFiles};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{DEFAULT_BASE_PORT, DEFAULT_DATA_DIR, runtime};

/// `flotilla up` arguments; each may also come from the `--config` file,
/// read into this same struct (a flag beats the file, which beats the
/// default).
#[derive(Debug, Default, Args, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpArgs {
    /// A TOML file of settings, keyed as the flags without dashes, e.g.
    /// `nodes = 5`, `base-port = 22379`. (The members, as `flotilla
    /// server`, read FLOTILLA_CONFIG's file, if set, for their other
    /// settings.)
    #[arg(long, env = "FLOTILLA_UP_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// How many members (1 to 9) [default: 3].
    #[arg(long)]
    pub nodes: Option<u16>,
    /// Where the members keep their data and logs [default: flotilla-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The first member's port on 127.0.0.1; the others follow
    /// [default: 12379].
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Seconds to wait for a leader before giving up [default: 30].
    #[arg(long)]
    pub wait_secs: Option<u64>,
    /// Serve TLS with mutual authentication, clients and peers: a
    /// throwaway CA, member and client certificates in <data-dir>/tls
    /// (made on the first run, kept on the next).
    #[arg(long)]
    #[serde(default)]
    pub tls: bool,
    /// Start a sharded store instead (`flotilla shard`): every member
    /// hosts the shard controller and this many data groups (1 to 64),
    /// which join the controller on the store's first start.
    #[arg(long)]
    pub groups: Option<u64>,
}

/// `up`'s settings, resolved.
#[derive(Debug, PartialEq, Eq)]
pub struct UpSettings {
    pub nodes: u16,
    pub data_dir: PathBuf,
    pub base_port: u16,
    pub wait_secs: u64,
    pub tls: bool,
    pub groups: Option<u64>,
}

/// The flag's value, else the file's, else the default.
pub fn resolve(args: UpArgs, file: UpArgs) -> UpSettings {
    UpSettings {
        nodes: args.nodes.or(file.nodes).unwrap_or(3),
        data_dir: (args.data_dir.or(file.data_dir)).unwrap_or(DEFAULT_DATA_DIR.into()),
        base_port: args
            .base_port
            .or(file.base_port)
            .unwrap_or(DEFAULT_BASE_PORT),
        wait_secs: args.wait_secs.or(file.wait_secs).unwrap_or(30),
        tls: args.tls || file.tls,
        groups: args.groups.or(file.groups),
    }
}

pub(super) struct Member {
    pub(super) id: u16,
    pub(super) child: Child,
    pub(super) log: PathBuf,
}

/// Runs `flotilla up`.
pub fn main(args: UpArgs) -> anyhow::Result<ExitCode> {
    let file = super::config::load(args.config.as_deref())?;
    let args = resolve(args, file);
    if !(1..=9).contains(&args.nodes) {
        bail!("--nodes must be between 1 and 9");
    }
    let last = args
        .base_port
        .checked_add(args.nodes - 1)
        .context("--base-port too high")?;
    let addrs: Vec<String> = (args.base_port..=last)
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    // The sharded store's servers have no metrics port.
    let metric_ports: Vec<String> = match args.groups {
        Some(_) => Vec::new(),
        None => addrs.iter().map(|e| metrics_addr(e)).collect(),
    };
    for e in addrs.iter().chain(&metric_ports) {
        std::net::TcpListener::bind(e)
            .with_context(|| format!("port {e} is not free (is a cluster already running?)"))?;
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    if let Some(groups) = args.groups {
        return super::shard_up::main(&args, &addrs, groups);
    }
    let tls = up_tls(&args)?;
    let endpoints: Vec<String> = match tls {
        Some(_) => addrs.iter().map(|a| format!("https://{a}")).collect(),
        None => addrs.clone(),
    };
    let rt = runtime()?;
    // Before any member starts: from here a stop signal is only recorded,
    // and `supervise` answers it by stopping the members.
    let mut stop = {
        let _in_runtime = rt.enter();
        StopSignals::take()?
    };
    let mut members = spawn_all(&args, &addrs)?;
    let outcome = std::fs::write(args.data_dir.join("endpoints"), endpoints.join("\n") + "\n")
        .context("writing the endpoints file")
        .and_then(|()| rt.block_on(supervise(&args, &endpoints, tls, &mut members, &mut stop)));
    stop_all(&mut members);
    outcome
}

/// The signals on which `up` stops its members and exits: SIGINT
/// (Ctrl-C), SIGTERM and SIGHUP (its terminal closed).
pub(super) struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Replaces the signals' default action (exit at once, leaving the
    /// members running) with a record that [`StopSignals::received`]
    /// reports, whenever it is polled.
    pub(super) fn take() -> anyhow::Result<StopSignals> {
        let take = |kind: SignalKind| signal(kind).context("handling the stop signals");
        Ok(StopSignals {
            int: take(SignalKind::interrupt())?,
            term: take(SignalKind::terminate())?,
            hup: take(SignalKind::hangup())?,
        })
    }

    /// Resolves once one of the signals has arrived (at once if one
    /// arrived before).
    pub(super) async fn received(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

fn spawn_all(args: &UpSettings, endpoints: &[String]) -> anyhow::Result<Vec<Member>> {
    let exe = std::env::current_exe().context("finding the flotilla binary")?;
    let peers: Vec<String> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{}={e}", i + 1))
        .collect();
    let mut members = Vec::new();
    for (i, e) in endpoints.iter().enumerate() {
        let id = i as u16 + 1;
        let mut cmd = Command::new(&exe);
        cmd.arg("server")
            .args(["--id", &id.to_string(), "--listen", e])
            .args(["--peers", &peers.join(",")])
            .args(["--metrics-listen", &metrics_addr(e)])
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("node{id}")))
            .args(match args.tls {
                true => super::tls::member_flags(&tls_dir(args), &format!("node{id}")),
                false => Vec::new(),
            });
        spawn_member(args, id, &mut cmd, &mut members)?;
    }
    Ok(members)
}

/// Starts member `id` with `cmd`, logging to `<data-dir>/node<id>.log`
/// and dying with `up` (`--exit-with-parent`); on a failure, stops the
/// members started before it.
pub(super) fn spawn_member(
    args: &UpSettings,
    id: u16,
    cmd: &mut Command,
    members: &mut Vec<Member>,
) -> anyhow::Result<()> {
    let log = args.data_dir.join(format!("node{id}.log"));
    let spawned = open_log(&log).and_then(|out| {
        let err = out.try_clone().context("opening the log")?;
        // `up` holds the pipe's other end (close-on-exec, so no other
        // member inherits it): it closes when `up` dies, however.
        cmd.arg("--exit-with-parent")
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting a member process")
    });
    match spawned {
        Ok(child) => {
            members.push(Member { id, child, log });
            Ok(())
        }
        Err(e) => {
            stop_all(members);
            Err(e)
        }
    }
}

/// Where `up --tls` keeps its certificates.
pub(super) fn tls_dir(args: &UpSettings) -> PathBuf {
    args.data_dir.join("tls")
}

/// With `--tls`: the certificates (made unless a CA is there from an
/// earlier run) and `up`'s own client TLS.
pub(super) fn up_tls(args: &UpSettings) -> anyhow::Result<Option<Arc<ClientTls>>> {
    if !args.tls {
        return Ok(None);
    }
    let dir = tls_dir(args);
    if !dir.join("ca.pem").exists() {
        let names: Vec<String> = (1..=args.nodes).map(|i| format!("node{i}")).collect();
        flotilla_tls::generate::write_set(&dir, &names, &[], "client")?;
    }
    let files = ClientTlsFiles {
        ca: dir.join("ca.pem"),
        cert: Some(dir.join("client.pem")),
        key: Some(dir.join("client-key.pem")),
    };
    Ok(Some(Arc::new(ClientTls::new(&files)?)))
}

/// What a client needs to reach a `--tls` cluster, as flags.
pub(super) fn client_flags(args: &UpSettings) -> String {
    let dir = tls_dir(args);
    format!(
        "--cacert {} --cert {} --key {}",
        dir.join("ca.pem").display(),
        dir.join("client.pem").display(),
        dir.join("client-key.pem").display()
    )
}

/// A member's metrics address: its port plus 1000.
pub(super) fn metrics_addr(endpoint: &str) -> String {
    let port: u16 = endpoint
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0);
    format!("127.0.0.1:{}", port.wrapping_add(1000))
}

pub(super) fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Waits for a leader, reports the cluster, then watches the members
/// until a stop signal (`Ok`) or a member's death (an error).
async fn supervise(
    args: &UpSettings,
    endpoints: &[String],
    tls: Option<Arc<ClientTls>>,
    members: &mut [Member],
    stop: &mut StopSignals,
) -> anyhow::Result<ExitCode> {
    let client = Client::with_tls(endpoints, Duration::from_secs(1), tls)?;
    let leader = tokio::select! {
        leader = wait_leader(args, &client, members) => leader?,
        () = stop.received() => {
            eprintln!("flotilla: stopping {} members before a leader was elected", members.len());
            return Ok(ExitCode::SUCCESS);
        }
    };
    println!(
        "flotilla: {} members up, leader is member {leader}",
        members.len()
    );
    println!("endpoints: {}", endpoints.join(","));
    let metrics: Vec<String> = endpoints
        .iter()
        .map(|e| format!("http://{}/metrics", metrics_addr(e)))
        .collect();
    println!("metrics: {}", metrics.join(" "));
    // Every member serves the console; the first one's is as good as any
    // (it asks the others), and its metrics port is plain HTTP even with
    // --tls, so a browser opens it without the cluster's CA.
    if let Some(first) = endpoints.first() {
        println!(
            "console: http://{}/ (every member serves one, on its metrics port)",
            metrics_addr(first)
        );
    }
    println!("data and logs: {}", args.data_dir.display());
    if args.tls {
        println!("tls: clients use {}", client_flags(args));
        println!("     (flotilla's commands find them here without flags; etcdctl needs them)");
    }
    println!("try: flotilla kv put hello world; flotilla kv get hello; flotilla status");
    println!("press Ctrl-C to stop");
    watch_members(members, stop).await
}

/// Watches the members until a stop signal (`Ok`) or a member's death
/// (an error).
pub(super) async fn watch_members(
    members: &mut [Member],
    stop: &mut StopSignals,
) -> anyhow::Result<ExitCode> {
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = stop.received() => break,
            _ = ticker.tick() => check_alive(members)?,
        }
    }
    eprintln!("flotilla: stopping {} members", members.len());
    Ok(ExitCode::SUCCESS)
}

/// Polls the members until one names a leader, for at most
/// `--wait-secs`; fails if a member exits meanwhile.
async fn wait_leader(
    args: &UpSettings,
    client: &Client,
    members: &mut [Member],
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    loop {
        check_alive(members)?;
        if let Some(l) = find_leader(client, members.len()).await {
            return Ok(l);
        }
        if Instant::now() > deadline {
            bail!(
                "no leader elected within {}s; see the logs in {}",
                args.wait_secs,
                args.data_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn find_leader(client: &Client, n: usize) -> Option<u64> {
    for i in 0..n {
        if let Ok(s) = client.status_of(i).await
            && s.leader != 0
        {
            return Some(s.leader);
        }
    }
    None
}

pub(super) fn check_alive(members: &mut [Member]) -> anyhow::Result<()> {
    for m in members.iter_mut() {
        if let Ok(Some(status)) = m.child.try_wait() {
            bail!(
                "member {} exited ({status}); its log is {}",
                m.id,
                m.log.display()
            );
        }
    }
    Ok(())
}

/// Stops the members: SIGTERM by PID, a grace period, then SIGKILL.
pub(super) fn stop_all(members: &mut [Member]) {
    for m in members.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &m.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for m in members.iter_mut() {
        while Instant::now() < deadline {
            if !matches!(m.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(m.child.try_wait(), Ok(None)) {
            let _ = m.child.kill();
        }
        let _ = m.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let file: UpArgs = super::super::config::parse(
            Path::new("up.toml"),
            "nodes = 5\nbase-port = 22379\ngroups = 3\n",
        )
        .unwrap();
        let args = UpArgs {
            nodes: Some(1),
            ..UpArgs::default()
        };
        let s = resolve(args, file);
        assert_eq!(
            s,
            UpSettings {
                nodes: 1,
                data_dir: PathBuf::from(DEFAULT_DATA_DIR),
                base_port: 22379,
                wait_secs: 30,
                tls: false,
                groups: Some(3),
            }
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = super::super::config::parse::<UpArgs>(Path::new("up.toml"), "tick-ms = 5\n")
            .unwrap_err();
        assert!(e.to_string().contains("line 1, key `tick-ms`"), "{e}");
    }
}
