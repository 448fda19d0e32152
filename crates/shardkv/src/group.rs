//! A replica group's state machine (the course's `shardkv` server): the
//! key/value data of the shards the group holds, each with its own
//! exactly-once table, and the configurations it has reached.
//!
//! Everything that changes ownership goes through the group's log, so
//! every replica agrees on when it happened:
//! - [`GroupCommand::Config`] moves to the next configuration, only from
//!   the one before it and only once every shard has settled: shards
//!   that arrive become [`ShardState::Pulling`] (or serve at once, empty,
//!   when no group had them), shards that leave become
//!   [`ShardState::Leaving`] and keep their data for the new owner;
//! - [`GroupCommand::Insert`] installs pulled shards (data and exactly-once
//!   table) for the configuration they were pulled for; they serve at
//!   once ([`ShardState::Arrived`]) while the old owner is told to delete.
//!   A shard too large for one log entry comes first in
//!   [`GroupCommand::Part`]s, merged into it while it still pulls; the
//!   Insert then merges the rest. Merging is idempotent (every part is a
//!   piece of the old owner's frozen copy), so parts repeated or sent
//!   again by a new leader's mover change nothing;
//! - [`GroupCommand::Delete`] (at the old owner) drops leaving shards once
//!   the new owner has them, so storage stays bounded;
//! - [`GroupCommand::Settle`] (at the new owner) records that the old
//!   owner deleted them.
//!
//! A client request is served only by a shard the current configuration
//! gives this group and that holds its data (serving or arrived); shards
//! a change does not touch serve throughout it. Invariant: a shard
//! serves in at most one group per configuration (a group only serves
//! what its configuration gives it, and gives up data only after it
//! moved past the configuration that gave it the shard).

mod codec;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_host::{ApplyError, RestoreError, StateMachine};
use flotilla_raft::{Entry, EntryKind, LogIndex};

use crate::config::{Config, Gid, key2shard};

/// A shard's state at a group that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardState {
    /// Serving.
    Serving,
    /// Given to this group by the current configuration; its data has
    /// not arrived yet.
    Pulling,
    /// Arrived and serving; the old owner has not confirmed it deleted
    /// its copy yet.
    Arrived,
    /// Taken from this group by the current configuration; kept until the
    /// new owner has it.
    Leaving,
}

/// A client's key/value request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// The value of a key.
    Get(Bytes),
    /// Sets a key.
    Put(Bytes, Bytes),
    /// Appends to a key's value (an absent key counts as empty).
    Append(Bytes, Bytes),
}

impl KvOp {
    /// The key it names.
    pub fn key(&self) -> &Bytes {
        match self {
            KvOp::Get(k) | KvOp::Put(k, _) | KvOp::Append(k, _) => k,
        }
    }
}

/// What a client's request was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvReply {
    /// A get's value.
    Value(Bytes),
    /// A get of a key that has none.
    NoKey,
    /// A put or append was applied (now or earlier: a repeat).
    Done,
    /// This group does not serve the key's shard now: ask the controller
    /// for the latest configuration and retry.
    WrongGroup,
}

/// One shard's contents, as it moves between groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardData {
    /// Its pairs.
    pub data: BTreeMap<Bytes, Bytes>,
    /// Each client's last put or append applied to it.
    pub dedup: BTreeMap<u64, u64>,
}

impl ShardData {
    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.data.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// A log entry of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupCommand {
    /// A client's request: a get (`seq` 0), or a put or append applied
    /// once per client and number.
    Op {
        /// The client.
        client: u64,
        /// Its number (0 for a get).
        seq: u64,
        /// The request.
        op: KvOp,
    },
    /// The next configuration, as the controller gave it.
    Config(Config),
    /// Shards pulled from their old owner, for configuration `num`.
    Insert {
        /// The configuration they were pulled for.
        num: u64,
        /// Shard to contents.
        shards: BTreeMap<usize, ShardData>,
    },
    /// A piece of a pulled shard too large for one entry, for
    /// configuration `num`: merged into the shard, which keeps pulling
    /// until the [`GroupCommand::Insert`] that ends it.
    Part {
        /// The configuration it was pulled for.
        num: u64,
        /// The shard.
        shard: usize,
        /// Some of its pairs (and, or, its exactly-once table).
        part: ShardData,
    },
    /// At the old owner: the new owner of `shards` has them, as of
    /// configuration `num`.
    Delete {
        /// The configuration.
        num: u64,
        /// The shards.
        shards: Vec<usize>,
    },
    /// At the new owner: the old owner deleted `shards`, as of `num`.
    Settle {
        /// The configuration.
        num: u64,
        /// The shards.
        shards: Vec<usize>,
    },
}

