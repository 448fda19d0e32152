//! A data group's background work (the course's server goroutines that
//! poll the controller and pull shards), run by every server for each
//! group it hosts and acting only while its replica leads the group:
//! - once every shard has settled, it reads the configuration after the
//!   group's (a read index at the controller, then the local controller
//!   replica) and proposes it to the group;
//! - for each shard the group pulls, it takes a read index at the old
//!   owner's replica here and, once that replica has applied it, the
//!   shard's data and exactly-once table from it
//!   ([`ShardKv::export`](flotilla_shardkv::ShardKv::export)), and
//!   proposes them to its group (`Insert`); what exceeds [`PART_BYTES`]
//!   goes first in `Part`s, so no entry outgrows what a peer batch may
//!   carry, however large the shard;
//! - for each shard that arrived, it proposes `Delete` to the old owner
//!   and, once applied there, `Settle` to its own group.
//!
//! Every step is idempotent at the machines (a configuration applies only
//! from the one before it, an insert only to a pulling shard, ...), so a
//! step that a leader change cut short, or that two movers took at once
//! (an old leader's and a new one's), is harmless: the next poll takes it
//! again. Nothing here decides ownership; the groups' logs do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_runtime::{NodeHandle, lock};
use flotilla_shardkv::{Gid, GroupApplied, GroupCommand, ShardData, ShardKv};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::hosted::{Hosted, Replica, Unanswered, propose_until, read_index_until};

/// How often a mover looks at its group.
pub const POLL: Duration = Duration::from_millis(50);
/// How long one request of a look may wait for the group it asks.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// The most key and value bytes one entry of a pull carries (one pair
/// may exceed it alone; a pair is at most a request's size).
pub const PART_BYTES: usize = 4 << 20;

/// What a look at the group's replica found.
struct Look {
    num: u64,
    settled: bool,
    pull: BTreeMap<Gid, Vec<usize>>,
    settle: BTreeMap<Gid, Vec<usize>>,
}

/// Starts group `gid`'s mover; it ends when `stop` turns true.
pub fn spawn(hosted: Arc<Hosted>, gid: Gid, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            let Some(group) = hosted.groups.get(&gid) else {
                return;
            };
            if group.node.leader() != Some(hosted.me) {
                continue;
            }
            let step = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                step = poll(&hosted, gid) => step,
            };
            if let Err(e) = step {
                tracing::debug!(gid, "a mover's step got no answer: {e}");
            }
        }
    })
}

/// One look at the group, and the steps it calls for.
async fn poll(h: &Hosted, gid: Gid) -> Result<(), Unanswered> {
    let Some(me) = h.groups.get(&gid) else {
        return Ok(());
    };
    let look = {
        let m = lock(&me.sm);
        Look {
            num: m.config().num,
            settled: m.settled(),
            pull: m.to_pull(),
            settle: m.to_settle(),
        }
    };
    let deadline = Instant::now() + STEP_TIMEOUT;
    if look.settled {
        let next = h.query(Some(look.num + 1), deadline).await?;
        if next.num == look.num + 1 {
            tracing::info!(gid, num = next.num, "moving to the next configuration");
            propose_until(&me.node, GroupCommand::Config(next).encode(), deadline).await?;
        }
        return Ok(());
    }
    for (from, shards) in look.pull {
        pull(h, gid, from, look.num, shards, deadline).await?;
    }
    for (from, shards) in look.settle {
        settle(h, gid, from, look.num, shards, deadline).await?;
    }
    Ok(())
}

/// The replicas here of group `gid` and of `from`, the old owner of the
/// shards it takes; none (and a warning) if this server lacks one, which
/// the layout rules out (every server hosts every group).
fn replicas(h: &Hosted, gid: Gid, from: Gid) -> Option<(&Replica<ShardKv>, &Replica<ShardKv>)> {
    let found = h.groups.get(&gid).zip(h.groups.get(&from));
    if found.is_none() {
        tracing::warn!(
            gid,
            from,
            "a shard moves between groups this server does not both host"
        );
    }
    found
}

/// Pulls `shards` of configuration `num` from group `from` into `gid`.
async fn pull(
    h: &Hosted,
    gid: Gid,
    from: Gid,
    num: u64,
    shards: Vec<usize>,
    deadline: Instant,
) -> Result<(), Unanswered> {
    let Some((me, old)) = replicas(h, gid, from) else {
        return Ok(());
    };
    read_index_until(&old.node, deadline).await?;
    let data = lock(&old.sm).export(num, &shards);
    let Some(data) = data else {
        // The old owner has not reached `num` yet (or already deleted
        // them, having seen them arrive): the next look tells.
        return Ok(());
    };
    let bytes: usize = data.values().map(|d| d.bytes()).sum();
    tracing::info!(gid, from, num, ?shards, bytes, "pulled shards");
    let last = send_parts(&me.node, num, data).await?;
    let insert = GroupCommand::Insert { num, shards: last };
    propose_until(&me.node, insert.encode(), Instant::now() + STEP_TIMEOUT).await?;
    Ok(())
}

