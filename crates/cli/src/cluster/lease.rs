//! `flotilla lease grant|revoke|ttl|list|keep-alive`: etcd's leases, in
//! etcdctl's words. Lease ids are printed and read in hexadecimal, as
//! etcdctl prints them, so the two tools' ids can be pasted into each
//! other.
//!
//! `keep-alive` renews the lease every third of its TTL (as etcd's
//! client does) until interrupted, printing each renewal, and exits 1
//! once the lease has expired or was revoked; with `--once` it renews
//! once. Each renewal is one call that fails over between the endpoints,
//! so a keep-alive survives a member's death.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use flotilla_client::Client;

use super::{EndpointArgs, runtime};

/// `flotilla lease` arguments.
#[derive(Debug, Args)]
pub struct LeaseArgs {
    #[command(subcommand)]
    command: LeaseCommand,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

#[derive(Debug, Subcommand)]
enum LeaseCommand {
    /// Grants a lease of TTL seconds and prints its id.
    Grant {
        /// The time-to-live, in seconds (raised to the cluster's minimum).
        ttl: i64,
        /// The lease id to take (hexadecimal; default: the server's choice).
        #[arg(long, value_parser = parse_id, default_value = "0")]
        id: i64,
    },
    /// Revokes a lease: every key attached to it is deleted.
    Revoke {
        /// The lease id (hexadecimal).
        #[arg(value_parser = parse_id)]
        id: i64,
    },
    /// Prints a lease's granted and remaining time (etcdctl's
    /// `timetolive`).
    Ttl {
        /// The lease id (hexadecimal).
        #[arg(value_parser = parse_id)]
        id: i64,
        /// Also print the keys attached to it.
        #[arg(long)]
        keys: bool,
    },
    /// Lists every lease.
    List,
    /// Keeps a lease alive until interrupted (exit 1 once it is gone).
    KeepAlive {
        /// The lease id (hexadecimal).
        #[arg(value_parser = parse_id)]
        id: i64,
        /// Renew once and exit.
        #[arg(long)]
        once: bool,
    },
}

/// Reads a lease id as etcdctl prints it: hexadecimal, at most 16 digits.
pub fn parse_id(s: &str) -> Result<i64, String> {
    u64::from_str_radix(s, 16)
        .map(|id| id as i64)
        .map_err(|_| format!("{s:?} is not a lease id (hexadecimal, as `lease grant` prints it)"))
}

/// Runs `flotilla lease`.
pub fn main(args: LeaseArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let client = args.endpoints.client(&rt)?;
    rt.block_on(run(args.command, &client))
}

async fn run(command: LeaseCommand, c: &Client) -> anyhow::Result<ExitCode> {
    match command {
        LeaseCommand::Grant { ttl, id } => {
            let r = c.lease_grant(ttl, id).await.context("lease grant")?;
            println!("lease {:016x} granted with TTL({}s)", r.id, r.ttl);
        }
        LeaseCommand::Revoke { id } => {
            c.lease_revoke(id).await.context("lease revoke")?;
            println!("lease {id:016x} revoked");
        }
        LeaseCommand::Ttl { id, keys } => {
            let r = c.lease_time_to_live(id, keys).await.context("lease ttl")?;
            if r.ttl < 0 {
                println!("lease {id:016x} already expired");
                return Ok(ExitCode::FAILURE);
            }
            let mut line = format!(
                "lease {id:016x} granted with TTL({}s), remaining({}s)",
                r.granted_ttl, r.ttl
            );
            if keys {
                let names: Vec<String> = r
                    .keys
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect();
                line.push_str(&format!(", attached keys([{}])", names.join(" ")));
            }
            println!("{line}");
        }
        LeaseCommand::List => {
            let r = c.lease_leases().await.context("lease list")?;
            println!("found {} leases", r.leases.len());
            for l in r.leases {
                println!("{:016x}", l.id);
            }
        }
        LeaseCommand::KeepAlive { id, once } => return keep_alive(c, id, once).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Renews lease `id` every third of its TTL; see the module docs.
async fn keep_alive(c: &Client, id: i64, once: bool) -> anyhow::Result<ExitCode> {
    loop {
        let ttl = c
            .lease_keep_alive_once(id)
            .await
            .context("lease keep-alive")?;
        if ttl <= 0 {
            if once {
                bail!("lease {id:016x} expired or was revoked");
            }
            println!("lease {id:016x} expired or revoked.");
            return Ok(ExitCode::FAILURE);
        }
        println!("lease {id:016x} keepalived with TTL({ttl})");
        if once {
            return Ok(ExitCode::SUCCESS);
        }
        let every = Duration::from_millis(u64::try_from(ttl).unwrap_or(1).saturating_mul(1000) / 3);
        tokio::select! {
            _ = tokio::time::sleep(every.max(Duration::from_millis(500))) => {}
            _ = super::shutdown_signal() => return Ok(ExitCode::SUCCESS),
        }
    }
}
