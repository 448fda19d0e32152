//! A compact binary encoding for everything Raft puts on the wire or on
//! disk: messages, entries, hard state, snapshot metadata, conf changes.
//!
//! Format: unsigned integers are LEB128 varints, byte strings are a varint
//! length then the bytes, sequences a varint count then the items, enums a
//! one-byte tag. It is as compact as Go's gob for the course's byte limits,
//! and needs no schema compiler.
//!
//! Decoding is a gateway (STYLE.md practice 11): bytes from a peer or a file
//! are untrusted, so every length is checked against what remains before
//! anything is allocated, every tag is checked, and every failure is a
//! [`DecodeError`] naming the field and the byte offset, never a panic.
//! Byte-string fields are zero-copy slices of the input [`Bytes`].

use bytes::Bytes;
use thiserror::Error;

use crate::confchange::{ConfChange, ConfChangeOp};
use crate::message::{
    Append, AppendResp, Message, MessageBody, RejectHint, SnapshotChunk, VoteRequest,
};
use crate::types::{ConfState, Entry, EntryKind, HardState, LogIndex, NodeId, SnapshotMeta, Term};

/// Why bytes could not be decoded.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("truncated input: {what} at byte {offset} needs more bytes")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// A varint longer than 10 bytes or overflowing 64 bits.
    #[error("malformed varint for {what} at byte {offset}")]
    BadVarint {
        /// The field being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// An enum tag or flag byte with no meaning.
    #[error("invalid {what} tag {tag} at byte {offset}")]
    BadTag {
        /// The field being read.
        what: &'static str,
        /// The value found.
        tag: u64,
        /// Where it was.
        offset: usize,
    },
    /// Bytes left over after a complete value.
    #[error("{extra} unexpected trailing bytes after a complete {what}")]
    Trailing {
        /// The value decoded.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
}

/// A type with a binary encoding.
pub trait Encode {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The encoding as a fresh buffer.
    fn to_bytes(&self) -> Bytes {
        let mut out = Vec::new();
        self.encode(&mut out);
        Bytes::from(out)
    }
}

/// A type that can be read back from its encoding.
pub trait Decode: Sized {
    /// Reads one value.
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError>;

    /// Reads exactly one value from `bytes`, rejecting trailing bytes.
    fn from_bytes(bytes: &Bytes) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(bytes.clone());
        let v = Self::decode(&mut d)?;
        d.finish(std::any::type_name::<Self>())?;
        Ok(v)
    }
}

/// Appends `v` as a LEB128 varint.
pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// The number of bytes `put_u64(v)` writes.
pub fn u64_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A cursor over untrusted bytes.
#[derive(Debug)]
pub struct Decoder {
    buf: Bytes,
    pos: usize,
}

impl Decoder {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: Bytes) -> Decoder {
        Decoder { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The current offset.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { what, extra }),
        }
    }

    /// Reads a varint.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DecodeError::Truncated {
                    what,
                    offset: start,
                });
            };
            self.pos += 1;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::BadVarint {
                    what,
                    offset: start,
                });
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint {
            what,
            offset: start,
        })
    }

    /// Reads one raw byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated {
            what,
            offset: self.pos,
        })?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads a boolean byte (0 or 1).
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::BadTag {
                what,
                tag: u64::from(tag),
                offset,
            }),
        }
    }

    /// Reads a length-prefixed byte string as a slice of the input.
    pub fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let offset = self.pos;
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(DecodeError::Truncated { what, offset });
        }
        let len = len as usize;
        let out = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(out)
    }

    /// Reads a sequence count, checked against the bytes left (every item
    /// takes at least one byte), so a forged count cannot make us allocate.
    pub fn count(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let n = self.u64(what)?;
        if n > self.remaining() as u64 {
            return Err(DecodeError::Truncated { what, offset });
        }
        Ok(n as usize)
    }

    fn tag_error(&self, what: &'static str, tag: u64) -> DecodeError {
        DecodeError::BadTag {
            what,
            tag,
            offset: self.pos.saturating_sub(1),
        }
    }
}

fn put_ids(out: &mut Vec<u8>, ids: &[NodeId]) {
    put_u64(out, ids.len() as u64);
    for id in ids {
        put_u64(out, id.0);
    }
}

fn get_ids(d: &mut Decoder, what: &'static str) -> Result<Vec<NodeId>, DecodeError> {
    let n = d.count(what)?;
    (0..n).map(|_| d.u64(what).map(NodeId)).collect()
}

