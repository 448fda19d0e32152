//! `flotilla sim raft`'s swarm in the suite: a sweep of random seeds with
//! every fault, on the production host, from a new start on every run
//! (printed, so a failure replays; see `flotilla_sim::runner::sweep_seeds`).
//! The phases are shorter than the command's defaults, to keep the suite
//! quick; the long sweeps (thousands of seeds) are `flotilla sim raft
//! --seeds N`.

use flotilla_sim::MS;
use flotilla_sim::runner::sweep_seeds;
use flotilla_sim::swarm::{self, SwarmConfig};

#[test]
fn swarm_sweep_from_a_random_start() {
    let test = "swarm_sweep_from_a_random_start";
    let cfg = SwarmConfig {
        safety_ns: 5_000 * MS,
        liveness_ns: 5_000 * MS,
        ..SwarmConfig::default()
    };
    let mut total = flotilla_sim::hosted::HostedReport::default();
    for seed in sweep_seeds(test, "flotilla-sim", 100) {
        match swarm::run(seed, &cfg) {
            Ok(r) => total.add(&r.hosted),
            Err(f) => panic!(
                "{test} failed: {f}\nreplay: flotilla sim raft --seed {seed} --safety-secs 5 \
                 --liveness-secs 5 --trace (or FLOTILLA_SEED={seed} cargo test -p flotilla-sim {test})"
            ),
        }
    }
    eprintln!("{test}: {total:?}");
    // Every fault the sweep claims to inject was injected.
    assert!(total.crashes > 0 && total.transfers > 0, "{total:?}");
    assert!(total.membership_changes > 0 && total.reads > 0, "{total:?}");
    assert!(
        total.snapshot_jobs > 0 && total.acked_after_faults > 0,
        "{total:?}"
    );
}

/// Seeds 5246 and 14058 of `flotilla sim raft` (5 nodes, every fault):
/// a lease-reading leader handed its leadership over, and after the
/// transferee had won and committed past it, answered a read from its
/// lease, at an index one short (`Raft::send_timeout_now` now voids the
/// lease for the rest of the term).
#[test]
fn a_leader_that_hands_over_serves_no_read_from_its_lease() {
    let cfg = SwarmConfig {
        nodes: 5,
        ..SwarmConfig::default()
    };
    for seed in [5246, 14058] {
        if let Err(f) = swarm::run(seed, &cfg) {
            panic!("seed {seed}: {f}\nreplay: flotilla sim raft --seed {seed} --trace");
        }
    }
}
