//! The Shard gRPC service (`flotilla.shard.v1.Shard`): the controller's
//! Join, Leave, Move and Query, and the course's Get, Put and Append on
//! keys, each routed to the group that owns the key's shard.
//!
//! Routing: a key goes to the group that the latest configuration known
//! here gives its shard. A group that does not serve the shard now (it
//! moved away, or has not arrived yet) answers wrong-group without
//! applying anything; the request then waits for a newer configuration
//! (a linearizable read of the controller) and for the shard to arrive,
//! and goes again with the same session, until its deadline; while the
//! local replica of the owner shows the shard still arriving, the request
//! waits for it there instead of adding wrong-group entries to the log.
//! So a client never sees the shard map, and a write is applied once
//! wherever its shard lives (the shard's exactly-once table moves with
//! it).
//!
//! Every request is checked before anything is proposed: a session needs
//! a nonzero client id and sequence number, a key must be nonempty, a
//! group must be one these servers host (a configuration that gave shards
//! to a group no server runs would stall them for good).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_proto::shard::v1 as pb;
use flotilla_proto::shard::v1::shard_server::Shard;
use flotilla_runtime::lock;
use flotilla_shardkv::{
    Config, CtrlCommand, CtrlOp, CtrlReply, Gid, GroupApplied, GroupCommand, KvOp, KvReply,
    ShardKv, ShardState, key2shard,
};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::hosted::{Hosted, Unanswered, propose_until};

/// How long a request may take, shard moves included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest key taken.
pub const KEY_MAX: usize = 64 * 1024;
/// How often a request for a shard that is arriving looks again.
const ARRIVAL_POLL: Duration = Duration::from_millis(5);
/// The largest value taken (etcd's default request limit).
pub const VALUE_MAX: usize = 1536 * 1024;

/// The service of one server.
#[derive(Clone)]
pub struct ShardService {
    hosted: Arc<Hosted>,
    /// The cluster's servers' addresses: a Join that names a group
    /// without servers gives it these.
    addrs: Vec<String>,
    timeout: Duration,
}

