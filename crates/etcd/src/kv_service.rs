//! etcd's `KV` service: Range, Put, DeleteRange, Txn and Compact, on the
//! replicated KV store (see [`super::convert`] for what maps to what and
//! what is refused). Every request passes [`super::validate`] first
//! (a transaction's, inside [`convert::txn_op`]).
//!
//! While auth is on, each request runs as its caller
//! ([`crate::auth`]): the replicas refuse what the caller may not do.
//!
//! Invariant: every successful answer carries etcd's header with the store
//! revision the request saw or produced and the Raft term.

use flotilla_kv::Response as KvResponse;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::kv_server::Kv;
use tonic::{Request, Response, Status};

use super::convert::{self, Shape};
use super::core::Core;
use super::validate;

/// The `etcdserverpb.KV` service of one node.
#[derive(Clone)]
pub struct KvService {
    core: Core,
}

impl KvService {
    /// The service over `core`.
    pub fn new(core: Core) -> KvService {
        KvService { core }
    }
}

impl KvService {
    async fn timed<T>(
        &self,
        method: &str,
        f: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = std::time::Instant::now();
        let out = f.await;
        self.core.metrics.request(method, started.elapsed());
        out
    }

    async fn do_range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let caller = self.core.caller(&request)?;
        let r = request.into_inner();
        validate::check_range(&r)?;
        let (op, shape) = convert::range_op(&r)?;
        let (term, revision, resp) = self.core.read_as(op, caller, r.serializable).await?;
        let Shape::Range(view) = shape else {
            return Err(Status::internal("a range became a write"));
        };
        let mut out = convert::range_response(resp, &view);
        out.header = self.core.header(revision, term);
        Ok(Response::new(out))
    }

    async fn do_put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        validate::check_put(request.get_ref())?;
        let (ops, shape) = convert::put_ops(request.get_ref())?;
        let op = self.core.on_behalf(&request, convert::one_op(ops))?;
        let (term, revision, resp) = self.core.write(op).await?;
        let mut out = match single(shape, resp)? {
            pb::response_op::Response::ResponsePut(p) => p,
            _ => return Err(Status::internal("a put answered as something else")),
        };
        out.header = self.core.header(revision, term);
        Ok(Response::new(out))
    }

    async fn do_delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        validate::check_delete(request.get_ref())?;
        let (ops, shape) = convert::delete_ops(request.get_ref())?;
        let op = self.core.on_behalf(&request, convert::one_op(ops))?;
        let (term, revision, resp) = self.core.write(op).await?;
        let mut out = match single(shape, resp)? {
            pb::response_op::Response::ResponseDeleteRange(d) => d,
            _ => return Err(Status::internal("a delete answered as something else")),
        };
        out.header = self.core.header(revision, term);
        Ok(Response::new(out))
    }

    async fn do_txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let (op, success, failure) = convert::txn_op(request.get_ref())?;
        let op = self.core.on_behalf(&request, op)?;
        let (term, revision, resp) = self.core.write(op).await?;
        let mut out = convert::txn_response(resp, success, failure)?;
        convert::fill_txn_headers(&mut out, revision as i64);
        out.header = self.core.header(revision, term);
        Ok(Response::new(out))
    }

    async fn do_compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        validate::check_compact(request.get_ref())?;
        // Through the log, so every replica forgets the same history; the
        // replicas refuse a revision already compacted or not reached, as
        // etcd does. `physical` needs no wait: once applied, no read or
        // watch can see what the compaction forgot.
        let op = flotilla_kv::Op::Compact {
            revision: request.get_ref().revision as u64,
        };
        let op = self.core.on_behalf(&request, op)?;
        let (term, revision, _) = self.core.write(op).await?;
        Ok(Response::new(pb::CompactionResponse {
            header: self.core.header(revision, term),
        }))
    }
}

/// The answer of a single put or delete (which ran as a transaction when
/// it needed a get first).
pub(crate) fn single(shape: Shape, resp: KvResponse) -> Result<pb::response_op::Response, Status> {
    let responses = match resp {
        KvResponse::Txn { responses, .. } => responses,
        other => vec![other],
    };
    convert::response_op(shape, &mut responses.into_iter())
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        self.timed("Range", self.do_range(request)).await
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        self.timed("Put", self.do_put(request)).await
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        self.timed("DeleteRange", self.do_delete_range(request))
            .await
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        self.timed("Txn", self.do_txn(request)).await
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        self.timed("Compact", self.do_compact(request)).await
    }
}