/// What applying a group command yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupApplied {
    /// A client's request was answered.
    Op {
        /// The client.
        client: u64,
        /// Its number.
        seq: u64,
        /// The answer.
        reply: KvReply,
    },
    /// A configuration, insert, delete or settle command was applied
    /// (`true`) or was not for the group's configuration now (`false`).
    Step {
        /// The configuration it named.
        num: u64,
        /// Whether it changed anything.
        applied: bool,
    },
    /// The entry is no group command (a hostile or newer writer's).
    Malformed(String),
}

/// A replica group's state. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardKv {
    gid: Gid,
    config: Config,
    prev: Config,
    shards: BTreeMap<usize, (ShardState, ShardData)>,
    applied: LogIndex,
}

impl ShardKv {
    /// Group `gid`'s machine over `nshards` shards, at configuration 0.
    pub fn new(gid: Gid, nshards: usize) -> ShardKv {
        ShardKv {
            gid,
            config: Config::initial(nshards),
            prev: Config::initial(nshards),
            shards: BTreeMap::new(),
            applied: LogIndex(0),
        }
    }

    /// The group's id.
    pub fn gid(&self) -> Gid {
        self.gid
    }

    /// The configuration the group has reached.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The one before it.
    pub fn prev(&self) -> &Config {
        &self.prev
    }

    /// The state of each shard the group holds.
    pub fn states(&self) -> BTreeMap<usize, ShardState> {
        self.shards.iter().map(|(&s, (st, _))| (s, *st)).collect()
    }

    /// Whether every shard has settled, so the next configuration may
    /// be applied.
    pub fn settled(&self) -> bool {
        self.shards
            .values()
            .all(|(st, _)| *st == ShardState::Serving)
    }

    /// Bytes of keys and values the group holds, every shard counted.
    pub fn data_bytes(&self) -> usize {
        self.shards.values().map(|(_, d)| d.bytes()).sum()
    }

    /// Whether this group serves `shard` now.
    pub fn serves(&self, shard: usize) -> bool {
        self.config.owns(self.gid, shard)
            && matches!(
                self.shards.get(&shard),
                Some((ShardState::Serving | ShardState::Arrived, _))
            )
    }

    /// `shards`' contents for the group that pulls them for
    /// configuration `num`, if this group has them ready: it reached
    /// `num` and holds each as leaving. `None` otherwise (not yet there,
    /// or already deleted: the puller then has them).
    pub fn export(&self, num: u64, shards: &[usize]) -> Option<BTreeMap<usize, ShardData>> {
        if self.config.num != num {
            return None;
        }
        let leaving = |s: &usize| match self.shards.get(s) {
            Some((ShardState::Leaving, d)) => Some((*s, d.clone())),
            _ => None,
        };
        shards.iter().map(leaving).collect()
    }

    /// For each group, the shards this group pulls from it now.
    pub fn to_pull(&self) -> BTreeMap<Gid, Vec<usize>> {
        self.sources_of(ShardState::Pulling)
    }

    /// For each group, the shards it must delete now (they arrived here).
    pub fn to_settle(&self) -> BTreeMap<Gid, Vec<usize>> {
        self.sources_of(ShardState::Arrived)
    }

    fn sources_of(&self, state: ShardState) -> BTreeMap<Gid, Vec<usize>> {
        let mut out: BTreeMap<Gid, Vec<usize>> = BTreeMap::new();
        for (&s, (st, _)) in &self.shards {
            if *st == state {
                out.entry(self.prev.shards[s]).or_default().push(s);
            }
        }
        out
    }

    /// Applies `command`.
    pub fn execute(&mut self, command: GroupCommand) -> GroupApplied {
        match command {
            GroupCommand::Op { client, seq, op } => GroupApplied::Op {
                client,
                seq,
                reply: self.serve(client, seq, op),
            },
            GroupCommand::Config(next) => {
                let num = next.num;
                let applied = self.next_config(next);
                GroupApplied::Step { num, applied }
            }
            GroupCommand::Insert { num, shards } => {
                let applied = self.insert(num, shards, ShardState::Arrived);
                GroupApplied::Step { num, applied }
            }
            GroupCommand::Part { num, shard, part } => {
                let shards = BTreeMap::from([(shard, part)]);
                let applied = self.insert(num, shards, ShardState::Pulling);
                GroupApplied::Step { num, applied }
            }
            GroupCommand::Delete { num, shards } => {
                let applied = self.shift(num, &shards, ShardState::Leaving, None);
                GroupApplied::Step { num, applied }
            }
            GroupCommand::Settle { num, shards } => {
                let serving = Some(ShardState::Serving);
                let applied = self.shift(num, &shards, ShardState::Arrived, serving);
                GroupApplied::Step { num, applied }
            }
        }
    }

