//! The binary encoding of the KV service's messages and log entries, in the
//! style of `flotilla_raft::codec`: varints, length-prefixed byte strings,
//! one-byte tags. Every top-level value ([`Command`], [`ClientMsg`],
//! [`Reply`]) starts with a format version byte, so a later release can
//! change the layout and still read old logs.
//!
//! Tags are only ever added, never renumbered or reused, so the format
//! version stays 1 while new operations appear (op tag 6 and response tag
//! 8, delete-range, came after the first release): this build reads every
//! log written before, and a build that predates a tag refuses a value
//! holding it with a `BadTag` error that names the tag and its offset.
//!
//! Decoding is a gateway: bytes from a client, a peer or a log are
//! untrusted. Every failure is a [`CodecError`] that names what was being
//! read (and, for malformed bytes, the field and offset), never a panic.

use bytes::Bytes;
use flotilla_raft::codec::{DecodeError, Decoder, put_bytes, put_u64};
use thiserror::Error;

use crate::check::{KeyRole, Refusal};
use crate::command::{
    ClientMsg, CmpOp, Command, Compare, CompareSpan, KeyValue, Op, Outcome, ReadConsistency, Reply,
    Request, Response, Target, Txn,
};

/// The format version this build writes and reads for client messages.
pub const FORMAT_VERSION: u8 = 1;
/// The format version of the commands (log entries) this build writes.
/// Version 2 has version 1's layout; it marks a command written by a
/// build whose etcd store numbers revisions as etcd does (see
/// `Replica::etcd`). Both are read.
pub const COMMAND_FORMAT_VERSION: u8 = 2;
/// The format version of replies this build writes: version 2 gave every
/// pair its lease. Version 1 replies (pairs without a lease) are still
/// read.
pub const REPLY_FORMAT_VERSION: u8 = 2;

/// Whether encoded pairs carry their lease (replies from version 2 on,
/// snapshots from version 3 on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PairFormat {
    pub(crate) lease: bool,
}

/// Why bytes are not a valid KV value.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The bytes are malformed.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// The value being decoded.
        what: &'static str,
        /// What was wrong, where.
        source: DecodeError,
    },
    /// The value was written by a format this build does not read.
    #[error("{what} has format version {found}; this build reads versions {oldest} to {newest}")]
    Version {
        /// The value being decoded.
        what: &'static str,
        /// The version byte found.
        found: u8,
        /// The oldest version this build reads of it.
        oldest: u8,
        /// The newest.
        newest: u8,
    },
    /// Transactions are nested deeper than [`MAX_TXN_DEPTH`].
    #[error("{what} holds transactions nested more than {MAX_TXN_DEPTH} deep")]
    TxnTooDeep {
        /// The value being decoded.
        what: &'static str,
    },
}

/// Errors inside one top-level value; `what` is added at the top.
enum Inner {
    Decode(DecodeError),
    TxnTooDeep,
}

impl From<DecodeError> for Inner {
    fn from(e: DecodeError) -> Inner {
        Inner::Decode(e)
    }
}

impl Inner {
    fn named(self, what: &'static str) -> CodecError {
        match self {
            Inner::Decode(source) => CodecError::Malformed { what, source },
            Inner::TxnTooDeep => CodecError::TxnTooDeep { what },
        }
    }
}

type R<T> = Result<T, Inner>;

fn bad_tag(d: &Decoder, what: &'static str, tag: u8) -> Inner {
    Inner::Decode(DecodeError::BadTag {
        what,
        tag: u64::from(tag),
        offset: d.offset().saturating_sub(1),
    })
}

/// Reads a key. An empty one decodes: it is a well-formed command that
/// every replica refuses the same way when it applies it (`check.rs`),
/// where a decoding error would stop them all.
fn key(d: &mut Decoder, what: &'static str) -> R<Bytes> {
    Ok(d.bytes(what)?)
}

