//! The shard controller's state machine: every configuration since 0,
//! numbered in order, and each client's last request and answer (for
//! exactly-once). Replicated by the production host like any other
//! [`StateMachine`]: every member applies the same commands in the same
//! order and so computes the same configurations ([`crate::balance`]
//! depends on nothing else).
//!
//! A log entry that is not a controller command (a hostile or newer
//! client's) is answered [`CtrlError::Malformed`] on every member alike:
//! no request can stop the controller.
//!
//! Snapshot format (checksummed; refused with what was wrong):
//!
//! ```text
//! "FSCT" | version: u8 | crc32c(body): u32 LE | body
//! body = shards, applied index, #configs, config*  (numbered 0, 1, ...)
//!        #sessions, (client, seq, reply)*  by client
//! reply = 0 | 1 config | 2 error-text
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use flotilla_host::{ApplyError, RestoreError, StateMachine};
use flotilla_raft::codec::{Decoder, put_bytes, put_u64};
use flotilla_raft::{Entry, EntryKind, LogIndex};

use crate::balance::rebalance;
use crate::command::{CtrlCommand, CtrlError, CtrlOp, CtrlReply, get_config, put_config};
use crate::config::{Config, Gid};
use crate::frame::{frame, unframe};

const MAGIC: [u8; 4] = *b"FSCT";
const VERSION: u8 = 1;

/// A command applied: whose it was and what it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtrlApplied {
    /// The client (0 for a malformed entry).
    pub client: u64,
    /// Its number.
    pub seq: u64,
    /// The answer.
    pub reply: CtrlReply,
}

/// The controller's replicated state. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctrler {
    nshards: usize,
    configs: Vec<Config>,
    /// Each client's last request with a number, and its answer.
    sessions: BTreeMap<u64, (u64, CtrlReply)>,
    applied: LogIndex,
}

impl Ctrler {
    /// A controller over `nshards` shards, holding configuration 0.
    pub fn new(nshards: usize) -> Ctrler {
        Ctrler {
            nshards,
            configs: vec![Config::initial(nshards)],
            sessions: BTreeMap::new(),
            applied: LogIndex(0),
        }
    }

    /// Configuration `num`, or the latest (also when `num` is past it).
    pub fn query(&self, num: Option<u64>) -> &Config {
        let latest = self.configs.len() - 1;
        let i = num.map_or(latest, |n| usize::try_from(n).unwrap_or(latest).min(latest));
        &self.configs[i]
    }

    /// The index of the last entry applied.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// Applies `command` (see the module docs for exactly-once).
    pub fn execute(&mut self, command: &CtrlCommand) -> CtrlReply {
        let (client, seq) = (command.client, command.seq);
        if seq > 0
            && let Some((last, reply)) = self.sessions.get(&client)
        {
            if seq == *last {
                return reply.clone();
            }
            if seq < *last {
                let last = *last;
                return CtrlReply::Refused(CtrlError::Stale { client, seq, last });
            }
        }
        let reply = match &command.op {
            CtrlOp::Query(num) => return CtrlReply::Config(self.query(*num).clone()),
            op => match self.change(op) {
                Ok(()) => CtrlReply::Done,
                Err(e) => CtrlReply::Refused(e),
            },
        };
        if seq > 0 {
            self.sessions.insert(client, (seq, reply.clone()));
        }
        reply
    }

    /// Makes the next configuration from the latest by `op`, or refuses.
    fn change(&mut self, op: &CtrlOp) -> Result<(), CtrlError> {
        let latest = self.query(None);
        let mut next = Config {
            num: latest.num + 1,
            ..latest.clone()
        };
        match op {
            CtrlOp::Join(groups) => {
                check_join(latest, groups)?;
                next.groups.extend(groups.clone());
                next.shards = rebalance(&next.shards, &next.groups.keys().copied().collect());
            }
            CtrlOp::Leave(gids) => {
                check_leave(latest, gids)?;
                gids.iter().for_each(|g| drop(next.groups.remove(g)));
                next.shards = rebalance(&next.shards, &next.groups.keys().copied().collect());
            }
            CtrlOp::Move { shard, gid } => {
                let nshards = self.nshards as u64;
                let s = usize::try_from(*shard)
                    .ok()
                    .filter(|&s| s < self.nshards)
                    .ok_or(CtrlError::NoSuchShard {
                        shard: *shard,
                        nshards,
                    })?;
                if !latest.groups.contains_key(gid) {
                    return Err(CtrlError::NoSuchGroup(*gid));
                }
                if next.shards[s] == *gid {
                    // Nothing moves: no new configuration.
                    return Ok(());
                }
                next.shards[s] = *gid;
            }
            CtrlOp::Query(_) => return Ok(()),
        }
        self.configs.push(next);
        Ok(())
    }

    fn encode(&self) -> Bytes {
        let mut body = Vec::new();
        put_u64(&mut body, self.nshards as u64);
        put_u64(&mut body, self.applied.0);
        put_u64(&mut body, self.configs.len() as u64);
        self.configs.iter().for_each(|c| put_config(&mut body, c));
        put_u64(&mut body, self.sessions.len() as u64);
        for (client, (seq, reply)) in &self.sessions {
            put_u64(&mut body, *client);
            put_u64(&mut body, *seq);
            put_reply(&mut body, reply);
        }
        frame(MAGIC, VERSION, &body)
    }

