//! Flotilla's Rust client library: what an application links to talk to
//! a cluster, with no server crate behind it (no raft, wal or kv).
//!
//! - [`client`]: an etcd v3 client over several endpoints, with failover
//!   that never re-sends a write whose outcome is unknown.
//! - [`session`]: exactly-once writes in a client session
//!   (`flotilla.kv.v1.Kv`).

pub mod client;
pub mod session;

pub use client::Client;
pub use session::{Session, SessionError, SessionOptions};
