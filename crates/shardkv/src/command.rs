//! The shard controller's requests and answers, and their encoding in log
//! entries: `version | client | seq | op`. Every field is a varint or a
//! length-prefixed string (`flotilla_raft::codec`), so decoding untrusted
//! bytes fails with the field that was wrong and never allocates more
//! than the input holds.
//!
//! Exactly-once: a request with `seq > 0` is applied once per client and
//! number; the same number again gets the answer it got the first time.
//! `seq == 0` is a request outside any session, applied each time it
//! arrives (a query needs no more).

use std::collections::BTreeMap;

use bytes::Bytes;
use flotilla_raft::codec::{DecodeError, Decoder, put_bytes, put_u64};
use thiserror::Error;

use crate::config::{Config, Gid};

/// The command encoding this build writes and reads.
pub const COMMAND_VERSION: u8 = 1;

/// What the controller is asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtrlOp {
    /// New groups, each with its servers.
    Join(BTreeMap<Gid, Vec<String>>),
    /// Groups that leave.
    Leave(Vec<Gid>),
    /// Shard `shard` to group `gid`.
    Move {
        /// The shard.
        shard: u64,
        /// Its new group.
        gid: Gid,
    },
    /// Configuration `num`, or the latest (also when `num` is past it).
    Query(Option<u64>),
}

/// A client's request, as a log entry carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtrlCommand {
    /// The client.
    pub client: u64,
    /// Its number in the client's session (0: none).
    pub seq: u64,
    /// What it asks.
    pub op: CtrlOp,
}

/// Why the controller refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CtrlError {
    /// A Join or Leave that names no group.
    #[error("the request names no group")]
    NoGroups,
    /// Group 0 means "no group" and cannot join.
    #[error("group 0 is reserved (it means no group)")]
    ReservedGroup,
    /// A Join of a group already in the configuration.
    #[error("group {0} has already joined")]
    GroupExists(Gid),
    /// A Join of a group without servers.
    #[error("group {0} is given no servers")]
    NoServers(Gid),
    /// A Leave or Move naming a group the configuration does not list.
    #[error("group {0} is not in the configuration")]
    NoSuchGroup(Gid),
    /// A Leave naming one group twice.
    #[error("group {0} is named twice")]
    Repeated(Gid),
    /// A Move of a shard that does not exist.
    #[error("shard {shard} does not exist (there are {nshards})")]
    NoSuchShard {
        /// The shard asked for.
        shard: u64,
        /// How many there are.
        nshards: u64,
    },
    /// A request older than the client's latest: its answer is gone.
    #[error("request {seq} of client {client} is older than its latest, {last}")]
    Stale {
        /// The client.
        client: u64,
        /// The request's number.
        seq: u64,
        /// The latest applied.
        last: u64,
    },
    /// A log entry that is no controller command.
    #[error("malformed controller command: {0}")]
    Malformed(String),
    /// A refusal remembered across a snapshot, as its text (only the
    /// client that got it first can ask again, and it has its kind).
    #[error("{0}")]
    Remembered(String),
}

/// What the controller answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtrlReply {
    /// A change was made (or changed nothing: a Move to the same group).
    Done,
    /// The configuration a query asked for.
    Config(Config),
    /// Refused.
    Refused(CtrlError),
}

impl CtrlCommand {
    /// The command as a log entry's data.
    pub fn encode(&self) -> Bytes {
        let mut out = vec![COMMAND_VERSION];
        put_u64(&mut out, self.client);
        put_u64(&mut out, self.seq);
        match &self.op {
            CtrlOp::Join(groups) => {
                out.push(0);
                put_groups(&mut out, groups);
            }
            CtrlOp::Leave(gids) => {
                out.push(1);
                put_u64(&mut out, gids.len() as u64);
                gids.iter().for_each(|&g| put_u64(&mut out, g));
            }
            CtrlOp::Move { shard, gid } => {
                out.push(2);
                put_u64(&mut out, *shard);
                put_u64(&mut out, *gid);
            }
            CtrlOp::Query(num) => {
                out.push(3);
                // num + 1, with 0 for the latest.
                put_u64(&mut out, num.map_or(0, |n| n.saturating_add(1)));
            }
        }
        Bytes::from(out)
    }

    /// Reads a command from a log entry's data.
    pub fn decode(data: &Bytes) -> Result<CtrlCommand, DecodeError> {
        let mut d = Decoder::new(data.clone());
        let version = d.u8("command version")?;
        if version != COMMAND_VERSION {
            return Err(bad_tag("command version", version.into(), 0));
        }
        let client = d.u64("client")?;
        let seq = d.u64("seq")?;
        let at = d.offset();
        let op = match d.u8("op")? {
            0 => CtrlOp::Join(get_groups(&mut d)?),
            1 => {
                let n = d.count("leave count")?;
                CtrlOp::Leave((0..n).map(|_| d.u64("gid")).collect::<Result<_, _>>()?)
            }
            2 => CtrlOp::Move {
                shard: d.u64("shard")?,
                gid: d.u64("gid")?,
            },
            3 => CtrlOp::Query(d.u64("query number")?.checked_sub(1)),
            tag => return Err(bad_tag("op", tag.into(), at)),
        };
        d.finish("controller command")?;
        Ok(CtrlCommand { client, seq, op })
    }
}

