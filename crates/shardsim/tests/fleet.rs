//! The fleet's own checks: two groups handed the same shard at one
//! configuration number (configurations the controller would never make,
//! proposed straight into the groups' logs) fail the run, and a bounded
//! log passes the course's `checklogs`.

use std::collections::BTreeMap;

use flotilla_shardkv::{Config, GroupCommand};
use flotilla_shardsim::{Fleet, FleetConfig};
use flotilla_sim::{MS, Tester};

/// Configuration 1 giving every shard to `gid` alone.
fn all_to(gid: u64) -> Config {
    Config {
        num: 1,
        shards: vec![gid; 10],
        groups: BTreeMap::from([(gid, vec![format!("server-{gid}-0")])]),
    }
}

#[test]
fn a_shard_served_by_two_groups_at_one_configuration_fails_the_run() {
    let mut f = Fleet::new(FleetConfig::course(None, false), 1);
    let mut errors = Vec::new();
    for gid in [100, 101] {
        let g = f.groups.get_mut(&gid).unwrap();
        // (The group's clock runs ahead of the fleet's while it elects;
        // the fleet catches up below.)
        let leader = g.check_one_leader().unwrap();
        g.propose(leader, GroupCommand::Config(all_to(gid)).encode(), None);
        // One group alone is fine.
        if let Err(e) = f.run_for(3_000 * MS) {
            errors.push(e);
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    let what = errors[0].to_string();
    assert!(
        what.contains("served by groups 100 and 101 at configuration 1"),
        "{what}"
    );
}

#[test]
fn checklogs_holds_a_fleet_to_its_bound() {
    let mut f = Fleet::new(FleetConfig::course(Some(1), false), 2);
    assert!(f.checklogs().is_ok());
    let g = f.groups.get_mut(&100).unwrap();
    let leader = g.check_one_leader().unwrap();
    for _ in 0..5 {
        g.propose(leader, GroupCommand::Config(all_to(100)).encode(), None);
    }
    f.run_for(2_000 * MS).unwrap();
    // maxraftstate 1: every server compacts after each entry, so its
    // Raft state stays within the course's 8 × maxraftstate.
    let g = &f.groups[&100];
    assert!(
        g.snapshot_size() > 0 && g.log_size() <= 8,
        "{}",
        g.log_size()
    );
    assert!(f.checklogs().is_ok());
    let unbounded = Fleet::new(FleetConfig::course(None, false), 3);
    assert!(unbounded.checklogs().is_ok());
}
