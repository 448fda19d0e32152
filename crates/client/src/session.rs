//! Exactly-once writes from Rust: a client session over Flotilla's
//! `flotilla.kv.v1.Kv` service (the clerk protocol of the Raft thesis
//! §6.3 and of MIT 6.824's Lab 3, over gRPC).
//!
//! A [`Session`] has a client id (random, 63 bits, top bit clear) and
//! numbers its writes 1, 2, 3, ...; `&mut self` keeps one write in flight.
//! A write whose outcome is unknown (a timeout, an unreachable or
//! unavailable member, a leader change, "request timed out") is sent again
//! with the *same* (client id, seq), to the next endpoint, until an answer
//! or the session's deadline; the servers' session table applies it once
//! and answers a retry with the recorded reply. So a write is applied
//! exactly once and reported once, or reported as
//! [`SessionError::Indeterminate`] when no member answered in time, or as
//! [`SessionError::Unreachable`] (not applied) when a whole round of
//! endpoints refused the connection before any attempt got through.
//!
//! Invariants:
//! - `seq` only grows; a write that got no answer is never re-sent with
//!   another number (a later write gets `seq + 1`, and the servers then
//!   refuse the old one if a copy of it still arrives);
//! - `resumed` is set once a write was answered, so that the servers
//!   refuse (instead of re-applying) a retry whose session expired;
//! - after [`SessionError::SessionExpired`] the session continues under a
//!   new client id, from seq 1.
//!
//! On a cluster with auth on, a session made by [`Session::new`] from a
//! client with credentials shares the client's token; a write refused for
//! its token alone (expired, or voided by a password change: refused before
//! it was proposed) is sent again, with the same seq, after the client
//! authenticates again, once per write.
//!
//! Reads need no session (etcd's `Range` is idempotent): use the
//! [`Client`] the session came from.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::kv::v1 as kvpb;
use flotilla_proto::kv::v1::kv_client::KvClient;
use flotilla_proto::kv::v1::session_write::Op as WriteOp;
use flotilla_proto::kv::v1::session_write_response::Response as WriteResponse;
use flotilla_proto::signal;
use tokio::time::{Instant, sleep, timeout_at};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::auth::token_refused;
use crate::auth::{Conn, Token};
use crate::client::{Client, never_sent};

/// How a session retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// How long one write may take, retries included, before it is
    /// reported as [`SessionError::Indeterminate`].
    pub deadline: Duration,
    /// The first pause after a round of endpoints that all failed; it
    /// doubles each round, up to one second.
    pub backoff: Duration,
}

impl Default for SessionOptions {
    fn default() -> SessionOptions {
        SessionOptions {
            deadline: Duration::from_secs(20),
            backoff: Duration::from_millis(50),
        }
    }
}

/// Why a session write failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No member answered before the deadline: the write may or may not
    /// have been applied (once at most).
    #[error(
        "write {seq} of session {client:x}: no answer after {attempts} attempts within the \
         deadline ({last}); it may or may not have been applied"
    )]
    Indeterminate {
        /// The session's client id.
        client: u64,
        /// The write's number.
        seq: u64,
        /// How many times it was sent.
        attempts: u32,
        /// The last error seen.
        last: String,
    },
    /// No member could be connected to: the write was not applied.
    #[error("no endpoint reachable ({endpoints}): {last}; write {seq} was not applied")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// The write's number.
        seq: u64,
        /// The last error.
        last: String,
    },
    /// The servers no longer know the session: the write may or may not
    /// have been applied. The session continues under a new id.
    #[error(
        "write {seq} of session {client:x}: the session expired; it may or may not have been applied"
    )]
    SessionExpired {
        /// The expired client id.
        client: u64,
        /// The write's number.
        seq: u64,
    },
    /// A member refused the write (it was not applied): a malformed
    /// request, something the store does not support, or a server that
    /// does not serve Flotilla's sessions (`UNIMPLEMENTED`, e.g. etcd).
    #[error("{}: {}", .0.code(), .0.message())]
    Server(Status),
    /// The member answered with another kind of response than asked for.
    #[error("the server answered a {asked} with {got}")]
    Mismatch {
        /// The kind of write sent.
        asked: &'static str,
        /// What came back.
        got: &'static str,
    },
}

impl SessionError {
    /// Whether the server does not serve `flotilla.kv.v1.Kv` at all (or
    /// the operation): nothing was applied, and the plain etcd request may
    /// be used instead.
    pub fn is_unimplemented(&self) -> bool {
        matches!(self, SessionError::Server(s) if s.code() == Code::Unimplemented)
    }
}

/// What to do after a failed attempt.
enum Next {
    /// The outcome is unknown: send the same write again.
    Retry,
    /// The session is gone.
    Expired,
    /// A definite refusal.
    Fail,
}