impl Encode for Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.term.0);
        put_u64(out, self.index.0);
        out.push(match self.kind {
            EntryKind::Noop => 0,
            EntryKind::Command => 1,
            EntryKind::ConfChange => 2,
        });
        put_bytes(out, &self.data);
    }
}

impl Decode for Entry {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        let term = Term(d.u64("entry term")?);
        let index = LogIndex(d.u64("entry index")?);
        let kind = match d.u8("entry kind")? {
            0 => EntryKind::Noop,
            1 => EntryKind::Command,
            2 => EntryKind::ConfChange,
            t => return Err(d.tag_error("entry kind", u64::from(t))),
        };
        let data = d.bytes("entry data")?;
        Ok(Entry {
            term,
            index,
            kind,
            data,
        })
    }
}

impl Encode for HardState {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.term.0);
        put_u64(out, self.vote.map_or(0, |v| v.0));
        put_u64(out, self.commit.0);
    }
}

impl Decode for HardState {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        let term = Term(d.u64("hard state term")?);
        let vote = match d.u64("hard state vote")? {
            0 => None,
            v => Some(NodeId(v)),
        };
        let commit = LogIndex(d.u64("hard state commit")?);
        Ok(HardState { term, vote, commit })
    }
}

impl Encode for ConfState {
    fn encode(&self, out: &mut Vec<u8>) {
        put_ids(out, &self.voters);
        put_ids(out, &self.outgoing);
        put_ids(out, &self.learners);
    }
}

impl Decode for ConfState {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        Ok(ConfState {
            voters: get_ids(d, "conf voters")?,
            outgoing: get_ids(d, "conf outgoing voters")?,
            learners: get_ids(d, "conf learners")?,
        })
    }
}

impl Encode for SnapshotMeta {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.index.0);
        put_u64(out, self.term.0);
        self.conf_state.encode(out);
    }
}

impl Decode for SnapshotMeta {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        Ok(SnapshotMeta {
            index: LogIndex(d.u64("snapshot index")?),
            term: Term(d.u64("snapshot term")?),
            conf_state: ConfState::decode(d)?,
        })
    }
}

impl Encode for ConfChange {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.ops.len() as u64);
        for op in &self.ops {
            let (tag, id) = match *op {
                ConfChangeOp::AddVoter(id) => (0, id),
                ConfChangeOp::AddLearner(id) => (1, id),
                ConfChangeOp::Remove(id) => (2, id),
            };
            out.push(tag);
            put_u64(out, id.0);
        }
        // The context is optional and trailing, so entries written before
        // it existed still decode (with an empty context).
        if !self.context.is_empty() {
            put_bytes(out, &self.context);
        }
    }
}

impl Decode for ConfChange {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        let n = d.count("conf change ops")?;
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = d.u8("conf change op")?;
            let id = NodeId(d.u64("conf change node")?);
            ops.push(match tag {
                0 => ConfChangeOp::AddVoter(id),
                1 => ConfChangeOp::AddLearner(id),
                2 => ConfChangeOp::Remove(id),
                t => return Err(d.tag_error("conf change op", u64::from(t))),
            });
        }
        let context = if d.remaining() > 0 {
            d.bytes("conf change context")?
        } else {
            Bytes::new()
        };
        Ok(ConfChange { ops, context })
    }
}

fn put_opt_index(out: &mut Vec<u8>, v: Option<LogIndex>) {
    match v {
        None => out.push(0),
        Some(i) => {
            out.push(1);
            put_u64(out, i.0);
        }
    }
}

