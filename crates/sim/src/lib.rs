//! A deterministic simulator for Flotilla's consensus code: a whole group
//! of production replica hosts (`flotilla_host::Host`) runs in one thread
//! on virtual time, each over the real WAL on an in-memory disk
//! (`flotilla_wal::MemFs`: a crash loses what was not synced and may tear
//! the tail), with a seeded PRNG deciding every message's fate (loss,
//! delay, duplication, reordering), partitions, crashes, restarts from
//! the WAL, membership changes and leadership transfers. The same seed
//! gives the same run, event for event. One driver, one disk model:
//!
//! - [`hosted`]: the world, which checks Raft's safety properties after
//!   every event ([`invariants`] and `hosted::safety`: election safety,
//!   log matching over the durable logs, leader completeness,
//!   state-machine safety and in-order application, durable commit,
//!   monotonic commit and term, the core's own invariants) and every
//!   answer as it leaves a host; `flotilla sim hosted` runs it, and
//!   `flotilla-kvsim` with etcd's KV machine;
//! - [`swarm`]: random workloads under random faults on it, the seed
//!   choosing the faults, for `flotilla sim raft`;
//! - [`HostedCluster`]: the world driven by a test, on which the course's
//!   tester ([`lab`], [`Tester`]) runs the 6.824 Lab 2 tests
//!   (`tests/lab2*.rs`), the core's production features
//!   (`tests/production.rs`), and `flotilla-kvsim` the Lab 3 ones.
//!
//! [`bench`] is not the simulator: it drives bare Raft cores as fast as
//! they go, for `flotilla bench raft`.
pub mod bench;
pub mod hosted;
pub mod invariants;
pub mod lab;
pub mod net;
pub mod runner;
pub mod swarm;

pub use hosted::{HostedActor, HostedCluster};
pub use lab::{Actor, ELECTION_TIMEOUT_NS, Failure, OneActor, OneCall, Tester, Waited, cmd};
pub use net::{CLIENT_ADDR_BASE, MS, NetConfig, Network};
pub use runner::run_seeds;
