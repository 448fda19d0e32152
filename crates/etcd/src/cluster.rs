//! etcd's `Maintenance.Status` and `Cluster` (member list, add, remove,
//! promote, update: see [`super::membership`]), and Flotilla's `Proposals`
//! service (the initial member list for a member that joins, and write
//! forwarding from followers of earlier builds: this build's followers
//! forward inside Raft's own messages, through the host).
//!
//! Status answers from this node's own view (as etcd's does): its leader,
//! commit and applied index, term, and the size of its Raft log. HashKV
//! hashes this member's key history up to a revision (every member that
//! applied it answers the same hash, so `etcdctl endpoint hashkv
//! --cluster` compares them); the store is cloned under the lock (a
//! pointer per 512 keys) and hashed on the blocking pool, so applying
//! does not wait for it. MoveLeader is Raft's leader transfer, taken by
//! the leader only, as etcd.

use crate::error::EtcdError;
use flotilla_kv::{Command, Outcome, Reply, check_op};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::cluster_server::Cluster;
use flotilla_proto::etcdserverpb::maintenance_server::Maintenance;
use flotilla_proto::raft::v1::proposals_server::Proposals;
use flotilla_proto::raft::v1::{
    InitialMember, JoinRequest, JoinResponse, ProposeRequest, ProposeResponse,
};
use flotilla_raft::NodeId;
use tonic::{Request, Response, Status};

use super::core::Core;
use super::membership::{FORWARDED, MemberOp};
use flotilla_runtime::NodeError;
use flotilla_runtime::lock;

/// The version reported by `Status`: etcd's API version this server
/// speaks, and Flotilla's own.
pub const VERSION: &str = concat!("3.4.0-flotilla.", env!("CARGO_PKG_VERSION"));

/// The size of a snapshot stream's chunks (etcd's).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

type SnapshotStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::SnapshotResponse, Status>> + Send + 'static>,
>;

/// How many changes a defragmentation forgets per step.
const DEFRAG_STEP: usize = 4096;

/// The store's alarm kind of etcd's `AlarmType` (`None` for NONE, which
/// means "any" in a query).
fn alarm_kind(t: i32) -> Option<flotilla_kv::AlarmKind> {
    match pb::AlarmType::try_from(t) {
        Ok(pb::AlarmType::Nospace) => Some(flotilla_kv::AlarmKind::NoSpace),
        Ok(pb::AlarmType::Corrupt) => Some(flotilla_kv::AlarmKind::Corrupt),
        _ => None,
    }
}

fn alarm_type(k: flotilla_kv::AlarmKind) -> pb::AlarmType {
    match k {
        flotilla_kv::AlarmKind::NoSpace => pb::AlarmType::Nospace,
        flotilla_kv::AlarmKind::Corrupt => pb::AlarmType::Corrupt,
    }
}

fn alarm_member(member: u64, k: flotilla_kv::AlarmKind) -> pb::AlarmMember {
    pb::AlarmMember {
        member_id: member,
        alarm: alarm_type(k) as i32,
    }
}

/// An alarm as etcd's Status lists it in `errors`.
fn alarm_text(member: u64, k: flotilla_kv::AlarmKind) -> String {
    format!("memberID:{member} alarm:{} ", alarm_type(k).as_str_name())
}

/// `Maintenance`, `Cluster` and `Proposals` of one node.
#[derive(Clone)]
pub struct ClusterService {
    core: Core,
}

impl ClusterService {
    /// The leader's answer to a forwarded command: `reply`, in `term`.
    fn answered(&self, reply: &Reply, term: u64) -> Response<ProposeResponse> {
        Response::new(ProposeResponse {
            not_leader: false,
            leader: self.core.me.get(),
            reply: reply.encode(),
            term,
        })
    }

    /// The services over `core`.
    pub fn new(core: Core) -> ClusterService {
        ClusterService { core }
    }

