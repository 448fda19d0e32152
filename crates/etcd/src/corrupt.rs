//! etcd's corruption checks: members compare hashes of their key history
//! (HashKV), so that a member whose data diverged (a bug, a disk that
//! lied) is found before it serves wrong answers for long.
//!
//! - **Periodic** (`--experimental-corrupt-check-time`): the leader hashes
//!   its history at its revision r, asks every other member for its hash
//!   at r, waits until everything committed before is applied here and
//!   hashes again. It raises a CORRUPT alarm through the log, for member 0
//!   as etcd 3.4.23 does (which member diverged is not known), when
//!   [`judge`] finds a rule broken. From then on every member refuses
//!   writes ([`flotilla_kv::Op::refused_when_corrupt`]) until an operator
//!   clears the alarm.
//! - **At start** (`--experimental-initial-corrupt-check`): before serving,
//!   a member compares its own hash with the peers' at its revision and
//!   refuses to start when one with the same compaction differs
//!   ([`judge_initial`]).
//!
//! Peers that cannot answer (down, behind the revision asked for,
//! compacted past it) are skipped with a warning, as etcd skips them: the
//! check compares what it can. Invariant: only the leader raises the
//! alarm, and only on a rule broken by answers it holds.

use std::time::Duration;

use flotilla_proto::etcdserverpb as pb;
use flotilla_raft::NodeId;
use flotilla_runtime::lock;
use tokio::sync::watch;
use tonic::Status;

use crate::core::Core;
use crate::error::EtcdError;

/// A member's hash of its key history up to a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashAt {
    /// The hash (etcd's HashKV).
    pub hash: u32,
    /// The member's store revision when it hashed.
    pub revision: u64,
    /// Its compaction revision.
    pub compacted: u64,
}

/// What another member answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerHash {
    /// The member.
    pub member: NodeId,
    /// Its hash at the revision asked for, with its own revision and
    /// compaction.
    pub at: HashAt,
}

/// A rule a check found broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The leader's own hash changed between two readings at the same
    /// revision and compaction.
    #[error(
        "this member's hash changed from {before:#010x} to {after:#010x} at revision {revision}"
    )]
    Unstable {
        /// The first reading.
        before: u32,
        /// The second.
        after: u32,
        /// The revision both were taken at.
        revision: u64,
    },
    /// A member is at a revision past the leader's.
    #[error("member {member} is at revision {revision}, past the leader's {leader}")]
    AheadOfLeader {
        /// The member.
        member: NodeId,
        /// Its revision.
        revision: u64,
        /// The leader's.
        leader: u64,
    },
    /// A member compacted past the leader's compaction.
    #[error("member {member} compacted at revision {compacted}, past the leader's {leader}")]
    CompactedPastLeader {
        /// The member.
        member: NodeId,
        /// Its compaction revision.
        compacted: u64,
        /// The leader's.
        leader: u64,
    },
    /// A member with the same compaction hashed the same history to
    /// another value.
    #[error(
        "member {member} hashed revision {revision} to {hash:#010x}, this member to {expected:#010x}"
    )]
    HashDiffers {
        /// The member.
        member: NodeId,
        /// Its hash.
        hash: u32,
        /// This member's.
        expected: u32,
        /// The revision hashed.
        revision: u64,
    },
}

/// etcd's periodic rules: `before` is the leader's hash at revision r
/// (taken before asking `peers` for theirs at r), `after` its own once
/// everything committed meanwhile was applied. The first rule broken, if
/// any.
pub fn judge(before: HashAt, after: HashAt, peers: &[PeerHash]) -> Option<Mismatch> {
    if after.hash != before.hash
        && after.revision == before.revision
        && after.compacted == before.compacted
    {
        return Some(Mismatch::Unstable {
            before: before.hash,
            after: after.hash,
            revision: before.revision,
        });
    }
    peers.iter().find_map(|p| {
        if p.at.revision > after.revision {
            Some(Mismatch::AheadOfLeader {
                member: p.member,
                revision: p.at.revision,
                leader: after.revision,
            })
        } else if p.at.compacted > after.compacted {
            Some(Mismatch::CompactedPastLeader {
                member: p.member,
                compacted: p.at.compacted,
                leader: after.compacted,
            })
        } else if p.at.compacted == before.compacted && p.at.hash != before.hash {
            Some(Mismatch::HashDiffers {
                member: p.member,
                hash: p.at.hash,
                expected: before.hash,
                revision: before.revision,
            })
        } else {
            None
        }
    })
}

