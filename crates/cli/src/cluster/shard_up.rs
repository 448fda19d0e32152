//! `flotilla up --groups G`: a sharded store on loopback in one command.
//! It starts `--nodes` copies of this binary as `flotilla shard server`
//! child processes, each hosting the shard controller and data groups
//! 1..=G, with their data and logs under `--data-dir` as `up` keeps
//! them; once the controller answers, it joins the groups if the store is
//! new (running it again restarts the same store with its data and its
//! configuration as the operator left it), prints the endpoints and
//! stays in the foreground,
//! stopping its children as `up` does (see [`super::up`]).

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::runtime;
use super::shard::{ShardCommand, Shards};
use super::up::{
    Member, StopSignals, UpSettings, check_alive, spawn_member, stop_all, watch_members,
};

/// The most data groups `up` starts.
pub const GROUPS_MAX: u64 = 64;

/// Runs `flotilla up --groups`, the members at `addrs`.
pub fn main(args: &UpSettings, addrs: &[String], groups: u64) -> anyhow::Result<ExitCode> {
    if !(1..=GROUPS_MAX).contains(&groups) {
        bail!("--groups must be between 1 and {GROUPS_MAX}");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let rt = runtime()?;
    let mut stop = {
        let _in_runtime = rt.enter();
        StopSignals::take()?
    };
    let tls = super::up::up_tls(args)?;
    // `https://` endpoints tell the client commands to use the
    // certificates `up` made.
    let endpoints: Vec<String> = match tls {
        Some(_) => addrs.iter().map(|a| format!("https://{a}")).collect(),
        None => addrs.to_vec(),
    };
    let mut members = spawn_all(args, addrs, groups)?;
    let client = Shards::new(endpoints.clone(), Duration::from_secs(2)).with_tls(tls);
    let outcome = std::fs::write(args.data_dir.join("endpoints"), endpoints.join("\n") + "\n")
        .context("writing the endpoints file")
        .and_then(|()| {
            rt.block_on(supervise(
                args,
                addrs,
                &client,
                groups,
                &mut members,
                &mut stop,
            ))
        });
    stop_all(&mut members);
    outcome
}

fn spawn_all(args: &UpSettings, addrs: &[String], groups: u64) -> anyhow::Result<Vec<Member>> {
    let exe = std::env::current_exe().context("finding the flotilla binary")?;
    let peers: Vec<String> = (addrs.iter().enumerate())
        .map(|(i, e)| format!("{}={e}", i + 1))
        .collect();
    let gids: Vec<String> = (1..=groups).map(|g| g.to_string()).collect();
    let mut members = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u16 + 1;
        let mut cmd = Command::new(&exe);
        cmd.args(["shard", "server", "--id", &id.to_string()])
            .args(["--peers", &peers.join(",")])
            .args(["--groups", &gids.join(",")])
            .args(["--metrics-listen", &super::up::metrics_addr(addr)])
            .args(match args.tls {
                true => super::tls::port_flags(&super::up::tls_dir(args), &format!("node{id}")),
                false => Vec::new(),
            })
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("node{id}")));
        spawn_member(args, id, &mut cmd, &mut members)?;
    }
    Ok(members)
}

/// Joins the groups, reports the store, then watches the members until a
/// stop signal (`Ok`) or a member's death (an error).
async fn supervise(
    args: &UpSettings,
    addrs: &[String],
    client: &Shards,
    groups: u64,
    members: &mut [Member],
    stop: &mut StopSignals,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        joined = join_all(args, client, groups, members) => joined?,
        () = stop.received() => {
            eprintln!("flotilla: stopping {} members before the groups joined", members.len());
            return Ok(ExitCode::SUCCESS);
        }
    }
    println!(
        "flotilla: sharded store up: {} members, each hosting the controller and groups 1-{groups}",
        members.len()
    );
    println!("endpoints: {}", addrs.join(","));
    if let Some(first) = addrs.first() {
        println!(
            "console: http://{}/ (every member serves one, with /api/shards and /metrics)",
            super::up::metrics_addr(first)
        );
    }
    if args.tls {
        println!("tls: clients use {}", super::up::client_flags(args));
    }
    println!("data and logs: {}", args.data_dir.display());
    println!(
        "try: flotilla shard put hello world; flotilla shard get hello; flotilla shard status"
    );
    println!("press Ctrl-C to stop");
    watch_members(members, stop).await
}

/// Joins groups 1..=`groups` to a new store (one at configuration 0),
/// retrying until `--wait-secs`; fails if a member exits meanwhile.
async fn join_all(
    args: &UpSettings,
    client: &Shards,
    groups: u64,
    members: &mut [Member],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    loop {
        check_alive(members)?;
        let joined = async {
            // Only a new store's groups join: on a restart the
            // configuration stays as the operator left it (a group that
            // left is not brought back).
            let latest = client.latest().await?;
            match latest.num {
                0 => {
                    let gids = (1..=groups).collect();
                    client.run(ShardCommand::Join { gids }).await
                }
                _ => client.run(ShardCommand::Query { num: None }).await,
            }
        };
        let failed = match joined.await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(failed).with_context(|| {
                format!(
                    "the groups did not join within {}s; see the logs in {}",
                    args.wait_secs,
                    args.data_dir.display()
                )
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
