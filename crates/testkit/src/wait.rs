//! Polling with a deadline: how tests wait for a state (a server
//! listening, a leader elected, a file written) instead of sleeping for
//! a guessed time. Invariant: every wait is bounded.

use std::time::{Duration, Instant};

/// How often a condition is polled: often enough not to slow tests,
/// rarely enough not to load the 2-core machines they run on.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `f` every 20 ms until it returns `Some`, failing after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
    match wait_until(limit, f) {
        Some(v) => v,
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `f` every 20 ms until it returns `Some`; `None` after `limit`.
pub fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
