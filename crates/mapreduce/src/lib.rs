//! The I/O-free core of Flotilla's MapReduce (MIT 6.824 Lab 1, made into a
//! tool): the coordinator and worker state machines, the task protocol,
//! partitioning, input splits, the intermediate record format and the
//! built-in apps' map and reduce functions.
//!
//! Invariants of the whole crate:
//! 1. No clock, thread, socket or file. Time is an input ([`time::Millis`]),
//!    side effects of the apps go through [`apps::Effects`], which the runtime
//!    (`flotilla-mr`) implements. `clippy.toml` bans the escape hatches.
//! 2. Deterministic: the same events in the same order give the same actions
//!    (no hash-seeded iteration order).
//! 3. State machines have one shape, `fn handle(&mut self, Event) ->
//!    Vec<Action>`, and their tests assert the exact action vectors.

pub mod apps;
pub mod coordinator;
pub mod partition;
pub mod record;
pub mod split;
pub mod task;
pub mod time;
pub mod words;
pub mod worker;
