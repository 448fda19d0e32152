//! Fuzzes the first thing a client's bytes meet on the server: the
//! `:authority` filter in front of HTTP/2 (`flotilla_etcd::authority`).
//! The input's first byte sets how the rest is cut into reads (as a
//! socket cuts them); the filter must never panic, must hold what it is
//! given only up to its bound, and, unless it switched to rewriting (a
//! first request whose `:authority` carries a scheme), must pass every
//! byte on unchanged and in order.

#![no_main]

use flotilla_etcd::authority::Filter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut).max(1);
    let mut filter = Filter::default();
    let mut out = Vec::new();
    for chunk in input.chunks(piece) {
        if filter.feed(chunk, &mut out).is_err() {
            assert!(filter.is_rewriting(), "only a rewriting filter refuses");
            return;
        }
    }
    filter.finish(&mut out);
    if !filter.is_rewriting() {
        assert_eq!(out, input, "passed through unchanged");
    }
});
