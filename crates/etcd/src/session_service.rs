//! Flotilla's `flotilla.kv.v1.Kv` service: exactly-once writes in client
//! sessions, and the course's Append (see `proto/flotilla/kv/v1/kv.proto`).
//!
//! A write carries the client's session id and sequence number into the
//! log command, so the replica's session table applies each (client, seq)
//! once and answers a retry, on any member, with the reply it recorded.
//! The write path is the etcd service's ([`Core::write_session`]):
//! proposed here if this member leads, else forwarded to the leader.
//!
//! Invariants: a request is checked before anything is proposed
//! ([`super::validate::check_session`]: `client_id` nonzero with the top
//! bit clear, so it never collides with the ids minted for plain etcd
//! requests; `seq >= 1`; an operation that passes its own checks); a
//! session write answers with the same etcd message as the plain request
//! of its kind, header included.

use bytes::Bytes;
use flotilla_kv::Op;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::kv::v1 as kvpb;
use flotilla_proto::kv::v1::kv_server::Kv;
use flotilla_proto::kv::v1::session_write::Op as WriteOp;
use flotilla_proto::kv::v1::session_write_response::Response as WriteResponse;
use tonic::{Request, Response, Status};

use super::convert::{self, Shape, txn_response};
use super::core::Core;
use super::kv_service::single;
use super::validate;

/// `flotilla.kv.v1.Kv` of one node.
#[derive(Clone)]
pub struct SessionService {
    core: Core,
}

impl SessionService {
    /// The service over `core`.
    pub fn new(core: Core) -> SessionService {
        SessionService { core }
    }
}

/// How the store's answer is turned back into the write's etcd message.
enum Kind {
    Put(Shape),
    Delete(Shape),
    Txn(Vec<Shape>, Vec<Shape>),
    Append,
}

/// Checks a session write ([`validate::check_session`]) and turns it into
/// one store operation.
fn parse(w: &kvpb::SessionWrite) -> Result<(Op, Kind), Status> {
    validate::check_session(w)?;
    match &w.op {
        Some(WriteOp::Put(p)) => {
            let (ops, shape) = convert::put_ops(p)?;
            Ok((convert::one_op(ops), Kind::Put(shape)))
        }
        Some(WriteOp::DeleteRange(d)) => {
            let (ops, shape) = convert::delete_ops(d)?;
            Ok((convert::one_op(ops), Kind::Delete(shape)))
        }
        Some(WriteOp::Txn(t)) => {
            let (op, success, failure) = convert::txn_op(t)?;
            Ok((op, Kind::Txn(success, failure)))
        }
        Some(WriteOp::Append(a)) => Ok((Op::append(a.key.clone(), a.value.clone()), Kind::Append)),
        None => Err(validate::Invalid::NoSessionOp.into()),
    }
}

/// The etcd-shaped answer of a write of `kind`, with `header`.
fn answer(
    kind: Kind,
    resp: flotilla_kv::Response,
    header: Option<pb::ResponseHeader>,
) -> Result<WriteResponse, Status> {
    use pb::response_op::Response as R;
    Ok(match kind {
        Kind::Put(shape) => match single(shape, resp)? {
            R::ResponsePut(mut p) => {
                p.header = header;
                WriteResponse::Put(p)
            }
            _ => return Err(Status::internal("a put answered as something else")),
        },
        Kind::Delete(shape) => match single(shape, resp)? {
            R::ResponseDeleteRange(mut d) => {
                d.header = header;
                WriteResponse::DeleteRange(d)
            }
            _ => return Err(Status::internal("a delete answered as something else")),
        },
        Kind::Txn(success, failure) => {
            let mut t = txn_response(resp, success, failure)?;
            t.header = header;
            WriteResponse::Txn(t)
        }
        Kind::Append => match resp {
            flotilla_kv::Response::Written => {
                WriteResponse::Append(kvpb::AppendResponse { header })
            }
            _ => return Err(Status::internal("an append answered as something else")),
        },
    })
}

#[tonic::async_trait]
impl Kv for SessionService {
    async fn write(
        &self,
        request: Request<kvpb::SessionWrite>,
    ) -> Result<Response<kvpb::SessionWriteResponse>, Status> {
        let started = std::time::Instant::now();
        let out = async {
            let (op, kind) = parse(request.get_ref())?;
            let op = self.core.on_behalf(&request, op)?;
            let w = request.into_inner();
            let (term, revision, resp) = self
                .core
                .write_session(w.client_id, w.seq, w.resumed, op)
                .await?;
            // A write applied now always answers in its own shape, so an
            // answer of another shape is the one the session table kept
            // for an earlier write under the same seq.
            let response = answer(kind, resp, self.core.header(revision, term))
                .map_err(|_| reused_seq(w.client_id, w.seq))?;
            Ok(Response::new(kvpb::SessionWriteResponse {
                response: Some(response),
            }))
        }
        .await;
        self.core.metrics.request("SessionWrite", started.elapsed());
        out
    }
}

/// `FAILED_PRECONDITION`: `seq` of session `client` was already used for a
/// write of another kind, whose recorded answer this one cannot be given
/// (found by `crates/cli/tests/wire_fuzz.rs`; it was `INTERNAL`).
fn reused_seq(client: u64, seq: u64) -> Status {
    Status::failed_precondition(format!(
        "flotilla: session {client:#x} already used seq {seq} for a write of another kind; \
         a session numbers its writes from 1, one at a time, and a retry repeats the same write"
    ))
}

/// An append request (for clients and tests).
pub fn append_request(key: impl Into<Bytes>, value: impl Into<Bytes>) -> WriteOp {
    WriteOp::Append(kvpb::AppendRequest {
        key: key.into(),
        value: value.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(client_id: u64, seq: u64, op: Option<WriteOp>) -> kvpb::SessionWrite {
        kvpb::SessionWrite {
            client_id,
            seq,
            resumed: false,
            op,
        }
    }

    #[test]
    fn malformed_session_writes_are_refused_before_proposing() {
        let append = || Some(append_request("k", "x"));
        for bad in [
            write(0, 1, append()),
            write(1 << 63, 1, append()),
            write(7, 0, append()),
            write(7, 1, None),
            write(7, 1, Some(append_request("", "x"))),
        ] {
            let err = parse(&bad).err().expect("refused");
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
        let (op, _) = parse(&write(7, 1, append())).unwrap();
        assert_eq!(op, Op::append("k", "x"));
    }

    #[test]
    fn session_writes_answer_with_etcd_messages() {
        let put = pb::PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            prev_kv: true,
            ..Default::default()
        };
        let (op, kind) = parse(&write(7, 1, Some(WriteOp::Put(put)))).unwrap();
        assert_eq!(
            op,
            convert::one_op(vec![Op::get("k"), Op::put("k", "v")]),
            "prev_kv reads the old pair in the same entry"
        );
        let resp = flotilla_kv::Response::Txn {
            succeeded: true,
            responses: vec![
                flotilla_kv::Response::Get(None),
                flotilla_kv::Response::Written,
            ],
        };
        let header = pb::ResponseHeader {
            revision: 4,
            ..Default::default()
        };
        let WriteResponse::Put(p) = answer(kind, resp, Some(header)).unwrap() else {
            panic!("not a put answer")
        };
        assert_eq!(p.header.map(|h| h.revision), Some(4));
        assert_eq!(p.prev_kv, None);
        let a = answer(Kind::Append, flotilla_kv::Response::Written, None).unwrap();
        assert!(matches!(a, WriteResponse::Append(_)));
    }
}