    fn revision(&self) -> u64 {
        lock(&self.core.sm).replica.store().revision()
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        self.core.header(self.revision(), self.core.node.term())
    }
}

#[tonic::async_trait]
impl Maintenance for ClusterService {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let s = self.core.node.status();
        let (size, errors) = {
            let sm = lock(&self.core.sm);
            let store = sm.replica.store();
            let alarms = store.alarms().map(|(m, k)| alarm_text(m, k));
            // etcd lists a missing leader first, then the alarms.
            let no_leader = s.leader.is_none().then(|| EtcdError::NoLeader.to_string());
            (
                store.size_bytes() as i64,
                no_leader.into_iter().chain(alarms).collect(),
            )
        };
        Ok(Response::new(pb::StatusResponse {
            header: self.core.header(self.revision(), s.term),
            version: VERSION.to_string(),
            db_size: size,
            leader: s.leader.map_or(0, |l| l.get()),
            raft_index: s.commit.0,
            raft_term: s.term.0,
            raft_applied_index: s.applied.0,
            errors,
            db_size_in_use: size,
            is_learner: s.learners.contains(&s.id),
            flotilla_active_members: s.active.iter().map(|id| id.get()).collect(),
        }))
    }

    /// etcd's MoveLeader: only the leader takes it; it hands leadership
    /// to a voter and answers once this member sees the new leader
    /// (within the request timeout).
    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        self.core.require_admin(&request)?;
        let target = NodeId(request.get_ref().target_id);
        if self.core.node.leader() != Some(self.core.me) {
            return Err(EtcdError::NotLeaderForMove.into());
        }
        let mut status = self.core.node.watch_status();
        self.core
            .node
            .transfer_leader(target)
            .await
            .map_err(|e| match e {
                flotilla_raft::TransferError::NotVoter(_) => EtcdError::BadLeaderTransferee,
                flotilla_raft::TransferError::NotLeader { .. } => EtcdError::NotLeaderForMove,
            })?;
        let moved = tokio::time::timeout(
            self.core.timeout,
            status.wait_for(|s| s.leader == Some(target)),
        )
        .await;
        match moved {
            // etcd answers without a header.
            Ok(Ok(_)) => Ok(Response::new(pb::MoveLeaderResponse { header: None })),
            Ok(Err(_)) => Err(EtcdError::Stopped.into()),
            Err(_) => Err(EtcdError::LeaderTransferTimeout.into()),
        }
    }

    /// etcd's Alarm: GET lists the alarms raised (of one member and kind,
    /// or all); ACTIVATE and DEACTIVATE raise and clear one through the
    /// log and answer with it.
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        // Listing is anyone's; raising or disarming is a root's.
        if request.get_ref().action != AlarmAction::Get as i32 {
            self.core.require_admin(&request)?;
        }
        let r = request.into_inner();
        let kind = alarm_kind(r.alarm);
        let action = AlarmAction::try_from(r.action).map_err(|_| {
            Status::invalid_argument(format!("flotilla: unknown alarm action {}", r.action))
        })?;
        let raise = match action {
            AlarmAction::Get => {
                self.core.read_barrier().await?;
                let alarms = lock(&self.core.sm)
                    .replica
                    .store()
                    .alarms()
                    .filter(|(m, k)| {
                        (r.member_id == 0 || *m == r.member_id)
                            && kind.is_none_or(|want| *k == want)
                    })
                    .map(|(m, k)| alarm_member(m, k))
                    .collect();
                return Ok(Response::new(pb::AlarmResponse {
                    header: None,
                    alarms,
                }));
            }
            AlarmAction::Activate => true,
            AlarmAction::Deactivate => false,
        };
        let Some(kind) = kind else {
            return Err(Status::invalid_argument(
                "flotilla: an alarm to raise or clear needs its type",
            ));
        };
        let existed = lock(&self.core.sm)
            .replica
            .store()
            .alarms()
            .any(|a| a == (r.member_id, kind));
        let op = flotilla_kv::Op::Alarm {
            raise,
            member: r.member_id,
            kind,
        };
        self.core.write(op).await?;
        // etcd answers with the alarm raised, or the one cleared if it was.
        let alarms = if raise || existed {
            vec![alarm_member(r.member_id, kind)]
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::AlarmResponse {
            header: None,
            alarms,
        }))
    }

    /// etcd's Defragment, for a store in memory: forgets now, on this
    /// member, every change a compaction made obsolete (which writes
    /// otherwise forget a few at a time), a step at a time so that no
    /// request waits long behind it. It first applies everything
    /// committed before it, so a compaction acknowledged before it
    /// counts.
    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.core.require_admin(&request)?;
        self.core.read_barrier().await?;
        while lock(&self.core.sm).replica.sweep(DEFRAG_STEP) {
            tokio::task::yield_now().await;
        }
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    type SnapshotStream = SnapshotStream;

    /// etcd's Snapshot: a backup file ([`crate::backup`]) of this
    /// member's state once it has applied everything committed before the
    /// request, streamed in 32 KiB chunks. The copy is taken under the
    /// state machine's lock (a clone that shares the store's chunks) and
    /// encoded off it.
    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.core.require_admin(&request)?;
        self.core.read_barrier().await?;
        let (job, revision) = {
            let sm = lock(&self.core.sm);
            (
                flotilla_host::StateMachine::snapshot_job(&*sm),
                sm.replica.store().revision(),
            )
        };
        let data = tokio::task::spawn_blocking(job)
            .await
            .map_err(|e| Status::internal(format!("taking the snapshot: {e}")))?;
        let file = crate::backup::encode(&data);
        tracing::info!(
            revision,
            bytes = file.len(),
            "sending a snapshot to a client"
        );
        let chunks: Vec<Result<pb::SnapshotResponse, Status>> = (0..file.len())
            .step_by(SNAPSHOT_CHUNK)
            .map(|start| {
                let end = (start + SNAPSHOT_CHUNK).min(file.len());
                Ok(pb::SnapshotResponse {
                    header: None,
                    remaining_bytes: (file.len() - end) as u64,
                    blob: file.slice(start..end),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        self.core.require_admin(&request)?;
        super::validate::check_hash_kv(request.get_ref())?;
        let revision = request.get_ref().revision as u64;
        let store = lock(&self.core.sm).replica.store().clone();
        let current = store.revision();
        let hashed = tokio::task::spawn_blocking(move || store.hash_kv(revision))
            .await
            .map_err(|e| Status::internal(format!("hashing the key history: {e}")))?;
        let (hash, compacted) = hashed.map_err(|r| Status::from(EtcdError::from(r)))?;
        Ok(Response::new(pb::HashKvResponse {
            header: self.core.header(current, self.core.node.term()),
            hash,
            compact_revision: i64::try_from(compacted).unwrap_or(i64::MAX),
        }))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            // Everything committed before the request is applied here.
            self.core.read_barrier().await?;
        }
        let s = self.core.node.status();
        Ok(Response::new(pb::MemberListResponse {
            header: self.core.header(self.revision(), s.term),
            members: self.core.member_list(),
        }))
    }

    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        self.core.require_admin(&request)?;
        let forwarded = request.metadata().contains_key(FORWARDED);
        let r = request.into_inner();
        let op = MemberOp::Add {
            peer_urls: r.peer_ur_ls,
            learner: r.is_learner,
            id: r.flotilla_member_id,
        };
        let done = self.core.change_members(op, forwarded).await?;
        Ok(Response::new(pb::MemberAddResponse {
            header: self.header(),
            member: done.member,
            members: done.members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        self.core.require_admin(&request)?;
        let forwarded = request.metadata().contains_key(FORWARDED);
        let op = MemberOp::Remove(request.into_inner().id);
        let done = self.core.change_members(op, forwarded).await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: self.header(),
            members: done.members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        self.core.require_admin(&request)?;
        let forwarded = request.metadata().contains_key(FORWARDED);
        let r = request.into_inner();
        let op = MemberOp::Update {
            id: r.id,
            peer_urls: r.peer_ur_ls,
        };
        let done = self.core.change_members(op, forwarded).await?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: self.header(),
            members: done.members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        self.core.require_admin(&request)?;
        let forwarded = request.metadata().contains_key(FORWARDED);
        let op = MemberOp::Promote(request.into_inner().id);
        let done = self.core.change_members(op, forwarded).await?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: self.header(),
            members: done.members,
        }))
    }
}