impl Encode for Message {
    fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.from.0);
        put_u64(out, self.to.0);
        put_u64(out, self.term.0);
        match &self.body {
            MessageBody::Append(a) => {
                out.push(0);
                put_u64(out, a.prev_index.0);
                put_u64(out, a.prev_term.0);
                put_u64(out, a.commit.0);
                put_u64(out, a.entries.len() as u64);
                for e in &a.entries {
                    e.encode(out);
                }
            }
            MessageBody::AppendResp(r) => {
                out.push(1);
                put_u64(out, r.index.0);
                match r.reject {
                    None => out.push(0),
                    Some(h) => {
                        out.push(1);
                        put_u64(out, h.index.0);
                        put_u64(out, h.term.0);
                    }
                }
            }
            MessageBody::Heartbeat { commit, read_seq } => {
                out.push(2);
                put_u64(out, commit.0);
                put_u64(out, *read_seq);
            }
            MessageBody::HeartbeatResp { read_seq } => {
                out.push(3);
                put_u64(out, *read_seq);
            }
            MessageBody::Vote(v) => {
                out.push(4);
                out.push(u8::from(v.pre) | (u8::from(v.transfer) << 1));
                put_u64(out, v.last_index.0);
                put_u64(out, v.last_term.0);
            }
            MessageBody::VoteResp { pre, granted } => {
                out.push(5);
                out.push(u8::from(*pre) | (u8::from(*granted) << 1));
            }
            MessageBody::Snapshot(c) => {
                out.push(6);
                c.meta.encode(out);
                put_u64(out, c.offset);
                put_u64(out, c.total_len);
                put_bytes(out, &c.data);
            }
            MessageBody::SnapshotResp { index, next_offset } => {
                out.push(7);
                put_u64(out, index.0);
                put_u64(out, *next_offset);
            }
            MessageBody::TimeoutNow => out.push(8),
            body @ (MessageBody::ReadIndex { .. }
            | MessageBody::ReadIndexResp { .. }
            | MessageBody::Propose { .. }
            | MessageBody::ProposeResp { .. }) => encode_forwarded(body, out),
        }
    }
}

/// The bodies of reads and proposals a follower forwards to the leader,
/// and of the leader's answers (tags 9 to 12).
fn encode_forwarded(body: &MessageBody, out: &mut Vec<u8>) {
    match body {
        MessageBody::ReadIndex { ctx } => {
            out.push(9);
            put_u64(out, *ctx);
        }
        MessageBody::ReadIndexResp { ctx, index } => {
            out.push(10);
            put_u64(out, *ctx);
            put_opt_index(out, *index);
        }
        MessageBody::Propose { ctx, commands } => {
            out.push(11);
            put_u64(out, *ctx);
            put_u64(out, commands.len() as u64);
            for c in commands {
                put_bytes(out, c);
            }
        }
        MessageBody::ProposeResp { ctx, first } => {
            out.push(12);
            put_u64(out, *ctx);
            put_opt_index(out, *first);
        }
        _ => debug_assert!(false, "not a forwarded request or answer: {body:?}"),
    }
}

fn flags(d: &mut Decoder, what: &'static str) -> Result<(bool, bool), DecodeError> {
    let b = d.u8(what)?;
    if b > 3 {
        return Err(d.tag_error(what, u64::from(b)));
    }
    Ok((b & 1 != 0, b & 2 != 0))
}

fn decode_append(d: &mut Decoder) -> Result<Append, DecodeError> {
    let prev_index = LogIndex(d.u64("append prev index")?);
    let prev_term = Term(d.u64("append prev term")?);
    let commit = LogIndex(d.u64("append commit")?);
    let n = d.count("append entries")?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push(Entry::decode(d)?);
    }
    Ok(Append {
        prev_index,
        prev_term,
        entries,
        commit,
    })
}

fn decode_body(d: &mut Decoder) -> Result<MessageBody, DecodeError> {
    Ok(match d.u8("message kind")? {
        0 => MessageBody::Append(decode_append(d)?),
        1 => {
            let index = LogIndex(d.u64("append resp index")?);
            let reject = match d.u8("append resp reject flag")? {
                0 => None,
                1 => Some(RejectHint {
                    index: LogIndex(d.u64("reject hint index")?),
                    term: Term(d.u64("reject hint term")?),
                }),
                t => return Err(d.tag_error("append resp reject flag", u64::from(t))),
            };
            MessageBody::AppendResp(AppendResp { index, reject })
        }
        2 => MessageBody::Heartbeat {
            commit: LogIndex(d.u64("heartbeat commit")?),
            read_seq: d.u64("heartbeat read seq")?,
        },
        3 => MessageBody::HeartbeatResp {
            read_seq: d.u64("heartbeat resp read seq")?,
        },
        4 => {
            let (pre, transfer) = flags(d, "vote flags")?;
            let last_index = LogIndex(d.u64("vote last index")?);
            let last_term = Term(d.u64("vote last term")?);
            MessageBody::Vote(VoteRequest {
                pre,
                last_index,
                last_term,
                transfer,
            })
        }
        5 => {
            let (pre, granted) = flags(d, "vote resp flags")?;
            MessageBody::VoteResp { pre, granted }
        }
        6 => MessageBody::Snapshot(SnapshotChunk {
            meta: SnapshotMeta::decode(d)?,
            offset: d.u64("snapshot chunk offset")?,
            total_len: d.u64("snapshot total length")?,
            data: d.bytes("snapshot chunk data")?,
        }),
        7 => MessageBody::SnapshotResp {
            index: LogIndex(d.u64("snapshot resp index")?),
            next_offset: d.u64("snapshot resp offset")?,
        },
        8 => MessageBody::TimeoutNow,
        t @ 9..=12 => decode_forwarded(t, d)?,
        t => return Err(d.tag_error("message kind", u64::from(t))),
    })
}

