//! The encodings of a group's log entries and snapshots. Decoding takes
//! untrusted bytes: it fails with the field that was wrong, allocates no
//! more than the input holds, and checks what a snapshot must keep (its
//! configurations' rules, shards within range, a state for each).
//!
//! ```text
//! command  = version | 0 client seq op | 1 config | 2 num #shards (shard data)*
//!          | 3 num #shards shard* | 4 num #shards shard* | 5 num shard data
//! op       = 0 key | 1 key value | 2 key value
//! data     = #pairs (key value)* #clients (client seq)*
//! snapshot = "FSKG" | version | crc32c(body) u32 LE | body
//! body     = gid, applied, config, prev, #shards, (shard state data)*
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_raft::LogIndex;
use flotilla_raft::codec::{DecodeError, Decoder, put_bytes, put_u64};

use super::{GroupCommand, KvOp, ShardData, ShardKv, ShardState};
use crate::command::{get_config, put_config};
use crate::config::Gid;
use crate::frame::{frame, unframe};

const VERSION: u8 = 1;
const MAGIC: [u8; 4] = *b"FSKG";

fn bad_tag(what: &'static str, tag: u64, offset: usize) -> DecodeError {
    DecodeError::BadTag { what, tag, offset }
}

fn put_data(out: &mut Vec<u8>, d: &ShardData) {
    put_u64(out, d.data.len() as u64);
    for (k, v) in &d.data {
        put_bytes(out, k);
        put_bytes(out, v);
    }
    put_u64(out, d.dedup.len() as u64);
    for (c, s) in &d.dedup {
        put_u64(out, *c);
        put_u64(out, *s);
    }
}

fn get_data(d: &mut Decoder) -> Result<ShardData, DecodeError> {
    let mut out = ShardData::default();
    for _ in 0..d.count("pair count")? {
        let k = d.bytes("key")?;
        out.data.insert(k, d.bytes("value")?);
    }
    for _ in 0..d.count("client count")? {
        let c = d.u64("client")?;
        out.dedup.insert(c, d.u64("client's seq")?);
    }
    Ok(out)
}

fn put_list(out: &mut Vec<u8>, shards: &[usize]) {
    put_u64(out, shards.len() as u64);
    shards.iter().for_each(|&s| put_u64(out, s as u64));
}

fn get_shard(d: &mut Decoder) -> Result<usize, DecodeError> {
    let at = d.offset();
    let s = d.u64("shard")?;
    usize::try_from(s).map_err(|_| bad_tag("shard (out of range)", s, at))
}

fn get_list(d: &mut Decoder) -> Result<Vec<usize>, DecodeError> {
    let n = d.count("shard count")?;
    (0..n).map(|_| get_shard(d)).collect()
}

impl GroupCommand {
    /// The command as a log entry's data.
    pub fn encode(&self) -> Bytes {
        let mut out = vec![VERSION];
        match self {
            GroupCommand::Op { client, seq, op } => {
                out.push(0);
                put_u64(&mut out, *client);
                put_u64(&mut out, *seq);
                match op {
                    KvOp::Get(k) => {
                        out.push(0);
                        put_bytes(&mut out, k);
                    }
                    KvOp::Put(k, v) | KvOp::Append(k, v) => {
                        out.push(if matches!(op, KvOp::Put(..)) { 1 } else { 2 });
                        put_bytes(&mut out, k);
                        put_bytes(&mut out, v);
                    }
                }
            }
            GroupCommand::Config(c) => {
                out.push(1);
                put_config(&mut out, c);
            }
            GroupCommand::Insert { num, shards } => {
                out.push(2);
                put_u64(&mut out, *num);
                put_u64(&mut out, shards.len() as u64);
                for (s, d) in shards {
                    put_u64(&mut out, *s as u64);
                    put_data(&mut out, d);
                }
            }
            GroupCommand::Part { num, shard, part } => {
                out.push(5);
                put_u64(&mut out, *num);
                put_u64(&mut out, *shard as u64);
                put_data(&mut out, part);
            }
            GroupCommand::Delete { num, shards } | GroupCommand::Settle { num, shards } => {
                out.push(if matches!(self, GroupCommand::Delete { .. }) {
                    3
                } else {
                    4
                });
                put_u64(&mut out, *num);
                put_list(&mut out, shards);
            }
        }
        Bytes::from(out)
    }