fn classify(s: &Status) -> Next {
    match s.code() {
        Code::Unavailable
        | Code::Unknown
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::ResourceExhausted
            if signal::kind(s) != Some(signal::Kind::NoSpace) =>
        {
            Next::Retry
        }
        Code::FailedPrecondition if signal::kind(s) == Some(signal::Kind::SessionExpired) => {
            Next::Expired
        }
        _ => Next::Fail,
    }
}

/// A fresh client id: 63 random bits (the top bit is the servers' for
/// plain etcd requests), never 0. The randomness is std's per-process
/// hasher keys (seeded by the OS) mixed with the time and a counter.
pub fn random_client_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    (h.finish() >> 1).max(1)
}

/// One client session. See the module docs.
#[derive(Debug)]
pub struct Session {
    endpoints: Vec<(String, Conn)>,
    /// The client the session came from, when it has credentials: it
    /// authenticates again when a member refuses the token the session's
    /// connections share with it.
    login: Option<Client>,
    current: usize,
    id: u64,
    seq: u64,
    resumed: bool,
    opts: SessionOptions,
    resent: u64,
}

impl Session {
    /// A new session over `client`'s endpoints, with a random id. Its
    /// writes carry the client's token: with credentials, authenticate
    /// the client ([`Client::authenticate`]) before the first write.
    pub fn new(client: &Client, opts: SessionOptions) -> Session {
        let endpoints = client
            .endpoints()
            .into_iter()
            .enumerate()
            .filter_map(|(i, e)| Some((e, client.conn_now(i).ok()?)))
            .collect();
        let mut session = Session::over_conns(endpoints, opts);
        session.login = client.has_credentials().then(|| client.clone());
        session
    }

    /// A new session over these named channels, with a random id (the
    /// benchmark shares its own connections this way).
    ///
    /// # Panics
    /// If `endpoints` is empty.
    pub fn over(endpoints: Vec<(String, Channel)>, opts: SessionOptions) -> Session {
        let endpoints = endpoints
            .into_iter()
            .map(|(e, c)| (e, Conn::new(c, Token::default())))
            .collect();
        Session::over_conns(endpoints, opts)
    }

    /// [`Session::over`] connections that carry a token (see
    /// [`crate::auth`]).
    ///
    /// # Panics
    /// If `endpoints` is empty.
    pub fn over_conns(endpoints: Vec<(String, Conn)>, opts: SessionOptions) -> Session {
        assert!(!endpoints.is_empty(), "a session needs an endpoint");
        let id = random_client_id();
        Session {
            // Sessions spread over the endpoints; each then sticks to the
            // member that last answered.
            current: (id % endpoints.len() as u64) as usize,
            endpoints,
            login: None,
            id,
            seq: 0,
            resumed: false,
            opts,
            resent: 0,
        }
    }

    /// The same session, sending its next write to endpoint `i` first
    /// (modulo the number of endpoints).
    pub fn starting_at(mut self, i: usize) -> Session {
        self.current = i % self.endpoints.len();
        self
    }

