//! `flotilla sim raft`'s swarm in the suite: a sweep of random seeds with
//! every fault, from a new start on every run (printed, so a failure
//! replays; see `flotilla_sim::runner::sweep_seeds`). The long sweeps
//! (200,000 seeds and more) are `flotilla sim raft --seeds N`.

use flotilla_sim::runner::sweep_seeds;
use flotilla_sim::swarm::{self, SwarmConfig};

#[test]
fn swarm_sweep_from_a_random_start() {
    let test = "swarm_sweep_from_a_random_start";
    let cfg = SwarmConfig::default();
    for seed in sweep_seeds(test, "flotilla-sim", 200) {
        if let Err(f) = swarm::run(seed, &cfg) {
            panic!(
                "{test} failed: {f}\nreplay: flotilla sim raft --seed {seed} --trace \
                 (or FLOTILLA_SEED={seed} FLOTILLA_TRACE=1 cargo test -p flotilla-sim {test})"
            );
        }
    }
}
