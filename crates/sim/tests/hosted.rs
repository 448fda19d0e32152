//! The production replica host on the simulator: a sweep of random seeds
//! with crashes (the real WAL on the in-memory disk), partitions and an
//! unreliable network, checking every answer as it leaves the host
//! (`flotilla_sim::hosted`). Replay a seed with `FLOTILLA_SEED=S`.

use flotilla_sim::hosted::{self, HostedConfig};
use flotilla_sim::runner::sweep_seeds;

#[test]
fn hosted_sweep_from_a_random_start() {
    let test = "hosted_sweep_from_a_random_start";
    let cfg = HostedConfig::default();
    let mut total = hosted::HostedReport::default();
    for seed in sweep_seeds(test, "flotilla-sim", 40) {
        match hosted::run(seed, &cfg) {
            Ok(r) => total.add(&r),
            Err(f) => panic!(
                "{test} failed: {f}\nreplay: FLOTILLA_SEED={seed} cargo test -p flotilla-sim --test hosted"
            ),
        }
    }
    eprintln!("{test}: {total:?}");
    // The sweep must exercise what it claims to check.
    assert!(total.acked_writes > 0 && total.reads > 0, "{total:?}");
    assert!(total.crashes > 0 && total.snapshot_jobs > 0, "{total:?}");
}

/// Half as many seeds again, with 2 spares and an operator changing the
/// membership through the host under the same faults: quorums are
/// judged against the configuration in force at each entry.
#[test]
fn hosted_membership_sweep_from_a_random_start() {
    let test = "hosted_membership_sweep_from_a_random_start";
    let cfg = membership();
    let mut total = hosted::HostedReport::default();
    for seed in sweep_seeds(test, "flotilla-sim", 20) {
        match hosted::run(seed, &cfg) {
            Ok(r) => total.add(&r),
            Err(f) => panic!(
                "{test} failed: {f}\nreplay: FLOTILLA_SEED={seed} cargo test -p flotilla-sim --test hosted {test}"
            ),
        }
    }
    eprintln!("{test}: {total:?}");
    assert!(total.acked_writes > 0 && total.crashes > 0, "{total:?}");
    assert!(
        total.membership_changes > 0 && total.removals > 0,
        "{total:?}"
    );
}

fn membership() -> HostedConfig {
    HostedConfig {
        spares: 2,
        membership: true,
        ..HostedConfig::default()
    }
}

#[test]
fn five_members_without_faults_serve_every_client() {
    let cfg = HostedConfig {
        members: 5,
        clients: 5,
        crashes: false,
        partitions: false,
        unreliable: false,
        ..HostedConfig::default()
    };
    let r = hosted::run(7, &cfg).expect("a healthy group serves");
    assert!(r.acked_writes > 500 && r.reads > 100, "{r:?}");
    assert_eq!(r.crashes, 0);
}
