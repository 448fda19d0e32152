//! What every etcd service of a node shares: the Raft node's handle, the
//! KV state machine, and the two paths of a request.
//!
//! - Writes become one log command, proposed through the host: here if
//!   this node leads, otherwise forwarded to the leader on the peer stream
//!   (`flotilla_raft`'s `Propose`, batched with the others) and answered
//!   here once applied here. Retries (after a leader change) resend the
//!   *same* command bytes, so the replica's session table applies it at
//!   most once.
//! - Linearizable reads wait for a ReadIndex confirmed by the leader (a
//!   follower's Raft core asks the leader) and for this node to apply up to
//!   it, then read the local replica; serializable reads read it at once.
//!
//! Every request has a deadline; on it the client gets etcd's
//! "request timed out" (`DEADLINE_EXCEEDED`).

use crate::error::EtcdError;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_kv::{Command, Op, Outcome, ReadConsistency, Refusal, Request, Response};
use flotilla_proto::etcdserverpb as pb;
use flotilla_raft::{NodeId, Term};
use tokio::time::{Instant, timeout_at};
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use super::machine::{KvMachine, KvOutput, SessionIds, now_ms};
use flotilla_runtime::lock;
use flotilla_runtime::metrics::Metrics;
use flotilla_runtime::{NodeError, NodeHandle, Transport};

/// etcd's default `--max-request-bytes`: the largest write a client may
/// make, measured as the command it becomes in the log.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// What the client-facing gRPC services decode beyond the request limit
/// (etcd's allowance too): the rest of a request around its command.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// The highest request limit a server takes: a command that large must
/// still fit, as one entry, in a peer batch with room to spare
/// ([`flotilla_runtime::transport::BATCH_DECODE_MAX`]).
pub const MAX_REQUEST_BYTES_LIMIT: usize = 32 << 20;

/// A node's shared service state. Cheap to clone.
#[derive(Clone)]
pub struct Core {
    /// The cluster's id (in every response header).
    pub cluster_id: u64,
    /// This node.
    pub me: NodeId,
    /// The Raft node.
    pub node: NodeHandle<KvOutput>,
    /// The state machine (read under its lock; nothing awaits under it).
    pub sm: Arc<Mutex<KvMachine>>,
    /// The members the cluster started with (members' current addresses
    /// are in the state machine's member table).
    pub initial: Arc<BTreeMap<NodeId, String>>,
    /// Session ids for plain etcd requests.
    pub ids: Arc<SessionIds>,
    /// Lease ids minted on this member (the Lease service's grants and
    /// the recipes' own sessions): one counter, so they never collide.
    pub lease_ids: Arc<crate::lease_service::LeaseIds>,
    /// How long a request may take.
    pub timeout: Duration,
    /// Request latencies go here.
    pub metrics: Arc<Metrics>,
    /// The peer links; their addresses (the member table's, or a local
    /// route's) are where membership requests are forwarded.
    transport: Transport,
    /// Clients of the members membership requests are forwarded to (writes
    /// go inside Raft's own messages, through the host), with the address
    /// each dials. Bound: one per member the transport links to; a
    /// removed member's (or a moved one's) goes when the next channel is
    /// made.
    channels: Arc<Mutex<HashMap<NodeId, (String, Channel)>>>,
    /// See [`Core::with_strict_reconfig`].
    pub(crate) strict_reconfig: bool,
    /// See [`Core::with_max_request_bytes`].
    pub(crate) max_request_bytes: usize,
    /// See [`Core::with_quota_bytes`].
    pub(crate) quota_bytes: u64,
    /// See [`Core::with_auth_config`].
    pub(crate) auth_config: crate::auth::AuthConfig,
    /// See [`Core::with_url_schemes`].
    pub(crate) url_schemes: crate::membership::UrlSchemes,
}

/// etcd's default `--quota-backend-bytes`: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 << 30;

/// A write's result: the term it committed in, the store's revision after
/// it, and the store's answer.
pub type Written = (Term, u64, Response);

impl Core {
    /// Bytes of Raft messages sent to each peer since start.
    pub fn peers_sent_bytes(&self) -> Vec<(NodeId, u64)> {
        self.transport.sent_bytes()
    }

    /// The shared state of node `me`.
    pub fn new(
        cluster_id: u64,
        me: NodeId,
        node: NodeHandle<KvOutput>,
        sm: Arc<Mutex<KvMachine>>,
        initial: Arc<BTreeMap<NodeId, String>>,
        metrics: Arc<Metrics>,
        transport: Transport,
    ) -> Core {
        Core {
            cluster_id,
            me,
            node,
            sm,
            initial,
            ids: Arc::new(SessionIds::new(me.get())),
            lease_ids: Arc::new(crate::lease_service::LeaseIds::new(me.get())),
            timeout: Duration::from_secs(5),
            metrics,
            transport,
            channels: Arc::new(Mutex::new(HashMap::new())),
            strict_reconfig: true,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            quota_bytes: DEFAULT_QUOTA_BYTES,
            auth_config: crate::auth::AuthConfig::default(),
            url_schemes: crate::membership::UrlSchemes::default(),
        }
    }