fn put_opt(out: &mut Vec<u8>, b: Option<&Bytes>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

fn opt(d: &mut Decoder, what: &'static str) -> R<Option<Bytes>> {
    Ok(if d.bool(what)? {
        Some(d.bytes(what)?)
    } else {
        None
    })
}

fn put_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Get { key } => {
            out.push(0);
            put_bytes(out, key);
        }
        // A put without a lease keeps the encoding it had before leases.
        Op::Put {
            key,
            value,
            lease: 0,
        } => {
            out.push(1);
            put_bytes(out, key);
            put_bytes(out, value);
        }
        Op::Put { key, value, lease } => {
            out.push(10);
            put_bytes(out, key);
            put_bytes(out, value);
            put_u64(out, *lease as u64);
        }
        Op::Append { key, value } => {
            out.push(2);
            put_bytes(out, key);
            put_bytes(out, value);
        }
        Op::Delete { key } => {
            out.push(3);
            put_bytes(out, key);
        }
        Op::Range {
            start,
            end,
            limit,
            revision,
        } => {
            // A read at the current revision keeps the encoding it had
            // before history existed.
            out.push(if *revision == 0 { 4 } else { 7 });
            put_bytes(out, start);
            put_opt(out, end.as_ref());
            put_u64(out, *limit);
            if *revision != 0 {
                put_u64(out, *revision);
            }
        }
        Op::Txn(t) => {
            out.push(5);
            put_txn(out, t);
        }
        Op::DeleteRange {
            start,
            end,
            prev_kv,
        } => {
            out.push(6);
            put_bytes(out, start);
            put_opt(out, end.as_ref());
            out.push(u8::from(*prev_kv));
        }
        // The ops that came after the first release (every one listed in
        // `later.rs`'s match, which is exhaustive).
        _ => later::put_later_op(out, op),
    }
}

/// Reads an op inside `depth` transactions.
fn op(d: &mut Decoder, depth: usize) -> R<Op> {
    let tag = d.u8("op tag")?;
    Ok(match tag {
        0 => Op::Get {
            key: key(d, "get key")?,
        },
        1 | 2 | 10 => {
            let key = key(d, "write key")?;
            let value = d.bytes("write value")?;
            match tag {
                1 => Op::Put {
                    key,
                    value,
                    lease: 0,
                },
                10 => Op::Put {
                    key,
                    value,
                    lease: d.u64("put lease")? as i64,
                },
                _ => Op::Append { key, value },
            }
        }
        3 => Op::Delete {
            key: key(d, "delete key")?,
        },
        4 | 7 => Op::Range {
            start: d.bytes("range start")?,
            end: opt(d, "range end")?,
            limit: d.u64("range limit")?,
            revision: if tag == 7 {
                d.u64("range revision")?
            } else {
                0
            },
        },
        8 => Op::Compact {
            revision: d.u64("compaction revision")?,
        },
        9 => Op::rewrite(key(d, "rewrite key")?, 0),
        11..=16 => later::lease_op(d, tag)?,
        17 if depth >= MAX_TXN_DEPTH => return Err(Inner::TxnTooDeep),
        17 => Op::AsUser {
            user: auth::string(d, "user name")?,
            op: Box::new(op(d, depth + 1)?),
        },
        18 => Op::Auth(auth::auth_op(d)?),
        5 if depth >= MAX_TXN_DEPTH => return Err(Inner::TxnTooDeep),
        5 => Op::Txn(txn(d, depth + 1)?),
        6 => Op::DeleteRange {
            start: d.bytes("delete-range start")?,
            end: opt(d, "delete-range end")?,
            prev_kv: d.bool("delete-range prev_kv flag")?,
        },
        t => return Err(bad_tag(d, "op", t)),
    })
}