    fn serve(&mut self, client: u64, seq: u64, op: KvOp) -> KvReply {
        let shard = key2shard(op.key(), self.config.shards.len());
        if !self.serves(shard) {
            return KvReply::WrongGroup;
        }
        let Some((_, d)) = self.shards.get_mut(&shard) else {
            return KvReply::WrongGroup;
        };
        match op {
            KvOp::Get(k) => d
                .data
                .get(&k)
                .map_or(KvReply::NoKey, |v| KvReply::Value(v.clone())),
            KvOp::Put(..) | KvOp::Append(..) if d.dedup.get(&client).is_some_and(|&l| seq <= l) => {
                KvReply::Done
            }
            KvOp::Put(k, v) => {
                d.data.insert(k, v);
                d.dedup.insert(client, seq);
                KvReply::Done
            }
            KvOp::Append(k, v) => {
                let old = d.data.get(&k).cloned().unwrap_or_default();
                d.data.insert(k, [old, v].concat().into());
                d.dedup.insert(client, seq);
                KvReply::Done
            }
        }
    }

    fn next_config(&mut self, next: Config) -> bool {
        let valid = next.shards.len() == self.config.shards.len() && next.violation().is_none();
        if next.num != self.config.num + 1 || !self.settled() || !valid {
            return false;
        }
        for s in 0..next.shards.len() {
            // Held, not owned: a group keeps the shards it had when every
            // group left (they stay on it, unlisted, serving none) and
            // hands them over when another group joins.
            let (was, now) = (
                self.config.shards[s] == self.gid,
                next.shards[s] == self.gid,
            );
            if now && !was {
                let state = if self.config.shards[s] == 0 {
                    ShardState::Serving
                } else {
                    ShardState::Pulling
                };
                self.shards.insert(s, (state, ShardData::default()));
            } else if was
                && !now
                && let Some((st, _)) = self.shards.get_mut(&s)
            {
                *st = ShardState::Leaving;
            }
        }
        self.prev = std::mem::replace(&mut self.config, next);
        true
    }

    /// Merges pulled `shards` of configuration `num` into those that
    /// still pull, which become `then`.
    fn insert(&mut self, num: u64, shards: BTreeMap<usize, ShardData>, then: ShardState) -> bool {
        if num != self.config.num {
            return false;
        }
        let mut any = false;
        for (s, data) in shards {
            if let Some(slot) = self.shards.get_mut(&s)
                && slot.0 == ShardState::Pulling
            {
                slot.1.data.extend(data.data);
                for (client, seq) in data.dedup {
                    let last = slot.1.dedup.entry(client).or_insert(seq);
                    *last = (*last).max(seq);
                }
                slot.0 = then;
                any = true;
            }
        }
        any
    }

    /// Moves `shards` in state `from` to `to` (`None`: dropped), for
    /// configuration `num`.
    fn shift(
        &mut self,
        num: u64,
        shards: &[usize],
        from: ShardState,
        to: Option<ShardState>,
    ) -> bool {
        if num != self.config.num {
            return false;
        }
        let mut any = false;
        for s in shards {
            if self.shards.get(s).is_some_and(|(st, _)| *st == from) {
                any = true;
                match to {
                    Some(to) => {
                        if let Some(slot) = self.shards.get_mut(s) {
                            slot.0 = to;
                        }
                    }
                    None => drop(self.shards.remove(s)),
                }
            }
        }
        any
    }
}

impl StateMachine for ShardKv {
    /// `None` for entries that are no command (no-ops, membership).
    type Output = Option<GroupApplied>;

    fn apply(&mut self, entry: &Entry) -> Result<Option<GroupApplied>, ApplyError> {
        self.applied = entry.index;
        if entry.kind != EntryKind::Command {
            return Ok(None);
        }
        Ok(Some(match GroupCommand::decode(&entry.data) {
            Ok(command) => self.execute(command),
            Err(e) => GroupApplied::Malformed(e.to_string()),
        }))
    }

    fn snapshot(&self) -> Bytes {
        self.encode()
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), RestoreError> {
        let nshards = self.config.shards.len();
        *self = ShardKv::decode(data, self.gid, nshards).map_err(|e| RestoreError(e.into()))?;
        Ok(())
    }
}
