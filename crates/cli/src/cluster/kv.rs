//! `flotilla kv put|get|del|range|append|txn`: etcdctl-style key/value
//! commands. Reads use etcd's v3 API; writes go through an exactly-once
//! client session (`flotilla.kv.v1.Kv`, see `flotilla_client::session`), so
//! a write retried across a leader change is applied once. Against a
//! server without Flotilla's sessions (etcd itself), `put`, `del` and
//! `txn` fall back to etcd's plain API; `append` needs Flotilla.
//! Output: `--output simple|json|table` (see [`super::kv_print`]).

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use flotilla_client::Client;
use flotilla_client::session::{Session, SessionError, SessionOptions};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::kv::v1::AppendResponse;

use super::kv_print::{Answer, print};
use super::output::OutputArgs;
use super::txn::{Section, TxnReader};
use super::{EndpointArgs, runtime};

/// `flotilla kv` arguments.
#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(subcommand)]
    command: KvCommand,
    #[command(flatten)]
    endpoints: EndpointArgs,
    #[command(flatten)]
    output: OutputArgs,
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
        /// Attach KEY to this lease (hexadecimal, as `flotilla lease
        /// grant` prints it); it is deleted when the lease ends.
        #[arg(long, value_parser = super::lease::parse_id, default_value = "0")]
        lease: i64,
        /// Treat KEY as a prefix and create a new key under it, KEY and a
        /// zero-padded number one past the last one created there
        /// (ZooKeeper's sequential nodes; KEY itself holds the counter);
        /// prints the key.
        #[arg(long, conflicts_with = "prev_kv")]
        sequential: bool,
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
        /// Read the keys as they were at this revision (0: the current
        /// one); refused once compacted.
        #[arg(long, default_value_t = 0)]
        rev: i64,
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
        /// Also print the deleted pairs.
        #[arg(long)]
        prev_kv: bool,
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
        /// Read the keys as they were at this revision (0: the current
        /// one); refused once compacted.
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
    /// Forgets the key history before REVISION (etcdctl's `compaction`):
    /// reads and watches at older revisions are refused from then on.
    Compact {
        /// The revision to compact at.
        revision: i64,
    },
    /// Appends VALUE to KEY's value (creating KEY if absent), exactly once
    /// (the course's Append; Flotilla only).
    Append {
        /// The key.
        key: String,
        /// What to append.
        value: String,
    },
    /// Applies a transaction read from stdin, in etcdctl's syntax:
    /// compares (`value("k") = "v"`, `version("k") > "0"`, `mod("k") <
    /// "5"`, `create("k") = "0"`), a blank line, the success requests
    /// (`put k v`, `get k`, `del k`), a blank line, the failure requests.
    Txn {
        /// Prompt for each section.
        #[arg(long, short = 'i')]
        interactive: bool,
    },
}