fn put_txn(out: &mut Vec<u8>, t: &Txn) {
    put_u64(out, t.compares.len() as u64);
    for c in &t.compares {
        put_bytes(out, &c.key);
        let op = match c.op {
            CmpOp::Equal => 0,
            CmpOp::NotEqual => 1,
            CmpOp::Less => 2,
            CmpOp::Greater => 3,
        };
        // A range compare sets the op byte's top bit and puts its end after
        // the target; single-key compares encode as before ranges existed.
        let ranged = matches!(c.span, CompareSpan::Range(_));
        out.push(if ranged { op | RANGED_COMPARE } else { op });
        match &c.target {
            Target::Value(v) => {
                out.push(0);
                put_bytes(out, v);
            }
            Target::Lease(l) => {
                out.push(4);
                put_u64(out, *l as u64);
            }
            Target::Version(n) | Target::CreateRev(n) | Target::ModRev(n) => {
                out.push(match c.target {
                    Target::Version(_) => 1,
                    Target::CreateRev(_) => 2,
                    _ => 3,
                });
                put_u64(out, *n);
            }
        }
        if let CompareSpan::Range(end) = &c.span {
            put_opt(out, end.as_ref());
        }
    }
    for branch in [&t.success, &t.failure] {
        put_u64(out, branch.len() as u64);
        for o in branch {
            put_op(out, o);
        }
    }
}

/// How deep transactions may nest (a transaction at the top is 1 deep).
/// Bounds the recursion of decoding, applying and answering; etcd sets no
/// limit of its own but its request size.
pub const MAX_TXN_DEPTH: usize = 16;

/// The op byte's flag of a compare over a range of keys.
const RANGED_COMPARE: u8 = 0x80;

fn compare(d: &mut Decoder) -> R<Compare> {
    let key = key(d, "compare key")?;
    let tag = d.u8("compare op")?;
    let op = match tag & !RANGED_COMPARE {
        0 => CmpOp::Equal,
        1 => CmpOp::NotEqual,
        2 => CmpOp::Less,
        3 => CmpOp::Greater,
        _ => return Err(bad_tag(d, "compare op", tag)),
    };
    let target = match d.u8("compare target")? {
        0 => Target::Value(d.bytes("compare value")?),
        1 => Target::Version(d.u64("compare version")?),
        2 => Target::CreateRev(d.u64("compare create revision")?),
        3 => Target::ModRev(d.u64("compare mod revision")?),
        4 => Target::Lease(d.u64("compare lease")? as i64),
        t => return Err(bad_tag(d, "compare target", t)),
    };
    let span = if tag & RANGED_COMPARE != 0 {
        CompareSpan::Range(opt(d, "compare range end")?)
    } else {
        CompareSpan::Key
    };
    Ok(Compare {
        key,
        op,
        target,
        span,
    })
}

/// Reads a transaction whose ops are inside `depth` transactions.
fn txn(d: &mut Decoder, depth: usize) -> R<Txn> {
    let n = d.count("txn compares")?;
    let compares = (0..n).map(|_| compare(d)).collect::<R<Vec<_>>>()?;
    let n = d.count("txn success ops")?;
    let success = (0..n).map(|_| op(d, depth)).collect::<R<Vec<_>>>()?;
    let n = d.count("txn failure ops")?;
    let failure = (0..n).map(|_| op(d, depth)).collect::<R<Vec<_>>>()?;
    Ok(Txn {
        compares,
        success,
        failure,
    })
}

fn put_request(out: &mut Vec<u8>, r: &Request) {
    put_u64(out, r.client);
    put_u64(out, r.seq);
    out.push(match r.read {
        ReadConsistency::Linearizable => 0,
        ReadConsistency::Serializable => 1,
    });
    out.push(u8::from(r.resumed));
    put_op(out, &r.op);
}

fn request(d: &mut Decoder) -> R<Request> {
    let client = d.u64("client id")?;
    let seq = d.u64("request seq")?;
    let read = match d.u8("read consistency")? {
        0 => ReadConsistency::Linearizable,
        1 => ReadConsistency::Serializable,
        t => return Err(bad_tag(d, "read consistency", t)),
    };
    let resumed = d.bool("resumed flag")?;
    let op = op(d, 0)?;
    Ok(Request {
        client,
        seq,
        read,
        resumed,
        op,
    })
}

