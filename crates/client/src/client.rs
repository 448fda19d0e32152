//! A small Rust client for a Flotilla (or etcd) cluster over etcd's v3
//! API, used by the `flotilla` CLI and the tests.
//!
//! It knows several endpoints and fails over, each endpoint once per call,
//! starting from the last that answered. Reads move on whenever an
//! endpoint is unreachable or unavailable. Writes move on only when the
//! connection could not be made, so the request never left: a write whose
//! outcome is unknown (the connection broke after it was sent) is reported
//! as an error, never re-sent, so it is applied at most once.
//!
//! Over TLS ([`Client::with_tls`], etcdctl's `--cacert`, `--cert`,
//! `--key`) every endpoint is dialed through [`flotilla_tls::ClientTls`],
//! which checks each server's certificate against the host dialed; an
//! `https://` endpoint without TLS settings is refused, never dialed in
//! plaintext.
//!
//! With credentials ([`Client::with_credentials`], etcdctl's `--user`)
//! it authenticates before its first call and its calls carry the token
//! (see [`crate::auth`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::auth_client::AuthClient;
use flotilla_proto::etcdserverpb::cluster_client::ClusterClient;
use flotilla_proto::etcdserverpb::kv_client::KvClient;
use flotilla_proto::etcdserverpb::lease_client::LeaseClient;
use flotilla_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use flotilla_tls::ClientTls;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::auth::{Conn, Credentials, Token, token_refused};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An endpoint is not a valid address.
    #[error("invalid endpoint {0:?}: expected host:port")]
    BadEndpoint(String),
    /// An `https://` endpoint, and no CA to check its certificate with.
    #[error("endpoint {0:?} is https: give the CA to trust (--cacert)")]
    TlsNeeded(String),
    /// No endpoint could be reached.
    #[error("no endpoint reachable ({endpoints}): {last}")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// The last error.
        last: String,
    },
    /// The server answered with an error.
    #[error("{}: {}", .0.code(), .0.message())]
    Server(Status),
    /// The server refused the client's credentials.
    #[error("authenticating as {user:?}: {}", .status.message())]
    Login {
        /// The user named.
        user: String,
        /// The server's answer.
        status: Status,
    },
}

/// A client over a list of endpoints.
#[derive(Debug)]
pub struct Client {
    endpoints: Vec<(String, Channel)>,
    current: AtomicUsize,
    /// The token calls carry (see [`crate::auth`]).
    token: Token,
    /// Whom to authenticate as, if anyone.
    credentials: Option<Credentials>,
    /// Said when a connection breaks: a TLS client without a certificate
    /// is cut off by a server that wants one, with no reason on the wire
    /// that a gRPC client sees.
    hint: &'static str,
}

/// What [`Client::hint`] says for a TLS client without a certificate.
const NO_CERT_HINT: &str =
    " (if the server requires client certificates (--client-cert-auth), give --cert and --key)";

/// The largest response the client takes, as etcd's client (2 GiB): a
/// range may return far more than gRPC's default of 4 MiB.
pub const RESPONSE_BYTES_MAX: usize = i32::MAX as usize;

/// etcd's KV service over `c`.
fn kv(c: Conn) -> KvClient<Conn> {
    KvClient::new(c).max_decoding_message_size(RESPONSE_BYTES_MAX)
}

/// A client over the same connections that shares this one's token, so
/// an authentication by either reaches both (a [`crate::Session`] keeps
/// one to authenticate again).
impl Clone for Client {
    fn clone(&self) -> Client {
        Client {
            endpoints: self.endpoints.clone(),
            current: AtomicUsize::new(self.current.load(Ordering::Relaxed)),
            token: self.token.clone(),
            credentials: self.credentials.clone(),
            hint: self.hint,
        }
    }
}