/// Runs `flotilla kv`.
pub fn main(args: KvArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let client = args.endpoints.client(&rt)?;
    // A write may be retried across leader changes: give it a few
    // per-request timeouts in all.
    let opts = SessionOptions {
        deadline: Duration::from_secs(args.endpoints.timeout_secs.max(1) * 4),
        ..SessionOptions::default()
    };
    let txn = match &args.command {
        KvCommand::Txn { interactive } => Some(read_txn(*interactive)?),
        _ => None,
    };
    rt.block_on(async move {
        // The session's writes carry the client's token.
        client.authenticate().await?;
        let mut w = Writer {
            session: Session::new(&client, opts),
            client: &client,
        };
        let answer = match (args.command, txn) {
            (_, Some(txn)) => Answer::Txn(w.txn(txn).await.context("txn")?),
            (command, None) => run(command, &mut w).await?,
        };
        print(args.output.output, &answer).context("writing the output")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The answer of every command but `txn`.
async fn run(command: KvCommand, w: &mut Writer<'_>) -> anyhow::Result<Answer> {
    Ok(match command {
        KvCommand::Put {
            key,
            value,
            prev_kv,
            lease,
            sequential,
        } => {
            let (key, value) = (Bytes::from(key), Bytes::from(value));
            if sequential {
                let (key, header) = put_sequential(w.client, key, value, lease)
                    .await
                    .context("put --sequential")?;
                return Ok(Answer::Created(key, header));
            }
            let req = pb::PutRequest {
                key,
                value,
                prev_kv,
                lease,
                ..Default::default()
            };
            Answer::Put(w.put(req).await.context("put")?)
        }
        KvCommand::Get {
            key,
            prefix,
            serializable,
            limit,
            rev,
        } => {
            let mut req = get_request(Bytes::from(key), prefix, serializable, limit);
            req.revision = rev;
            Answer::Range(w.client.range(req).await.context("get")?)
        }
        KvCommand::Compact { revision } => {
            let r = w.client.compact(revision).await.context("compact")?;
            Answer::Compact(r, revision)
        }
        KvCommand::Del {
            key,
            end,
            prefix,
            prev_kv,
        } => {
            let mut req = delete_request(key, end, prefix);
            req.prev_kv = prev_kv;
            Answer::Delete(w.delete(req).await.context("del")?)
        }
        KvCommand::Range {
            start,
            end,
            limit,
            serializable,
            rev,
        } => {
            let mut req = get_request(Bytes::from(start), false, serializable, limit);
            req.range_end = Bytes::from(end);
            req.revision = rev;
            Answer::Range(w.client.range(req).await.context("range")?)
        }
        KvCommand::Append { key, value } => Answer::Append(w.append(key, value).await?),
        KvCommand::Txn { .. } => bail!("txn is read from stdin before it runs"),
    })
}

/// Writes through the session, or through etcd's plain API when the
/// server does not serve sessions (nothing was applied then).
struct Writer<'c> {
    session: Session,
    client: &'c Client,
}

impl Writer<'_> {
    /// The course's Append, which only Flotilla's sessions serve.
    async fn append(&mut self, key: String, value: String) -> anyhow::Result<AppendResponse> {
        let r = self.session.append(key, value).await;
        if r.as_ref().is_err_and(SessionError::is_unimplemented) {
            bail!("append: the server does not serve Flotilla's sessions (is it etcd?)");
        }
        r.context("append")
    }

    async fn put(&mut self, req: pb::PutRequest) -> anyhow::Result<pb::PutResponse> {
        match self.session.put(req.clone()).await {
            Err(e) if e.is_unimplemented() => Ok(self.client.put(req).await?),
            r => Ok(r?),
        }
    }

    async fn delete(
        &mut self,
        req: pb::DeleteRangeRequest,
    ) -> anyhow::Result<pb::DeleteRangeResponse> {
        match self.session.delete(req.clone()).await {
            Err(e) if e.is_unimplemented() => Ok(self.client.delete(req).await?),
            r => Ok(r?),
        }
    }

    async fn txn(&mut self, req: pb::TxnRequest) -> anyhow::Result<pb::TxnResponse> {
        match self.session.txn(req.clone()).await {
            Err(e) if e.is_unimplemented() => Ok(self.client.txn(req).await?),
            r => Ok(r?),
        }
    }
}

/// Reads a transaction from stdin: a bad line is an error naming it.
/// Interactive: prompts for each section (on stdout, as etcdctl) and asks
/// again for a line it cannot parse.
fn read_txn(interactive: bool) -> anyhow::Result<pb::TxnRequest> {
    let stdin = std::io::stdin();
    if !interactive {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdin.lock(), &mut text)
            .context("reading the transaction from stdin")?;
        return super::txn::parse(&text).context("txn: bad input on stdin");
    }
    let mut reader = TxnReader::default();
    println!("{}", Section::Compares.prompt());
    for line in stdin.lock().lines() {
        let line = line.context("reading the transaction from stdin")?;
        let before = reader.section();
        match reader.feed(&line) {
            Ok(Section::Done) => break,
            Ok(s) if s != before => println!("\n{}", s.prompt()),
            Ok(_) => {}
            Err(e) => eprintln!("{e}; type it again"),
        }
        std::io::stdout().flush().context("writing the prompt")?;
    }
    println!();
    Ok(reader.finish())
}