    /// The schemes this member's port speaks, in which member lists give
    /// every member's URLs (all members of a cluster are set up alike).
    pub fn with_url_schemes(mut self, schemes: crate::membership::UrlSchemes) -> Core {
        self.url_schemes = schemes;
        self
    }

    /// How passwords are hashed and how long tokens last (etcd's
    /// `--bcrypt-cost` and `--auth-token-ttl`).
    pub fn with_auth_config(mut self, config: crate::auth::AuthConfig) -> Core {
        self.auth_config = config;
        self
    }

    /// Refuses writes that add data once the store holds `bytes` (etcd's
    /// `--quota-backend-bytes`), raising this member's NOSPACE alarm
    /// through the log: from then on every member refuses them, with
    /// etcd's `mvcc: database space exceeded`, until the alarm is
    /// disarmed (after compaction and defragmentation freed room).
    pub fn with_quota_bytes(mut self, bytes: u64) -> Core {
        self.quota_bytes = bytes;
        self
    }

    /// The quota check before a write of `command_bytes` that adds data
    /// ([`Op::adds_data`]), as etcd's quota server makes it: over quota,
    /// this member's NOSPACE alarm is raised (once) and the write refused.
    fn check_quota(&self, adds_data: bool, command_bytes: usize) -> Result<(), Status> {
        if !adds_data {
            return Ok(());
        }
        let (size, raised) = {
            let sm = lock(&self.sm);
            let store = sm.replica.store();
            let mine = (self.me.get(), flotilla_kv::AlarmKind::NoSpace);
            (store.size_bytes(), store.alarms().any(|a| a == mine))
        };
        if size.saturating_add(command_bytes as u64) <= self.quota_bytes {
            return Ok(());
        }
        if !raised {
            let core = self.clone();
            tokio::spawn(async move {
                let raise = Op::Alarm {
                    raise: true,
                    member: core.me.get(),
                    kind: flotilla_kv::AlarmKind::NoSpace,
                };
                if let Err(e) = core.write(raise).await {
                    tracing::warn!(error = %e, "raising the NOSPACE alarm");
                }
            });
        }
        Err(EtcdError::NoSpace.into())
    }

    /// Refuses writes whose command would exceed `bytes` in the log
    /// (etcd's `--max-request-bytes`): every member holds and sends every
    /// entry, so one huge write would stall replication for all.
    pub fn with_max_request_bytes(mut self, bytes: usize) -> Core {
        self.max_request_bytes = bytes;
        self
    }

    /// Whether membership changes that would put the quorum at risk are
    /// refused (etcd's `--strict-reconfig-check`, on by default).
    pub fn with_strict_reconfig(mut self, strict: bool) -> Core {
        self.strict_reconfig = strict;
        self
    }