impl ShardService {
    /// Serves `hosted`'s groups; `addrs` are the cluster's servers.
    pub fn new(hosted: Arc<Hosted>, addrs: Vec<String>) -> ShardService {
        ShardService {
            hosted,
            addrs,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// Refuses a group these servers do not host.
    fn check_hosted(&self, gid: Gid) -> Result<(), Status> {
        if self.hosted.groups.contains_key(&gid) {
            return Ok(());
        }
        Err(Status::failed_precondition(format!(
            "group {gid} is not hosted by these servers (they host {:?}); start them with \
             --groups naming it",
            self.hosted.gids()
        )))
    }

    /// Proposes a controller change and answers with the latest
    /// configuration once it applied.
    async fn change(
        &self,
        session: Option<pb::Session>,
        op: CtrlOp,
    ) -> Result<Response<pb::CtrlResponse>, Status> {
        let (client, seq) = session_of(session)?;
        let deadline = Instant::now() + self.timeout;
        let command = CtrlCommand { client, seq, op }.encode();
        let applied = propose_until(&self.hosted.ctrl.node, command, deadline)
            .await
            .map_err(unanswered)?;
        match applied.output.map(|a| a.reply) {
            Some(CtrlReply::Done | CtrlReply::Config(_)) => Ok(Response::new(pb::CtrlResponse {
                config: Some(to_proto(&self.hosted.latest())),
            })),
            Some(CtrlReply::Refused(e)) => Err(Status::invalid_argument(e.to_string())),
            None => Err(Status::internal("the controller applied no command")),
        }
    }

    /// Runs `op` at the group that owns its key's shard, following the
    /// shard until the deadline. Answers with the group, the
    /// configuration it answered in, and its reply.
    async fn at_owner(
        &self,
        client: u64,
        seq: u64,
        op: KvOp,
    ) -> Result<(Gid, u64, KvReply), Status> {
        let deadline = Instant::now() + self.timeout;
        let shard = key2shard(op.key(), self.hosted.nshards);
        let command = GroupCommand::Op { client, seq, op }.encode();
        let mut config = self.hosted.latest();
        loop {
            let gid = config.shards.get(shard).copied().unwrap_or(0);
            if gid != 0 {
                let group = self.hosted.groups.get(&gid).ok_or_else(|| {
                    Status::failed_precondition(format!(
                        "shard {shard} is on group {gid}, which this server does not host"
                    ))
                })?;
                if arriving(&lock(&group.sm), gid, shard, config.num) {
                    // Asking now would only add a wrong-group entry to
                    // the log: wait here for the shard to arrive.
                    if Instant::now() + ARRIVAL_POLL >= deadline {
                        return Err(unanswered(Unanswered::Timeout));
                    }
                    tokio::time::sleep(ARRIVAL_POLL).await;
                    continue;
                }
                let applied = propose_until(&group.node, command.clone(), deadline)
                    .await
                    .map_err(unanswered)?;
                match applied.output {
                    Some(GroupApplied::Op {
                        reply: KvReply::WrongGroup,
                        ..
                    }) => {}
                    Some(GroupApplied::Op { reply, .. }) => {
                        let num = lock(&group.sm).config().num;
                        return Ok((gid, num, reply));
                    }
                    other => {
                        return Err(Status::internal(format!(
                            "group {gid} answered a request with {other:?}"
                        )));
                    }
                }
            }
            config = self.next_config(config.num, shard, deadline).await?;
        }
    }

    /// Waits a moment (the shard is moving, or no group has it), then
    /// reads the latest configuration linearizably.
    async fn next_config(
        &self,
        num: u64,
        shard: usize,
        deadline: Instant,
    ) -> Result<Config, Status> {
        let pause = Duration::from_millis(if num == 0 { 0 } else { 20 });
        if Instant::now() + pause >= deadline {
            return Err(unanswered(Unanswered::Timeout));
        }
        tokio::time::sleep(pause).await;
        let config = self
            .hosted
            .latest_linearizable(deadline)
            .await
            .map_err(unanswered)?;
        if config.shards.get(shard).copied().unwrap_or(0) == 0 {
            return Err(Status::failed_precondition(format!(
                "no group serves shard {shard} in configuration {}: join groups first \
                 (flotilla shard join)",
                config.num
            )));
        }
        Ok(config)
    }
}

/// Whether group `gid`'s replica `m` is at configuration `num`, which
/// gives it `shard`, and the shard has not arrived yet.
fn arriving(m: &ShardKv, gid: Gid, shard: usize, num: u64) -> bool {
    let c = m.config();
    c.num == num && c.shards.get(shard) == Some(&gid) && !m.serves(shard)
}

/// A session's (client, seq), checked.
fn session_of(session: Option<pb::Session>) -> Result<(u64, u64), Status> {
    match session {
        Some(s) if s.client_id != 0 && s.seq != 0 => Ok((s.client_id, s.seq)),
        Some(s) => Err(Status::invalid_argument(format!(
            "a session needs a nonzero client_id and seq (got client_id {}, seq {})",
            s.client_id, s.seq
        ))),
        None => Err(Status::invalid_argument(
            "the request has no session (client_id, seq)",
        )),
    }
}

/// A key, checked.
fn key_of(key: Bytes) -> Result<Bytes, Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("the key is empty"));
    }
    if key.len() > KEY_MAX {
        return Err(Status::invalid_argument(format!(
            "the key is {} bytes, more than the {KEY_MAX} allowed",
            key.len()
        )));
    }
    Ok(key)
}

fn unanswered(e: Unanswered) -> Status {
    match e {
        Unanswered::Timeout => Status::deadline_exceeded(e.to_string()),
        Unanswered::Stopped => Status::unavailable(e.to_string()),
    }
}

/// A configuration on the wire.
pub fn to_proto(c: &Config) -> pb::Configuration {
    pb::Configuration {
        num: c.num,
        shards: c.shards.clone(),
        groups: c
            .groups
            .iter()
            .map(|(g, s)| (*g, pb::Servers { addrs: s.clone() }))
            .collect(),
    }
}