/// Proposes what of `data` does not fit in one entry beside the rest as
/// `Part`s ([`split`]); returns the rest, with every shard's
/// exactly-once table, for the `Insert` that ends the pull.
async fn send_parts(
    node: &NodeHandle<Option<GroupApplied>>,
    num: u64,
    data: BTreeMap<usize, ShardData>,
) -> Result<BTreeMap<usize, ShardData>, Unanswered> {
    let (parts, last) = split(data, PART_BYTES);
    for (shard, data) in parts {
        let part = ShardData {
            data,
            dedup: BTreeMap::new(),
        };
        let command = GroupCommand::Part { num, shard, part }.encode();
        propose_until(node, command, Instant::now() + STEP_TIMEOUT).await?;
    }
    Ok(last)
}

/// Pairs of one shard, by key.
type Pairs = BTreeMap<Bytes, Bytes>;

/// Cuts pulled `data` into parts and a rest: each part holds one
/// shard's pairs, at most `limit` bytes of keys and values but for its
/// last pair; the rest (every shard's remaining pairs and exactly-once
/// table) holds at most `limit` bytes of pairs. Every pair is in exactly
/// one of them.
pub fn split(
    data: BTreeMap<usize, ShardData>,
    limit: usize,
) -> (Vec<(usize, Pairs)>, BTreeMap<usize, ShardData>) {
    let mut parts = Vec::new();
    let mut last = BTreeMap::new();
    let mut last_bytes = 0;
    for (shard, d) in data {
        let mut chunk = BTreeMap::new();
        let mut bytes = 0;
        for (k, v) in d.data {
            bytes += k.len() + v.len();
            chunk.insert(k, v);
            if bytes >= limit {
                parts.push((shard, std::mem::take(&mut chunk)));
                bytes = 0;
            }
        }
        if last_bytes + bytes > limit {
            parts.push((shard, std::mem::take(&mut chunk)));
            bytes = 0;
        }
        last_bytes += bytes;
        let rest = ShardData {
            data: chunk,
            dedup: d.dedup,
        };
        last.insert(shard, rest);
    }
    (parts, last)
}

/// Tells group `from` that `shards` arrived at `gid` (it deletes them),
/// then settles them at `gid`.
async fn settle(
    h: &Hosted,
    gid: Gid,
    from: Gid,
    num: u64,
    shards: Vec<usize>,
    deadline: Instant,
) -> Result<(), Unanswered> {
    let Some((me, old)) = replicas(h, gid, from) else {
        return Ok(());
    };
    let delete = GroupCommand::Delete {
        num,
        shards: shards.clone(),
    };
    propose_until(&old.node, delete.encode(), deadline).await?;
    propose_until(
        &me.node,
        GroupCommand::Settle { num, shards }.encode(),
        deadline,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use flotilla_raft::rng::SplitMix64;

    use super::*;

    fn bytes_of(pairs: &Pairs) -> usize {
        pairs.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Random shards of random pairs (sizes 1 to 40 bytes), each with an
    /// exactly-once table.
    fn pulled(rng: &mut SplitMix64) -> BTreeMap<usize, ShardData> {
        let mut data = BTreeMap::new();
        for shard in 0..(rng.next_u64() % 4) as usize {
            let mut d = ShardData::default();
            for i in 0..rng.next_u64() % 30 {
                let v = vec![b'v'; 1 + (rng.next_u64() % 40) as usize];
                d.data
                    .insert(Bytes::from(format!("{shard}-{i:03}")), Bytes::from(v));
            }
            d.dedup.insert(shard as u64, 7);
            data.insert(shard * 3, d);
        }
        data
    }

    #[test]
    fn a_pull_is_cut_into_parts_within_the_limit_and_loses_nothing() {
        let mut rng = SplitMix64::new(21);
        let mut cut = 0;
        for round in 0..500 {
            let data = pulled(&mut rng);
            let limit = 1 + (rng.next_u64() % 200) as usize;
            let (parts, last) = split(data.clone(), limit);
            cut += parts.len();
            let mut rebuilt: BTreeMap<usize, ShardData> = BTreeMap::new();
            for (shard, pairs) in &parts {
                let biggest = pairs
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .max()
                    .unwrap_or(0);
                assert!(!pairs.is_empty(), "round {round}: an empty part");
                assert!(
                    bytes_of(pairs) < limit + biggest,
                    "round {round}: a part past the limit"
                );
                rebuilt
                    .entry(*shard)
                    .or_default()
                    .data
                    .extend(pairs.clone());
            }
            // Parts cut inside a shard hold at least `limit` bytes; one
            // more per shard may end it.
            let total: usize = data.values().map(|d| bytes_of(&d.data)).sum();
            let most = total / limit + data.len();
            assert!(
                parts.len() <= most,
                "round {round}: {} parts, more than {most}",
                parts.len()
            );
            let rest: usize = last.values().map(|d| bytes_of(&d.data)).sum();
            assert!(
                rest <= limit,
                "round {round}: the rest holds {rest} bytes, past {limit}"
            );
            for (shard, d) in &last {
                let r = rebuilt.entry(*shard).or_default();
                r.data.extend(d.data.clone());
                r.dedup.clone_from(&d.dedup);
            }
            assert_eq!(rebuilt, data, "round {round}: every pair and table, once");
        }
        assert!(cut > 1_000, "the rounds cut shards into parts: {cut}");
        let small = pulled(&mut SplitMix64::new(3));
        let (parts, last) = split(small.clone(), usize::MAX);
        assert!(parts.is_empty() && last == small, "what fits goes whole");
    }
}
