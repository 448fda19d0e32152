//! How a hosted run is set up ([`HostedConfig`]): members, clients,
//! faults, compaction, the core's settings and the network, with the
//! randomized runs' defaults and the course's settings
//! ([`HostedConfig::course`]) that the lab testers share.

use flotilla_raft::NodeId;

use crate::net::{MS, NetConfig};

/// How a hosted run goes.
#[derive(Clone, Debug)]
pub struct HostedConfig {
    /// Voters of the group at bootstrap (ids `1..=members`).
    pub members: u64,
    /// Members started outside the configuration (ids after the
    /// voters'), for the operator to add.
    pub spares: u64,
    /// An operator changes the membership while the faults run
    /// (`admin.rs`).
    pub membership: bool,
    /// Each member's transport answers a peer that reached it even when
    /// its member table does not list it yet, as `flotilla_runtime`'s
    /// does; off, it links only to its table's members, as the runtime's
    /// did before seed 368 showed a member stranded by it.
    pub links_to_callers: bool,
    /// Clients.
    pub clients: u64,
    /// Virtual time with faults.
    pub duration_ns: u64,
    /// Virtual time without faults after them, for the group to recover
    /// in (`None`: as long as the faults ran).
    pub liveness_ns: Option<u64>,
    /// Crash and restart members.
    pub crashes: bool,
    /// Partition the network now and then.
    pub partitions: bool,
    /// Move the leadership to another voter now and then.
    pub transfers: bool,
    /// Keep a trace of the events (all but ticks), printed to stderr if
    /// the run fails (`trace.rs`).
    pub trace: bool,
    /// Lose, delay, duplicate and reorder messages.
    pub unreliable: bool,
    /// Compact the log every this many applied entries.
    pub snapshot_entries: u64,
    /// Compact the log also once it holds this many bytes past the
    /// snapshot (the course's `maxraftstate`).
    pub snapshot_log_bytes: Option<u64>,
    /// The Raft core's settings for every member (id, voters and seed
    /// filled in); `None`: the randomized runs' own ([`raft_config`]).
    pub raft: Option<flotilla_raft::Config>,
    /// The network's faults; `None`: the randomized runs' own (the
    /// course's loss and delays, 2 % duplicates, 0.5 ms latency).
    pub net: Option<NetConfig>,
    /// Each server's processor, for throughput figures (`service.rs`);
    /// `None`: processing takes no time, as in every test.
    pub service: Option<super::ServiceModel>,
}

impl HostedConfig {
    /// The course's `make_config`: `members` voters on the course's
    /// network (loss only when `unreliable`, no duplicates), each message
    /// `latency_ns` late, the core's default settings, and snapshots
    /// decided by bytes alone: at half of `maxraftstate`, as the course's
    /// servers usually do and `flotilla_kv::Replica::snapshot_due` does
    /// (our entries are compact, about 17 bytes for a small put where the
    /// course's gob encoding takes several times that, so at the bound
    /// itself the course's 50 puts would not fill the log); never without
    /// it. The course's tests are their own clients and faults, which
    /// `HostedCluster::new` leaves to them.
    pub fn course(
        members: u64,
        unreliable: bool,
        latency_ns: u64,
        maxraftstate: Option<u64>,
    ) -> HostedConfig {
        HostedConfig {
            members,
            unreliable,
            // Never, in practice (the host staggers members' snapshots by
            // a phase below this, which must not overflow when added to
            // an index).
            snapshot_entries: 1 << 62,
            snapshot_log_bytes: maxraftstate.map(|max| max / 2),
            raft: Some(flotilla_raft::Config::new(NodeId(1), Vec::new())),
            net: Some(NetConfig {
                reliable: !unreliable,
                base_delay_ns: latency_ns,
                ..NetConfig::default()
            }),
            ..HostedConfig::default()
        }
    }

    /// These settings with snapshots sent in chunks of `bytes`, so the
    /// course's small snapshots still cross the network in several.
    pub fn with_snapshot_chunks(mut self, bytes: u64) -> HostedConfig {
        if let Some(raft) = &mut self.raft {
            raft.snapshot_chunk_bytes = bytes;
        }
        self
    }

    /// When members compact their logs: every this many entries, and
    /// once the log holds this many bytes.
    pub(crate) fn compaction(&self) -> (u64, Option<u64>) {
        (self.snapshot_entries, self.snapshot_log_bytes)
    }
}

impl Default for HostedConfig {
    fn default() -> Self {
        HostedConfig {
            members: 3,
            spares: 0,
            membership: false,
            links_to_callers: true,
            clients: 3,
            duration_ns: 4_000 * MS,
            liveness_ns: None,
            crashes: true,
            partitions: true,
            transfers: false,
            trace: false,
            unreliable: true,
            snapshot_entries: 25,
            snapshot_log_bytes: None,
            raft: None,
            net: None,
            service: None,
        }
    }
}