impl Client {
    /// A client for `endpoints` (`host:port`, optionally with `http://`).
    /// Connections are made on first use.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Client, ClientError> {
        Self::with_tls(endpoints, timeout, None)
    }

    /// A client for `endpoints` (`host:port`, optionally with `http://`
    /// or `https://`), over TLS if `tls` is given.
    pub fn with_tls(
        endpoints: &[String],
        timeout: Duration,
        tls: Option<Arc<ClientTls>>,
    ) -> Result<Client, ClientError> {
        let mut out = Vec::new();
        for e in endpoints {
            if e.starts_with("https://") && tls.is_none() {
                return Err(ClientError::TlsNeeded(e.clone()));
            }
            let ep = Endpoint::from_shared(flotilla_tls::tonic_uri(e))
                .map_err(|_| ClientError::BadEndpoint(e.clone()))?
                .connect_timeout(Duration::from_secs(1))
                .timeout(timeout)
                .tcp_nodelay(true);
            let channel = match &tls {
                Some(tls) => flotilla_tls::lazy_channel(ep, tls),
                None => ep.connect_lazy(),
            };
            out.push((e.clone(), channel));
        }
        if out.is_empty() {
            return Err(ClientError::BadEndpoint(String::new()));
        }
        let no_cert = tls.as_ref().is_some_and(|t| !t.has_cert());
        Ok(Client {
            endpoints: out,
            current: AtomicUsize::new(0),
            token: Token::default(),
            credentials: None,
            hint: if no_cert { NO_CERT_HINT } else { "" },
        })
    }

    /// The endpoints, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.iter().map(|(e, _)| e.clone()).collect()
    }

    /// The client, authenticating as `credentials` before its first call
    /// (etcdctl's `--user`).
    pub fn with_credentials(mut self, credentials: Credentials) -> Client {
        self.credentials = Some(credentials);
        self
    }

    /// The token this client's calls carry, shared: it follows the
    /// client's later authentications.
    pub fn token(&self) -> Token {
        self.token.clone()
    }

    /// The channel to endpoint `i`, as it is: its requests carry no
    /// token.
    pub fn channel(&self, i: usize) -> Option<Channel> {
        self.endpoints.get(i).map(|(_, c)| c.clone())
    }

    /// A connection to endpoint `i` whose requests carry this client's
    /// token (once it has authenticated, if it has credentials).
    pub async fn conn(&self, i: usize) -> Result<Conn, ClientError> {
        self.logged_in().await?;
        self.conn_now(i)
    }

    /// [`Client::conn`] without authenticating first.
    pub(crate) fn conn_now(&self, i: usize) -> Result<Conn, ClientError> {
        let Some((_, c)) = self.endpoints.get(i) else {
            return Err(ClientError::BadEndpoint(format!("endpoint #{i}")));
        };
        Ok(Conn::new(c.clone(), self.token.clone()))
    }

    /// Authenticates with the client's credentials (none: nothing to
    /// do) and holds the token every later call carries.
    pub async fn authenticate(&self) -> Result<(), ClientError> {
        let Some(c) = &self.credentials else {
            return Ok(());
        };
        // The old token stays meanwhile: calls in flight on other tasks
        // keep it (at worst refused for it, and retried) rather than
        // going out with none. Authenticate does not look at it.
        let req = pb::AuthenticateRequest {
            name: c.user.clone(),
            password: c.password.clone(),
        };
        let answer = self
            .call_once(false, &|ch| {
                let req = req.clone();
                async move { AuthClient::new(ch).authenticate(req).await }
            })
            .await;
        let token = match answer {
            Ok(r) => r.token,
            Err(ClientError::Server(status)) => {
                let user = c.user.clone();
                return Err(ClientError::Login { user, status });
            }
            Err(e) => return Err(e),
        };
        let value = token.parse().map_err(|_| ClientError::Login {
            user: c.user.clone(),
            status: Status::internal("the server's token is not ASCII"),
        })?;
        self.token.set(Some(value));
        Ok(())
    }

    /// Whether the client authenticates (it was given credentials).
    pub(crate) fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Authenticates unless there is a token already or nobody to
    /// authenticate as.
    async fn logged_in(&self) -> Result<(), ClientError> {
        if self.credentials.is_some() && !self.token.is_set() {
            self.authenticate().await?;
        }
        Ok(())
    }

    /// `f` on the endpoints (see [`Client::call_once`]), authenticated;
    /// once more with a new token if the server refused the one held (it
    /// did nothing then, so even a write is safe to send again).
    async fn call<T, F, Fut>(&self, write: bool, f: F) -> Result<T, ClientError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.logged_in().await?;
        match self.call_once(write, &f).await {
            Err(ClientError::Server(s)) if self.credentials.is_some() && token_refused(&s) => {
                self.authenticate().await?;
                self.call_once(write, &f).await
            }
            other => other,
        }
    }

    /// `f` on each endpoint in turn from the last that answered, until
    /// one answers; a write moves on only if it was never sent.
    async fn call_once<T, F, Fut>(&self, write: bool, f: &F) -> Result<T, ClientError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let n = self.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::new();
        for k in 0..n {
            let i = (start + k) % n;
            match f(Conn::new(self.endpoints[i].1.clone(), self.token.clone())).await {
                Ok(r) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(r.into_inner());
                }
                Err(s) if failover(&s) && (!write || never_sent(&s)) => {
                    last = format!("{}: {}{}", self.endpoints[i].0, with_causes(&s), self.hint);
                }
                Err(s) => {
                    if failover(&s) {
                        // Unknown outcome: not re-sent, but later calls
                        // start at the next endpoint.
                        self.current.store((i + 1) % n, Ordering::Relaxed);
                    }
                    return Err(ClientError::Server(s));
                }
            }
        }
        Err(ClientError::Unreachable {
            endpoints: self.endpoints().join(","),
            last,
        })
    }

    /// `Put`.
    pub async fn put(&self, req: pb::PutRequest) -> Result<pb::PutResponse, ClientError> {
        self.call(true, |c| {
            let req = req.clone();
            async move { kv(c).put(req).await }
        })
        .await
    }

    /// `Range`.
    pub async fn range(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, ClientError> {
        self.call(false, |c| {
            let req = req.clone();
            async move { kv(c).range(req).await }
        })
        .await
    }

    /// `DeleteRange`.
    pub async fn delete(
        &self,
        req: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, ClientError> {
        self.call(true, |c| {
            let req = req.clone();
            async move { kv(c).delete_range(req).await }
        })
        .await
    }

    /// `Compact`: forgets the key history before `revision`.
    pub async fn compact(&self, revision: i64) -> Result<pb::CompactionResponse, ClientError> {
        self.call(true, |c| async move {
            let req = pb::CompactionRequest {
                revision,
                physical: false,
            };
            kv(c).compact(req).await
        })
        .await
    }

    /// `Txn`.
    pub async fn txn(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, ClientError> {
        self.call(true, |c| {
            let req = req.clone();
            async move { kv(c).txn(req).await }
        })
        .await
    }

    /// `MemberList`, linearizable (it reflects every change made before).
    pub async fn member_list(&self) -> Result<pb::MemberListResponse, ClientError> {
        self.call(false, |c| async move {
            ClusterClient::new(c)
                .member_list(pb::MemberListRequest { linearizable: true })
                .await
        })
        .await
    }

    /// `MemberAdd` (a write: sent elsewhere only if it never left).
    pub async fn member_add(
        &self,
        req: pb::MemberAddRequest,
    ) -> Result<pb::MemberAddResponse, ClientError> {
        self.call(true, |c| {
            let req = req.clone();
            async move { ClusterClient::new(c).member_add(req).await }
        })
        .await
    }

    /// `MemberRemove`.
    pub async fn member_remove(&self, id: u64) -> Result<pb::MemberRemoveResponse, ClientError> {
        self.call(true, |c| async move {
            ClusterClient::new(c)
                .member_remove(pb::MemberRemoveRequest { id })
                .await
        })
        .await
    }

    /// `MemberPromote`.
    pub async fn member_promote(&self, id: u64) -> Result<pb::MemberPromoteResponse, ClientError> {
        self.call(true, |c| async move {
            ClusterClient::new(c)
                .member_promote(pb::MemberPromoteRequest { id })
                .await
        })
        .await
    }

    /// `MemberUpdate`: member `id` now serves at `peer_url`.
    pub async fn member_update(
        &self,
        id: u64,
        peer_url: &str,
    ) -> Result<pb::MemberUpdateResponse, ClientError> {
        self.call(true, |c| async move {
            ClusterClient::new(c)
                .member_update(pb::MemberUpdateRequest {
                    id,
                    peer_ur_ls: vec![peer_url.to_string()],
                })
                .await
        })
        .await
    }

    /// `Status` of endpoint `i` alone (no failover).
    pub async fn status_of(&self, i: usize) -> Result<pb::StatusResponse, ClientError> {
        let conn = self.conn(i).await?;
        let name = &self.endpoints[i].0;
        match MaintenanceClient::new(conn)
            .status(pb::StatusRequest {})
            .await
        {
            Ok(r) => Ok(r.into_inner()),
            Err(s) if failover(&s) => Err(ClientError::Unreachable {
                endpoints: name.clone(),
                last: with_causes(&s) + self.hint,
            }),
            Err(s) => Err(ClientError::Server(s)),
        }
    }

    /// `LeaseGrant` of `ttl` seconds, with lease id `id` (0: the server
    /// chooses).
    pub async fn lease_grant(
        &self,
        ttl: i64,
        id: i64,
    ) -> Result<pb::LeaseGrantResponse, ClientError> {
        self.call(true, |c| async move {
            LeaseClient::new(c)
                .lease_grant(pb::LeaseGrantRequest { ttl, id })
                .await
        })
        .await
    }

    /// `LeaseRevoke`: the lease and every key attached to it.
    pub async fn lease_revoke(&self, id: i64) -> Result<pb::LeaseRevokeResponse, ClientError> {
        self.call(true, |c| async move {
            LeaseClient::new(c)
                .lease_revoke(pb::LeaseRevokeRequest { id })
                .await
        })
        .await
    }

    /// `LeaseTimeToLive` (TTL -1: no such lease), with the attached keys
    /// if `keys`.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> Result<pb::LeaseTimeToLiveResponse, ClientError> {
        self.call(false, |c| async move {
            LeaseClient::new(c)
                .max_decoding_message_size(RESPONSE_BYTES_MAX)
                .lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys })
                .await
        })
        .await
    }

    /// `LeaseLeases`: every lease's id.
    pub async fn lease_leases(&self) -> Result<pb::LeaseLeasesResponse, ClientError> {
        self.call(false, |c| async move {
            LeaseClient::new(c)
                .max_decoding_message_size(RESPONSE_BYTES_MAX)
                .lease_leases(pb::LeaseLeasesRequest {})
                .await
        })
        .await
    }

    /// One keep-alive of lease `id`: its TTL (0: no such lease).
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<i64, ClientError> {
        self.call(false, |c| async move {
            let once = tonic::codegen::tokio_stream::once(pb::LeaseKeepAliveRequest { id });
            let mut replies = LeaseClient::new(c)
                .lease_keep_alive(once)
                .await?
                .into_inner();
            match replies.message().await? {
                Some(r) => Ok(tonic::Response::new(r.ttl)),
                None => Err(Status::unavailable("the keep-alive stream ended")),
            }
        })
        .await
    }

    /// `Alarm` (GET lists; ACTIVATE and DEACTIVATE are writes).
    pub async fn alarm(&self, req: pb::AlarmRequest) -> Result<pb::AlarmResponse, ClientError> {
        let write = req.action != pb::alarm_request::AlarmAction::Get as i32;
        self.call(write, |c| async move {
            MaintenanceClient::new(c).alarm(req).await
        })
        .await
    }

    /// `Defragment` of endpoint `i` (one member, as etcd's).
    pub async fn defragment_at(&self, i: usize) -> Result<pb::DefragmentResponse, ClientError> {
        let r = MaintenanceClient::new(self.conn(i).await?)
            .defragment(pb::DefragmentRequest {})
            .await
            .map_err(ClientError::Server)?;
        Ok(r.into_inner())
    }

    /// A simple get of `key`: its value, if present.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, ClientError> {
        let r = self
            .range(pb::RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await?;
        Ok(r.kvs.into_iter().next().map(|kv| kv.value))
    }
}

/// A status's message and the errors under it: a failed TLS handshake
/// (an unknown CA, a refused certificate) is only said there.
pub(crate) fn with_causes(s: &Status) -> String {
    flotilla_proto::signal::with_causes(s.message().to_string(), s)
}

/// Whether the request never reached the server (the connection could
/// not be made), so sending it elsewhere cannot apply it twice.
pub(crate) fn never_sent(s: &Status) -> bool {
    s.code() == Code::Unavailable && s.message().contains("connect")
}

/// Whether an error means "try another endpoint".
/// A server's own answers (etcd's "etcdserver: ..." messages) are not;
/// transport failures and this client's timeouts (`CANCELLED`) are.
fn failover(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    ) && !s.message().starts_with("etcdserver")
}
