//! `flotilla kv put|get|del|range`: etcdctl-style key/value commands over
//! etcd's v3 API. Output follows etcdctl's simple format: `put` prints
//! `OK`, `get` and `range` print each key and value on their own lines,
//! `del` prints how many keys it deleted (one key, a range `KEY END`, or
//! `--prefix`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand};
use flotilla_proto::etcdserverpb as pb;

use super::{EndpointArgs, runtime};

/// `flotilla kv` arguments.
#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// Sets KEY to VALUE.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Also print the previous value.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Reads KEY (or every key with the prefix KEY).
    Get {
        /// The key.
        key: String,
        /// Read every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
        /// Answer from the contacted member's state (may be stale).
        #[arg(long)]
        serializable: bool,
        /// Print at most this many pairs (0: all).
        #[arg(long, default_value_t = 0)]
        limit: i64,
    },
    /// Deletes KEY (or the keys in [KEY, END), or with the prefix KEY).
    Del {
        /// The key.
        key: String,
        /// The first key past the range to delete.
        #[arg(conflicts_with = "prefix")]
        end: Option<String>,
        /// Delete every key that starts with KEY.
        #[arg(long)]
        prefix: bool,
    },
    /// Reads the keys in [START, END).
    Range {
        /// The first key.
        start: String,
        /// The first key past the range.
        end: String,
        /// Print at most this many pairs (0: all).
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// Answer from the contacted member's state (may be stale).
        #[arg(long)]
        serializable: bool,
    },
}

/// Runs `flotilla kv`.
pub fn main(args: KvArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let client = args.endpoints.client(&rt)?;
    rt.block_on(async move {
        match args.command {
            KvCommand::Put {
                key,
                value,
                prev_kv,
            } => {
                let req = pb::PutRequest {
                    key: Bytes::from(key),
                    value: Bytes::from(value),
                    prev_kv,
                    ..Default::default()
                };
                let resp = client.put(req).await.context("put")?;
                println!("OK");
                if let Some(kv) = resp.prev_kv {
                    print_pairs(&[kv])?;
                }
            }
            KvCommand::Get {
                key,
                prefix,
                serializable,
                limit,
            } => {
                let key = Bytes::from(key);
                let range_end = if prefix {
                    prefix_range_end(&key)
                } else {
                    Bytes::new()
                };
                let req = pb::RangeRequest {
                    key,
                    range_end,
                    limit,
                    serializable,
                    ..Default::default()
                };
                print_pairs(&client.range(req).await.context("get")?.kvs)?;
            }
            KvCommand::Del { key, end, prefix } => {
                let req = delete_request(key, end, prefix);
                println!("{}", client.delete(req).await.context("del")?.deleted);
            }
            KvCommand::Range {
                start,
                end,
                limit,
                serializable,
            } => {
                let req = pb::RangeRequest {
                    key: Bytes::from(start),
                    range_end: Bytes::from(end),
                    limit,
                    serializable,
                    ..Default::default()
                };
                print_pairs(&client.range(req).await.context("range")?.kvs)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The request of `del KEY [END] [--prefix]`.
fn delete_request(key: String, end: Option<String>, prefix: bool) -> pb::DeleteRangeRequest {
    let range_end = match end {
        Some(end) => Bytes::from(end),
        None if prefix => prefix_range_end(key.as_bytes()),
        None => Bytes::new(),
    };
    // As etcdctl: `del "" --prefix` deletes every key from "\0".
    let key = if key.is_empty() && prefix {
        Bytes::from_static(b"\0")
    } else {
        Bytes::from(key)
    };
    pb::DeleteRangeRequest {
        key,
        range_end,
        ..Default::default()
    }
}

/// etcd's `range_end` for the keys that start with `prefix` (`"\0"`, every
/// key, when no key is past them all).
fn prefix_range_end(prefix: &[u8]) -> Bytes {
    flotilla_kv::prefix_end(prefix).unwrap_or(Bytes::from_static(b"\0"))
}

fn print_pairs(kvs: &[flotilla_proto::mvccpb::KeyValue]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for kv in kvs {
        out.write_all(&kv.key)?;
        out.write_all(b"\n")?;
        out.write_all(&kv.value)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