/// The bodies of [`encode_forwarded`], by tag.
fn decode_forwarded(tag: u8, d: &mut Decoder) -> Result<MessageBody, DecodeError> {
    Ok(match tag {
        9 => MessageBody::ReadIndex {
            ctx: d.u64("read index ctx")?,
        },
        10 => {
            let ctx = d.u64("read index resp ctx")?;
            let index = match d.u8("read index resp flag")? {
                0 => None,
                1 => Some(LogIndex(d.u64("read index resp index")?)),
                t => return Err(d.tag_error("read index resp flag", u64::from(t))),
            };
            MessageBody::ReadIndexResp { ctx, index }
        }
        11 => {
            let ctx = d.u64("propose ctx")?;
            let n = d.count("propose commands")?;
            let commands = (0..n)
                .map(|_| d.bytes("propose command"))
                .collect::<Result<_, _>>()?;
            MessageBody::Propose { ctx, commands }
        }
        12 => {
            let ctx = d.u64("propose resp ctx")?;
            let first = match d.u8("propose resp flag")? {
                0 => None,
                1 => Some(LogIndex(d.u64("propose resp first index")?)),
                t => return Err(d.tag_error("propose resp flag", u64::from(t))),
            };
            MessageBody::ProposeResp { ctx, first }
        }
        t => return Err(d.tag_error("message kind", u64::from(t))),
    })
}

impl Decode for Message {
    fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
        let from = NodeId(d.u64("message from")?);
        let to = NodeId(d.u64("message to")?);
        let term = Term(d.u64("message term")?);
        let body = decode_body(d)?;
        Ok(Message {
            from,
            to,
            term,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_encoding() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX / 2, u64::MAX] {
            let mut out = Vec::new();
            put_u64(&mut out, v);
            assert_eq!(out.len(), u64_len(v), "length of {v}");
            let mut d = Decoder::new(Bytes::from(out));
            assert_eq!(d.u64("v").unwrap(), v);
        }
    }

    #[test]
    fn overlong_varint_is_an_error_not_a_panic() {
        let bytes = Bytes::from(vec![0xff; 11]);
        let err = Decoder::new(bytes).u64("x").unwrap_err();
        assert_eq!(
            err,
            DecodeError::BadVarint {
                what: "x",
                offset: 0
            }
        );
        let bytes = Bytes::from(vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ]);
        assert!(matches!(
            Decoder::new(bytes).u64("x"),
            Err(DecodeError::BadVarint { .. })
        ));
    }

    #[test]
    fn forged_length_is_refused_before_allocating() {
        let mut out = vec![];
        put_u64(&mut out, 1 << 40);
        let err = Decoder::new(Bytes::from(out)).bytes("payload").unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                what: "payload",
                offset: 0
            }
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let hs = HardState {
            term: Term(3),
            vote: Some(NodeId(2)),
            commit: LogIndex(9),
        };
        let mut out = hs.to_bytes().to_vec();
        out.push(0);
        let err = HardState::from_bytes(&Bytes::from(out)).unwrap_err();
        assert!(matches!(err, DecodeError::Trailing { extra: 1, .. }));
    }

    #[test]
    fn conf_change_context_is_optional_and_trailing() {
        let plain = ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(4))]);
        // Without a context the encoding is the one written before contexts
        // existed, so old log entries decode unchanged.
        assert_eq!(plain.to_bytes().as_ref(), &[1, 1, 4]);
        assert_eq!(ConfChange::from_bytes(&plain.to_bytes()).unwrap(), plain);
        let with = ConfChange {
            context: Bytes::from_static(b"4=127.0.0.1:9"),
            ..plain
        };
        assert_eq!(ConfChange::from_bytes(&with.to_bytes()).unwrap(), with);
        let mut cut = with.to_bytes().to_vec();
        cut.pop();
        assert!(matches!(
            ConfChange::from_bytes(&Bytes::from(cut)),
            Err(DecodeError::Truncated { .. })
        ));
    }
}