    /// The client id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The number of the last write sent (0: none yet).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// How many times a write was tried again after a failed attempt
    /// (an unknown outcome or a refused connection), over the session's
    /// life.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Sends write `op` as the session's next write; see the module docs.
    pub async fn write(&mut self, op: WriteOp) -> Result<WriteResponse, SessionError> {
        self.seq += 1;
        let request = kvpb::SessionWrite {
            client_id: self.id,
            seq: self.seq,
            resumed: self.resumed,
            op: Some(op),
        };
        let deadline = Instant::now() + self.opts.deadline;
        let mut attempts = 0;
        let mut backoff = self.opts.backoff;
        let mut last = String::from("not sent");
        // Whether an attempt may have reached a member (else the write was
        // certainly not applied).
        let mut reached = false;
        // A token is renewed once per write: a second refusal is an answer.
        let mut renewed = false;
        loop {
            for _ in 0..self.endpoints.len() {
                let (name, channel) = &self.endpoints[self.current];
                if attempts > 0 {
                    self.resent += 1;
                }
                attempts += 1;
                let mut kv = KvClient::new(channel.clone());
                let status = match timeout_at(deadline, kv.write(request.clone())).await {
                    Err(_) => return Err(self.indeterminate(attempts, last)),
                    Ok(Ok(r)) => {
                        self.resumed = true;
                        return r.into_inner().response.ok_or(SessionError::Mismatch {
                            asked: kind(&request),
                            got: "nothing",
                        });
                    }
                    Ok(Err(s)) => s,
                };
                match classify(&status) {
                    Next::Retry => last = format!("{name}: {}", status.message()),
                    Next::Expired => return Err(self.expired()),
                    // Refused before it was proposed: the same write, with
                    // a new token, to the same member.
                    Next::Fail if !renewed && token_refused(&status) && self.login.is_some() => {
                        renewed = true;
                        self.renew().await?;
                        // A member answered: if this was the round's last
                        // attempt, the next round (after the backoff) sends
                        // it again rather than call the cluster unreachable.
                        reached = true;
                        continue;
                    }
                    Next::Fail => return Err(SessionError::Server(status)),
                }
                reached |= !never_sent(&status);
                self.current = (self.current + 1) % self.endpoints.len();
            }
            if !reached {
                return Err(self.unreachable(last));
            }
            if Instant::now() + backoff >= deadline {
                return Err(self.indeterminate(attempts, last));
            }
            sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Authenticates again (the token was refused), through the client the
    /// session came from; its new token reaches the session's connections.
    async fn renew(&self) -> Result<(), SessionError> {
        let Some(client) = &self.login else {
            return Ok(());
        };
        client.authenticate().await.map_err(|e| match e {
            crate::client::ClientError::Login { status, .. }
            | crate::client::ClientError::Server(status) => SessionError::Server(status),
            other => SessionError::Server(Status::unavailable(other.to_string())),
        })
    }

    fn unreachable(&self, last: String) -> SessionError {
        let endpoints: Vec<&str> = self.endpoints.iter().map(|(e, _)| e.as_str()).collect();
        SessionError::Unreachable {
            endpoints: endpoints.join(","),
            seq: self.seq,
            last,
        }
    }

    fn indeterminate(&self, attempts: u32, last: String) -> SessionError {
        SessionError::Indeterminate {
            client: self.id,
            seq: self.seq,
            attempts,
            last,
        }
    }

    /// Reports the expiry and starts over under a new id.
    fn expired(&mut self) -> SessionError {
        let err = SessionError::SessionExpired {
            client: self.id,
            seq: self.seq,
        };
        self.id = random_client_id();
        self.seq = 0;
        self.resumed = false;
        err
    }

    /// etcd's `Put`, exactly once.
    pub async fn put(&mut self, req: pb::PutRequest) -> Result<pb::PutResponse, SessionError> {
        match self.write(WriteOp::Put(req)).await? {
            WriteResponse::Put(p) => Ok(p),
            other => Err(mismatch("put", &other)),
        }
    }

    /// etcd's `DeleteRange`, exactly once.
    pub async fn delete(
        &mut self,
        req: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, SessionError> {
        match self.write(WriteOp::DeleteRange(req)).await? {
            WriteResponse::DeleteRange(d) => Ok(d),
            other => Err(mismatch("delete", &other)),
        }
    }

    /// etcd's `Txn`, exactly once.
    pub async fn txn(&mut self, req: pb::TxnRequest) -> Result<pb::TxnResponse, SessionError> {
        match self.write(WriteOp::Txn(req)).await? {
            WriteResponse::Txn(t) => Ok(t),
            other => Err(mismatch("txn", &other)),
        }
    }

    /// The course's Append, exactly once: appends `value` to `key`'s value
    /// (creating the key if absent).
    pub async fn append(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<kvpb::AppendResponse, SessionError> {
        let op = WriteOp::Append(kvpb::AppendRequest {
            key: key.into(),
            value: value.into(),
        });
        match self.write(op).await? {
            WriteResponse::Append(a) => Ok(a),
            other => Err(mismatch("append", &other)),
        }
    }
}

fn kind(w: &kvpb::SessionWrite) -> &'static str {
    match w.op {
        Some(WriteOp::Put(_)) => "put",
        Some(WriteOp::DeleteRange(_)) => "delete",
        Some(WriteOp::Txn(_)) => "txn",
        Some(WriteOp::Append(_)) => "append",
        None => "nothing",
    }
}

fn mismatch(asked: &'static str, got: &WriteResponse) -> SessionError {
    let got = match got {
        WriteResponse::Put(_) => "put",
        WriteResponse::DeleteRange(_) => "delete",
        WriteResponse::Txn(_) => "txn",
        WriteResponse::Append(_) => "append",
    };
    SessionError::Mismatch { asked, got }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_63_bit_nonzero_and_distinct() {
        let ids: std::collections::BTreeSet<u64> = (0..1000).map(|_| random_client_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|&id| id != 0 && id >> 63 == 0));
    }

    #[test]
    fn unknown_outcomes_are_retried_and_refusals_are_not() {
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Cancelled] {
            assert!(matches!(classify(&Status::new(code, "x")), Next::Retry));
        }
        let text = "flotilla: the client session expired";
        let expired = signal::status(Code::FailedPrecondition, text, signal::Kind::SessionExpired);
        assert!(matches!(classify(&expired), Next::Expired));
        // The signal decides, not the text.
        let plain = Status::failed_precondition(text);
        assert!(matches!(classify(&plain), Next::Fail));
        for code in [Code::InvalidArgument, Code::Unimplemented, Code::Internal] {
            assert!(matches!(classify(&Status::new(code, "x")), Next::Fail));
        }
        // Overload is retried; a full store is final.
        let busy = Status::resource_exhausted("etcdserver: too many requests");
        assert!(matches!(classify(&busy), Next::Retry));
        let text = "etcdserver: mvcc: database space exceeded";
        let full = signal::status(Code::ResourceExhausted, text, signal::Kind::NoSpace);
        assert!(matches!(classify(&full), Next::Fail));
    }
}
