//! A deterministic simulator for Flotilla's consensus code: a whole cluster
//! runs in one thread on virtual time, with a seeded PRNG deciding every
//! message's fate (loss, delay, duplication, reordering), partitions,
//! crashes that lose unsynced writes, and restarts from disk. The same seed
//! gives the same run, event for event.
//!
//! After every step it checks Raft's safety properties (`invariants`):
//! election safety, log matching, leader completeness, state-machine
//! safety, in-order application, monotonic commit and term. The course's
//! tester (`lab`) is rebuilt on top, so the 6.824 Lab 2 tests run on virtual
//! time over many seeds (`tests/lab2_*.rs`); `swarm` runs random workloads
//! under random faults for `flotilla sim raft`.

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
pub mod service;
pub mod swarm;
pub mod sync;

pub use cluster::{Actor, AppState, Cluster, ClusterConfig, Failure, SimNode};
pub use hosted::{HostedActor, HostedCluster};
pub use lab::{ELECTION_TIMEOUT_NS, OneActor, OneCall, Tester, Waited, cmd};
pub use net::{MS, NetConfig, Network};
pub use runner::run_seeds;
pub use service::{CLIENT_ADDR_BASE, Outbox, Service, ServiceFactory};
