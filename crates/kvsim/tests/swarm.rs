//! `flotilla sim kv`'s swarm in the suite: the seeds that once found a
//! violation, pinned, and a sweep of random seeds with every fault from a
//! new start on every run (printed, so a failure replays; see
//! `flotilla_sim::runner::sweep_seeds`). The long sweeps (200,000 seeds and
//! more) are `flotilla sim kv --seeds N`.

use flotilla_kvsim::swarm::{self, KvSwarmConfig};
use flotilla_sim::runner::sweep_seeds;
use flotilla_sim::swarm::Faults;

/// The configuration of `flotilla sim kv` with its defaults.
fn cli_defaults() -> KvSwarmConfig {
    let cfg = KvSwarmConfig::default();
    assert_eq!(cfg.invalid_per_mille, 20);
    assert_eq!(cfg.mvcc_per_mille, 50);
    assert_eq!(
        cfg.faults.to_string(),
        "partition,crash,drop,reorder,snapshot,membership,transfer,reads"
    );
    assert_eq!((cfg.nodes, cfg.clients, cfg.keys), (0, 5, 4));
    assert_eq!(cfg.faults, Faults::all());
    cfg
}

/// A seed found before the workload sent invalid operations and MVCC
/// ones, run as it was found (`--invalid-per-mille 0 --mvcc-per-mille 0`).
fn pinned(seed: u64) {
    let cfg = KvSwarmConfig {
        invalid_per_mille: 0,
        mvcc_per_mille: 0,
        ..cli_defaults()
    };
    if let Err(f) = swarm::run(seed, &cfg) {
        panic!(
            "{f}\nreplay: flotilla sim kv --seed {seed} --invalid-per-mille 0 --mvcc-per-mille 0 --trace"
        );
    }
}

/// A follower forwarded a read, crashed and restarted; the leader's answer
/// (read index 43) reached the new incarnation at 9.08 s, which had forwarded a read
/// under the same number (both counted from 1), and served at index 43 a
/// value deleted at a later index: `get("k3") -> "c2-7"` after
/// `delete("k3") -> ok`. Fixed by forwarded reads travelling under ids the
/// Raft core draws per start (`crates/raft/tests/forwarded_reads.rs`).
#[test]
fn seed_867926878_deleted_value_read_back() {
    pinned(867_926_878);
}

/// The same fault as seed 867926878: node 2 crashed at 8.31 s and
/// restarted at 9.06 s; the leader's answer to its earlier incarnation
/// (read index 12) arrived at 9.54 s, was taken for the new read numbered
/// 2, and served `get("k3") -> "c3-7"` after two acknowledged deletes.
#[test]
fn seed_180097349_deleted_value_read_back() {
    pinned(180_097_349);
}

#[test]
fn kv_swarm_sweep_from_a_random_start() {
    let test = "kv_swarm_sweep_from_a_random_start";
    let cfg = cli_defaults();
    for seed in sweep_seeds(test, "flotilla-kvsim", 300) {
        if let Err(f) = swarm::run(seed, &cfg) {
            panic!(
                "{test} failed: {f}\nreplay: flotilla sim kv --seed {seed} --trace \
                 (or FLOTILLA_SEED={seed} cargo test -p flotilla-kvsim {test})"
            );
        }
    }
}
