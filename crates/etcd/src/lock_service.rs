//! `v3lockpb.Lock`, as etcd serves it: Lock queues the caller under
//! `NAME/<lease>` with its lease (or a session lease of its own, see
//! [`crate::recipes`]) and answers once every earlier key is
//! gone (see [`crate::recipes`]); the key's create revision, in the
//! answer's header as etcd's, is the holder's fencing token. Unlock
//! deletes the key. A holder whose lease ends loses the lock with it.

use flotilla_kv::Op;
use flotilla_proto::v3lockpb as pb;
use flotilla_proto::v3lockpb::lock_server::Lock;
use tonic::{Request, Response, Status};

use crate::core::Core;
use crate::error::EtcdError;
use crate::recipes::{self, LeaveOnDrop};

/// The Lock service of a member.
#[derive(Clone)]
pub struct LockService {
    core: Core,
}

impl LockService {
    /// The service over `core`.
    pub fn new(core: Core) -> LockService {
        LockService { core }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(
        &self,
        request: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        recipes::require_name(&self.core, &request, &request.get_ref().name, true)?;
        let r = request.into_inner();
        let lease = recipes::session_lease(&self.core, r.lease)
            .await
            .map_err(recipes::client_error)?;
        // An empty name is a queue too ("/<lease>"), as in etcd.
        let key = recipes::contender_key(&r.name, lease);
        let (rev, _) = recipes::join(&self.core, &key, &bytes::Bytes::new(), lease)
            .await
            .map_err(recipes::client_error)?;
        let leave = LeaveOnDrop::new(&self.core, key.clone());
        recipes::wait_deletes(&self.core, &recipes::prefix(&r.name), rev - 1).await?;
        if !recipes::holds(&self.core, &key, rev) {
            // The lease ended while it waited.
            return Err(EtcdError::RecipeSessionExpired.into());
        }
        leave.keep();
        let revision = flotilla_runtime::lock(&self.core.sm)
            .replica
            .store()
            .revision();
        Ok(Response::new(pb::LockResponse {
            header: self.core.header(revision, self.core.node.term()),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        recipes::require_key(&self.core, &request, &request.get_ref().key)?;
        let key = request.into_inner().key;
        if key.is_empty() {
            let empty = Status::from(crate::validate::Invalid::EmptyKey);
            return Err(recipes::client_error(empty));
        }
        let (term, revision, _) = self
            .core
            .write(Op::delete(key))
            .await
            .map_err(recipes::client_error)?;
        Ok(Response::new(pb::UnlockResponse {
            header: self.core.header(revision, term),
        }))
    }
}
