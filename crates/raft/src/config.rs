//! Node configuration, checked once when a node is created.
//!
//! Time is counted in ticks: the driver calls `tick()` at a fixed interval
//! (the simulator and the server use 10 ms), so `election_ticks = 100`
//! means a base election timeout of 1 s, randomized per election in
//! `[election_ticks, 2 * election_ticks)`.
//!
//! The defaults are etcd's (100 ms heartbeats, 1 s elections). Shorter
//! elections fail on networks that delay answers by more than the timeout
//! (the course's long reordering delays them up to 2.2 s): candidates give
//! up before their votes arrive, and check-quorum deposes leaders whose
//! acknowledgements are late.

use thiserror::Error;

use crate::types::NodeId;

/// How linearizable reads are confirmed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadMode {
    /// ReadIndex (§6.4 of the thesis): the leader confirms it still leads
    /// with a heartbeat round before answering. Safe under any clock.
    Safe,
    /// Lease reads (§6.4.1): the leader answers at once while its lease
    /// holds. Assumes clocks on all nodes advance at rates within
    /// `lease_drift_ticks` per election timeout of each other: a follower
    /// that heard the leader will not vote for another within
    /// `election_ticks`, so the leader may serve reads for
    /// `election_ticks - lease_drift_ticks` after a quorum acknowledged a
    /// heartbeat it sent. Requires `check_quorum`.
    Lease,
}

/// A node's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id (not 0).
    pub id: NodeId,
    /// The group's voters when the storage holds no snapshot (bootstrap).
    /// Ignored once a snapshot carries the membership.
    pub voters: Vec<NodeId>,
    /// The group's learners at bootstrap.
    pub learners: Vec<NodeId>,
    /// Base election timeout in ticks.
    pub election_ticks: u32,
    /// Heartbeat interval in ticks (less than `election_ticks`).
    pub heartbeat_ticks: u32,
    /// Seed of the node's PRNG (election jitter, and the ids under which
    /// reads are forwarded to the leader). Give each start of a node a
    /// different seed (the server draws one at random, the simulator from
    /// its own PRNG): a restarted node with the same seed would reuse its
    /// forwarded reads' ids, and could take an answer sent to its previous
    /// incarnation, an old read index, for a new read.
    pub seed: u64,
    /// Run a pre-vote round before raising the term (§9.6).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum for an
    /// election timeout, and followers ignore vote requests while they
    /// hear from a leader (§6.2, §9.6).
    pub check_quorum: bool,
    /// How reads are confirmed.
    pub read_mode: ReadMode,
    /// Clock-drift allowance for lease reads, in ticks.
    pub lease_drift_ticks: u32,
    /// Upper bound on the entry bytes of one append message (at least one
    /// entry is always sent).
    pub max_msg_bytes: u64,
    /// Append messages in flight per follower.
    pub max_inflight_msgs: usize,
    /// Entry bytes in flight per follower.
    pub max_inflight_bytes: u64,
    /// Upper bound on the entry bytes handed out for applying in one Ready.
    pub max_apply_bytes: u64,
    /// Size of one snapshot chunk in transfer.
    pub snapshot_chunk_bytes: u64,
    /// Whether the node drops a snapshot's data from memory once the
    /// snapshot is durable (the application's state at millions of keys
    /// makes a snapshot of gigabytes, which a member would otherwise hold
    /// twice: as its state and as the snapshot kept for followers). The
    /// driver then fills each outgoing [`crate::SnapshotChunk`] whose
    /// `data` is empty while `offset < total_len` with the snapshot's
    /// bytes from `offset` (at most `snapshot_chunk_bytes` of them) from
    /// its storage, or drops the message if it cannot.
    pub snapshot_data_in_storage: bool,
}

impl Config {
    /// A configuration with the defaults used by the simulator and the
    /// server: 10 ms ticks, 100 ms heartbeats, 1–2 s elections, pre-vote
    /// and check-quorum on, ReadIndex reads.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            learners: Vec::new(),
            election_ticks: 100,
            heartbeat_ticks: 10,
            seed: id.get(),
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::Safe,
            lease_drift_ticks: 5,
            max_msg_bytes: 1 << 20,
            max_inflight_msgs: 256,
            max_inflight_bytes: 32 << 20,
            max_apply_bytes: 8 << 20,
            snapshot_chunk_bytes: 1 << 20,
            snapshot_data_in_storage: false,
        }
    }

    /// Checks the settings, naming the first one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.get() == 0 {
            return Err(ConfigError::ZeroId);
        }
        if self.heartbeat_ticks == 0 {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError::ElectionNotAboveHeartbeat {
                election_ticks: self.election_ticks,
                heartbeat_ticks: self.heartbeat_ticks,
            });
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError::ZeroInflight);
        }
        if self.snapshot_chunk_bytes == 0 {
            return Err(ConfigError::ZeroChunk);
        }
        if self.read_mode == ReadMode::Lease && !self.check_quorum {
            return Err(ConfigError::LeaseWithoutCheckQuorum);
        }
        if self.read_mode == ReadMode::Lease && self.lease_drift_ticks >= self.election_ticks {
            return Err(ConfigError::DriftTooLarge {
                lease_drift_ticks: self.lease_drift_ticks,
                election_ticks: self.election_ticks,
            });
        }
        if let Some(id) = self
            .voters
            .iter()
            .chain(&self.learners)
            .find(|id| id.get() == 0)
        {
            return Err(ConfigError::ZeroMember(*id));
        }
        if let Some(id) = self.learners.iter().find(|l| self.voters.contains(l)) {
            return Err(ConfigError::VoterAndLearner(*id));
        }
        Ok(())
    }
}

/// A configuration that cannot work.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum ConfigError {
    /// The node id is 0.
    #[error("node id must not be 0")]
    ZeroId,
    /// A member id is 0.
    #[error("member id {0} is invalid: ids start at 1")]
    ZeroMember(NodeId),
    /// A node is listed as both voter and learner.
    #[error("node {0} is listed both as a voter and as a learner")]
    VoterAndLearner(NodeId),
    /// No heartbeats.
    #[error("heartbeat_ticks must be at least 1")]
    ZeroHeartbeat,
    /// Elections would start between heartbeats.
    #[error(
        "election_ticks ({election_ticks}) must be greater than heartbeat_ticks ({heartbeat_ticks})"
    )]
    ElectionNotAboveHeartbeat {
        /// The configured election timeout.
        election_ticks: u32,
        /// The configured heartbeat interval.
        heartbeat_ticks: u32,
    },
    /// No append could ever be in flight.
    #[error("max_inflight_msgs must be at least 1")]
    ZeroInflight,
    /// Snapshots could not be sent.
    #[error("snapshot_chunk_bytes must be at least 1")]
    ZeroChunk,
    /// Lease reads are unsafe without check-quorum.
    #[error("lease reads need check_quorum: without it a deposed leader may not know it")]
    LeaseWithoutCheckQuorum,
    /// The lease would be empty.
    #[error(
        "lease_drift_ticks ({lease_drift_ticks}) must be less than election_ticks ({election_ticks})"
    )]
    DriftTooLarge {
        /// The configured drift.
        lease_drift_ticks: u32,
        /// The configured election timeout.
        election_ticks: u32,
    },
}