/// A shard state's name on the wire.
pub fn state_name(s: ShardState) -> &'static str {
    match s {
        ShardState::Serving => "serving",
        ShardState::Pulling => "pulling",
        ShardState::Arrived => "arrived",
        ShardState::Leaving => "leaving",
    }
}

#[tonic::async_trait]
impl Shard for ShardService {
    async fn join(
        &self,
        r: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::CtrlResponse>, Status> {
        let r = r.into_inner();
        if r.groups.is_empty() {
            return Err(Status::invalid_argument("the join names no group"));
        }
        let mut groups = BTreeMap::new();
        for (gid, servers) in r.groups {
            self.check_hosted(gid)?;
            let addrs = match servers.addrs.is_empty() {
                true => self.addrs.clone(),
                false => servers.addrs,
            };
            groups.insert(gid, addrs);
        }
        self.change(r.session, CtrlOp::Join(groups)).await
    }

    async fn leave(
        &self,
        r: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::CtrlResponse>, Status> {
        let r = r.into_inner();
        if r.gids.is_empty() {
            return Err(Status::invalid_argument("the leave names no group"));
        }
        self.change(r.session, CtrlOp::Leave(r.gids)).await
    }

    async fn r#move(
        &self,
        r: Request<pb::MoveRequest>,
    ) -> Result<Response<pb::CtrlResponse>, Status> {
        let r = r.into_inner();
        self.check_hosted(r.gid)?;
        let op = CtrlOp::Move {
            shard: r.shard,
            gid: r.gid,
        };
        self.change(r.session, op).await
    }

    async fn query(
        &self,
        r: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::Configuration>, Status> {
        let num = r.into_inner().num;
        let deadline = Instant::now() + self.timeout;
        let num = (num != 0).then_some(num);
        let config = self.hosted.query(num, deadline).await.map_err(unanswered)?;
        Ok(Response::new(to_proto(&config)))
    }

    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let key = key_of(r.into_inner().key)?;
        let (gid, config_num, reply) = self.at_owner(0, 0, KvOp::Get(key)).await?;
        let (found, value) = match reply {
            KvReply::Value(v) => (true, v),
            _ => (false, Bytes::new()),
        };
        Ok(Response::new(pb::GetResponse {
            found,
            value,
            gid,
            config_num,
        }))
    }

    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let r = r.into_inner();
        let (client, seq) = session_of(r.session)?;
        let key = key_of(r.key)?;
        if r.value.len() > VALUE_MAX {
            return Err(Status::invalid_argument(format!(
                "the value is {} bytes, more than the {VALUE_MAX} allowed",
                r.value.len()
            )));
        }
        let op = match r.append {
            true => KvOp::Append(key, r.value),
            false => KvOp::Put(key, r.value),
        };
        let (gid, config_num, _) = self.at_owner(client, seq, op).await?;
        Ok(Response::new(pb::PutResponse { gid, config_num }))
    }

    async fn status(
        &self,
        _r: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let h = &self.hosted;
        let ctrl = h.ctrl.node.status();
        let latest = h.latest();
        let mut groups = vec![group_status(0, &ctrl, latest.num, BTreeMap::new(), 0)];
        for (&gid, g) in &h.groups {
            let (num, shards, bytes) = {
                let m = lock(&g.sm);
                let shards = m
                    .states()
                    .into_iter()
                    .map(|(s, st)| (s as u64, state_name(st).to_string()))
                    .collect();
                (m.config().num, shards, m.data_bytes() as u64)
            };
            groups.push(group_status(gid, &g.node.status(), num, shards, bytes));
        }
        Ok(Response::new(pb::StatusResponse {
            member: h.me.get(),
            latest: Some(to_proto(&latest)),
            groups,
        }))
    }
}

fn group_status(
    gid: Gid,
    s: &flotilla_runtime::NodeStatus,
    config_num: u64,
    shards: BTreeMap<u64, String>,
    data_bytes: u64,
) -> pb::GroupStatus {
    pb::GroupStatus {
        gid,
        leader: s.leader.map_or(0, |l| l.get()),
        term: s.term.0,
        commit: s.commit.0,
        applied: s.applied.0,
        config_num,
        shards: shards.into_iter().collect(),
        data_bytes,
    }
}
