//! Flotilla's Rust client library: what an application links to talk to
//! a cluster, with no server crate behind it (no raft, wal or kv).
//!
//! - [`client`]: an etcd v3 client over several endpoints, with failover
//!   that never re-sends a write whose outcome is unknown.
//! - [`auth`]: credentials and the token calls carry on a cluster with
//!   auth on.
//! - [`session`]: exactly-once writes in a client session
//!   (`flotilla.kv.v1.Kv`).

pub mod auth;
pub mod client;
pub mod session;

pub use auth::{Conn, Credentials};
pub use client::Client;
pub use session::{Session, SessionError, SessionOptions};