/// The request of `get KEY [--prefix] [--serializable] [--limit N]`.
fn get_request(key: Bytes, prefix: bool, serializable: bool, limit: i64) -> pb::RangeRequest {
    let range_end = if prefix {
        prefix_range_end(&key)
    } else {
        Bytes::new()
    };
    pb::RangeRequest {
        key: prefix_key(key, prefix),
        range_end,
        limit,
        serializable,
        ..Default::default()
    }
}

/// The request of `del KEY [END] [--prefix]`.
fn delete_request(key: String, end: Option<String>, prefix: bool) -> pb::DeleteRangeRequest {
    let range_end = match end {
        Some(end) => Bytes::from(end),
        None if prefix => prefix_range_end(key.as_bytes()),
        None => Bytes::new(),
    };
    pb::DeleteRangeRequest {
        key: prefix_key(Bytes::from(key), prefix),
        range_end,
        ..Default::default()
    }
}

/// The key of a request for `key` (with `--prefix` if `prefix`): as
/// etcdctl (clientv3's `WithPrefix`), the empty prefix is sent as the key
/// `"\0"`, since servers refuse an empty key.
pub(crate) fn prefix_key(key: Bytes, prefix: bool) -> Bytes {
    if key.is_empty() && prefix {
        Bytes::from_static(b"\0")
    } else {
        key
    }
}

/// etcd's `range_end` for the keys that start with `prefix` (`"\0"`, every
/// key, when no key is past them all).
pub(crate) fn prefix_range_end(prefix: &[u8]) -> Bytes {
    flotilla_kv::prefix_end(prefix).unwrap_or(Bytes::from_static(b"\0"))
}

/// Creates `prefix` + the next number of its counter (kept in `prefix`
/// itself) with `value`, in one transaction that holds only if the
/// counter did not move meanwhile; retried until it holds. The number
/// only grows, even when created keys are deleted.
async fn put_sequential(
    client: &Client,
    prefix: Bytes,
    value: Bytes,
    lease: i64,
) -> anyhow::Result<(String, Option<pb::ResponseHeader>)> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    for _ in 0..100 {
        let get = pb::RangeRequest {
            key: prefix.clone(),
            ..Default::default()
        };
        let counter = client.range(get).await?.kvs.into_iter().next();
        let (last, version) = match &counter {
            Some(kv) => {
                let text = String::from_utf8_lossy(&kv.value);
                let n = text.trim().parse::<u64>().with_context(|| {
                    format!("{prefix:?} holds {text:?}, not a sequence counter")
                })?;
                (n, kv.version)
            }
            None => (0, 0),
        };
        let next = last + 1;
        let mut key = prefix.to_vec();
        key.extend_from_slice(format!("{next:020}").as_bytes());
        let put = |key: Vec<u8>, value: Bytes, lease| pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: key.into(),
                value,
                lease,
                ..Default::default()
            })),
        };
        let txn = pb::TxnRequest {
            compare: vec![pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Version as i32,
                key: prefix.clone(),
                target_union: Some(TargetUnion::Version(version)),
                range_end: Bytes::new(),
            }],
            success: vec![
                put(prefix.to_vec(), Bytes::from(next.to_string()), 0),
                put(key.clone(), value.clone(), lease),
            ],
            failure: Vec::new(),
        };
        let r = client.txn(txn).await?;
        if r.succeeded {
            return Ok((String::from_utf8_lossy(&key).into_owned(), r.header));
        }
    }
    bail!("the counter of {prefix:?} kept moving: 100 attempts lost the race")
}