/// etcd's rule at start: every peer that compacted where this member did
/// and hashed its revision to another value. (One with another
/// compaction cannot be compared, and is skipped.)
pub fn judge_initial(mine: HashAt, peers: &[PeerHash]) -> Vec<Mismatch> {
    peers
        .iter()
        .filter(|p| p.at.compacted == mine.compacted && p.at.hash != mine.hash)
        .map(|p| Mismatch::HashDiffers {
            member: p.member,
            hash: p.at.hash,
            expected: mine.hash,
            revision: mine.revision,
        })
        .collect()
}

/// This member's hash of its history at its current revision. The store
/// is cloned under the lock (it shares its chunks) and hashed on the
/// blocking pool, so applying does not wait.
async fn own_hash(core: &Core) -> Result<HashAt, Status> {
    let store = lock(&core.sm).replica.store().clone();
    let revision = store.revision();
    let hashed = tokio::task::spawn_blocking(move || store.hash_kv(revision))
        .await
        .map_err(|e| Status::internal(format!("hashing the key history: {e}")))?;
    let (hash, compacted) = hashed.map_err(|r| Status::from(EtcdError::from(r)))?;
    Ok(HashAt {
        hash,
        revision,
        compacted,
    })
}

/// The other members' hashes at `revision`, from those that answer
/// within the request timeout; the rest are logged and skipped.
async fn peer_hashes(core: &Core, revision: u64) -> Vec<PeerHash> {
    let status = core.node.status();
    let others = status.voters.iter().chain(&status.learners);
    let mut answers = Vec::new();
    for &member in others.filter(|&&id| id != core.me) {
        match peer_hash(core, member, revision).await {
            Ok(at) => answers.push(PeerHash { member, at }),
            Err(e) => tracing::warn!(
                member = %member,
                revision,
                error = %e,
                "cannot compare hashes with a member; skipped"
            ),
        }
    }
    answers
}

async fn peer_hash(core: &Core, member: NodeId, revision: u64) -> Result<HashAt, Status> {
    let channel = core
        .channel(member)
        .ok_or_else(|| Status::unavailable("no address for the member"))?;
    let mut client = pb::maintenance_client::MaintenanceClient::new(channel);
    let request = pb::HashKvRequest {
        revision: i64::try_from(revision).unwrap_or(i64::MAX),
    };
    let answer = tokio::time::timeout(core.timeout, client.hash_kv(core.internal(request)))
        .await
        .map_err(|_| Status::deadline_exceeded("no answer within the request timeout"))??
        .into_inner();
    let header = answer.header.unwrap_or_default();
    Ok(HashAt {
        hash: answer.hash,
        revision: u64::try_from(header.revision).unwrap_or(0),
        compacted: u64::try_from(answer.compact_revision).unwrap_or(0),
    })
}

/// One periodic check, as leader: compares, and raises CORRUPT through
/// the log if a rule is broken. Returns what it found.
pub async fn check(core: &Core) -> Result<Option<Mismatch>, Status> {
    let before = own_hash(core).await?;
    let peers = peer_hashes(core, before.revision).await;
    core.read_barrier().await?;
    let after = own_hash(core).await?;
    core.metrics
        .corruption_checks
        .fetch_add(peers.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let Some(mismatch) = judge(before, after, &peers) else {
        return Ok(None);
    };
    tracing::error!(%mismatch, "the members' data differ; raising the CORRUPT alarm");
    let op = flotilla_kv::Op::Alarm {
        raise: true,
        member: 0,
        kind: flotilla_kv::AlarmKind::Corrupt,
    };
    core.write(op).await?;
    Ok(Some(mismatch))
}

/// Runs [`check`] every `every` while this member leads, until `closing`.
pub fn spawn(core: Core, every: Duration, mut closing: watch::Receiver<bool>) {
    tokio::spawn(async move {
        tracing::info!(interval = ?every, "corruption checks enabled");
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
            if core.node.leader() != Some(core.me) {
                continue;
            }
            if let Err(e) = check(&core).await {
                tracing::warn!(error = %e, "a corruption check could not finish");
            }
        }
    });
}

/// The check at start: `Err` names every member whose hash differs from
/// this member's at the same revision and compaction.
pub async fn initial_check(core: &Core) -> Result<(), String> {
    let mine = own_hash(core)
        .await
        .map_err(|e| format!("hashing this member's history: {}", e.message()))?;
    let peers = peer_hashes(core, mine.revision).await;
    let found = judge_initial(mine, &peers);
    if found.is_empty() {
        tracing::info!(
            revision = mine.revision,
            compared = peers.len(),
            "initial corruption check passed"
        );
        return Ok(());
    }
    let what: Vec<String> = found.iter().map(ToString::to_string).collect();
    Err(format!(
        "member {} found data inconsistency with peers: {}",
        core.me,
        what.join("; ")
    ))
}

#[cfg(test)]
mod tests;
