//! The sharded store on the deterministic simulator, over production
//! replica hosts: [`ctrl`] is the course's shard controller tester (Lab
//! 4A), [`check`] what its tests check of a configuration (the course's
//! checks, and the minimal-movement rule the course meant to check).

pub mod check;
pub mod ctrl;

pub use ctrl::{CtrlApp, CtrlClerk, CtrlHosted, CtrlTester};
