//! Membership changes through etcd's `Cluster` API: add (as a voter or a
//! learner), remove, promote a learner, update a member's peer URL.
//!
//! An update is a conf change that re-adds the member in its current role
//! (a no-op for Raft) with the new address in its context, so it travels
//! through the log like any other change and every member re-points its
//! link.
//!
//! A change is checked against the replicated member table and proposed
//! as a Raft conf change by the leader; a follower forwards the request
//! to the leader's own `Cluster` service, marked with [`FORWARDED`] so a
//! stale leader hint cannot bounce it around: a forwarded request that
//! meets a non-leader is answered `UNAVAILABLE` and the forwarder retries
//! once something changes, until the request's deadline.
//!
//! Refusals use etcd's codes and messages where etcd has them ("member
//! not found", "Peer URLs already exists", "can only promote a learner
//! member which is in sync with leader", ...), so etcdctl prints what it
//! would print against etcd.

use crate::error::EtcdError;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::cluster_client::ClusterClient;
use flotilla_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use flotilla_proto::signal::{self, Kind};
use flotilla_raft::{ConfChange, ConfChangeError, ConfChangeOp, NodeId};
use tokio::time::{Instant, timeout_at};
use tonic::{Code, Status};

use super::core::Core;
use flotilla_host::kv_app::members::{MemberInfo, Members, encode_context};
use flotilla_runtime::NodeError;
use flotilla_runtime::lock;

/// The metadata key that marks a request forwarded by a follower.
pub const FORWARDED: &str = "flotilla-forwarded";
/// etcd's default limit on learners.
pub const MAX_LEARNERS: usize = 1;
/// A learner is in sync when it has applied this share of the leader's
/// commit index (etcd: 90% of the leader's match index).
const IN_SYNC_PERCENT: u64 = 90;

/// A membership change asked for.
#[derive(Clone, Debug)]
pub enum MemberOp {
    /// Add a member at `peer_urls` (one URL), with `id` (0: choose).
    Add {
        /// The peer URLs as given.
        peer_urls: Vec<String>,
        /// Add it as a learner.
        learner: bool,
        /// The id asked for (0: the server chooses).
        id: u64,
    },
    /// Remove a member.
    Remove(u64),
    /// Make a learner a voter.
    Promote(u64),
    /// Give a member a new peer URL.
    Update {
        /// The member.
        id: u64,
        /// Its new peer URLs (one).
        peer_urls: Vec<String>,
    },
}

/// What a change answers: the member added (for an add) and the members
/// after the change.
#[derive(Clone, Debug, Default)]
pub struct MemberChange {
    /// The new member, for an add.
    pub member: Option<pb::Member>,
    /// Every member afterwards.
    pub members: Vec<pb::Member>,
}

/// The URL schemes a member's port speaks: plaintext, TLS, or both on
/// one port (etcd's `--listen-client-urls` naming `http://` and
/// `https://` for the same address). Member lists give each member's URLs
/// in these, so a client that dials what `member list` answers (etcdctl's
/// `--cluster`) dials what the port speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlSchemes {
    /// Plaintext connections are served.
    pub plain: bool,
    /// TLS connections are served; members dial one another over TLS.
    pub tls: bool,
}

impl Default for UrlSchemes {
    /// Plaintext only, a server without certificates.
    fn default() -> UrlSchemes {
        UrlSchemes {
            plain: true,
            tls: false,
        }
    }
}

impl UrlSchemes {
    /// A member's client URLs at `addr`: `https://` first when TLS is
    /// served, which is what a client given only the first one dials.
    fn client_urls(self, addr: &str) -> Vec<String> {
        let mut urls = Vec::with_capacity(2);
        if self.tls {
            urls.push(format!("https://{addr}"));
        }
        if self.plain {
            urls.push(format!("http://{addr}"));
        }
        urls
    }

    /// A member's peer URL at `addr`: members dial one another over TLS
    /// whenever the port speaks it.
    fn peer_url(self, addr: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }
}

/// The etcd form of a member, its URLs in `schemes`. One that has not
/// `started` (added, but it has not recorded its start through the log
/// yet) has no name and no client URLs, as etcd lists an unstarted member
/// (etcdctl prints it "unstarted").
pub fn to_pb(m: &MemberInfo, started: bool, schemes: UrlSchemes) -> pb::Member {
    let known = !m.addr.is_empty();
    pb::Member {
        id: m.id.get(),
        name: if started {
            format!("node{}", m.id)
        } else {
            String::new()
        },
        peer_ur_ls: if known {
            vec![schemes.peer_url(&m.addr)]
        } else {
            Vec::new()
        },
        client_ur_ls: if started && known {
            schemes.client_urls(&m.addr)
        } else {
            Vec::new()
        },
        is_learner: m.learner,
    }
}