    /// A response header at store revision `revision`.
    pub fn header(&self, revision: u64, term: Term) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.me.get(),
            revision: revision as i64,
            raft_term: term.0,
        })
    }

    /// Proposes `op` (here or at the leader) and waits for its outcome:
    /// a plain etcd request, in a session of its own.
    pub async fn write(&self, op: Op) -> Result<Written, Status> {
        let adds_data = op.adds_data();
        let command = self.ids.command(op);
        self.check_quota(adds_data, command.len())?;
        self.write_command(command).await
    }

    /// Proposes request `seq` of the client session `client` (see
    /// `flotilla.kv.v1.Kv`): the session table applies it at most once,
    /// and answers a retry with the recorded reply.
    pub async fn write_session(
        &self,
        client: u64,
        seq: u64,
        resumed: bool,
        op: Op,
    ) -> Result<Written, Status> {
        let adds_data = op.adds_data();
        let command = Command {
            stamp_ms: now_ms(),
            request: Request {
                client,
                seq,
                read: ReadConsistency::Linearizable,
                resumed,
                op,
            },
        }
        .encode();
        self.check_quota(adds_data, command.len())?;
        self.write_command(command).await
    }

    /// Proposes an encoded command and waits for its outcome; a retry
    /// (after a leader change) resends the same bytes.
    async fn write_command(&self, command: Bytes) -> Result<Written, Status> {
        if command.len() > self.max_request_bytes {
            return Err(EtcdError::RequestTooLarge.into());
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let leader = self.node.leader();
            let attempt = timeout_at(deadline, async {
                // A follower's host forwards the command to the leader
                // and answers once it has applied it here.
                match leader {
                    Some(_) => self.propose(&command).await,
                    None => Err(Attempt::Wait),
                }
            });
            let Ok(attempt) = attempt.await else {
                return Err(EtcdError::Timeout(None).into());
            };
            match attempt {
                Ok(done) => return Ok(done),
                Err(Attempt::Fail(status)) => return Err(status),
                Err(Attempt::Wait) => self.wait_for_change(deadline).await?,
            }
        }
    }

    async fn propose(&self, command: &Bytes) -> Result<Written, Attempt> {
        match self.node.propose(command.clone()).await {
            Ok(applied) => outcome(applied.term, applied.output),
            Err(NodeError::Stopped) => Err(Attempt::Fail(EtcdError::Stopped.into())),
            Err(NodeError::Overloaded { .. }) => Err(Attempt::Fail(too_many_requests())),
            Err(_) => Err(Attempt::Wait),
        }
    }

    /// Waits (at most a short while) for the node's status to change, e.g.
    /// for a leader to be elected; fails at the deadline.
    pub(crate) async fn wait_for_change(&self, deadline: Instant) -> Result<(), Status> {
        if Instant::now() >= deadline {
            return Err(EtcdError::Timeout(None).into());
        }
        let mut watch = self.node.watch_status();
        let soon = (Instant::now() + Duration::from_millis(50)).min(deadline);
        let _ = timeout_at(soon, watch.changed()).await;
        Ok(())
    }

    /// A channel to member `id`, at the address the transport's link to
    /// it uses.
    pub(crate) fn channel(&self, id: NodeId) -> Option<Channel> {
        let addr = self.transport.addr(id)?;
        let mut channels = lock(&self.channels);
        if let Some((a, c)) = channels.get(&id)
            && *a == addr
        {
            return Some(c.clone());
        }
        channels.retain(|&other, _| other == id || self.transport.addr(other).is_some());
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).ok()?;
        let channel = self.transport.lazy_channel(
            endpoint
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true),
        );
        channels.insert(id, (addr, channel.clone()));
        Some(channel)
    }

    /// Refuses a peer call from a connection without a peer certificate,
    /// when members must present one (`--peer-client-cert-auth`).
    pub(crate) fn require_peer<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        flotilla_runtime::inbound::require_peer(Some(&self.transport), request)
    }

    /// Serves a read-only `op`: linearizable unless `serializable`.
    pub async fn read(&self, op: &Op, serializable: bool) -> Result<(Term, u64, Response), Status> {
        if !serializable {
            self.read_barrier().await?;
        }
        let term = self.node.term();
        let sm = lock(&self.sm);
        read_outcome(term, sm.replica.read(op))
    }

    /// [`Core::read`] of a client's `op` as `caller`, wrapped or not by the
    /// auth store as it stands at the read index (see [`crate::auth`]).
    pub async fn read_as(
        &self,
        op: Op,
        caller: crate::auth::Caller,
        serializable: bool,
    ) -> Result<(Term, u64, Response), Status> {
        if !serializable {
            self.read_barrier().await?;
        }
        let term = self.node.term();
        let sm = lock(&self.sm);
        let op = crate::auth::as_user_if_used(sm.replica.store().auth(), op, caller);
        read_outcome(term, sm.replica.read(&op))
    }

    /// Waits until a linearizable read may be served here.
    pub(crate) async fn read_barrier(&self) -> Result<(), Status> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match timeout_at(deadline, self.node.read_index()).await {
                Err(_) => return Err(EtcdError::Timeout(None).into()),
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(NodeError::Stopped)) => {
                    return Err(EtcdError::Stopped.into());
                }
                Ok(Err(NodeError::Overloaded { .. })) => return Err(too_many_requests()),
                Ok(Err(_)) => self.wait_for_change(deadline).await?,
            }
        }
    }
}

enum Attempt {
    /// Try again once something changes (a leader, a term).
    Wait,
    /// Give up with this error.
    Fail(Status),
}

/// `FAILED_PRECONDITION`: the outcome is unknown and a retry in the same
/// session cannot tell; the client must start a new session.
fn session_expired() -> Status {
    EtcdError::SessionExpired.into()
}

/// A command the replicas refused when they applied or read it, with
/// etcd's error: a revision compacted or not reached yet, or a malformed
/// command the boundary's checks should have stopped first.
fn refused(r: Refusal) -> Status {
    EtcdError::from(r).into()
}

/// etcd's answer when too many requests wait at the server.
pub(crate) fn too_many_requests() -> Status {
    EtcdError::TooManyRequests.into()
}

/// A read's answer, or the refusal the store gave it.
fn read_outcome(term: Term, outcome: Outcome) -> Result<(Term, u64, Response), Status> {
    match outcome {
        Outcome::Ok { revision, response } => Ok((term, revision, response)),
        Outcome::Refused(r) => Err(refused(r)),
        _ => Err(Status::internal("the store refused a read")),
    }
}

/// The outcome of a command applied here.
fn outcome(term: Term, output: KvOutput) -> Result<Written, Attempt> {
    match output {
        Some(applied) => match applied.outcome {
            Outcome::Ok { revision, response } => Ok((term, revision, response)),
            Outcome::WrongLeader { .. } => Err(Attempt::Wait),
            Outcome::SessionExpired => Err(Attempt::Fail(session_expired())),
            Outcome::Refused(r) => Err(Attempt::Fail(refused(r))),
        },
        None => Err(Attempt::Fail(Status::internal(
            "a command applied as a no-op",
        ))),
    }
}
