//! MapReduce runtime: drives `flotilla_mapreduce`'s coordinator and worker
//! state machines with tokio, tonic gRPC, files and child processes.
//!
//! - [`job`]: validating a job (inputs, output directory, app) and cutting
//!   its inputs into splits, before anything starts.
//! - [`coordinator`]: the coordinator's gRPC server, ticking the state
//!   machine's clock and publishing progress.
//! - [`worker`]: a worker process's loop: register, ask, run, heartbeat,
//!   report.
//! - `map_task`, `reduce_task`: running one task; map output is sorted
//!   with a memory budget ([`sort`]), reduce merges sorted runs.
//! - [`shuffle`]: the service that serves a worker's map outputs to reducers
//!   on other machines, and its client.
//! - [`streaming`]: apps as child processes (`--map-cmd`, `--reduce-cmd`).
//! - [`sequential`]: a single-process run, the reference the tests compare
//!   against and the benchmark's baseline.
//!
//! Output files appear atomically: every file is written under a temporary
//! name in the same directory and renamed into place ([`files`]).

pub mod console;
mod convert;
pub mod coordinator;
mod effects;
pub mod error;
pub mod files;
pub mod job;
mod map_task;
mod reduce_task;
pub mod sequential;
pub mod shuffle;
pub mod sort;
pub mod streaming;
pub mod worker;

pub use error::TaskError;