fn bad_tag(what: &'static str, tag: u64, offset: usize) -> DecodeError {
    DecodeError::BadTag { what, tag, offset }
}

/// Appends a group table: count, then (gid, count, server*) by gid.
pub(crate) fn put_groups(out: &mut Vec<u8>, groups: &BTreeMap<Gid, Vec<String>>) {
    put_u64(out, groups.len() as u64);
    for (gid, servers) in groups {
        put_u64(out, *gid);
        put_u64(out, servers.len() as u64);
        servers.iter().for_each(|s| put_bytes(out, s.as_bytes()));
    }
}

/// Reads what [`put_groups`] wrote; a gid given twice is refused.
pub(crate) fn get_groups(d: &mut Decoder) -> Result<BTreeMap<Gid, Vec<String>>, DecodeError> {
    let n = d.count("group count")?;
    let mut groups = BTreeMap::new();
    for _ in 0..n {
        let at = d.offset();
        let gid = d.u64("gid")?;
        let m = d.count("server count")?;
        let mut servers = Vec::with_capacity(m);
        for _ in 0..m {
            let at = d.offset();
            let name = d.bytes("server name")?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| bad_tag("server name (not UTF-8)", 0, at))?;
            servers.push(name);
        }
        if groups.insert(gid, servers).is_some() {
            return Err(bad_tag("gid (given twice)", gid, at));
        }
    }
    Ok(groups)
}

/// Appends a configuration: num, count, gid* (one per shard), groups.
pub(crate) fn put_config(out: &mut Vec<u8>, c: &Config) {
    put_u64(out, c.num);
    put_u64(out, c.shards.len() as u64);
    c.shards.iter().for_each(|&g| put_u64(out, g));
    put_groups(out, &c.groups);
}

/// Reads what [`put_config`] wrote.
pub(crate) fn get_config(d: &mut Decoder) -> Result<Config, DecodeError> {
    let num = d.u64("config number")?;
    let n = d.count("shard count")?;
    let shards = (0..n)
        .map(|_| d.u64("shard's gid"))
        .collect::<Result<_, _>>()?;
    let groups = get_groups(d)?;
    Ok(Config {
        num,
        shards,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = CtrlOp> {
        let names = prop::collection::vec("[a-z0-9-]{0,12}", 0..4);
        prop_oneof![
            prop::collection::btree_map(any::<u64>(), names, 0..4).prop_map(CtrlOp::Join),
            prop::collection::vec(any::<u64>(), 0..6).prop_map(CtrlOp::Leave),
            (any::<u64>(), any::<u64>()).prop_map(|(shard, gid)| CtrlOp::Move { shard, gid }),
            proptest::option::of(0..u64::MAX).prop_map(CtrlOp::Query),
        ]
    }

    proptest! {
        #[test]
        fn commands_round_trip(client in any::<u64>(), seq in any::<u64>(), op in op()) {
            let c = CtrlCommand { client, seq, op };
            prop_assert_eq!(CtrlCommand::decode(&c.encode()), Ok(c));
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(data in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = CtrlCommand::decode(&Bytes::from(data));
        }

        #[test]
        fn every_truncation_is_refused(op in op()) {
            let full = CtrlCommand { client: 9, seq: 3, op }.encode();
            for len in 0..full.len() {
                prop_assert!(CtrlCommand::decode(&full.slice(..len)).is_err());
            }
        }
    }

    #[test]
    fn what_is_wrong_is_named() {
        let bad_version = CtrlCommand::decode(&Bytes::from_static(&[2, 1, 1, 3, 0]));
        assert!(
            bad_version
                .unwrap_err()
                .to_string()
                .contains("command version")
        );
        let bad_op = CtrlCommand::decode(&Bytes::from_static(&[1, 1, 1, 9]));
        assert!(bad_op.unwrap_err().to_string().contains("invalid op tag 9"));
        let trailing = CtrlCommand::decode(&Bytes::from_static(&[1, 1, 1, 3, 0, 0]));
        assert!(trailing.unwrap_err().to_string().contains("trailing"));
        // Join {5: ["a"], 5: ["b"]}.
        let twice = [1, 1, 1, 0, 2, 5, 1, 1, b'a', 5, 1, 1, b'b'];
        let twice = CtrlCommand::decode(&Bytes::copy_from_slice(&twice));
        assert!(twice.unwrap_err().to_string().contains("given twice"));
        let not_utf8 = [1, 1, 1, 0, 1, 5, 1, 1, 0xff];
        let not_utf8 = CtrlCommand::decode(&Bytes::copy_from_slice(&not_utf8));
        assert!(not_utf8.unwrap_err().to_string().contains("UTF-8"));
    }
}