    /// Reads a command from a log entry's data.
    pub fn decode(data: &Bytes) -> Result<GroupCommand, DecodeError> {
        let mut d = Decoder::new(data.clone());
        let version = d.u8("group command version")?;
        if version != VERSION {
            return Err(bad_tag("group command version", version.into(), 0));
        }
        let at = d.offset();
        let command = match d.u8("group command")? {
            0 => {
                let client = d.u64("client")?;
                let seq = d.u64("seq")?;
                let at = d.offset();
                let op = match d.u8("op")? {
                    0 => KvOp::Get(d.bytes("key")?),
                    1 => KvOp::Put(d.bytes("key")?, d.bytes("value")?),
                    2 => KvOp::Append(d.bytes("key")?, d.bytes("value")?),
                    tag => return Err(bad_tag("op", tag.into(), at)),
                };
                GroupCommand::Op { client, seq, op }
            }
            1 => GroupCommand::Config(get_config(&mut d)?),
            2 => {
                let num = d.u64("config number")?;
                let mut shards = BTreeMap::new();
                for _ in 0..d.count("shard count")? {
                    let s = get_shard(&mut d)?;
                    shards.insert(s, get_data(&mut d)?);
                }
                GroupCommand::Insert { num, shards }
            }
            3 => GroupCommand::Delete {
                num: d.u64("config number")?,
                shards: get_list(&mut d)?,
            },
            4 => GroupCommand::Settle {
                num: d.u64("config number")?,
                shards: get_list(&mut d)?,
            },
            5 => GroupCommand::Part {
                num: d.u64("config number")?,
                shard: get_shard(&mut d)?,
                part: get_data(&mut d)?,
            },
            tag => return Err(bad_tag("group command", tag.into(), at)),
        };
        d.finish("group command")?;
        Ok(command)
    }
}

fn state_tag(st: ShardState) -> u8 {
    match st {
        ShardState::Serving => 0,
        ShardState::Pulling => 1,
        ShardState::Arrived => 2,
        ShardState::Leaving => 3,
    }
}

impl ShardKv {
    pub(super) fn encode(&self) -> Bytes {
        let mut body = Vec::new();
        put_u64(&mut body, self.gid);
        put_u64(&mut body, self.applied.0);
        put_config(&mut body, &self.config);
        put_config(&mut body, &self.prev);
        put_u64(&mut body, self.shards.len() as u64);
        for (s, (st, d)) in &self.shards {
            put_u64(&mut body, *s as u64);
            body.push(state_tag(*st));
            put_data(&mut body, d);
        }
        frame(MAGIC, VERSION, &body)
    }

    pub(super) fn decode(data: &Bytes, gid: Gid, nshards: usize) -> Result<ShardKv, String> {
        let body = unframe(data, MAGIC, VERSION, "shard group")?;
        let kv = Self::decode_body(body).map_err(|e| e.to_string())?;
        kv.check(gid, nshards)?;
        Ok(kv)
    }

    fn decode_body(body: Bytes) -> Result<ShardKv, DecodeError> {
        let mut d = Decoder::new(body);
        let gid = d.u64("gid")?;
        let applied = LogIndex(d.u64("applied index")?);
        let config = get_config(&mut d)?;
        let prev = get_config(&mut d)?;
        let mut shards = BTreeMap::new();
        for _ in 0..d.count("shard count")? {
            let s = get_shard(&mut d)?;
            let at = d.offset();
            let st = match d.u8("shard state")? {
                0 => ShardState::Serving,
                1 => ShardState::Pulling,
                2 => ShardState::Arrived,
                3 => ShardState::Leaving,
                tag => return Err(bad_tag("shard state", tag.into(), at)),
            };
            shards.insert(s, (st, get_data(&mut d)?));
        }
        d.finish("shard group snapshot")?;
        Ok(ShardKv {
            gid,
            config,
            prev,
            shards,
            applied,
        })
    }

    /// What a restored machine must keep.
    fn check(&self, gid: Gid, nshards: usize) -> Result<(), String> {
        if self.gid != gid {
            return Err(format!(
                "a snapshot of group {}, restored in group {gid}",
                self.gid
            ));
        }
        for c in [&self.config, &self.prev] {
            if c.shards.len() != nshards {
                return Err(format!(
                    "configuration {} has {} shards, not {nshards}",
                    c.num,
                    c.shards.len()
                ));
            }
            if let Some(what) = c.violation() {
                return Err(what);
            }
        }
        if self.config.num > 0 && self.prev.num + 1 != self.config.num {
            return Err(format!(
                "configuration {} follows {}",
                self.config.num, self.prev.num
            ));
        }
        match self.shards.keys().find(|&&s| s >= nshards) {
            Some(s) => Err(format!("shard {s} of {nshards}")),
            None => Ok(()),
        }
    }
}
