//! etcd's v3 gRPC API on a Flotilla node, wire-compatible so that etcdctl
//! and etcd's client libraries work unchanged, and the server process
//! that runs it on the Raft runtime (`flotilla_runtime`).
//!
//! - [`server`]: a member's process: settings, WAL, Raft group, listeners;
//!   [`join`]: joining a running cluster; [`conns`]: the client
//!   connection limit; [`authority`]: `:authority` with a scheme
//!   (etcdctl's `--cluster` dials) accepted as etcd accepts it.
//! - [`machine`]: the KV state machine (`flotilla_host::kv_app`, the KV
//!   replica and the member table) publishing to the watch hub; session
//!   ids for plain etcd requests.
//! - [`membership`]: member add, remove and promote (checks, forwarding).
//! - [`convert`]: etcd messages to and from KV operations; [`range`]: a
//!   range's sort, filters and limit, and reads at a revision;
//!   [`validate`]: the checks of every client request before it is
//!   proposed, stored or forwarded, with etcd's errors.
//! - [`error`]: etcd's error set as one enum, and the one table that
//!   turns it into gRPC statuses (with typed signals where members act).
//! - [`core`]: the write path (propose or forward) and the read path
//!   (ReadIndex or serializable).
//! - [`kv_service`]: `etcdserverpb.KV`; [`cluster`]: `Maintenance.Status`,
//!   `Cluster.MemberList`, and Flotilla's write forwarding.
//! - [`session_service`]: `flotilla.kv.v1.Kv`, exactly-once writes in
//!   client sessions and the course's Append.
//! - [`health`]: `grpc.health.v1.Health` (serving while a leader is
//!   known); [`http`]: etcd's `/health`, `/version` and `/metrics` on
//!   the client port.
//! - [`lessor`]: when leases expire (the leader's countdowns, pure);
//!   [`leases`]: the lessor on the server's clock, and the task that
//!   revokes and checkpoints through the log; [`lease_service`]:
//!   `etcdserverpb.Lease`.
//! - [`backup`]: backup files (Maintenance.Snapshot) and restoring a new
//!   cluster's data directories from one.
//! - [`recipes`]: etcd's lock and election recipes run in the server;
//!   [`lock_service`]: `v3lockpb.Lock`; [`election_service`]:
//!   `v3electionpb.Election`.
//! - [`compactor`]: automatic compaction of the store's history
//!   (etcd's `--auto-compaction-*`).
//! - [`corrupt`]: members compare hashes of their history and a mismatch
//!   raises the CORRUPT alarm (etcd's `--experimental-*-corrupt-check*`).
//! - [`auth`]: who asks (tokens, TLS client certificates) and the checks
//!   made before a request is proposed or read; [`auth_service`]:
//!   `etcdserverpb.Auth` (users, roles, permissions, tokens).
//! - [`watch`]: the hub that carries applied changes to watchers, and which
//!   changes a watch selects; [`watch_service`]: `etcdserverpb.Watch`.

pub mod accept;
pub mod auth;
pub mod auth_service;
pub mod authority;
pub mod backup;
pub mod cluster;
pub mod compactor;
pub mod conns;
pub mod console;
pub mod convert;
pub mod core;
pub mod corrupt;
pub mod election_service;
pub mod error;
pub mod gateway;
pub mod health;
pub mod http;
pub mod join;
pub mod kv_service;
pub mod lease_service;
pub mod leases;
pub mod lessor;
pub mod lock_service;
pub mod machine;
pub mod membership;
pub mod range;
pub mod recipes;
pub mod server;
pub mod session_service;
pub mod validate;
pub mod watch;
pub mod watch_service;
mod watch_set;

pub use crate::core::Core;
pub use cluster::ClusterService;
pub use error::EtcdError;
pub use kv_service::KvService;
pub use machine::KvMachine;
pub use session_service::SessionService;
pub use watch_service::WatchService;