    fn decode(data: &Bytes, nshards: usize) -> Result<Ctrler, String> {
        let body = unframe(data, MAGIC, VERSION, "controller")?;
        let mut d = Decoder::new(body);
        let e = |e: flotilla_raft::codec::DecodeError| e.to_string();
        let shards = d.u64("shard count").map_err(e)?;
        if shards != nshards as u64 {
            return Err(format!(
                "snapshot of {shards} shards, where this controller has {nshards}"
            ));
        }
        let applied = LogIndex(d.u64("applied index").map_err(e)?);
        let n = d.count("config count").map_err(e)?;
        let configs = (0..n)
            .map(|_| get_config(&mut d))
            .collect::<Result<Vec<_>, _>>();
        let configs = configs.map_err(e)?;
        let n = d.count("session count").map_err(e)?;
        let mut sessions = BTreeMap::new();
        for _ in 0..n {
            let client = d.u64("client").map_err(e)?;
            let seq = d.u64("seq").map_err(e)?;
            sessions.insert(client, (seq, get_reply(&mut d).map_err(e)?));
        }
        d.finish("controller snapshot").map_err(e)?;
        check_configs(&configs, nshards)?;
        Ok(Ctrler {
            nshards,
            configs,
            sessions,
            applied,
        })
    }
}

/// What a Join must satisfy against the latest configuration.
fn check_join(latest: &Config, groups: &BTreeMap<Gid, Vec<String>>) -> Result<(), CtrlError> {
    if groups.is_empty() {
        return Err(CtrlError::NoGroups);
    }
    for (&gid, servers) in groups {
        if gid == 0 {
            return Err(CtrlError::ReservedGroup);
        }
        if latest.groups.contains_key(&gid) {
            return Err(CtrlError::GroupExists(gid));
        }
        if servers.is_empty() {
            return Err(CtrlError::NoServers(gid));
        }
    }
    Ok(())
}

/// What a Leave must satisfy against the latest configuration.
fn check_leave(latest: &Config, gids: &[Gid]) -> Result<(), CtrlError> {
    if gids.is_empty() {
        return Err(CtrlError::NoGroups);
    }
    let mut seen = BTreeSet::new();
    for &gid in gids {
        if !latest.groups.contains_key(&gid) {
            return Err(CtrlError::NoSuchGroup(gid));
        }
        if !seen.insert(gid) {
            return Err(CtrlError::Repeated(gid));
        }
    }
    Ok(())
}

/// A restored list of configurations: numbered from 0 in order, each
/// over `nshards` shards and keeping [`Config::violation`]'s rules.
fn check_configs(configs: &[Config], nshards: usize) -> Result<(), String> {
    if configs.is_empty() {
        return Err("a controller snapshot without configuration 0".into());
    }
    for (i, c) in configs.iter().enumerate() {
        if c.num != i as u64 {
            return Err(format!("configuration {} where {i} belongs", c.num));
        }
        if c.shards.len() != nshards {
            return Err(format!("configuration {i} has {} shards", c.shards.len()));
        }
        if let Some(what) = c.violation() {
            return Err(what);
        }
    }
    Ok(())
}

fn put_reply(out: &mut Vec<u8>, reply: &CtrlReply) {
    match reply {
        CtrlReply::Done => out.push(0),
        CtrlReply::Config(c) => {
            out.push(1);
            put_config(out, c);
        }
        CtrlReply::Refused(e) => {
            out.push(2);
            put_bytes(out, e.to_string().as_bytes());
        }
    }
}

/// A restored refusal keeps its text ([`CtrlError::Remembered`]).
fn get_reply(d: &mut Decoder) -> Result<CtrlReply, flotilla_raft::codec::DecodeError> {
    let at = d.offset();
    match d.u8("reply")? {
        0 => Ok(CtrlReply::Done),
        1 => Ok(CtrlReply::Config(get_config(d)?)),
        2 => {
            let text = d.bytes("refusal")?;
            let text = String::from_utf8_lossy(&text).into_owned();
            Ok(CtrlReply::Refused(CtrlError::Remembered(text)))
        }
        tag => Err(flotilla_raft::codec::DecodeError::BadTag {
            what: "reply",
            tag: tag.into(),
            offset: at,
        }),
    }
}

impl StateMachine for Ctrler {
    /// `None` for entries that are no command (no-ops, membership).
    type Output = Option<CtrlApplied>;

    fn apply(&mut self, entry: &Entry) -> Result<Option<CtrlApplied>, ApplyError> {
        self.applied = entry.index;
        if entry.kind != EntryKind::Command {
            return Ok(None);
        }
        let applied = match CtrlCommand::decode(&entry.data) {
            Ok(command) => CtrlApplied {
                client: command.client,
                seq: command.seq,
                reply: self.execute(&command),
            },
            Err(e) => CtrlApplied {
                client: 0,
                seq: 0,
                reply: CtrlReply::Refused(CtrlError::Malformed(e.to_string())),
            },
        };
        Ok(Some(applied))
    }

    fn snapshot(&self) -> Bytes {
        self.encode()
    }

    fn restore(&mut self, data: &Bytes) -> Result<(), RestoreError> {
        *self = Ctrler::decode(data, self.nshards).map_err(|e| RestoreError(e.into()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
