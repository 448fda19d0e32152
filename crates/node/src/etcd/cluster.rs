//! etcd's `Maintenance.Status` and `Cluster.MemberList`, and Flotilla's
//! `Proposals` service (write forwarding from followers).
//!
//! Status answers from this node's own view (as etcd's does): its leader,
//! commit and applied index, term, and the size of its Raft log.

use flotilla_kv::{Command, Reply};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::cluster_server::Cluster;
use flotilla_proto::etcdserverpb::maintenance_server::Maintenance;
use flotilla_proto::raft::v1::proposals_server::Proposals;
use flotilla_proto::raft::v1::{ProposeRequest, ProposeResponse};
use tonic::{Request, Response, Status};

use super::core::Core;
use crate::raft::NodeError;
use crate::raft::driver::lock;

/// The version reported by `Status`: etcd's API version this server
/// speaks, and Flotilla's own.
pub const VERSION: &str = concat!("3.4.0-flotilla.", env!("CARGO_PKG_VERSION"));

/// `Maintenance`, `Cluster` and `Proposals` of one node.
#[derive(Clone)]
pub struct ClusterService {
    core: Core,
}

impl ClusterService {
    /// The services over `core`.
    pub fn new(core: Core) -> ClusterService {
        ClusterService { core }
    }

    fn revision(&self) -> u64 {
        lock(&self.core.sm).replica.store().revision()
    }
}

#[tonic::async_trait]
impl Maintenance for ClusterService {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let s = self.core.node.status();
        let size = s.log_bytes as i64;
        Ok(Response::new(pb::StatusResponse {
            header: self.core.header(self.revision(), s.term),
            version: VERSION.to_string(),
            db_size: size,
            leader: s.leader.map_or(0, |l| l.get()),
            raft_index: s.commit.0,
            raft_term: s.term.0,
            raft_applied_index: s.applied.0,
            errors: Vec::new(),
            db_size_in_use: size,
            is_learner: s.learners.contains(&s.id),
        }))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        _: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let s = self.core.node.status();
        let members = self
            .core
            .peers
            .iter()
            .map(|(id, addr)| pb::Member {
                id: id.get(),
                name: format!("node{id}"),
                peer_ur_ls: vec![format!("http://{addr}")],
                client_ur_ls: vec![format!("http://{addr}")],
                is_learner: s.learners.contains(id),
            })
            .collect();
        Ok(Response::new(pb::MemberListResponse {
            header: self.core.header(self.revision(), s.term),
            members,
        }))
    }
}

#[tonic::async_trait]
impl Proposals for ClusterService {
    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
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
        if let Err(e) = Command::decode(&r.command) {
            return Err(Status::invalid_argument(format!(
                "forwarded command does not decode: {e}"
            )));
        }
        let applied = match self.core.node.propose(r.command).await {
            Ok(applied) => applied,
            Err(NodeError::NotLeader { leader_hint }) => {
                return Ok(Response::new(not_leader(leader_hint)));
            }
            Err(NodeError::Retry) => return Ok(Response::new(not_leader(None))),
            Err(NodeError::Stopped) => return Err(Status::unavailable("server stopped")),
        };
        let Some(a) = applied.output else {
            return Err(Status::internal("a command applied as a no-op"));
        };
        let reply = Reply {
            client: a.client,
            seq: a.seq,
            outcome: a.outcome,
        };
        Ok(Response::new(ProposeResponse {
            not_leader: false,
            leader: self.core.me.get(),
            reply: reply.encode(),
            term: applied.term.0,
        }))
    }
}