/// `host:port` from a peer URL, `http://host:port` or `https://host:port`
/// (the members dial it in the scheme their own port speaks).
pub fn parse_peer_url(url: &str) -> Result<String, Status> {
    // A bare `host:port` is refused as etcd refuses it (Go's URL parser
    // reads it as a path); `flotilla member` adds the scheme for its user.
    let rest = match url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        Some(rest) => rest,
        None if url.contains("://") => {
            return Err(Status::invalid_argument(format!(
                "flotilla: peer URL {url:?}: only http:// and https:// URLs are served"
            )));
        }
        None => "",
    };
    let hostport = rest.trim_end_matches('/');
    let port_ok = hostport
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || hostport.contains('/') {
        return Err(Status::invalid_argument(format!(
            "flotilla: peer URL {url:?} is not http://HOST:PORT or https://HOST:PORT"
        )));
    }
    Ok(hostport.to_string())
}

/// Checks `op` against `members` and turns it into a conf change; for an
/// add, also returns the new member.
pub fn plan(
    members: &Members,
    op: &MemberOp,
    fresh_id: u64,
) -> Result<(ConfChange, Option<MemberInfo>), Status> {
    match *op {
        MemberOp::Add {
            ref peer_urls,
            learner,
            id,
        } => plan_add(
            members,
            peer_urls,
            learner,
            if id == 0 { fresh_id } else { id },
        ),
        MemberOp::Remove(id) => {
            let id = NodeId(id);
            if !members.is_member(id) {
                return Err(EtcdError::MemberNotFound.into());
            }
            if members.conf.voters == [id] {
                return Err(Status::failed_precondition(
                    "flotilla: cannot remove the only voting member",
                ));
            }
            Ok((ConfChange::new(vec![ConfChangeOp::Remove(id)]), None))
        }
        MemberOp::Update { id, ref peer_urls } => plan_update(members, NodeId(id), peer_urls),
        MemberOp::Promote(id) => {
            let id = NodeId(id);
            if !members.is_member(id) {
                return Err(EtcdError::MemberNotFound.into());
            }
            if !members.conf.is_learner(id) {
                return Err(EtcdError::NotLearner.into());
            }
            Ok((ConfChange::new(vec![ConfChangeOp::AddVoter(id)]), None))
        }
    }
}

/// The answer to a change the Raft core refused. The core checks against
/// the committed configuration, which runs up to one Ready ahead of the
/// applied member table that [`plan`] checks: a member whose removal just
/// committed is gone for the core while the table still lists it, and
/// etcd's answer for it is the one `plan` gives once the table catches up.
fn conf_change_refused(e: &ConfChangeError) -> Status {
    match e {
        ConfChangeError::NotMember(_) => EtcdError::MemberNotFound.into(),
        e => Status::failed_precondition(format!("flotilla: {e}")),
    }
}

