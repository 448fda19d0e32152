//! `flotilla status`: each member's own view (id, role, term, commit and
//! applied index, leader, log size, learner or voter).
//!
//! `status` asks every endpoint and prints a row for each; an unreachable
//! member gets a row saying so, and the command exits 1 if none answered.
//! Output (`--output`, see [`super::output`]): `table` (the default for
//! `status`), `json` (one object per member, with etcd's header), or
//! `simple` (etcdctl's `endpoint status` line). The member commands are
//! in [`super::member`].

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use flotilla_proto::etcdserverpb as pb;
use serde_json::json;

use super::output::{Format, Table, header_json};
use super::{EndpointArgs, runtime};

/// `flotilla status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// Output format: table, json or simple.
    #[arg(long, short = 'w', value_enum, default_value_t = Format::Table)]
    output: Format,
}

fn role(leader: u64, id: u64) -> &'static str {
    match leader {
        0 => "no leader",
        l if l == id => "leader",
        _ => "follower",
    }
}

const STATUS_COLUMNS: [&str; 8] = [
    "ENDPOINT",
    "ID",
    "ROLE",
    "TERM",
    "COMMIT",
    "APPLIED",
    "LEADER",
    "LOG BYTES",
];

/// One member's answer (or why it gave none) in `output`; table rows go
/// to `table`.
fn print_status(
    output: Format,
    table: &mut Table,
    e: &str,
    s: Result<&pb::StatusResponse, String>,
) {
    let s = match s {
        Ok(s) => s,
        Err(err) => {
            match output {
                Format::Json => println!("{}", json!({"endpoint": e, "error": err})),
                Format::Table => {
                    table.row(vec![e.into(), String::new(), format!("unreachable: {err}")])
                }
                Format::Simple => println!("{e}, unreachable: {err}"),
            }
            return;
        }
    };
    let id = s.header.as_ref().map_or(0, |h| h.member_id);
    let role = if s.is_learner {
        "learner"
    } else {
        role(s.leader, id)
    };
    match output {
        Format::Json => println!(
            "{}",
            json!({
                "endpoint": e, "id": id, "role": role, "term": s.raft_term,
                "commit": s.raft_index, "applied": s.raft_applied_index,
                "leader": s.leader, "log_bytes": s.db_size, "version": s.version,
                "is_learner": s.is_learner,
                "header": header_json(s.header.as_ref()),
            })
        ),
        Format::Table => table.row(vec![
            e.into(),
            id.to_string(),
            role.into(),
            s.raft_term.to_string(),
            s.raft_index.to_string(),
            s.raft_applied_index.to_string(),
            s.leader.to_string(),
            s.db_size.to_string(),
        ]),
        // etcdctl's `endpoint status`: endpoint, id, version, db size, is
        // leader, is learner, raft term, raft index, raft applied index.
        Format::Simple => println!(
            "{e}, {id:x}, {}, {}, {}, {}, {}, {}, {}",
            s.version,
            s.db_size,
            s.leader == id,
            s.is_learner,
            s.raft_term,
            s.raft_index,
            s.raft_applied_index
        ),
    }
}

/// Runs `flotilla status`.
pub fn main(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let client = args.endpoints.client(&rt)?;
    let endpoints = client.endpoints();
    rt.block_on(async move {
        let mut table = Table::new(&STATUS_COLUMNS);
        let mut answered = 0;
        for (i, e) in endpoints.iter().enumerate() {
            let s = client.status_of(i).await.map_err(|err| err.to_string());
            answered += usize::from(s.is_ok());
            print_status(args.output, &mut table, e, s.as_ref().map_err(Clone::clone));
        }
        if args.output == Format::Table {
            print!("{}", table.render());
        }
        if answered == 0 {
            bail!("no member answered");
        }
        Ok(ExitCode::SUCCESS)
    })
}