#[tonic::async_trait]
impl Proposals for ClusterService {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        self.core.require_peer(&request)?;
        let id = NodeId(request.into_inner().id);
        {
            let sm = lock(&self.core.sm);
            if sm.members.removed.contains(&id) {
                return Err(Status::failed_precondition(format!(
                    "member {id} was removed from the cluster; a removed member cannot join again"
                )));
            }
            if !sm.members.is_member(id) {
                return Err(Status::not_found(format!(
                    "member {id} has not been added to the cluster (as this member knows it); \
                     add it first: flotilla member add --id {id} --peer-url ..."
                )));
            }
        }
        let initial = self
            .core
            .initial
            .iter()
            .map(|(id, addr)| InitialMember {
                id: id.get(),
                addr: addr.clone(),
            })
            .collect();
        Ok(Response::new(JoinResponse { initial }))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        self.core.require_peer(&request)?;
        let r = request.into_inner();
        if r.cluster_id != self.core.cluster_id {
            return Err(Status::failed_precondition("proposal from another cluster"));
        }
        let not_leader = |leader: Option<flotilla_raft::NodeId>| ProposeResponse {
            not_leader: true,
            leader: leader.map_or(0, |l| l.get()),
            reply: bytes::Bytes::new(),
            term: 0,
        };
        // Only a command this build can apply is proposed: a committed one
        // it could not apply would stop every member of its version.
        let command = match Command::decode(&r.command) {
            Ok(c) => c,
            Err(e) => {
                return Err(Status::invalid_argument(format!(
                    "forwarded command does not decode: {e}"
                )));
            }
        };
        // Nor one the replicas would refuse: answered here, it never
        // reaches the log, where a member of an older build (during a
        // rolling upgrade) would stop on it.
        if let Err(refusal) = check_op(&command.request.op) {
            let reply = Reply {
                client: command.request.client,
                seq: command.request.seq,
                outcome: Outcome::Refused(refusal),
            };
            return Ok(self.answered(&reply, self.core.node.term().0));
        }
        // The command arrived as a slice of this call's receive buffer
        // (8 KiB or more); the log and the store keep it, so it gets an
        // allocation of its own size (issue 19: ~8 KiB kept per
        // forwarded write).
        let command = flotilla_runtime::owned::detach(&r.command);
        drop(r);
        let applied = match self.core.node.propose(command).await {
            Ok(applied) => applied,
            Err(NodeError::NotLeader { leader_hint }) => {
                return Ok(Response::new(not_leader(leader_hint)));
            }
            Err(
                NodeError::Retry | NodeError::ConfChangePending | NodeError::InvalidConfChange(_),
            ) => return Ok(Response::new(not_leader(None))),
            Err(NodeError::Stopped) => return Err(EtcdError::Stopped.into()),
            Err(NodeError::Overloaded { .. }) => return Err(super::core::too_many_requests()),
        };
        let Some(a) = applied.output else {
            return Err(Status::internal("a command applied as a no-op"));
        };
        let reply = Reply {
            client: a.client,
            seq: a.seq,
            outcome: a.outcome,
        };
        Ok(self.answered(&reply, applied.term.0))
    }
}
