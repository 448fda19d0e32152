//! Record bodies: what one framed record says about one group.
//!
//! Body layout: a type byte, the group id (varint), then the payload in
//! `flotilla_raft::codec`'s encoding:
//!
//! | type | record     | payload                                          |
//! |------|------------|--------------------------------------------------|
//! | 1    | Entries    | count, then each `Entry` (consecutive indexes)   |
//! | 2    | HardState  | a `HardState`                                    |
//! | 3    | Snapshot   | file LSN, keep-log flag, a `SnapshotMeta`        |
//! | 4    | Clear      | nothing: the group is removed                    |
//!
//! Replaying records in order (the engine's `GroupLog`) rebuilds each
//! group's state. An Entries record replaces the log from its first index
//! on (the Storage contract's rule 2). A Snapshot record carries the
//! decision its writer took under rule 3 (keep the suffix or drop the log),
//! so replay never needs the term of an entry whose segment was deleted.

use bytes::Bytes;
use flotilla_raft::codec::{Decode, Decoder, Encode, put_u64};
use flotilla_raft::{Entry, HardState, SnapshotMeta};

use crate::error::Corruption;
use crate::format::{begin_frame, end_frame};
use crate::ids::{GroupId, Lsn};
use crate::stream::Sink;

const ENTRIES: u8 = 1;
const HARD_STATE: u8 = 2;
const SNAPSHOT: u8 = 3;
const CLEAR: u8 = 4;

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Entries appended to a group's log (replacing any from the first on).
    Entries {
        /// The group.
        group: GroupId,
        /// Consecutive entries, at least one.
        entries: Vec<Entry>,
    },
    /// A group's hard state.
    HardState {
        /// The group.
        group: GroupId,
        /// The state.
        hard_state: HardState,
    },
    /// A group's snapshot, stored in the file named by `file`.
    Snapshot {
        /// The group.
        group: GroupId,
        /// The LSN that names the snapshot's file.
        file: Lsn,
        /// Whether the log after the snapshot's index was kept (rule 3).
        keep_log: bool,
        /// What the snapshot covers.
        meta: SnapshotMeta,
    },
    /// The group was removed from this node.
    Clear {
        /// The group.
        group: GroupId,
    },
}

fn frame<S: Sink + ?Sized>(out: &mut S, kind: u8, group: GroupId, payload: impl FnOnce(&mut S)) {
    let start = begin_frame(out);
    out.buf().push(kind);
    put_u64(out.buf(), group.0);
    payload(out);
    end_frame(out, start);
}

/// Appends an Entries record. Large payloads go to the sink by reference
/// (see [`Sink::share`]); the bytes are those of `Entry::encode`.
pub fn put_entries<S: Sink + ?Sized>(out: &mut S, group: GroupId, entries: &[Entry]) {
    frame(out, ENTRIES, group, |out| {
        put_u64(out.buf(), entries.len() as u64);
        for e in entries {
            let head = Entry {
                term: e.term,
                index: e.index,
                kind: e.kind,
                data: Bytes::new(),
            };
            head.encode(out.buf());
            // Drop the empty payload's length (one zero byte), then write
            // the real length and share the payload.
            out.buf().pop();
            put_u64(out.buf(), e.data.len() as u64);
            out.share(&e.data);
        }
    });
}

/// Appends a HardState record.
pub fn put_hard_state<S: Sink + ?Sized>(out: &mut S, group: GroupId, hard_state: &HardState) {
    frame(out, HARD_STATE, group, |out| hard_state.encode(out.buf()));
}

/// Appends a Snapshot record.
pub fn put_snapshot<S: Sink + ?Sized>(
    out: &mut S,
    group: GroupId,
    file: Lsn,
    keep_log: bool,
    meta: &SnapshotMeta,
) {
    frame(out, SNAPSHOT, group, |out| {
        put_u64(out.buf(), file.0);
        out.buf().push(u8::from(keep_log));
        meta.encode(out.buf());
    });
}

/// Appends a Clear record.
pub fn put_clear<S: Sink + ?Sized>(out: &mut S, group: GroupId) {
    frame(out, CLEAR, group, |_| {});
}

/// An upper bound of the bytes an Entries record of `entries` takes.
pub fn entries_record_len(entries: &[Entry]) -> u64 {
    let per_entry: u64 = entries.iter().map(|e| e.data.len() as u64 + 32).sum();
    crate::format::frame_len(1 + 10 + 10 + per_entry)
}

impl Record {
    /// The group the record is about.
    pub fn group(&self) -> GroupId {
        match self {
            Record::Entries { group, .. }
            | Record::HardState { group, .. }
            | Record::Snapshot { group, .. }
            | Record::Clear { group } => *group,
        }
    }

