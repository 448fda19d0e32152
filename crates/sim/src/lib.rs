//! A deterministic simulator for Flotilla's consensus code: a whole cluster
//! runs in one thread on virtual time, with a seeded PRNG deciding every
//! message's fate (loss, delay, duplication, reordering), partitions,
//! crashes that lose unsynced writes, and restarts from disk. The same seed
//! gives the same run, event for event.
//!
//! Two drivers run the Raft core:
//!
//! - [`hosted`]: the production replica host (`flotilla_host::Host`) over
//!   the real WAL on an in-memory disk; the randomized `flotilla sim
//!   hosted` runs, and [`HostedCluster`], on which the course's tester
//!   (`lab`) runs the 6.824 Lab 2 tests (`tests/lab2*.rs`) and
//!   `flotilla-kvsim` the Lab 3 ones.
//! - [`Cluster`], the older driver of the bare core, which checks Raft's
//!   safety properties after every step (`invariants`: election safety,
//!   log matching, leader completeness, state-machine safety, in-order
//!   application, monotonic commit and term); `swarm` runs random
//!   workloads under random faults on it for `flotilla sim raft`, and
//!   `tests/production.rs` the core's production features.
pub mod bench;
pub mod cluster;
pub mod disk;
mod driver;
pub mod hosted;
pub mod invariants;
pub mod lab;
pub mod net;
mod ops;
pub mod runner;
pub mod swarm;
pub mod sync;

pub use cluster::{Actor, AppState, Cluster, ClusterConfig, Failure, SimNode};
pub use hosted::{HostedActor, HostedCluster};
pub use lab::{ELECTION_TIMEOUT_NS, OneActor, OneCall, Tester, Waited, cmd};
pub use net::{CLIENT_ADDR_BASE, MS, NetConfig, Network};
pub use runner::run_seeds;
