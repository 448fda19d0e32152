//! etcd's KV machine on the production host, on the simulator
//! (`flotilla_kvsim::hosted`): a sweep of random seeds with crashes on
//! torn in-memory disks, partitions, an unreliable network and writes
//! forwarded through followers; every history is checked for
//! linearizability, every publication for order and agreement, and
//! watchers follow members across their restarts. Replay a seed with
//! `FLOTILLA_SEED=S`.

use flotilla_kvsim::hosted::{self, KvHostedConfig, KvHostedReport};
use flotilla_sim::hosted::{HostedConfig, HostedReport};
use flotilla_sim::runner::sweep_seeds;

fn sweep(test: &str, cfg: &HostedConfig, count: u64) -> (HostedReport, KvHostedReport) {
    let (mut total, mut kv) = (HostedReport::default(), KvHostedReport::default());
    for seed in sweep_seeds(test, "flotilla-kvsim", count) {
        match hosted::run(seed, cfg, &KvHostedConfig::default()) {
            Ok((r, k)) => {
                total.add(&r);
                kv.add(&k);
            }
            Err(f) => panic!(
                "{test} failed: {f}\nreplay: FLOTILLA_SEED={seed} cargo test -p flotilla-kvsim --test hosted_kv {test}"
            ),
        }
    }
    eprintln!("{test}: {total:?} {kv:?}");
    (total, kv)
}

#[test]
fn kv_machine_sweep_from_a_random_start() {
    let (total, kv) = sweep(
        "kv_machine_sweep_from_a_random_start",
        &HostedConfig::default(),
        30,
    );
    // The sweep must exercise what it claims to check.
    assert!(total.crashes > 0 && total.snapshot_jobs > 0, "{total:?}");
    assert!(
        kv.writes > 0 && kv.reads > 0 && kv.history_ops > 0,
        "{kv:?}"
    );
    assert!(kv.watched > 0 && kv.watch_resumes > 0, "{kv:?}");
    assert!(kv.sessions_expired > 0, "{kv:?}");
}

#[test]
fn kv_machine_membership_sweep_from_a_random_start() {
    let cfg = HostedConfig {
        spares: 2,
        membership: true,
        ..HostedConfig::default()
    };
    let (total, kv) = sweep("kv_machine_membership_sweep_from_a_random_start", &cfg, 15);
    assert!(total.membership_changes > 0, "{total:?}");
    assert!(kv.writes > 0 && kv.watched > 0, "{kv:?}");
}
