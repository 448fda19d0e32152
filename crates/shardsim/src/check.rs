//! What the controller tests check of a configuration (spec §4.1): the
//! course's `check` (the expected groups, every shard on one of them,
//! balance), its same-configuration check, and the minimal-movement rule
//! its "minimal transfers" tests meant to check but never did (they look
//! at groups that do not exist, spec §4.2): after a join, a shard changes
//! hands only onto a joining group; after a leave, only off a departed
//! one.

use std::collections::BTreeSet;

use flotilla_shardkv::{Config, Gid};

/// The course's `check(expected)`: exactly the `expected` groups, each
/// shard on one of them (when there are any), and balanced.
pub fn check(c: &Config, expected: &[Gid]) -> Result<(), String> {
    let want: BTreeSet<Gid> = expected.iter().copied().collect();
    let have: BTreeSet<Gid> = c.groups.keys().copied().collect();
    if want != have {
        return Err(format!(
            "configuration {} has groups {have:?}, not {want:?}",
            c.num
        ));
    }
    if let Some(what) = c.violation() {
        return Err(what);
    }
    if !c.balanced() {
        return Err(format!(
            "configuration {} is unbalanced: {:?}",
            c.num,
            c.loads()
        ));
    }
    Ok(())
}

/// The shards that changed hands from `before` to `after`: (shard, from,
/// to).
pub fn moves(before: &Config, after: &Config) -> Vec<(usize, Gid, Gid)> {
    let pairs = before.shards.iter().zip(&after.shards).enumerate();
    pairs
        .filter(|(_, (b, a))| b != a)
        .map(|(s, (&b, &a))| (s, b, a))
        .collect()
}

/// After `joined` joined: every move is onto one of them.
pub fn check_minimal_join(before: &Config, after: &Config, joined: &[Gid]) -> Result<(), String> {
    match moves(before, after)
        .into_iter()
        .find(|(_, _, to)| !joined.contains(to))
    {
        Some((s, from, to)) => Err(format!(
            "after {joined:?} joined, shard {s} moved from {from} to {to}, an old group"
        )),
        None => Ok(()),
    }
}

/// After `left` left: every move is off one of them.
pub fn check_minimal_leave(before: &Config, after: &Config, left: &[Gid]) -> Result<(), String> {
    match moves(before, after)
        .into_iter()
        .find(|(_, from, _)| !left.contains(from))
    {
        Some((s, from, to)) => Err(format!(
            "after {left:?} left, shard {s} moved from {from} to {to}, though {from} stayed"
        )),
        None => Ok(()),
    }
}

/// The course's same-configuration check: equal numbers, shards, groups
/// and each group's servers in order.
pub fn check_same(a: &Config, b: &Config) -> Result<(), String> {
    if a == b {
        return Ok(());
    }
    Err(format!("configurations differ: {a:?} and {b:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(num: u64, shards: &[Gid]) -> Config {
        let groups: BTreeMap<Gid, Vec<String>> = shards
            .iter()
            .filter(|&&g| g != 0)
            .map(|&g| (g, vec![format!("s{g}")]))
            .collect();
        Config {
            num,
            shards: shards.to_vec(),
            groups,
        }
    }

    #[test]
    fn the_checks_catch_what_they_name() {
        let a = config(1, &[1, 1, 2, 2]);
        assert!(check(&a, &[1, 2]).is_ok());
        assert!(check(&a, &[1]).unwrap_err().contains("not {1}"));
        assert!(
            check(&config(1, &[1, 1, 1, 2]), &[1, 2])
                .unwrap_err()
                .contains("unbalanced")
        );
        let mut stray = a.clone();
        stray.groups.remove(&2);
        stray.groups.insert(3, vec!["x".into()]);
        assert!(
            check(&stray, &[1, 3])
                .unwrap_err()
                .contains("shard 2 is on group 2")
        );

        let b = config(2, &[1, 3, 2, 3]);
        assert_eq!(moves(&a, &b), vec![(1, 1, 3), (3, 2, 3)]);
        assert!(check_minimal_join(&a, &b, &[3]).is_ok());
        let bad = config(2, &[2, 3, 2, 3]);
        assert!(
            check_minimal_join(&a, &bad, &[3])
                .unwrap_err()
                .contains("shard 0 moved from 1 to 2")
        );
        assert!(check_minimal_leave(&b, &a, &[3]).is_ok());
        assert!(
            check_minimal_leave(&bad, &a, &[3])
                .unwrap_err()
                .contains("shard 0 moved from 2 to 1")
        );
        assert!(check_same(&a, &a.clone()).is_ok());
        let mut renamed = a.clone();
        renamed.groups.insert(1, vec!["other".into()]);
        assert!(check_same(&a, &renamed).is_err());
    }
}
