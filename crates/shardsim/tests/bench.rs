//! The virtual-time figures of `flotilla_shardsim::bench` on a small
//! scale: they run, and the service-time model shapes them as it should
//! (the full figures: `flotilla bench shard sim-load`, `sim-move`).

use flotilla_shardsim::bench::{Costs, LoadConfig, load, migrate};
use flotilla_sim::MS;

/// Costly servers, so that few clerks saturate them and a run is short.
fn costs() -> Costs {
    Costs {
        request_ns: 400_000,
        message_ns: 100_000,
        kib_ns: 1_000,
        apply_ns: 50_000,
    }
}

fn cfg(groups: usize, colocated: bool) -> LoadConfig {
    LoadConfig {
        groups,
        nshards: 256,
        clerks_per_group: 40,
        value_bytes: 256,
        warmup_ns: 300 * MS,
        window_ns: 400 * MS,
        costs: costs(),
        colocated,
        seed: 1,
    }
}

#[test]
fn three_groups_on_their_own_processors_take_about_three_times_the_writes() {
    let one = load(&cfg(1, false)).unwrap_or_else(|f| panic!("{f:?}"));
    let three = load(&cfg(3, false)).unwrap_or_else(|f| panic!("{f:?}"));
    eprintln!("1 group: {one:?}\n3 groups: {three:?}");
    assert!(one.busiest > 0.9, "one group saturates its leader: {one:?}");
    assert!(three.busiest > 0.9, "and three groups theirs: {three:?}");
    assert!(one.puts > 100 && one.p99_ms >= one.p50_ms);
    // A put takes a sync (0.05 to 4 ms) and the queue before a saturated
    // processor; it cannot take longer than the window.
    for r in [&one, &three] {
        assert!(r.p50_ms > 1.0 && r.p99_ms < 400.0, "{r:?}");
        assert!(r.p99_ms > r.p50_ms, "a spread of latencies: {r:?}");
        // The rate is the window's puts over its 0.4 s; a processor works
        // no longer than the window (plus work it queued before its end).
        assert!((r.per_sec - r.puts as f64 / 0.4).abs() < 1e-6, "{r:?}");
        assert!(r.busiest <= 1.1, "{r:?}");
    }
    let ratio = three.per_sec / one.per_sec;
    assert!(
        (2.6..=3.3).contains(&ratio),
        "3 groups against 1: {ratio:.2}"
    );
}

/// On the same 3 processors, 3 groups keep every processor busy (one
/// group's leader alone is the bottleneck) but cannot triple the writes:
/// the work per write is the same, and smaller batches per group add
/// to it.
#[test]
fn three_groups_sharing_three_processors_cannot_triple_the_writes() {
    let one = load(&cfg(1, true)).unwrap_or_else(|f| panic!("{f:?}"));
    let three = load(&cfg(3, true)).unwrap_or_else(|f| panic!("{f:?}"));
    eprintln!("1 group: {one:?}\n3 groups: {three:?}");
    let ratio = three.per_sec / one.per_sec;
    assert!(
        one.busiest > 0.9 && three.busiest > 0.9,
        "{one:?} {three:?}"
    );
    assert!(
        three.puts > 100 && ratio < 1.5,
        "3 groups against 1 on 3 processors: {ratio:.2}"
    );
}

#[test]
fn a_bigger_shard_takes_longer_to_move_and_its_bytes_cost_time() {
    // 20 µs a KiB: 50 MiB/s, so the bytes outweigh the polls.
    let slow_bytes = Costs {
        kib_ns: 20_000,
        ..costs()
    };
    let small = migrate(2, slow_bytes, 1).unwrap_or_else(|f| panic!("{f:?}"));
    let big = migrate(8, slow_bytes, 1).unwrap_or_else(|f| panic!("{f:?}"));
    let free_bytes = Costs {
        kib_ns: 0,
        ..costs()
    };
    let big_free = migrate(8, free_bytes, 1).unwrap_or_else(|f| panic!("{f:?}"));
    eprintln!("2 MiB: {small:?}, 8 MiB: {big:?}, 8 MiB with free bytes: {big_free:?}");
    assert_eq!((small.bytes, big.bytes), (2 << 20, 8 << 20));
    assert!(big.ms > small.ms && small.ms > 0.0, "{small:?} {big:?}");
    // 8 MiB at 20 µs a KiB is 164 ms of a processor, paid at least
    // once on the way.
    assert!(
        big.ms >= big_free.ms + 164.0,
        "{big:?} against {big_free:?}"
    );
}

/// The rate counts only puts started and answered in the window: a
/// window twice as long gives about the same rate (counting the warm-up's
/// puts too would inflate the short window's rate by far more).
#[test]
fn the_rate_does_not_depend_on_the_window() {
    let short = load(&cfg(1, false)).unwrap_or_else(|f| panic!("{f:?}"));
    let long = load(&LoadConfig {
        window_ns: 800 * MS,
        ..cfg(1, false)
    })
    .unwrap_or_else(|f| panic!("{f:?}"));
    let ratio = short.per_sec / long.per_sec;
    assert!((0.85..1.15).contains(&ratio), "{short:?} against {long:?}");
    assert!(long.puts > short.puts * 3 / 2, "{short:?} against {long:?}");
}
