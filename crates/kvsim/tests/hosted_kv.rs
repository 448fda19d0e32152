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

/// The totals of a sweep of `count` seeds (one with `FLOTILLA_SEED`),
/// and whether it ran more than one.
fn sweep(test: &str, cfg: &HostedConfig, count: u64) -> (HostedReport, KvHostedReport, bool) {
    let (mut total, mut kv) = (HostedReport::default(), KvHostedReport::default());
    let seeds = sweep_seeds(test, "flotilla-kvsim", count);
    let many = seeds.len() > 1;
    for seed in seeds {
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
    (total, kv, many)
}

#[test]
fn kv_machine_sweep_from_a_random_start() {
    let (total, kv, many) = sweep(
        "kv_machine_sweep_from_a_random_start",
        &HostedConfig::default(),
        30,
    );
    if !many {
        return; // A replay of one seed need not exercise everything.
    }
    // The sweep must exercise what it claims to check: every kind of
    // write, swaps that swap, gets, watchers that resume.
    assert!(total.crashes > 0 && total.snapshot_jobs > 0, "{total:?}");
    assert!(kv.by_kind.iter().all(|&n| n > 0), "{kv:?}");
    assert!(kv.swapped.iter().all(|&n| n > 0), "{kv:?}");
    assert_eq!(kv.writes, kv.by_kind.iter().sum::<u64>(), "{kv:?}");
    assert!(kv.reads > 0 && kv.history_ops > kv.writes, "{kv:?}");
    assert!(kv.watched > 0 && kv.watch_resumes > 0, "{kv:?}");
    assert!(
        kv.published > kv.watched / 2,
        "every member publishes: {kv:?}"
    );
    // Sessions expire on the replicated clock, now and then: a client
    // cut off past the TTL, not one that keeps writing.
    assert!(kv.sessions_expired > 0, "{kv:?}");
    assert!(kv.sessions_expired * 20 < kv.writes, "{kv:?}");
    assert!(kv.sessions > kv.sessions_expired, "{kv:?}");
}

#[test]
fn kv_machine_membership_sweep_from_a_random_start() {
    let cfg = HostedConfig {
        spares: 2,
        membership: true,
        ..HostedConfig::default()
    };
    let (total, kv, _) = sweep("kv_machine_membership_sweep_from_a_random_start", &cfg, 15);
    assert!(total.membership_changes > 0, "{total:?}");
    assert!(kv.writes > 0 && kv.watched > 0, "{kv:?}");
}

/// Two seeds of the sweep above that failed while removed members were
/// first kept running for their grace: one's removed member answered a
/// read it had confirmed before applying its removal (it now answers
/// what waits on it as not-leader), the other's removed leader decided
/// a commit by the new configuration's quorum, which the durable-commit
/// check then counted only with the leader a member.
#[test]
fn removed_members_in_their_grace_answer_nothing() {
    let cfg = HostedConfig {
        spares: 2,
        membership: true,
        ..HostedConfig::default()
    };
    for seed in [161_100_794_160_701, 79_223_970_132_935] {
        if let Err(f) = hosted::run(seed, &cfg, &KvHostedConfig::default()) {
            panic!("seed {seed}: {f}");
        }
    }
}

#[test]
fn reports_add_up() {
    let one = KvHostedReport {
        writes: 1,
        by_kind: [1, 2, 3, 4, 5],
        swapped: [6, 7],
        sessions: 8,
        reads: 9,
        sessions_expired: 10,
        history_ops: 11,
        published: 12,
        watched: 13,
        watch_resumes: 14,
    };
    let mut total = one.clone();
    total.add(&one);
    let twice = KvHostedReport {
        writes: 2,
        by_kind: [2, 4, 6, 8, 10],
        swapped: [12, 14],
        sessions: 16,
        reads: 18,
        sessions_expired: 20,
        history_ops: 22,
        published: 24,
        watched: 26,
        watch_resumes: 28,
    };
    assert_eq!(total, twice);
}
