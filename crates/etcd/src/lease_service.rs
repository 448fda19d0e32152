//! `etcdserverpb.Lease`, as etcd serves it.
//!
//! - Grant and Revoke go through the log (the store keeps the lease
//!   table). A grant without an id gets one minted here ([`LeaseIds`]);
//!   a TTL under the cluster's minimum is raised to it and one over
//!   etcd's maximum refused, as etcd's lessor does.
//! - KeepAlive and TimeToLive need the leader's countdown, so any other
//!   member forwards them to the leader (marked, so they are never
//!   forwarded twice) and answers with its reply, as etcd's followers
//!   do. The leader confirms its leadership (a ReadIndex round) before
//!   it answers a keep-alive, and first clears a checkpointed remaining
//!   time through the log (see [`crate::lessor`] for why).
//! - Leases lists the replicated table after a read barrier, on any
//!   member.
//!
//! Answers as etcd's: a keep-alive of a lease that does not exist gets
//! TTL 0; TimeToLive of one gets TTL -1.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_kv::Op;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::lease_client::LeaseClient;
use flotilla_proto::etcdserverpb::lease_server::Lease;
use flotilla_raft::Term;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout_at};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Caller;
use crate::core::Core;
use crate::error::EtcdError;
use crate::leases::Keeper;
use crate::lessor::{MAX_LEASE_TTL, RenewError};
use crate::membership::FORWARDED;
use flotilla_runtime::lock;

/// Mints lease ids: positive, and unique across members and restarts
/// (16 bits of member id, 24 of boot time in seconds, a 23-bit counter).
#[derive(Debug)]
pub struct LeaseIds {
    base: i64,
    next: AtomicU64,
}

impl LeaseIds {
    /// Ids for member `member`, unique across its restarts.
    pub fn new(member: u64) -> LeaseIds {
        let secs = crate::machine::now_ms() / 1000;
        let base = ((member & 0xffff) << 47) | ((secs & 0xff_ffff) << 23);
        LeaseIds {
            base: base as i64,
            next: AtomicU64::new(1),
        }
    }

    /// The next id (never 0).
    pub fn next(&self) -> i64 {
        let n = self.next.fetch_add(1, Ordering::Relaxed) & 0x7f_ffff;
        match self.base | n as i64 {
            0 => 1,
            id => id,
        }
    }
}

/// The Lease service of a member.
#[derive(Clone)]
pub struct LeaseService {
    core: Core,
    keeper: Arc<Keeper>,
    closing: watch::Receiver<bool>,
}

