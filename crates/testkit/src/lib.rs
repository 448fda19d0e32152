//! Flotilla's shared test kit: what every crate's integration tests need
//! and none of them owns. Only ever a `[dev-dependencies]` entry.
//!
//! - [`Scratch`]: a fresh directory, removed on drop unless
//!   `FLOTILLA_KEEP_SCRATCH` is set; a failing test prints the tails of
//!   the `*.log` files in it.
//! - [`free_port`], [`free_ports`]: loopback ports for servers a test
//!   starts, outside the kernel's ephemeral range.
//! - [`wait_for`], [`wait_until`]: polling with a deadline. Tests never
//!   sleep to synchronize: they poll for the state they need, bounded.
//! - [`Proc`]: a child process killed (by its own PID) when dropped.
//! - [`http`]: a minimal HTTP/1.1 client over `std::net` for the client
//!   port's HTTP endpoints (etcd's `/health`, the JSON gateway).
//! - [`proxy`]: the one loopback TCP fault proxy (pass, delay, stall,
//!   cut, black hole), per link or for every directed link of a cluster.
//!
//! Test code: a broken environment (no temporary directory, no loopback)
//! panics with a message saying what failed.

pub mod http;
mod ports;
mod process;
pub mod proxy;
mod scratch;
mod wait;

pub use ports::{free_port, free_ports};
pub use process::Proc;
pub use scratch::Scratch;
pub use wait::{wait_for, wait_until};
