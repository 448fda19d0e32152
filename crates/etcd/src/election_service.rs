//! `v3electionpb.Election`, as etcd serves it: Campaign queues the
//! candidate under `NAME/<lease>` with its value (and a session lease of
//! its own if it has none, see [`crate::recipes`]) and answers once it
//! leads (every earlier key gone, see [`crate::recipes`]); Proclaim
//! rewrites the leader's value while it still leads; Resign deletes its
//! key; Leader reads the first-created key; Observe streams each new
//! leader and each value it proclaims, in order.

use std::pin::Pin;

use bytes::Bytes;
use flotilla_kv::{KeyValue, Op, Response as KvResponse, Txn};
use flotilla_proto::mvccpb;
use flotilla_proto::v3electionpb as pb;
use flotilla_proto::v3electionpb::election_server::Election;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::key_value;
use crate::core::Core;
use crate::error::EtcdError;
use crate::recipes::{self, LeaveOnDrop};
use flotilla_runtime::lock;

/// The Election service of a member.
#[derive(Clone)]
pub struct ElectionService {
    core: Core,
    closing: watch::Receiver<bool>,
}

impl ElectionService {
    /// The service over `core`; Observe streams end when `closing`.
    pub fn new(core: Core, closing: watch::Receiver<bool>) -> ElectionService {
        ElectionService { core, closing }
    }

    fn header(&self) -> Option<flotilla_proto::etcdserverpb::ResponseHeader> {
        let revision = lock(&self.core.sm).replica.store().revision();
        self.core.header(revision, self.core.node.term())
    }

    /// Writes `op` if `leader` still leads (its key has its create
    /// revision); whether it did.
    async fn if_leader(&self, leader: &pb::LeaderKey, op: Op) -> Result<(bool, u64), Status> {
        let rev = u64::try_from(leader.rev).unwrap_or(0);
        let txn = Op::Txn(Txn {
            compares: vec![recipes::create_rev_is(&leader.key, rev)],
            success: vec![op],
            failure: Vec::new(),
        });
        let (_, revision, response) = self.core.write(txn).await?;
        Ok((
            matches!(
                response,
                KvResponse::Txn {
                    succeeded: true,
                    ..
                }
            ),
            revision,
        ))
    }
}

/// The leader key of a request, which etcd requires.
fn leader_of(leader: Option<pb::LeaderKey>) -> Result<pb::LeaderKey, Status> {
    match leader {
        Some(l) if !l.key.is_empty() => Ok(l),
        _ => Err(EtcdError::MissingLeaderKey.into()),
    }
}

fn pair(kv: &KeyValue) -> mvccpb::KeyValue {
    key_value(kv, false)
}

type ObserveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaderResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignResponse>, Status> {
        recipes::require_name(&self.core, &request, &request.get_ref().name, true)?;
        let r = request.into_inner();
        let lease = recipes::session_lease(&self.core, r.lease)
            .await
            .map_err(recipes::client_error)?;
        // An empty name is an election too ("/<lease>"), as in etcd.
        let key = recipes::contender_key(&r.name, lease);
        let (rev, existing) = recipes::join(&self.core, &key, &r.value, lease)
            .await
            .map_err(recipes::client_error)?;
        let leave = LeaveOnDrop::new(&self.core, key.clone());
        let leader = pb::LeaderKey {
            name: r.name.clone(),
            key: key.clone(),
            rev: rev as i64,
            lease,
        };
        // A candidate already queued campaigns again with a new value.
        if existing.is_some_and(|kv| kv.value != r.value) {
            let put = Op::put_leased(key.clone(), r.value.clone(), lease);
            self.if_leader(&leader, put)
                .await
                .map_err(recipes::client_error)?;
        }
        recipes::wait_deletes(&self.core, &recipes::prefix(&r.name), rev - 1).await?;
        if !recipes::holds(&self.core, &key, rev) {
            return Err(EtcdError::RecipeSessionExpired.into());
        }
        leave.keep();
        Ok(Response::new(pb::CampaignResponse {
            header: self.header(),
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<pb::ProclaimRequest>,
    ) -> Result<Response<pb::ProclaimResponse>, Status> {
        let leader = leader_of(request.get_ref().leader.clone())?;
        recipes::require_key(&self.core, &request, &leader.key)?;
        let r = request.into_inner();
        let put = Op::put_leased(leader.key.clone(), r.value, leader.lease);
        let (led, revision) = self
            .if_leader(&leader, put)
            .await
            .map_err(recipes::client_error)?;
        if !led {
            return Err(EtcdError::ElectionNotLeader.into());
        }
        Ok(Response::new(pb::ProclaimResponse {
            header: self.core.header(revision, self.core.node.term()),
        }))
    }

    async fn leader(
        &self,
        request: Request<pb::LeaderRequest>,
    ) -> Result<Response<pb::LeaderResponse>, Status> {
        recipes::require_name(&self.core, &request, &request.get_ref().name, false)?;
        let name = request.into_inner().name;
        self.core.read_barrier().await?;
        let (revision, first) = recipes::first_created(&self.core, &recipes::prefix(&name));
        let kv = first.ok_or(EtcdError::ElectionNoLeader)?;
        Ok(Response::new(pb::LeaderResponse {
            header: self.core.header(revision, self.core.node.term()),
            kv: Some(pair(&kv)),
        }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<pb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        recipes::require_name(&self.core, &request, &request.get_ref().name, false)?;
        let prefix = recipes::prefix(&request.into_inner().name);
        let (tx, rx) = mpsc::channel(16);
        let svc = self.clone();
        tokio::spawn(async move { svc.observe_into(prefix, tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        request: Request<pb::ResignRequest>,
    ) -> Result<Response<pb::ResignResponse>, Status> {
        let leader = leader_of(request.get_ref().leader.clone())?;
        recipes::require_key(&self.core, &request, &leader.key)?;
        // Resigning what one no longer holds changes nothing, as in etcd.
        let (_, revision) = self
            .if_leader(&leader, Op::delete(leader.key.clone()))
            .await
            .map_err(recipes::client_error)?;
        Ok(Response::new(pb::ResignResponse {
            header: self.core.header(revision, self.core.node.term()),
        }))
    }
}

impl ElectionService {
    /// Sends the leader under `prefix` whenever it or its value changes,
    /// until the client goes away or the server closes.
    async fn observe_into(
        &self,
        prefix: Bytes,
        tx: mpsc::Sender<Result<pb::LeaderResponse, Status>>,
    ) {
        let mut closing = self.closing.clone();
        let mut last: Option<(Bytes, u64)> = None;
        loop {
            let (mut sub, current) = {
                let sm = lock(&self.core.sm);
                let sub = sm.watch.subscribe();
                drop(sm);
                (sub, recipes::first_created(&self.core, &prefix))
            };
            if let (revision, Some(kv)) = current {
                let seen = Some((kv.key.clone(), kv.mod_rev));
                if seen != last {
                    last = seen;
                    let resp = pb::LeaderResponse {
                        header: self.core.header(revision, self.core.node.term()),
                        kv: Some(pair(&kv)),
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                r = sub.rx.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                        return;
                    }
                }
                _ = closing.wait_for(|c| *c) => return,
                _ = tx.closed() => return,
            }
        }
    }
}