/// Grants lease `id` (0: one minted here) for `ttl` seconds through the
/// log; the term, revision and id granted. A minted id that happens to
/// be taken is minted again.
pub async fn grant(core: &Core, id: i64, ttl: i64) -> Result<(Term, u64, i64), Status> {
    let mut tries = 0;
    loop {
        let minted = if id == 0 { core.lease_ids.next() } else { id };
        match core.write(Op::LeaseGrant { id: minted, ttl }).await {
            Ok((term, revision, _)) => return Ok((term, revision, minted)),
            Err(e) if id == 0 && tries < 3 && e.code() == tonic::Code::FailedPrecondition => {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

impl LeaseService {
    /// The service over `core`, counting down with `keeper`.
    pub fn new(core: Core, keeper: Arc<Keeper>, closing: watch::Receiver<bool>) -> LeaseService {
        LeaseService {
            core,
            keeper,
            closing,
        }
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        let revision = lock(&self.core.sm).replica.store().revision();
        self.core.header(revision, self.core.node.term())
    }

    /// A client of the leader, if another member leads.
    fn leader_client(&self) -> Option<LeaseClient<tonic::transport::Channel>> {
        let leader = self.core.node.leader().filter(|&l| l != self.core.me)?;
        Some(LeaseClient::new(self.core.channel(leader)?))
    }

    /// Keeps lease `id` alive: here if this member counts down, else at
    /// the leader (unless `forwarded` here already). The TTL, 0 if the
    /// lease does not exist.
    async fn renew(&self, id: i64, forwarded: bool) -> Result<i64, Status> {
        let deadline = Instant::now() + self.core.timeout;
        loop {
            match self.keeper.renew(&self.core, id) {
                Ok(r) => {
                    if r.clear_checkpoint {
                        let clear = Op::LeaseCheckpoint {
                            checkpoints: vec![(id, 0)],
                        };
                        self.core.write(clear).await?;
                    } else {
                        self.core.read_barrier().await?;
                    }
                    // Still the one counting down: the answer stands.
                    if self.keeper.is_primary() {
                        return Ok(r.ttl);
                    }
                }
                Err(RenewError::NotFound) => return Ok(0),
                Err(RenewError::NotPrimary) if !forwarded => {
                    if let Some(mut leader) = self.leader_client() {
                        let req = self
                            .core
                            .forwarded(tokio_stream::once(pb::LeaseKeepAliveRequest { id }));
                        let reply = async {
                            leader
                                .lease_keep_alive(req)
                                .await?
                                .into_inner()
                                .message()
                                .await
                        };
                        if let Ok(Ok(Some(r))) = timeout_at(deadline, reply).await {
                            return Ok(r.ttl);
                        }
                    }
                }
                Err(RenewError::NotPrimary) => {}
            }
            self.wait(deadline).await?;
        }
    }

    /// Waits a little for the roles to settle; at the deadline, etcd's
    /// "no leader".
    async fn wait(&self, deadline: Instant) -> Result<(), Status> {
        if Instant::now() >= deadline {
            return Err(EtcdError::NoLeader.into());
        }
        self.core.wait_for_change(deadline).await
    }
}

fn is_forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED)
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        self.core.require_user(&request)?;
        let r = request.into_inner();
        crate::validate::check_lease_grant(&r)?;
        if r.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        let ttl = r.ttl.max(self.keeper.config().min_ttl());
        let (term, revision, id) = grant(&self.core, r.id, ttl).await?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: self.core.header(revision, term),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = request.get_ref().id;
        let revoke = self.core.on_behalf(&request, Op::LeaseRevoke { id })?;
        let (term, revision, _) = self.core.write(revoke).await?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: self.core.header(revision, term),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.core.require_user(&request)?;
        let forwarded = is_forwarded(&request);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let svc = self.clone();
        let mut closing = self.closing.clone();
        tokio::spawn(async move {
            loop {
                let req = tokio::select! {
                    req = inbound.message() => req,
                    _ = closing.wait_for(|c| *c) => return,
                };
                let Ok(Some(req)) = req else { return };
                let reply =
                    svc.renew(req.id, forwarded)
                        .await
                        .map(|ttl| pb::LeaseKeepAliveResponse {
                            header: svc.header(),
                            id: req.id,
                            ttl,
                        });
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let caller = self.core.caller(&request)?;
        self.core.require_user_of(&caller)?;
        let r = request.into_inner();
        let deadline = Instant::now() + self.core.timeout;
        loop {
            if self.keeper.is_primary() {
                self.core.read_barrier().await?;
                let answer = self.time_to_live(&r);
                self.check_keys(&caller, &answer)?;
                return Ok(Response::new(answer));
            }
            if !forwarded && let Some(mut leader) = self.leader_client() {
                let answer =
                    timeout_at(deadline, leader.lease_time_to_live(self.core.forwarded(r)));
                if let Ok(Ok(answer)) = answer.await {
                    self.check_keys(&caller, answer.get_ref())?;
                    return Ok(answer);
                }
            }
            self.wait(deadline).await?;
        }
    }

    async fn lease_leases(
        &self,
        request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        self.core.require_user(&request)?;
        self.core.read_barrier().await?;
        let sm = lock(&self.core.sm);
        let store = sm.replica.store();
        let leases = store
            .leases()
            .iter()
            .map(|(id, _)| pb::LeaseStatus { id })
            .collect();
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.core.header(store.revision(), self.core.node.term()),
            leases,
        }))
    }
}

impl LeaseService {
    /// While auth is on, a TimeToLive answer that lists keys goes only to
    /// a caller that may read every one of them (checked on the answer, so
    /// a key attached while it was made counts).
    fn check_keys(
        &self,
        caller: &Caller,
        answer: &pb::LeaseTimeToLiveResponse,
    ) -> Result<(), Status> {
        answer
            .keys
            .iter()
            .try_for_each(|k| self.core.require_permitted(caller, &Op::get(k.clone())))
    }

    /// TimeToLive on the member that counts down.
    fn time_to_live(&self, r: &pb::LeaseTimeToLiveRequest) -> pb::LeaseTimeToLiveResponse {
        let sm = lock(&self.core.sm);
        let store = sm.replica.store();
        let header = self.core.header(store.revision(), self.core.node.term());
        let Some(lease) = store.leases().get(r.id) else {
            return pb::LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            };
        };
        pb::LeaseTimeToLiveResponse {
            header,
            id: r.id,
            ttl: self.keeper.remaining(r.id).unwrap_or(lease.ttl),
            granted_ttl: lease.ttl,
            keys: if r.keys {
                lease.keys().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_are_positive_distinct_and_carry_the_member() {
        let ids = LeaseIds::new(0x1234);
        let (a, b) = (ids.next(), ids.next());
        assert!(a > 0 && b > 0 && a != b);
        assert_eq!((a >> 47) & 0xffff, 0x1234);
        let other = LeaseIds::new(0x1235);
        assert_ne!(other.next() >> 47, a >> 47);
    }
}