    /// Decodes a body whose checksum passed. Entry data are zero-copy
    /// slices of `body`.
    pub fn decode(body: Bytes) -> Result<Record, Corruption> {
        let mut d = Decoder::new(body);
        let kind = d.u8("record type")?;
        let group = GroupId(d.u64("record group")?);
        let record = match kind {
            ENTRIES => decode_entries(&mut d, group)?,
            HARD_STATE => Record::HardState {
                group,
                hard_state: HardState::decode(&mut d)?,
            },
            SNAPSHOT => Record::Snapshot {
                group,
                file: Lsn(d.u64("snapshot file")?),
                keep_log: d.bool("snapshot keep-log flag")?,
                meta: SnapshotMeta::decode(&mut d)?,
            },
            CLEAR => Record::Clear { group },
            other => return Err(Corruption::UnknownRecord(other)),
        };
        d.finish("record")?;
        Ok(record)
    }
}

fn decode_entries(d: &mut Decoder, group: GroupId) -> Result<Record, Corruption> {
    let n = d.count("entry count")?;
    let mut entries: Vec<Entry> = Vec::with_capacity(n);
    for _ in 0..n {
        let e = Entry::decode(d)?;
        let follows = match entries.last() {
            None => e.index.0 >= 1,
            Some(prev) => prev.index.0.checked_add(1) == Some(e.index.0),
        };
        if !follows {
            return Err(Corruption::BadEntries);
        }
        entries.push(e);
    }
    if entries.is_empty() {
        return Err(Corruption::BadEntries);
    }
    Ok(Record::Entries { group, entries })
}

#[cfg(test)]
mod tests {
    use flotilla_raft::storage::conformance::entry;
    use flotilla_raft::{ConfState, LogIndex, NodeId, Term};

    use super::*;
    use crate::format::{FRAME_HEADER_LEN, check_frame};

    fn body_of(buf: &[u8]) -> Bytes {
        let len = check_frame(buf, 0).unwrap();
        Bytes::copy_from_slice(&buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len])
    }

    #[test]
    fn every_record_round_trips() {
        let g = GroupId(7);
        let meta = SnapshotMeta {
            index: LogIndex(9),
            term: Term(2),
            conf_state: ConfState::with_voters([NodeId(1)]),
        };
        let hs = HardState {
            term: Term(3),
            vote: Some(NodeId(1)),
            commit: LogIndex(2),
        };
        let entries = vec![entry(1, 4), entry(1, 5)];
        let cases: Vec<(Record, Vec<u8>)> = vec![
            (
                Record::Entries {
                    group: g,
                    entries: entries.clone(),
                },
                {
                    let mut b = vec![];
                    put_entries(&mut b, g, &entries);
                    b
                },
            ),
            (
                Record::HardState {
                    group: g,
                    hard_state: hs,
                },
                {
                    let mut b = vec![];
                    put_hard_state(&mut b, g, &hs);
                    b
                },
            ),
            (
                Record::Snapshot {
                    group: g,
                    file: Lsn(77),
                    keep_log: true,
                    meta: meta.clone(),
                },
                {
                    let mut b = vec![];
                    put_snapshot(&mut b, g, Lsn(77), true, &meta);
                    b
                },
            ),
            (Record::Clear { group: g }, {
                let mut b = vec![];
                put_clear(&mut b, g);
                b
            }),
        ];
        for (record, bytes) in cases {
            assert!(bytes.len() as u64 <= entries_record_len(&entries) + 64);
            assert_eq!(Record::decode(body_of(&bytes)).unwrap(), record);
        }
    }

    #[test]
    fn shared_payloads_encode_exactly_as_entry_encode() {
        let big = Entry {
            data: Bytes::from(vec![3u8; 5000]),
            ..entry(2, 8)
        };
        let entries = vec![entry(2, 7), big, entry(2, 9)];
        let mut stream = crate::stream::Stream::default();
        put_entries(&mut stream, GroupId(4), &entries);
        let mut plain = Vec::new();
        let at = begin_frame(&mut plain);
        plain.push(ENTRIES);
        put_u64(&mut plain, 4);
        put_u64(&mut plain, 3);
        for e in &entries {
            e.encode(&mut plain);
        }
        end_frame(&mut plain, at);
        assert_eq!(stream.to_vec(), plain);
    }

    #[test]
    fn non_consecutive_entries_are_refused() {
        let mut b = vec![];
        put_entries(&mut b, GroupId(1), &[entry(1, 4), entry(1, 6)]);
        assert_eq!(Record::decode(body_of(&b)), Err(Corruption::BadEntries));
    }
}
