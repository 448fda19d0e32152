//! `flotilla watch`: prints the changes to a key (or a prefix) as they are
//! applied, from now or from a past revision, in etcdctl's format (`PUT`
//! or `DELETE`, with `--prev-kv` the pair before, then the key and its
//! value, one per line).
//!
//! A watch outlives the member it reads from: when the stream ends or the
//! member cannot be reached, it reconnects to the next endpoint from the
//! revision after the last change it printed, so no change is printed
//! twice or skipped (the server replays what it missed from its history).
//! A watch canceled by the server (its start revision was compacted)
//! exits 1 with the server's reason, as etcdctl does. `--count N` exits
//! after N changes.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use clap::Args;
use flotilla_client::Client;
use flotilla_client::client::ClientError;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::watch_client::WatchClient;
use flotilla_proto::mvccpb;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use super::output::write_pairs;
use super::{EndpointArgs, runtime};

/// `flotilla watch` arguments.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The key.
    key: String,
    /// Watch every key that starts with KEY.
    #[arg(long)]
    prefix: bool,
    /// Start at this revision (0: after the current one); earlier changes
    /// are replayed from the history.
    #[arg(long, default_value_t = 0)]
    rev: i64,
    /// Also print each key's pair before the change.
    #[arg(long)]
    prev_kv: bool,
    /// Exit after this many changes (0: run until interrupted).
    #[arg(long, default_value_t = 0)]
    count: u64,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

/// How a stream ended.
enum Ended {
    /// `--count` changes were printed.
    Done,
    /// The server canceled the watch, for this reason.
    Canceled(String),
    /// The stream or the member went away; reconnect.
    Lost,
}

/// Runs `flotilla watch`.
pub fn main(args: WatchArgs) -> anyhow::Result<ExitCode> {
    if args.rev < 0 {
        bail!("--rev {} must be 0 (now) or a revision", args.rev);
    }
    let rt = runtime()?;
    let client = args.endpoints.client(&rt)?;
    let n = client.endpoints().len();
    rt.block_on(async move {
        // A wrong password is said now, not retried as a lost stream;
        // members not up yet are waited for below.
        if let Err(e @ ClientError::Login { .. }) = client.authenticate().await {
            return Err(e.into());
        }
        let mut state = State {
            next_rev: args.rev,
            printed: 0,
        };
        let mut member = 0;
        let mut failures = 0;
        loop {
            let ended = watch_one(&client, member, &args, &mut state).await;
            match ended {
                Ended::Done => return Ok(ExitCode::SUCCESS),
                Ended::Canceled(reason) => bail!("watch was canceled ({reason})"),
                Ended::Lost => {
                    member = (member + 1) % n;
                    failures += 1;
                    // A round of members that all failed: wait a little
                    // before the next round.
                    if failures % n == 0 {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        // The token may have expired: the next round
                        // carries a new one. Members still down are
                        // waited for as before; refused credentials end
                        // the watch.
                        if let Err(e @ ClientError::Login { .. }) = client.authenticate().await {
                            return Err(e.into());
                        }
                    }
                }
            }
        }
    })
}

/// Where the watch stands across reconnections.
struct State {
    /// The revision to start from on the next stream (0: now).
    next_rev: i64,
    printed: u64,
}

fn create(args: &WatchArgs, start_revision: i64) -> pb::WatchRequest {
    let key = Bytes::from(args.key.clone());
    let range_end = if args.prefix {
        super::kv::prefix_range_end(&key)
    } else {
        Bytes::new()
    };
    let key = super::kv::prefix_key(key, args.prefix);
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key,
                range_end,
                start_revision,
                prev_kv: args.prev_kv,
                ..Default::default()
            },
        )),
    }
}

/// One stream on member `i`, until it ends.
async fn watch_one(client: &Client, i: usize, args: &WatchArgs, state: &mut State) -> Ended {
    let Ok(channel) = client.conn(i).await else {
        return Ended::Lost;
    };
    let (tx, rx) = mpsc::channel(1);
    if tx.send(create(args, state.next_rev)).await.is_err() {
        return Ended::Lost;
    }
    let Ok(stream) = WatchClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await
    else {
        return Ended::Lost;
    };
    let mut stream = stream.into_inner();
    while let Ok(Some(r)) = stream.message().await {
        if r.canceled {
            return Ended::Canceled(r.cancel_reason);
        }
        // A watch from now: later streams start after the revision it
        // was created at.
        if r.created && state.next_rev == 0 {
            state.next_rev = r.header.as_ref().map_or(0, |h| h.revision) + 1;
        }
        for e in &r.events {
            if print(e, args.prev_kv).is_err() {
                return Ended::Done;
            }
            state.next_rev =
                e.kv.as_ref()
                    .map_or(state.next_rev, |kv| kv.mod_revision + 1);
            state.printed += 1;
            if args.count != 0 && state.printed >= args.count {
                return Ended::Done;
            }
        }
    }
    drop(tx);
    Ended::Lost
}

/// Prints one event as etcdctl does (see [`crate::pipe`] for a reader
/// that left).
fn print(e: &mvccpb::Event, prev_kv: bool) -> std::io::Result<()> {
    crate::pipe::stdout_written(print_to(&mut std::io::stdout().lock(), e, prev_kv))
}

fn print_to(out: &mut impl Write, e: &mvccpb::Event, prev_kv: bool) -> std::io::Result<()> {
    let kind = if e.r#type == mvccpb::event::EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    };
    writeln!(out, "{kind}")?;
    if prev_kv && let Some(p) = &e.prev_kv {
        write_pairs(out, std::slice::from_ref(p))?;
    }
    write_pairs(out, e.kv.as_slice())?;
    out.flush()
}
