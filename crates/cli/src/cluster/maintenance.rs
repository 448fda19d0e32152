//! `flotilla alarm list|disarm` and `flotilla defrag`: etcd's alarms and
//! defragmentation, in etcdctl's words.
//!
//! `alarm list` prints each raised alarm as etcdctl does
//! (`memberID:N alarm:NOSPACE`); `alarm disarm` clears every raised alarm
//! and prints those it cleared. `defrag` defragments each endpoint in
//! turn (a member's store forgets at once what compactions made
//! obsolete) and reports each.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use flotilla_proto::etcdserverpb as pb;

use super::{EndpointArgs, runtime};

/// `flotilla alarm` arguments.
#[derive(Debug, Args)]
pub struct AlarmArgs {
    #[command(subcommand)]
    command: AlarmCommand,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

#[derive(Debug, Subcommand)]
enum AlarmCommand {
    /// Lists the alarms raised.
    List,
    /// Clears every alarm raised.
    Disarm,
}

/// `flotilla defrag` arguments.
#[derive(Debug, Args)]
pub struct DefragArgs {
    #[command(flatten)]
    endpoints: EndpointArgs,
}

fn text(a: &pb::AlarmMember) -> String {
    let kind = pb::AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
    format!("memberID:{} alarm:{kind}", a.member_id)
}

/// Runs `flotilla alarm`.
pub fn alarm_main(args: AlarmArgs) -> anyhow::Result<ExitCode> {
    use pb::alarm_request::AlarmAction;
    let rt = runtime()?;
    let client = args.endpoints.client(&rt)?;
    rt.block_on(async {
        let listed = client
            .alarm(pb::AlarmRequest {
                action: AlarmAction::Get as i32,
                ..Default::default()
            })
            .await
            .context("alarm list")?;
        for a in &listed.alarms {
            if matches!(args.command, AlarmCommand::Disarm) {
                let req = pb::AlarmRequest {
                    action: AlarmAction::Deactivate as i32,
                    member_id: a.member_id,
                    alarm: a.alarm,
                };
                client.alarm(req).await.context("alarm disarm")?;
            }
            println!("{}", text(a));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `flotilla defrag`.
pub fn defrag_main(args: DefragArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let client = args.endpoints.client(&rt)?;
    rt.block_on(async {
        let mut failed = false;
        for (i, endpoint) in client.endpoints().iter().enumerate() {
            match client.defragment_at(i).await {
                Ok(_) => println!("Finished defragmenting etcd member[{endpoint}]"),
                Err(e) => {
                    eprintln!("Failed to defragment etcd member[{endpoint}] ({e})");
                    failed = true;
                }
            }
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}
