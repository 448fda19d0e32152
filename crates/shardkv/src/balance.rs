//! Rebalancing: where shards go when groups join or leave. Every replica
//! of the controller computes it from the same inputs, so it depends on
//! nothing but them (no hash map's order, no clock).
//!
//! The rule, for `n` shards over `g` groups: each group's target is
//! `n / g`, and the `n % g` groups that hold the most shards now (ties to
//! the lower gid) may keep one more. A group above its target gives up
//! its highest-numbered shards; shards on no listed group join them; the
//! pool goes, lowest shard first, to the groups below their target, lowest
//! gid first.
//!
//! Invariants, from a balanced start (the busiest group holds at most one
//! more than the idlest): the result is balanced; after groups join, a
//! shard changes hands only to move onto a joining group; after groups
//! leave, only the departed groups' shards change hands. (A group's
//! target never exceeds what it held when others joined, and never falls
//! below it when others left: the extra places go to the busiest.)

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Gid;

/// `shards` (shard to gid) rebalanced over `groups`. With no groups,
/// every shard stays with the group that last had it: that group keeps
/// its data (serving none) until a group joins and takes it over, so a
/// fleet that every group left loses nothing.
pub fn rebalance(shards: &[Gid], groups: &BTreeSet<Gid>) -> Vec<Gid> {
    if groups.is_empty() {
        return shards.to_vec();
    }
    let mut held: BTreeMap<Gid, Vec<usize>> = groups.iter().map(|&g| (g, Vec::new())).collect();
    let mut pool = Vec::new();
    for (s, g) in shards.iter().enumerate() {
        match held.get_mut(g) {
            Some(list) => list.push(s),
            None => pool.push(s),
        }
    }
    let mut order: Vec<Gid> = groups.iter().copied().collect();
    order.sort_by_key(|g| (std::cmp::Reverse(held[g].len()), *g));
    let (base, extra) = (shards.len() / groups.len(), shards.len() % groups.len());
    let target: BTreeMap<Gid, usize> = order
        .iter()
        .enumerate()
        .map(|(i, &g)| (g, base + usize::from(i < extra)))
        .collect();
    for (g, list) in held.iter_mut() {
        while list.len() > target[g] {
            if let Some(s) = list.pop() {
                pool.push(s);
            }
        }
    }
    pool.sort_unstable();
    let mut pool = pool.into_iter();
    let mut out = vec![0; shards.len()];
    for (g, list) in held.iter_mut() {
        while list.len() < target[g] {
            let Some(s) = pool.next() else { break };
            list.push(s);
        }
        for &s in list.iter() {
            out[s] = *g;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(gids: &[Gid]) -> BTreeSet<Gid> {
        gids.iter().copied().collect()
    }

    fn loads(shards: &[Gid]) -> BTreeMap<Gid, usize> {
        let mut l = BTreeMap::new();
        for &g in shards {
            *l.entry(g).or_insert(0) += 1;
        }
        l
    }

    #[test]
    fn the_first_group_takes_everything_and_the_last_keeps_it_until_another_joins() {
        let one = rebalance(&[0; 10], &set(&[7]));
        assert_eq!(one, vec![7; 10]);
        let none = rebalance(&one, &set(&[]));
        assert_eq!(none, vec![7; 10]);
        assert_eq!(rebalance(&none, &set(&[8])), vec![8; 10]);
    }

    #[test]
    fn a_join_takes_from_the_busiest_and_the_highest_shards() {
        let two = rebalance(&[1; 10], &set(&[1, 2]));
        assert_eq!(two, vec![1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
        let three = rebalance(&two, &set(&[1, 2, 3]));
        // 1 and 2 held 5 each: 1 keeps the extra place (lower gid).
        assert_eq!(three, vec![1, 1, 1, 1, 3, 2, 2, 2, 3, 3]);
    }

    #[test]
    fn more_groups_than_shards_leaves_some_idle() {
        let shards = rebalance(&[0; 3], &set(&[5, 6, 7, 8]));
        assert_eq!(shards, vec![5, 6, 7]);
        // 8 holds none; when 5 leaves, its shard goes to 8 and no other moves.
        assert_eq!(rebalance(&shards, &set(&[6, 7, 8])), vec![8, 6, 7]);
    }

    #[test]
    fn a_leave_moves_only_the_departed_group_s_shards() {
        let three = vec![1, 1, 1, 1, 3, 2, 2, 2, 3, 3];
        let two = rebalance(&three, &set(&[1, 2]));
        assert_eq!(two, vec![1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    }

    /// What changed hands between `before` and `after`, checked against
    /// the rule for the groups that joined and left.
    fn check_minimal(
        before: &[Gid],
        after: &[Gid],
        listed: &BTreeSet<Gid>,
        joined: &BTreeSet<Gid>,
        left: &BTreeSet<Gid>,
    ) -> Result<(), TestCaseError> {
        for s in 0..before.len() {
            if before[s] == after[s] {
                continue;
            }
            let onto_new = joined.contains(&after[s]);
            // Off a group that left now or earlier (or none, at first).
            let off_departed = left.contains(&before[s]) || !listed.contains(&before[s]);
            prop_assert!(
                onto_new || off_departed,
                "shard {} moved from {} to {} (joined {:?}, left {:?})",
                s,
                before[s],
                after[s],
                joined,
                left
            );
        }
        Ok(())
    }

    fn changes() -> impl Strategy<Value = Vec<(bool, Vec<Gid>)>> {
        let step = (any::<bool>(), prop::collection::vec(1..40u64, 1..5));
        prop::collection::vec(step, 1..30)
    }

    fn run_changes(nshards: usize, steps: Vec<(bool, Vec<Gid>)>) -> Result<(), TestCaseError> {
        let mut groups = BTreeSet::new();
        let mut shards = vec![0; nshards];
        for (join, gids) in steps {
            let (joined, left): (BTreeSet<Gid>, BTreeSet<Gid>) = if join {
                let new = gids.iter().filter(|g| !groups.contains(*g)).copied();
                (new.collect(), BTreeSet::new())
            } else {
                let gone = gids.iter().filter(|g| groups.contains(*g)).copied();
                (BTreeSet::new(), gone.collect())
            };
            let listed = groups.clone();
            groups.extend(joined.iter().copied());
            groups.retain(|g| !left.contains(g));
            let after = rebalance(&shards, &groups);
            check_minimal(&shards, &after, &listed, &joined, &left)?;
            let l = loads(&after);
            if groups.is_empty() {
                prop_assert_eq!(&after, &shards, "kept by their last groups");
            } else {
                prop_assert!(after.iter().all(|g| groups.contains(g)));
                let max = l.values().max().copied().unwrap_or(0);
                let idle = groups.iter().any(|g| !l.contains_key(g));
                let min = if idle {
                    0
                } else {
                    l.values().min().copied().unwrap_or(0)
                };
                prop_assert!(max <= min + 1, "unbalanced: {:?} over {:?}", l, groups);
            }
            prop_assert_eq!(rebalance(&shards, &groups), after.clone(), "deterministic");
            shards = after;
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn joins_and_leaves_are_balanced_and_minimal_with_10_shards(steps in changes()) {
            run_changes(10, steps)?;
        }

        #[test]
        fn joins_and_leaves_are_balanced_and_minimal_with_256_shards(steps in changes()) {
            run_changes(256, steps)?;
        }
    }
}
