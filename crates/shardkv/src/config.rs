//! A configuration of the sharded store: which replica group serves each
//! shard, and which servers make up each group. The controller numbers
//! them from 0 (no groups, every shard on the invalid group 0) and keeps
//! every one, so any can be asked for by number.
//!
//! Invariants of a configuration the controller makes: every shard is on
//! a group the configuration lists when it lists any (when it lists
//! none, each shard stays with the group that last had it, or on 0 if
//! none ever did); group 0 is never listed; every listed group has at
//! least one server. A group serves only shards it is given while listed.

use std::collections::BTreeMap;

/// A replica group's id. 0 is no group.
pub type Gid = u64;

/// The course's number of shards.
pub const COURSE_SHARDS: usize = 10;

/// One numbered configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Its number: the controller's count of changes before it.
    pub num: u64,
    /// Shard `s` is served by group `shards[s]` (0: by none).
    pub shards: Vec<Gid>,
    /// Each group's servers, in the order they were given.
    pub groups: BTreeMap<Gid, Vec<String>>,
}

impl Config {
    /// Configuration 0 over `nshards` shards: no groups, every shard on 0.
    pub fn initial(nshards: usize) -> Config {
        Config {
            num: 0,
            shards: vec![0; nshards],
            groups: BTreeMap::new(),
        }
    }

    /// How many shards each listed group serves (0 for one that serves
    /// none), by gid.
    pub fn loads(&self) -> BTreeMap<Gid, usize> {
        let mut loads: BTreeMap<Gid, usize> = self.groups.keys().map(|&g| (g, 0)).collect();
        for g in &self.shards {
            if let Some(n) = loads.get_mut(g) {
                *n += 1;
            }
        }
        loads
    }

    /// Whether this configuration gives shard `shard` to group `gid`, a
    /// listed group.
    pub fn owns(&self, gid: Gid, shard: usize) -> bool {
        self.shards.get(shard) == Some(&gid) && self.groups.contains_key(&gid)
    }

    /// The shards group `gid` serves, in order.
    pub fn shards_of(&self, gid: Gid) -> Vec<usize> {
        (0..self.shards.len())
            .filter(|&s| self.shards[s] == gid)
            .collect()
    }

    /// Whether the busiest group serves at most one shard more than the
    /// idlest (true with no groups).
    pub fn balanced(&self) -> bool {
        let loads = self.loads();
        let max = loads.values().max().copied().unwrap_or(0);
        let min = loads.values().min().copied().unwrap_or(0);
        max <= min + 1
    }

    /// What breaks this configuration's invariants (module docs), if
    /// anything.
    pub fn violation(&self) -> Option<String> {
        if self.groups.contains_key(&0) {
            return Some(format!("configuration {} lists group 0", self.num));
        }
        if let Some((g, _)) = self.groups.iter().find(|(_, s)| s.is_empty()) {
            return Some(format!(
                "configuration {}: group {g} has no servers",
                self.num
            ));
        }
        if self.groups.is_empty() {
            return None;
        }
        let stray = (0..self.shards.len()).find(|&s| !self.groups.contains_key(&self.shards[s]));
        stray.map(|s| {
            format!(
                "configuration {}: shard {s} is on group {}, which it does not list",
                self.num, self.shards[s]
            )
        })
    }
}

/// The shard of `key` among `nshards`: its first byte modulo the count,
/// as the course routes (an empty key is shard 0). With the course's 10
/// shards, the keys "0" to "9" land on all ten.
pub fn key2shard(key: &[u8], nshards: usize) -> usize {
    match (key.first(), nshards) {
        (_, 0) | (None, _) => 0,
        (Some(&b), n) => b as usize % n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_course_s_keys_cover_every_shard() {
        let shards: Vec<usize> = (0..10)
            .map(|k| key2shard(k.to_string().as_bytes(), COURSE_SHARDS))
            .collect();
        assert_eq!(shards, vec![8, 9, 0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(key2shard(b"", 10), 0);
        assert_eq!(key2shard(b"\xff", 256), 255);
        assert_eq!(key2shard(b"x", 0), 0);
    }

    #[test]
    fn loads_balance_and_violations() {
        let mut c = Config::initial(4);
        assert!(c.balanced() && c.violation().is_none());
        assert!(c.loads().is_empty());
        assert!(!c.owns(0, 0), "group 0 owns nothing");
        c.groups.insert(1, vec!["a".into()]);
        assert!(c.violation().unwrap().contains("shard 0 is on group 0"));
        c.groups.insert(2, vec!["b".into()]);
        c.shards = vec![1, 1, 1, 2];
        assert_eq!(c.loads(), BTreeMap::from([(1, 3), (2, 1)]));
        assert_eq!(c.shards_of(1), vec![0, 1, 2]);
        assert!(!c.balanced());
        c.shards = vec![1, 2, 1, 2];
        assert!(c.balanced() && c.violation().is_none());
        assert!(c.owns(2, 1) && !c.owns(1, 1) && !c.owns(2, 9));
        c.groups.insert(3, Vec::new());
        assert!(c.violation().unwrap().contains("group 3 has no servers"));
        c.groups.remove(&3);
        c.groups.insert(0, vec!["z".into()]);
        assert!(c.violation().unwrap().contains("lists group 0"));
        // With no groups listed, shards stay with their last groups.
        let mut kept = Config::initial(2);
        kept.shards[1] = 7;
        assert!(kept.violation().is_none());
    }
}
