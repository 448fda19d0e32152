//! Runs a test scenario over many seeds and turns a failure into a replay
//! command.
//!
//! Environment: `FLOTILLA_SEEDS=N` runs seeds `1..=N` (default: the test's
//! own count), `FLOTILLA_SEED_START=S` shifts them, `FLOTILLA_SEED=S` runs
//! seed `S` alone.
//!
//! A *sweep* ([`sweep_seeds`]) starts at a different seed on every run
//! unless `FLOTILLA_SEED_START` is given, so that each run of the suite
//! explores seeds no earlier run tried; it prints its start, and a failure
//! names the seed, so every failure replays.

use crate::lab::Failure;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The seeds to run: `default_count` unless the environment says otherwise.
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("FLOTILLA_SEED") {
        return vec![seed];
    }
    let count = env_u64("FLOTILLA_SEEDS").unwrap_or(default_count);
    let start = env_u64("FLOTILLA_SEED_START").unwrap_or(1);
    (start..start + count).collect()
}

/// The seeds of a sweep: `default_count` (or `FLOTILLA_SEEDS`) from
/// `FLOTILLA_SEED_START`, or from a random start, printed to
/// stderr with the command that replays the sweep (`FLOTILLA_SEED=S`
/// runs one seed, as for [`seeds`]).
pub fn sweep_seeds(test: &str, package: &str, default_count: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("FLOTILLA_SEED") {
        return vec![seed];
    }
    let count = env_u64("FLOTILLA_SEEDS").unwrap_or(default_count);
    let start = env_u64("FLOTILLA_SEED_START").unwrap_or_else(random_start);
    eprintln!(
        "{test}: seeds {start}..={last}; replay: FLOTILLA_SEED_START={start} \
         FLOTILLA_SEEDS={count} cargo test -p {package} {test} -- --exact",
        last = start.saturating_add(count.saturating_sub(1)),
    );
    (start..start.saturating_add(count)).collect()
}

/// A start for a sweep, drawn from the OS's randomness (std's
/// `RandomState` keys), kept below 2^48 so that the seed range never
/// overflows and the number stays short to type. The simulator itself
/// never reads it: the seeds it is given fix every run.
fn random_start() -> u64 {
    use std::hash::BuildHasher;
    let drawn = std::collections::hash_map::RandomState::new().hash_one(0u8);
    (drawn >> 16).max(1)
}

/// Runs `scenario` for one pinned seed (a regression test).
pub fn run_seed(test: &str, seed: u64, scenario: impl Fn(u64) -> Result<(), Failure>) {
    if let Err(f) = scenario(seed) {
        panic!(
            "{test} failed: {f}\nreplay: cargo test -p flotilla-sim {test} -- --exact --nocapture"
        );
    }
}

/// Runs `scenario` for every seed; panics on the first failure with the
/// seed and the command that replays it.
pub fn run_seeds(test: &str, default_count: u64, scenario: impl Fn(u64) -> Result<(), Failure>) {
    for seed in seeds(default_count) {
        if let Err(f) = scenario(seed) {
            panic!(
                "{test} failed: {f}\nreplay: FLOTILLA_SEED={seed} \
                 cargo test -p flotilla-sim {test} -- --exact --nocapture"
            );
        }
    }
}
