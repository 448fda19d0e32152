//! `flotilla member list|add|remove|promote|update`: the cluster's membership
//! through etcd's `Cluster` API, in the style of `etcdctl member`.
//!
//! Ids are printed and read in decimal, as `flotilla server --id` takes
//! them (`0x`-prefixed hex, as etcdctl prints ids, is accepted too).
//! Every refusal (unknown member, a learner that has not caught up, a peer
//! URL in use, another change in progress) is printed with the server's
//! reason and exits 1.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use flotilla_proto::etcdserverpb as pb;

use serde_json::json;

use super::output::{Format, OutputArgs, Table, header_json, omit_empty};
use super::{EndpointArgs, runtime};

/// `flotilla member` arguments.
#[derive(Debug, Args)]
pub struct MemberArgs {
    #[command(subcommand)]
    command: MemberCommand,
    #[command(flatten)]
    endpoints: EndpointArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// Lists the members: id, name, peer URL, voter or learner.
    List,
    /// Adds a member; then start it with `flotilla server --join`.
    Add {
        /// The new member's id (decimal; default: the server picks one).
        #[arg(long, value_parser = parse_id)]
        id: Option<u64>,
        /// Where the new member serves peers and clients (`host:port` or
        /// `http://host:port`).
        #[arg(long)]
        peer_url: String,
        /// Add it as a learner (receives the log, does not vote); promote
        /// it once it has caught up.
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member (it stops once it learns so).
    Remove {
        /// The member's id.
        #[arg(value_parser = parse_id)]
        id: u64,
    },
    /// Makes a learner that has caught up with the leader a voter.
    Promote {
        /// The learner's id.
        #[arg(value_parser = parse_id)]
        id: u64,
    },
    /// Records a member's new peer URL (restart it there with the same
    /// data directory).
    Update {
        /// The member's id.
        #[arg(value_parser = parse_id)]
        id: u64,
        /// Its new `host:port` (or `http://host:port`).
        #[arg(long)]
        peer_url: String,
    },
}

/// A member id: decimal, or hex with `0x`.
fn parse_id(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    match parsed {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "{s:?} is not a member id (a positive integer, or 0x-prefixed hex)"
        )),
    }
}

/// The member list in `format`, in etcdctl's shapes (ids in decimal, as
/// `flotilla server --id` and the member commands take them): one line
/// per member (`id, started, name, peer URLs, client URLs, is learner`),
/// a table, or JSON with etcd's header.
pub fn print_members(format: Format, header: Option<&pb::ResponseHeader>, members: &[pb::Member]) {
    match format {
        Format::Simple => {
            for m in members {
                println!(
                    "{}, started, {}, {}, {}, {}",
                    m.id,
                    m.name,
                    m.peer_ur_ls.join(","),
                    m.client_ur_ls.join(","),
                    m.is_learner
                );
            }
        }
        Format::Json => {
            let members: Vec<_> = members
                .iter()
                .map(|m| {
                    json!({
                        "ID": m.id, "name": m.name, "peerURLs": m.peer_ur_ls,
                        "clientURLs": m.client_ur_ls, "isLearner": m.is_learner,
                    })
                })
                .collect();
            let v = json!({"header": header_json(header), "members": members});
            println!("{}", omit_empty(v));
        }
        Format::Table => {
            let mut t = Table::new(&[
                "ID",
                "STATUS",
                "NAME",
                "PEER ADDRS",
                "CLIENT ADDRS",
                "IS LEARNER",
            ]);
            for m in members {
                t.row(vec![
                    m.id.to_string(),
                    "started".into(),
                    m.name.clone(),
                    m.peer_ur_ls.join(","),
                    m.client_ur_ls.join(","),
                    m.is_learner.to_string(),
                ]);
            }
            print!("{}", t.render());
        }
    }
}

/// Runs `flotilla member`.
pub fn main(args: MemberArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let client = args.endpoints.client(&rt)?;
    let endpoints = args.endpoints.resolve().join(",");
    let output = args.output.output;
    rt.block_on(async move {
        let (header, members) = match args.command {
            MemberCommand::List => {
                let r = client.member_list().await.context("member list")?;
                (r.header, r.members)
            }
            MemberCommand::Add {
                id,
                peer_url,
                learner,
            } => {
                let peer_url = with_scheme(&peer_url);
                let r = client
                    .member_add(pb::MemberAddRequest {
                        peer_ur_ls: vec![peer_url.clone()],
                        is_learner: learner,
                        flotilla_member_id: id.unwrap_or(0),
                    })
                    .await
                    .with_context(|| format!("member add {peer_url}"))?;
                let Some(m) = r.member else {
                    bail!("the server added a member but did not say which");
                };
                let listen = peer_url.trim_start_matches("http://");
                eprintln!(
                    "member {} added{}; start it with:\n  flotilla server --id {} --listen {listen} --join --peers {endpoints} --data-dir DIR",
                    m.id,
                    if learner { " as a learner" } else { "" },
                    m.id,
                );
                (r.header, r.members)
            }
            MemberCommand::Remove { id } => {
                let r = client
                    .member_remove(id)
                    .await
                    .with_context(|| format!("member remove {id}"))?;
                eprintln!("member {id} removed");
                (r.header, r.members)
            }
            MemberCommand::Promote { id } => {
                let r = client
                    .member_promote(id)
                    .await
                    .with_context(|| format!("member promote {id}"))?;
                eprintln!("member {id} promoted to voter");
                (r.header, r.members)
            }
            MemberCommand::Update { id, peer_url } => {
                let peer_url = with_scheme(&peer_url);
                let r = client
                    .member_update(id, &peer_url)
                    .await
                    .with_context(|| format!("member update {id} {peer_url}"))?;
                eprintln!("member {id} updated");
                (r.header, r.members)
            }
        };
        print_members(output, header.as_ref(), &members);
        Ok(ExitCode::SUCCESS)
    })
}

/// `url` as the server takes it: a bare `host:port` (as the README shows
/// it) gets `http://`, as etcd's peer URLs have a scheme.
fn with_scheme(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_in_decimal_or_hex() {
        assert_eq!(parse_id("12"), Ok(12));
        assert_eq!(parse_id("0x1f"), Ok(31));
        assert!(parse_id("0").is_err());
        assert!(parse_id("abc").unwrap_err().contains("\"abc\""));
    }

    #[test]
    fn a_bare_peer_address_gets_the_http_scheme() {
        assert_eq!(with_scheme("127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(with_scheme("http://127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(with_scheme("https://a:1"), "https://a:1");
    }
}
