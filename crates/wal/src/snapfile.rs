//! Snapshot files: one per saved snapshot, named by group and by the LSN of
//! the record that saved it, so a name is never reused for other bytes.
//!
//! Layout (little-endian): magic `FLOTSNP\0`, version u32, group u64, file
//! LSN u64, meta length u32, data length u64, the encoded `SnapshotMeta`,
//! the data, then a CRC32C of everything before it.
//!
//! Invariant: a snapshot file is complete and durable (written to a
//! temporary name, fsynced, renamed, directory fsynced) before the record
//! that names it is written to the log, so a durable record never names a
//! missing or partial file.

use bytes::Bytes;
use flotilla_raft::codec::{Decode, Encode};
use flotilla_raft::{Snapshot, SnapshotMeta};

use crate::error::Corruption;
use crate::format::{FORMAT_VERSION, HeaderError, le_u32, le_u64};
use crate::ids::{GroupId, Lsn};

/// The first 8 bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"FLOTSNP\0";
/// The bytes before the encoded meta: magic, version, group, file LSN,
/// meta length, data length.
pub const HEAD_LEN: usize = 40;
const CRC_LEN: usize = 4;

/// The file name of a group's snapshot saved at `file`.
pub fn file_name(group: GroupId, file: Lsn) -> String {
    format!("snap-{:016x}-{:016x}.snap", group.0, file.0)
}

/// Parses a name made by [`file_name`].
pub fn parse_name(name: &str) -> Option<(GroupId, Lsn)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (g, l) = rest.split_once('-')?;
    if g.len() != 16 || l.len() != 16 {
        return None;
    }
    let g = u64::from_str_radix(g, 16).ok()?;
    let l = u64::from_str_radix(l, 16).ok()?;
    Some((GroupId(g), Lsn(l)))
}

/// The file's bytes before the data, and the checksum that follows the
/// data (so the data, possibly large, is written without a copy).
pub fn encode(group: GroupId, file: Lsn, snap: &Snapshot) -> (Vec<u8>, [u8; CRC_LEN]) {
    let meta = snap.meta.to_bytes();
    let mut head = Vec::with_capacity(HEAD_LEN + meta.len());
    head.extend_from_slice(&SNAPSHOT_MAGIC);
    head.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    head.extend_from_slice(&group.0.to_le_bytes());
    head.extend_from_slice(&file.0.to_le_bytes());
    head.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    head.extend_from_slice(&(snap.data.len() as u64).to_le_bytes());
    head.extend_from_slice(&meta);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head), &snap.data);
    (head, crc.to_le_bytes())
}

/// Reads and checks a whole snapshot file: the group and LSN it says it
/// belongs to, and the snapshot.
pub fn decode(bytes: &Bytes) -> Result<(GroupId, Lsn, Snapshot), HeaderError> {
    let corrupt = |at: usize, what| HeaderError::Corrupt(at as u64, what);
    if bytes.len() < HEAD_LEN + CRC_LEN {
        let what = Corruption::Truncated {
            needed: (HEAD_LEN + CRC_LEN) as u64,
            available: bytes.len() as u64,
        };
        return Err(corrupt(0, what));
    }
    if bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(0, Corruption::BadMagic));
    }
    let version = le_u32(&bytes[8..12]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let meta_len = u64::from(le_u32(&bytes[28..32]));
    let data_len = le_u64(&bytes[32..40]);
    let total = (HEAD_LEN as u64 + CRC_LEN as u64)
        .checked_add(meta_len)
        .and_then(|t| t.checked_add(data_len));
    if total != Some(bytes.len() as u64) {
        let what = Corruption::Truncated {
            needed: total.unwrap_or(u64::MAX),
            available: bytes.len() as u64,
        };
        return Err(corrupt(28, what));
    }
    let body_end = bytes.len() - CRC_LEN;
    if crc32c::crc32c(&bytes[..body_end]) != le_u32(&bytes[body_end..]) {
        return Err(corrupt(0, Corruption::BadChecksum));
    }
    let meta_end = HEAD_LEN + meta_len as usize;
    let meta = SnapshotMeta::from_bytes(&bytes.slice(HEAD_LEN..meta_end))
        .map_err(|e| corrupt(HEAD_LEN, Corruption::Decode(e)))?;
    let snapshot = Snapshot {
        meta,
        data: bytes.slice(meta_end..body_end),
    };
    Ok((
        GroupId(le_u64(&bytes[12..20])),
        Lsn(le_u64(&bytes[20..28])),
        snapshot,
    ))
}

/// Where a file's data lies, from its first [`HEAD_LEN`] bytes: the
/// data's offset in the file and its length. Checks the magic and the
/// version only (the checksum covers the whole file): what reading a
/// range of a file already checked whole needs.
pub fn data_extent(head: &[u8; HEAD_LEN]) -> Result<(u64, u64), HeaderError> {
    if head[0..8] != SNAPSHOT_MAGIC {
        return Err(HeaderError::Corrupt(0, Corruption::BadMagic));
    }
    let version = le_u32(&head[8..12]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let meta_len = u64::from(le_u32(&head[28..32]));
    Ok((HEAD_LEN as u64 + meta_len, le_u64(&head[32..40])))
}

#[cfg(test)]
mod tests {
    use flotilla_raft::{ConfState, LogIndex, NodeId, Term};

    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index: LogIndex(10),
                term: Term(2),
                conf_state: ConfState::with_voters([NodeId(1), NodeId(2)]),
            },
            data: Bytes::from_static(b"state machine bytes"),
        }
    }

    fn file_bytes() -> Vec<u8> {
        let (head, crc) = encode(GroupId(3), Lsn(500), &sample());
        [head, sample().data.to_vec(), crc.to_vec()].concat()
    }

    #[test]
    fn snapshot_file_round_trips() {
        let got = decode(&Bytes::from(file_bytes())).unwrap();
        assert_eq!(got, (GroupId(3), Lsn(500), sample()));
        let name = file_name(GroupId(3), Lsn(500));
        assert_eq!(parse_name(&name), Some((GroupId(3), Lsn(500))));
        assert_eq!(parse_name("snap-3-500.snap"), None);
    }

    #[test]
    fn the_data_extent_points_at_the_data() {
        let bytes = file_bytes();
        let head: &[u8; HEAD_LEN] = bytes[..HEAD_LEN].try_into().unwrap();
        let (at, len) = data_extent(head).unwrap();
        let data = &bytes[at as usize..(at + len) as usize];
        assert_eq!(data, &sample().data[..]);
        let mut bad = *head;
        bad[0] ^= 1;
        assert!(matches!(data_extent(&bad), Err(HeaderError::Corrupt(0, _))));
        let mut old = *head;
        old[8] ^= 1;
        assert!(matches!(data_extent(&old), Err(HeaderError::Version(_))));
    }

    #[test]
    fn every_flip_and_cut_is_refused() {
        let good = file_bytes();
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            assert!(decode(&Bytes::from(bad)).is_err(), "flip at {at}");
            let cut = Bytes::copy_from_slice(&good[..at]);
            assert!(decode(&cut).is_err(), "cut at {at}");
        }
    }
}