/// Appends a key/value pair.
pub(crate) fn put_kv(out: &mut Vec<u8>, kv: &KeyValue) {
    put_bytes(out, &kv.key);
    put_bytes(out, &kv.value);
    put_u64(out, kv.create_rev);
    put_u64(out, kv.mod_rev);
    put_u64(out, kv.version);
    put_u64(out, kv.lease as u64);
}

/// Reads a key/value pair written in format `f`.
pub(crate) fn get_kv(d: &mut Decoder, f: PairFormat) -> Result<KeyValue, DecodeError> {
    Ok(KeyValue {
        key: d.bytes("key")?,
        value: d.bytes("value")?,
        create_rev: d.u64("create revision")?,
        mod_rev: d.u64("mod revision")?,
        version: d.u64("version")?,
        lease: if f.lease { d.u64("lease")? as i64 } else { 0 },
    })
}

/// Appends a count, then that many pairs.
fn put_kvs(out: &mut Vec<u8>, kvs: &[KeyValue]) {
    put_u64(out, kvs.len() as u64);
    for kv in kvs {
        put_kv(out, kv);
    }
}

/// Reads what [`put_kvs`] wrote (`what` names the list in errors).
fn get_kvs(
    d: &mut Decoder,
    what: &'static str,
    f: PairFormat,
) -> Result<Vec<KeyValue>, DecodeError> {
    let n = d.count(what)?;
    (0..n).map(|_| get_kv(d, f)).collect()
}

/// Appends a response.
pub(crate) fn put_response(out: &mut Vec<u8>, r: &Response) {
    match r {
        Response::Get(None) => out.push(0),
        Response::Get(Some(kv)) => {
            out.push(1);
            put_kv(out, kv);
        }
        Response::Written => out.push(2),
        Response::Deleted(existed) => out.push(if *existed { 4 } else { 3 }),
        Response::Range { kvs, count } => {
            out.push(5);
            put_u64(out, *count);
            put_kvs(out, kvs);
        }
        Response::DeletedRange { deleted, prev_kvs } => {
            out.push(8);
            put_u64(out, *deleted);
            put_kvs(out, prev_kvs);
        }
        Response::Txn {
            succeeded,
            responses,
        } => {
            out.push(if *succeeded { 7 } else { 6 });
            put_u64(out, responses.len() as u64);
            for r in responses {
                put_response(out, r);
            }
        }
        Response::Compacted => out.push(9),
        Response::Leased => out.push(10),
        Response::Alarmed => out.push(11),
        Response::Started => out.push(12),
        Response::Authed => out.push(13),
    }
}

/// Reads a response (`depth` bounds the nesting of transactions).
pub(crate) fn get_response(
    d: &mut Decoder,
    depth: usize,
    f: PairFormat,
) -> Result<Response, DecodeError> {
    let tag = d.u8("response tag")?;
    Ok(match tag {
        0 => Response::Get(None),
        1 => Response::Get(Some(get_kv(d, f)?)),
        2 => Response::Written,
        3 | 4 => Response::Deleted(tag == 4),
        5 => {
            let count = d.u64("range count")?;
            let kvs = get_kvs(d, "range pairs", f)?;
            Response::Range { kvs, count }
        }
        9 => Response::Compacted,
        10 => Response::Leased,
        11 => Response::Alarmed,
        12 => Response::Started,
        13 => Response::Authed,
        8 => {
            let deleted = d.u64("delete-range count")?;
            let prev_kvs = get_kvs(d, "delete-range prev_kvs", f)?;
            Response::DeletedRange { deleted, prev_kvs }
        }
        6 | 7 if depth < MAX_TXN_DEPTH => {
            let n = d.count("txn responses")?;
            let responses = (0..n)
                .map(|_| get_response(d, depth + 1, f))
                .collect::<Result<_, _>>()?;
            Response::Txn {
                succeeded: tag == 7,
                responses,
            }
        }
        t => {
            return Err(DecodeError::BadTag {
                what: "response",
                tag: u64::from(t),
                offset: d.offset() - 1,
            });
        }
    })
}

