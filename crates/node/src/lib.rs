//! Flotilla's runtime: tokio tasks, gRPC (tonic) servers and clients, real
//! files and processes around the I/O-free state machines of the core
//! crates. Each subsystem is one module.

pub mod client;
pub mod conns;
pub mod etcd;
pub mod join;
pub mod metrics;
pub mod mr;
pub mod raft;
pub mod server;
pub mod session;
