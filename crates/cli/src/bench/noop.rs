//! `flotilla bench noop-server`: etcd's KV service answering at once,
//! with no Raft, no disk and no store, on the same tonic stack as
//! `flotilla server`. Driven by `flotilla bench kv`, it measures the
//! floor that the gRPC layer and the load generator put under any
//! etcd-API server on this machine: the most requests per second the same
//! client gets from a server doing nothing, and the latency of a bare
//! call. `bench/compare-etcd.sh` runs it beside etcd and Flotilla.
//!
//! Each answer carries a response header with a revision that counts the
//! writes, so a client sees the shape of a real answer; nothing is kept.

use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Context;
use clap::Args;
use flotilla_etcd::server::incoming;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::kv_server::{Kv, KvServer};
use tonic::{Request, Response, Status};

use crate::cluster::{server_runtime, shutdown_signal};

/// `flotilla bench noop-server` arguments.
#[derive(Debug, Args)]
pub struct NoopServerArgs {
    /// The address to serve on (host:port); runs until Ctrl-C or SIGTERM.
    #[arg(long, default_value = "127.0.0.1:12399")]
    listen: String,
}

/// A KV service that does nothing.
#[derive(Debug, Default)]
struct NoopKv {
    revision: AtomicI64,
}

impl NoopKv {
    fn header(&self, wrote: bool) -> Option<pb::ResponseHeader> {
        let revision = if wrote {
            self.revision.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.revision.load(Ordering::Relaxed)
        };
        Some(pb::ResponseHeader {
            cluster_id: 1,
            member_id: 1,
            revision,
            raft_term: 1,
        })
    }
}

#[tonic::async_trait]
impl Kv for NoopKv {
    async fn range(
        &self,
        _: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        Ok(Response::new(pb::RangeResponse {
            header: self.header(false),
            ..Default::default()
        }))
    }

    async fn put(&self, _: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        Ok(Response::new(pb::PutResponse {
            header: self.header(true),
            prev_kv: None,
        }))
    }

    async fn delete_range(
        &self,
        _: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        Ok(Response::new(pb::DeleteRangeResponse {
            header: self.header(true),
            ..Default::default()
        }))
    }

    async fn txn(&self, _: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        Ok(Response::new(pb::TxnResponse {
            header: self.header(true),
            ..Default::default()
        }))
    }

    async fn compact(
        &self,
        _: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        Ok(Response::new(pb::CompactionResponse {
            header: self.header(false),
        }))
    }
}

/// Runs `flotilla bench noop-server`.
pub fn main(args: NoopServerArgs) -> anyhow::Result<ExitCode> {
    let rt = server_runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        eprintln!("no-op etcd KV server on {}", args.listen);
        tonic::transport::Server::builder()
            .add_service(KvServer::new(NoopKv::default()))
            .serve_with_incoming_shutdown(incoming(listener), shutdown_signal())
            .await
            .context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}