/// Appends an outcome.
pub(crate) fn put_outcome(out: &mut Vec<u8>, o: &Outcome) {
    match o {
        Outcome::Ok { revision, response } => {
            out.push(0);
            put_u64(out, *revision);
            put_response(out, response);
        }
        Outcome::WrongLeader { leader } => {
            out.push(1);
            put_u64(out, leader.unwrap_or(0));
        }
        Outcome::SessionExpired => out.push(2),
        Outcome::Refused(r) => {
            out.push(3);
            put_refusal(out, r);
        }
    }
}

fn put_refusal(out: &mut Vec<u8>, r: &Refusal) {
    match r {
        Refusal::EmptyKey { role } => {
            out.push(0);
            out.push(match role {
                KeyRole::Get => 0,
                KeyRole::Write => 1,
                KeyRole::Delete => 2,
                KeyRole::Compare => 3,
            });
        }
        Refusal::Compacted {
            requested,
            compacted,
        } => {
            out.push(1);
            put_u64(out, *requested);
            put_u64(out, *compacted);
        }
        Refusal::FutureRevision { requested, current } => {
            out.push(2);
            put_u64(out, *requested);
            put_u64(out, *current);
        }
        Refusal::KeyNotFound => out.push(3),
        Refusal::LeaseNotFound { id } => {
            out.push(4);
            put_u64(out, *id as u64);
        }
        Refusal::LeaseExists { id } => {
            out.push(5);
            put_u64(out, *id as u64);
        }
        Refusal::NoSpace => out.push(6),
        Refusal::Corrupt => out.push(7),
        Refusal::Auth(e) => {
            out.push(8);
            out.push(auth::error_code(*e));
        }
    }
}

fn refusal(d: &mut Decoder) -> R<Refusal> {
    match d.u8("refusal tag")? {
        0 => {
            let role = match d.u8("empty key role")? {
                0 => KeyRole::Get,
                1 => KeyRole::Write,
                2 => KeyRole::Delete,
                3 => KeyRole::Compare,
                t => return Err(bad_tag(d, "empty key role", t)),
            };
            Ok(Refusal::EmptyKey { role })
        }
        1 => Ok(Refusal::Compacted {
            requested: d.u64("compacted requested revision")?,
            compacted: d.u64("compacted revision")?,
        }),
        2 => Ok(Refusal::FutureRevision {
            requested: d.u64("future requested revision")?,
            current: d.u64("future current revision")?,
        }),
        3 => Ok(Refusal::KeyNotFound),
        4 => Ok(Refusal::LeaseNotFound {
            id: d.u64("lease id")? as i64,
        }),
        5 => Ok(Refusal::LeaseExists {
            id: d.u64("lease id")? as i64,
        }),
        6 => Ok(Refusal::NoSpace),
        7 => Ok(Refusal::Corrupt),
        8 => Ok(Refusal::Auth(auth::error(d)?)),
        t => Err(bad_tag(d, "refusal", t)),
    }
}

fn outcome(d: &mut Decoder, f: PairFormat) -> R<Outcome> {
    Ok(match d.u8("outcome tag")? {
        0 => Outcome::Ok {
            revision: d.u64("revision")?,
            response: get_response(d, 0, f)?,
        },
        1 => Outcome::WrongLeader {
            leader: Some(d.u64("leader hint")?).filter(|&l| l != 0),
        },
        2 => Outcome::SessionExpired,
        3 => Outcome::Refused(refusal(d)?),
        t => return Err(bad_tag(d, "outcome", t)),
    })
}

