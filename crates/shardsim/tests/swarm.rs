//! A short sweep of `flotilla sim shard`'s random schedules (the CLI runs
//! long ones): random joins, leaves and moves, crashes of servers and
//! groups, partitions, an unreliable network on some seeds, random
//! clients; every history checked.

use flotilla_shardsim::swarm::{SwarmConfig, run};
use flotilla_sim::runner::sweep_seeds;

#[test]
fn random_schedules_keep_every_rule() {
    let cfg = SwarmConfig::default();
    let mut ops = 0;
    for seed in sweep_seeds("random_schedules_keep_every_rule", "flotilla-shardsim", 10) {
        let checked = run(seed, &cfg).and_then(|(r, t)| t.check_history().map(|()| r));
        match checked {
            Ok(r) => ops += r.ops,
            Err(f) => panic!("{f}\nreplay: flotilla sim shard --seed {seed}"),
        }
    }
    assert!(ops > 0, "the clients ran no operation");
}