/// etcd's strict reconfiguration check: refuses a change that would put
/// the quorum at risk, given `active`, the members the leader heard from
/// lately (itself included). Adding any member needs every voter active
/// ("unhealthy cluster"); removing a voter that is active needs the other
/// active voters to make a quorum of the voters left; promoting a learner
/// needs a quorum of the voters-to-be active ("not enough started
/// members"). Removing an unresponsive or learner member, and updates, are
/// always allowed.
pub fn check_quorum_safe(
    members: &Members,
    active: &[NodeId],
    op: &MemberOp,
) -> Result<(), Status> {
    let voters = &members.conf.voters;
    let is_active = |id: &NodeId| active.contains(id);
    let live = voters.iter().filter(|v| is_active(v)).count();
    let unhealthy = || Status::from(EtcdError::UnhealthyCluster);
    match *op {
        MemberOp::Add { .. } if live < voters.len() => Err(unhealthy()),
        MemberOp::Remove(id) => {
            let id = NodeId(id);
            if !voters.contains(&id) || !is_active(&id) {
                return Ok(());
            }
            let left = voters.len() - 1;
            if live - 1 < left / 2 + 1 {
                return Err(unhealthy());
            }
            Ok(())
        }
        MemberOp::Promote(id) => {
            let live = live + usize::from(is_active(&NodeId(id)));
            let after = voters.len() + 1;
            if live < after / 2 + 1 {
                return Err(EtcdError::NotEnoughStartedMembers.into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn plan_update(
    members: &Members,
    id: NodeId,
    peer_urls: &[String],
) -> Result<(ConfChange, Option<MemberInfo>), Status> {
    if !members.is_member(id) {
        return Err(EtcdError::MemberNotFound.into());
    }
    let addr = one_url(peer_urls)?;
    if members.by_addr(&addr).is_some_and(|other| other != id) {
        return Err(EtcdError::PeerUrlExists.into());
    }
    let op = if members.conf.is_learner(id) {
        ConfChangeOp::AddLearner(id)
    } else {
        ConfChangeOp::AddVoter(id)
    };
    let cc = ConfChange {
        ops: vec![op],
        context: encode_context(&BTreeMap::from([(id, addr)])),
    };
    Ok((cc, None))
}

/// The one peer URL a member has, as `host:port`.
fn one_url(peer_urls: &[String]) -> Result<String, Status> {
    if peer_urls.is_empty() {
        // etcd's answer to a member without peer URLs.
        return Err(Status::invalid_argument(
            "etcdserver: given member URLs are invalid",
        ));
    }
    let [url] = peer_urls else {
        return Err(Status::invalid_argument(format!(
            "flotilla: a member has exactly one peer URL, got {}",
            peer_urls.len()
        )));
    };
    parse_peer_url(url)
}

fn plan_add(
    members: &Members,
    peer_urls: &[String],
    learner: bool,
    id: u64,
) -> Result<(ConfChange, Option<MemberInfo>), Status> {
    let addr = one_url(peer_urls)?;
    if members.by_addr(&addr).is_some() {
        return Err(EtcdError::PeerUrlExists.into());
    }
    let nid = NodeId(id);
    if id == 0 || members.is_member(nid) {
        return Err(EtcdError::MemberIdExists(None).into());
    }
    if members.removed.contains(&nid) {
        return Err(EtcdError::MemberIdExists(Some(id)).into());
    }
    if learner && members.conf.learners.len() >= MAX_LEARNERS {
        return Err(EtcdError::TooManyLearners.into());
    }
    let op = if learner {
        ConfChangeOp::AddLearner(nid)
    } else {
        ConfChangeOp::AddVoter(nid)
    };
    let cc = ConfChange {
        ops: vec![op],
        context: encode_context(&BTreeMap::from([(nid, addr.clone())])),
    };
    Ok((
        cc,
        Some(MemberInfo {
            id: nid,
            addr,
            learner,
        }),
    ))
}

/// A member id nobody has: a hash of the address and the time.
fn fresh_id(members: &Members, seed: &str) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ nanos;
    for b in seed.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    loop {
        // Below 2^53 so JSON readers keep it exact.
        let id = h & ((1 << 53) - 1);
        let nid = NodeId(id);
        if id != 0 && !members.is_member(nid) && !members.removed.contains(&nid) {
            return id;
        }
        h = h.wrapping_mul(0x0000_0100_0000_01b3).wrapping_add(1);
    }
}

enum Attempt {
    Wait,
    Fail(Status),
}

impl Core {
    /// The members as this node's state machine has them.
    pub fn member_list(&self) -> Vec<pb::Member> {
        let sm = lock(&self.sm);
        let store = sm.replica.store();
        let started =
            |m: &MemberInfo| self.initial.contains_key(&m.id) || store.started(m.id.get());
        sm.members
            .list()
            .iter()
            .map(|m| to_pb(m, started(m), self.url_schemes))
            .collect()
    }

    /// Records this member's start through the log, if it joined a
    /// running cluster (founders are started from the beginning): until
    /// then member lists show it unstarted, as etcd's do until a member
    /// publishes itself. Retried until it is recorded or the member
    /// closes.
    pub async fn publish_start(&self, mut closing: tokio::sync::watch::Receiver<bool>) {
        if self.initial.contains_key(&self.me) {
            return;
        }
        let mut ticker = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = closing.wait_for(|c| *c) => return,
            }
            let (member, started) = {
                let sm = lock(&self.sm);
                let me = self.me.get();
                (
                    sm.members.is_member(self.me),
                    sm.replica.store().started(me),
                )
            };
            if started {
                return;
            }
            if member && self.node.leader().is_some() {
                let op = flotilla_kv::Op::MemberStarted {
                    member: self.me.get(),
                };
                if let Err(e) = self.write(op).await {
                    tracing::debug!(error = %e, "recording this member's start");
                }
            }
        }
    }

    /// Carries out `op` at the leader (here or forwarded); `forwarded`
    /// says whether a follower sent it.
    pub async fn change_members(
        &self,
        op: MemberOp,
        forwarded: bool,
    ) -> Result<MemberChange, Status> {
        let deadline = Instant::now() + self.timeout;
        let mut last_wait = "no leader";
        loop {
            let leader = self.node.leader();
            let attempt = timeout_at(deadline, async {
                match leader {
                    Some(l) if l == self.me => self.change_here(&op).await,
                    _ if forwarded => Err(Attempt::Fail(EtcdError::NotLeader.into())),
                    Some(l) => self.change_at(l, &op).await,
                    None => Err(Attempt::Wait),
                }
            });
            let Ok(attempt) = attempt.await else {
                return Err(EtcdError::Timeout(Some(last_wait)).into());
            };
            match attempt {
                Ok(done) => return Ok(done),
                Err(Attempt::Fail(status)) => return Err(status),
                Err(Attempt::Wait) => {
                    last_wait = "waiting for the leader or for another membership change";
                    self.wait_for_change(deadline).await?;
                }
            }
        }
    }

    async fn change_here(&self, op: &MemberOp) -> Result<MemberChange, Attempt> {
        let (cc, added) = {
            let sm = lock(&self.sm);
            let seed = format!("{op:?}");
            plan(&sm.members, op, fresh_id(&sm.members, &seed)).map_err(Attempt::Fail)?
        };
        if self.strict_reconfig {
            self.check_quorum_safe(op).await?;
        }
        if let MemberOp::Promote(id) = *op {
            self.check_in_sync(NodeId(id)).await?;
        }
        match self.node.change_membership(cc).await {
            Ok(_) => Ok(MemberChange {
                member: added.as_ref().map(|m| to_pb(m, false, self.url_schemes)),
                members: self.member_list(),
            }),
            Err(NodeError::Stopped) => Err(Attempt::Fail(EtcdError::Stopped.into())),
            Err(NodeError::InvalidConfChange(e)) => Err(Attempt::Fail(conf_change_refused(&e))),
            // Pending, lost leadership: retry (a change that did commit
            // is then refused by `plan` as already made, which is what
            // etcd answers for a retried add too).
            Err(_) => Err(Attempt::Wait),
        }
    }

    /// Runs [`check_quorum_safe`], giving a refusal up to one second to
    /// clear: a leader elected a moment ago has not yet heard from every
    /// member.
    async fn check_quorum_safe(&self, op: &MemberOp) -> Result<(), Attempt> {
        let grace = Instant::now() + Duration::from_secs(1);
        loop {
            let active = self.node.status().active;
            let verdict = check_quorum_safe(&lock(&self.sm).members, &active, op);
            match verdict {
                Ok(()) => return Ok(()),
                Err(refusal) if Instant::now() >= grace => return Err(Attempt::Fail(refusal)),
                // Before the grace ends this only waits for a status change.
                Err(_) => drop(self.wait_for_change(grace).await),
            }
        }
    }

    /// etcd promotes a learner only once it has caught up with the leader.
    async fn check_in_sync(&self, id: NodeId) -> Result<(), Attempt> {
        let not_ready = || Attempt::Fail(EtcdError::LearnerNotReady.into());
        let channel = self.channel(id).ok_or_else(not_ready)?;
        let asked = tokio::time::timeout(
            Duration::from_secs(1),
            MaintenanceClient::new(channel).status(pb::StatusRequest {}),
        )
        .await;
        let Ok(Ok(status)) = asked else {
            return Err(not_ready());
        };
        let applied = status.into_inner().raft_applied_index;
        let commit = self.node.status().commit.0;
        if applied * 100 >= commit * IN_SYNC_PERCENT {
            Ok(())
        } else {
            Err(not_ready())
        }
    }

    async fn change_at(&self, leader: NodeId, op: &MemberOp) -> Result<MemberChange, Attempt> {
        let channel = self.channel(leader).ok_or(Attempt::Wait)?;
        let mut client = ClusterClient::new(channel);
        let answer = match op.clone() {
            MemberOp::Add {
                peer_urls,
                learner,
                id,
            } => client
                .member_add(self.forwarded(pb::MemberAddRequest {
                    peer_ur_ls: peer_urls,
                    is_learner: learner,
                    flotilla_member_id: id,
                }))
                .await
                .map(|r| {
                    let r = r.into_inner();
                    (r.member, r.members)
                }),
            MemberOp::Remove(id) => client
                .member_remove(self.forwarded(pb::MemberRemoveRequest { id }))
                .await
                .map(|r| (None, r.into_inner().members)),
            MemberOp::Promote(id) => client
                .member_promote(self.forwarded(pb::MemberPromoteRequest { id }))
                .await
                .map(|r| (None, r.into_inner().members)),
            MemberOp::Update { id, peer_urls } => client
                .member_update(self.forwarded(pb::MemberUpdateRequest {
                    id,
                    peer_ur_ls: peer_urls,
                }))
                .await
                .map(|r| (None, r.into_inner().members)),
        };
        match answer {
            Ok((member, members)) => Ok(MemberChange { member, members }),
            Err(s) if signal::kind(&s) == Some(Kind::NotLeader) => Err(Attempt::Wait),
            // Unreachable: retry. The leader's own refusal is final.
            Err(s)
                if s.code() == Code::Unavailable
                    && signal::kind(&s) != Some(Kind::UnhealthyCluster) =>
            {
                Err(Attempt::Wait)
            }
            Err(s) => Err(Attempt::Fail(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_the_core_refuses_as_done_is_member_not_found() {
        let s = conf_change_refused(&ConfChangeError::NotMember(NodeId(2)));
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "etcdserver: member not found");
        let s = conf_change_refused(&ConfChangeError::InJoint);
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().starts_with("flotilla: "), "{}", s.message());
    }

    fn three() -> Members {
        Members::bootstrap(
            &(1..=3)
                .map(|i| (NodeId(i), format!("127.0.0.1:{}", 9000 + i)))
                .collect(),
        )
    }

    fn add(url: &str, learner: bool, id: u64) -> MemberOp {
        MemberOp::Add {
            peer_urls: vec![url.to_string()],
            learner,
            id,
        }
    }

    fn refusal(m: &Members, op: MemberOp) -> Status {
        plan(m, &op, 77).unwrap_err()
    }

    #[test]
    fn strict_reconfig_check_protects_the_quorum() {
        let (m, ids) = (three(), |v: &[u64]| {
            v.iter().map(|&i| NodeId(i)).collect::<Vec<_>>()
        });
        let check = |active: &[u64], op: MemberOp| check_quorum_safe(&m, &ids(active), &op);
        let learner = add("http://127.0.0.1:9004", true, 4);
        assert!(check(&[1, 2, 3], learner.clone()).is_ok());
        // Member 3 is down: no add, not even a learner, as in etcd.
        let s = check(&[1, 2], learner).unwrap_err();
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::Unavailable, "etcdserver: unhealthy cluster")
        );
        // Removing the live follower would leave 1 of 2: refused. Removing
        // the dead one leaves 2 of 2 live: allowed.
        assert!(check(&[1, 2], MemberOp::Remove(2)).is_err());
        assert!(check(&[1, 2], MemberOp::Remove(3)).is_ok());
        assert!(check(&[1, 2, 3], MemberOp::Remove(2)).is_ok());
        let update = MemberOp::Update {
            id: 3,
            peer_urls: vec!["http://127.0.0.1:9013".into()],
        };
        assert!(check(&[1], update).is_ok());
        // Promoting 4 makes 4 voters: 3 must be live, 4 included.
        let mut m = three();
        let (cc, _) = plan(&m, &add("http://127.0.0.1:9004", true, 4), 77).unwrap();
        m.apply(&cc);
        let promote = |active: &[u64]| check_quorum_safe(&m, &ids(active), &MemberOp::Promote(4));
        assert!(promote(&[1, 2, 4]).is_ok());
        let s = promote(&[1, 2]).unwrap_err();
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(
            s.message().contains("not enough started members"),
            "{}",
            s.message()
        );
    }

    #[test]
    fn refusals_carry_etcds_codes_and_messages() {
        let m = three();
        let s = refusal(&m, MemberOp::Remove(9));
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "etcdserver: member not found");
        let s = refusal(&m, MemberOp::Promote(2));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(s.message(), "etcdserver: can only promote a learner member");
        let s = refusal(&m, add("http://127.0.0.1:9002", true, 0));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(s.message(), "etcdserver: Peer URLs already exists");
        let s = refusal(&m, add("http://127.0.0.1:9009", false, 3));
        assert_eq!(s.message(), "etcdserver: member ID already exist");
        let s = refusal(&m, add("ftp://x:1", false, 0));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let s = refusal(&m, add("http://nohost", false, 0));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn removed_ids_are_never_reused_and_learners_are_limited() {
        let mut m = three();
        let (cc, added) = plan(&m, &add("http://127.0.0.1:9004", true, 4), 77).unwrap();
        assert_eq!(added.unwrap().id, NodeId(4));
        m.apply(&cc);
        let s = refusal(&m, add("http://127.0.0.1:9005", true, 5));
        assert_eq!(
            s.message(),
            "etcdserver: too many learner members in cluster"
        );
        let (cc, _) = plan(&m, &MemberOp::Remove(4), 77).unwrap();
        m.apply(&cc);
        let s = refusal(&m, add("http://127.0.0.1:9004", true, 4));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().contains("removed"), "{}", s.message());
        // With no id asked for, the server's choice is used.
        let (_, added) = plan(&m, &add("http://127.0.0.1:9006", false, 0), 77).unwrap();
        assert_eq!(added.unwrap().id, NodeId(77));
        assert!(fresh_id(&m, "x") != 0);
    }

    #[test]
    fn updates_move_a_member_and_keep_its_role() {
        let mut m = three();
        let update = |id, url: &str| MemberOp::Update {
            id,
            peer_urls: vec![url.to_string()],
        };
        let (cc, _) = plan(&m, &update(2, "http://127.0.0.1:9102"), 77).unwrap();
        m.apply(&cc);
        assert_eq!(m.addrs[&NodeId(2)], "127.0.0.1:9102");
        assert!(!m.conf.is_joint() && m.conf.voters.len() == 3);
        // Its own URL again is fine; another member's is not.
        assert!(plan(&m, &update(2, "http://127.0.0.1:9102"), 77).is_ok());
        let s = refusal(&m, update(2, "http://127.0.0.1:9001"));
        assert_eq!(s.message(), "etcdserver: Peer URLs already exists");
        let s = refusal(&m, update(9, "http://127.0.0.1:9009"));
        assert_eq!(s.code(), tonic::Code::NotFound);
    }

    #[test]
    fn peer_urls_parse() {
        assert_eq!(
            parse_peer_url("http://127.0.0.1:5/").unwrap(),
            "127.0.0.1:5"
        );
        assert_eq!(parse_peer_url("https://a:1").unwrap(), "a:1");
        let bare = parse_peer_url("10.0.0.1:80").unwrap_err();
        assert!(
            bare.message().contains("is not http://HOST:PORT"),
            "{bare:?}"
        );
        let ftp = parse_peer_url("ftp://a:1").unwrap_err();
        assert!(
            ftp.message().contains("only http:// and https://"),
            "{ftp:?}"
        );
        assert!(parse_peer_url("http://a:0").is_err());
        assert!(parse_peer_url("https://a:1/x").is_err());
    }

    #[test]
    fn members_are_listed_in_the_schemes_the_port_speaks() {
        let m = three();
        let info = &m.list()[0];
        let urls = |schemes| {
            let pb = to_pb(info, true, schemes);
            (pb.peer_ur_ls, pb.client_ur_ls)
        };
        let (plain, tls) = (true, true);
        assert_eq!(
            urls(UrlSchemes::default()),
            (
                vec!["http://127.0.0.1:9001".to_string()],
                vec!["http://127.0.0.1:9001".to_string()]
            )
        );
        let only_tls = UrlSchemes { plain: false, tls };
        assert_eq!(
            urls(only_tls),
            (
                vec!["https://127.0.0.1:9001".to_string()],
                vec!["https://127.0.0.1:9001".to_string()]
            )
        );
        let both = UrlSchemes { plain, tls };
        assert_eq!(
            urls(both).1,
            vec![
                "https://127.0.0.1:9001".to_string(),
                "http://127.0.0.1:9001".to_string()
            ]
        );
        assert_eq!(urls(both).0, vec!["https://127.0.0.1:9001".to_string()]);
        // Unstarted: a peer URL, no name, no client URLs, in any scheme.
        let pb = to_pb(info, false, both);
        assert!(pb.name.is_empty() && pb.client_ur_ls.is_empty() && pb.peer_ur_ls.len() == 1);
    }
}