/// Reads an outcome.
pub(crate) fn get_outcome(d: &mut Decoder, f: PairFormat) -> Result<Outcome, DecodeError> {
    outcome(d, f).map_err(|e| match e {
        Inner::Decode(e) => e,
        // Outcomes hold no transactions to nest.
        Inner::TxnTooDeep => DecodeError::BadTag {
            what: "outcome",
            tag: 0,
            offset: d.offset(),
        },
    })
}

fn decode_top<T>(
    bytes: &Bytes,
    what: &'static str,
    versions: std::ops::RangeInclusive<u8>,
    body: impl FnOnce(&mut Decoder, u8) -> R<T>,
) -> Result<T, CodecError> {
    let mut d = Decoder::new(bytes.clone());
    let version = d
        .u8("format version")
        .map_err(|e| Inner::from(e).named(what))?;
    if !versions.contains(&version) {
        return Err(CodecError::Version {
            what,
            found: version,
            oldest: *versions.start(),
            newest: *versions.end(),
        });
    }
    let v = body(&mut d, version).map_err(|e| e.named(what))?;
    d.finish(what).map_err(|e| Inner::from(e).named(what))?;
    Ok(v)
}

impl Command {
    /// The encoding carried by a log entry.
    pub fn encode(&self) -> Bytes {
        let mut out = vec![COMMAND_FORMAT_VERSION];
        put_u64(&mut out, self.stamp_ms);
        put_request(&mut out, &self.request);
        Bytes::from(out)
    }

    /// Reads a log entry's payload.
    pub fn decode(bytes: &Bytes) -> Result<Command, CodecError> {
        Command::decode_with_format(bytes).map(|(c, _)| c)
    }

    /// Reads a log entry's payload, and the format version it was written
    /// in.
    pub fn decode_with_format(bytes: &Bytes) -> Result<(Command, u8), CodecError> {
        decode_top(
            bytes,
            "log command",
            1..=COMMAND_FORMAT_VERSION,
            |d, version| {
                let command = Command {
                    stamp_ms: d.u64("stamp")?,
                    request: request(d)?,
                };
                Ok((command, version))
            },
        )
    }
}

impl ClientMsg {
    /// The encoding sent to a server.
    pub fn encode(&self) -> Bytes {
        let mut out = vec![FORMAT_VERSION];
        match self {
            ClientMsg::Request(r) => {
                out.push(0);
                put_request(&mut out, r);
            }
        }
        Bytes::from(out)
    }

    /// Reads what a client sent.
    pub fn decode(bytes: &Bytes) -> Result<ClientMsg, CodecError> {
        decode_top(
            bytes,
            "client message",
            FORMAT_VERSION..=FORMAT_VERSION,
            |d, _| match d.u8("client message tag")? {
                0 => Ok(ClientMsg::Request(request(d)?)),
                t => Err(bad_tag(d, "client message", t)),
            },
        )
    }
}

impl Reply {
    /// The encoding sent to a client.
    pub fn encode(&self) -> Bytes {
        let mut out = vec![REPLY_FORMAT_VERSION];
        put_u64(&mut out, self.client);
        put_u64(&mut out, self.seq);
        put_outcome(&mut out, &self.outcome);
        Bytes::from(out)
    }

    /// Reads what a server answered.
    pub fn decode(bytes: &Bytes) -> Result<Reply, CodecError> {
        decode_top(bytes, "reply", 1..=REPLY_FORMAT_VERSION, |d, version| {
            Ok(Reply {
                client: d.u64("client id")?,
                seq: d.u64("request seq")?,
                outcome: outcome(
                    d,
                    PairFormat {
                        lease: version >= 2,
                    },
                )?,
            })
        })
    }
}

mod auth;
mod later;

pub(crate) use auth::{get_auth, put_auth};

pub(crate) use later::{alarm_kind, alarm_tag};

#[cfg(test)]
pub(crate) mod tests;
