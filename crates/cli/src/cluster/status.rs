//! `flotilla status`: each member's own view (id, role, term, commit and
//! applied index, leader, log size, learner or voter).
//!
//! `status` asks every endpoint and prints a row for each; an unreachable
//! member gets a row saying so, and the command exits 1 if none answered.
//! `--output json` prints one JSON object per line instead of the table.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::{EndpointArgs, runtime};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// One JSON object per line.
    Json,
}

/// `flotilla status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

fn role(leader: u64, id: u64) -> &'static str {
    match leader {
        0 => "no leader",
        l if l == id => "leader",
        _ => "follower",
    }
}

fn print_status(output: Output, e: &str, s: &flotilla_proto::etcdserverpb::StatusResponse) {
    let id = s.header.as_ref().map_or(0, |h| h.member_id);
    let role = if s.is_learner {
        "learner"
    } else {
        role(s.leader, id)
    };
    if output == Output::Json {
        let v = serde_json::json!({
            "endpoint": e, "id": id, "role": role, "term": s.raft_term,
            "commit": s.raft_index, "applied": s.raft_applied_index,
            "leader": s.leader, "log_bytes": s.db_size, "version": s.version,
            "is_learner": s.is_learner,
        });
        println!("{v}");
        return;
    }
    println!(
        "{e:<22} {id:>6} {role:<9} {:>6} {:>9} {:>9} {:>7} {:>10}",
        s.raft_term, s.raft_index, s.raft_applied_index, s.leader, s.db_size
    );
}

/// Runs `flotilla status`.
pub fn main(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let client = args.endpoints.client(&rt)?;
    let endpoints = client.endpoints();
    rt.block_on(async move {
        if args.output == Output::Table {
            println!(
                "{:<22} {:>6} {:<9} {:>6} {:>9} {:>9} {:>7} {:>10}",
                "ENDPOINT", "ID", "ROLE", "TERM", "COMMIT", "APPLIED", "LEADER", "LOG BYTES"
            );
        }
        let mut answered = 0;
        for (i, e) in endpoints.iter().enumerate() {
            match client.status_of(i).await {
                Ok(s) => {
                    answered += 1;
                    print_status(args.output, e, &s);
                }
                Err(err) if args.output == Output::Json => {
                    let v = serde_json::json!({"endpoint": e, "error": err.to_string()});
                    println!("{v}");
                }
                Err(err) => println!("{e:<22} unreachable: {err}"),
            }
        }
        if answered == 0 {
            bail!("no member answered");
        }
        Ok(ExitCode::SUCCESS)
    })
}
