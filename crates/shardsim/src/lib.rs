//! The sharded store on the deterministic simulator, over production
//! replica hosts:
//! - [`bench`]: throughput and migration figures in virtual time, with a
//!   per-server service-time model;
//! - [`ctrl`]: the course's shard controller tester (Lab 4A);
//! - [`check`]: what its tests check of a configuration (the course's
//!   checks, and the minimal-movement rule the course meant to check);
//! - [`fleet`]: the controller and the replica groups, each a hosted
//!   cluster, advanced together in virtual time, with actors spanning
//!   them: each group's [`mover`] and the clients ([`clerk`]);
//! - [`swarm`]: random schedules and workloads for `flotilla sim shard`;
//! - [`tester`]: the course's sharded KV tester (Lab 4B) over a fleet,
//!   and its clients' [`workloads`].

pub mod bench;
pub mod check;
pub mod clerk;
pub mod ctrl;
pub mod fleet;
pub mod mover;
pub mod swarm;
pub mod tester;
pub mod workloads;

pub use ctrl::{CtrlApp, CtrlClerk, CtrlHosted, CtrlTester};
pub use fleet::{Fleet, FleetConfig};
pub use tester::ShardTester;
