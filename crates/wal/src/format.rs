//! The bytes on disk: segment headers, record frames and the torn-write
//! test. Record bodies are in [`crate::record`], snapshot files in
//! [`crate::snapfile`]; `docs/durability.md` draws the layouts.
//!
//! Everything read here is untrusted (STYLE.md practice 11): every length
//! is checked against what remains and every checksum before anything is
//! decoded, and a failure is a [`Corruption`] with its offset, never a panic.
//!
//! Invariant: a frame's header carries its own checksum, so a length that
//! passes it is the length that was written; a record is accepted only if
//! both checksums match.

use crate::error::Corruption;
use crate::ids::Lsn;
use crate::stream::Sink;

/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FLOTWAL\0";
/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes of a record frame's header: length, body CRC, header CRC.
pub const FRAME_HEADER_LEN: usize = 12;
/// The largest record body accepted (a single `append` call is one record).
pub const RECORD_BODY_MAX: u64 = 1 << 30;
/// The unit a disk writes atomically; the torn-write test works in it.
pub const SECTOR_BYTES: usize = 512;

/// Why a file header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// A version this build does not read.
    Version(u32),
    /// Anything else, with the offset of the bad bytes.
    Corrupt(u64, Corruption),
}

/// The header of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's number (also in its file name).
    pub seq: u64,
    /// The LSN of the segment's first byte.
    pub base: Lsn,
}

impl SegmentHeader {
    /// The header's bytes: magic, version, seq, base LSN, CRC32C of the rest.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        h[0..8].copy_from_slice(&SEGMENT_MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..20].copy_from_slice(&self.seq.to_le_bytes());
        h[20..28].copy_from_slice(&self.base.0.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Reads a header from the start of `bytes`. The magic and version come
    /// first and keep their place in every version, so a file of another
    /// version is named as such rather than called corrupt.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let Some(h) = bytes.get(..SEGMENT_HEADER_LEN) else {
            return Err(HeaderError::Corrupt(
                0,
                Corruption::Truncated {
                    needed: SEGMENT_HEADER_LEN as u64,
                    available: bytes.len() as u64,
                },
            ));
        };
        if h[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::Corrupt(0, Corruption::BadMagic));
        }
        let version = le_u32(&h[8..12]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        if crc32c::crc32c(&h[0..28]) != le_u32(&h[28..32]) {
            return Err(HeaderError::Corrupt(0, Corruption::BadFileHeader));
        }
        Ok(SegmentHeader {
            seq: le_u64(&h[12..20]),
            base: Lsn(le_u64(&h[20..28])),
        })
    }
}

pub(crate) fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Where a frame begins: its owned offset (to patch the header) and its
/// logical offset (to measure the body).
#[derive(Debug, Clone, Copy)]
pub struct FrameStart {
    at: usize,
    logical: usize,
}

/// Starts a frame at the end of `out`; write the body after it, then call
/// [`end_frame`] with the returned position.
pub fn begin_frame<S: Sink + ?Sized>(out: &mut S) -> FrameStart {
    let logical = out.len();
    let buf = out.buf();
    let at = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    FrameStart { at, logical }
}

/// Fills in the header of the frame begun at `start`: the body's length,
/// its CRC32C, and a CRC32C of those 8 bytes.
pub fn end_frame<S: Sink + ?Sized>(out: &mut S, start: FrameStart) {
    let len = (out.len() - start.logical - FRAME_HEADER_LEN) as u32;
    let body_crc = out.crc_from(start.at + FRAME_HEADER_LEN);
    let at = start.at;
    let buf = out.buf();
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    buf[at + 4..at + 8].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&buf[at..at + 8]);
    buf[at + 8..at + 12].copy_from_slice(&header_crc.to_le_bytes());
}

/// The bytes a frame with a body of `body` bytes takes.
pub fn frame_len(body: u64) -> u64 {
    FRAME_HEADER_LEN as u64 + body
}

/// Checks the frame at `at` in `buf` (a whole file, so offsets are file
/// offsets) and returns its body's length.
pub fn check_frame(buf: &[u8], at: usize) -> Result<usize, Corruption> {
    let available = (buf.len() - at.min(buf.len())) as u64;
    let Some(h) = buf.get(at..at + FRAME_HEADER_LEN) else {
        return Err(Corruption::Truncated {
            needed: FRAME_HEADER_LEN as u64,
            available,
        });
    };
    if crc32c::crc32c(&h[0..8]) != le_u32(&h[8..12]) {
        return Err(Corruption::BadRecordHeader);
    }
    let len = u64::from(le_u32(&h[0..4]));
    if len == 0 || len > RECORD_BODY_MAX {
        return Err(Corruption::BadLength { len });
    }
    if frame_len(len) > available {
        return Err(Corruption::Truncated {
            needed: frame_len(len),
            available,
        });
    }
    let body = &buf[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len as usize];
    if crc32c::crc32c(body) != le_u32(&h[4..8]) {
        return Err(Corruption::BadChecksum);
    }
    Ok(len as usize)
}

/// Whether the bad frame at `at` (refused with `err`) looks like a write
/// that a crash interrupted rather than damage to written data: the file
/// ends inside it, or some sector's share of it reads as zeros (a block the
/// file system allocated but whose data never reached the disk). This is
/// etcd's torn-entry rule; a header checksum keeps a flipped length from
/// passing for a short file. Only the last segment's tail may be torn.
pub fn looks_torn(buf: &[u8], at: usize, err: &Corruption) -> bool {
    match err {
        Corruption::Truncated { .. } => true,
        Corruption::BadRecordHeader => has_zero_sector_share(buf, at, at + FRAME_HEADER_LEN),
        Corruption::BadChecksum => {
            let len = u64::from(le_u32(&buf[at..at + 4]));
            has_zero_sector_share(buf, at, at + frame_len(len) as usize)
        }
        _ => false,
    }
}

/// Whether `buf[start..end]`, cut at sector boundaries, has a piece that is
/// all zeros.
fn has_zero_sector_share(buf: &[u8], start: usize, end: usize) -> bool {
    let end = end.min(buf.len());
    let mut at = start;
    while at < end {
        let next = ((at / SECTOR_BYTES + 1) * SECTOR_BYTES).min(end);
        if buf[at..next].iter().all(|&b| b == 0) {
            return true;
        }
        at = next;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let at = begin_frame(&mut out);
        out.extend_from_slice(body);
        end_frame(&mut out, at);
        out
    }

    #[test]
    fn frame_round_trips() {
        let buf = framed(b"hello");
        assert_eq!(check_frame(&buf, 0), Ok(5));
    }

    #[test]
    fn flipped_length_fails_the_header_checksum_not_the_length_check() {
        let mut buf = framed(b"hello");
        buf[2] ^= 0x10;
        assert_eq!(check_frame(&buf, 0), Err(Corruption::BadRecordHeader));
        assert!(!looks_torn(&buf, 0, &Corruption::BadRecordHeader));
    }

    #[test]
    fn zero_filled_tail_is_torn_but_a_flip_is_not() {
        let mut buf = framed(&[7u8; 1000]);
        buf[512..].fill(0);
        let err = check_frame(&buf, 0).unwrap_err();
        assert_eq!(err, Corruption::BadChecksum);
        assert!(looks_torn(&buf, 0, &err));
        let mut buf = framed(&[7u8; 1000]);
        buf[600] ^= 1;
        let err = check_frame(&buf, 0).unwrap_err();
        assert!(!looks_torn(&buf, 0, &err));
    }

    #[test]
    fn segment_header_names_other_versions() {
        let h = SegmentHeader {
            seq: 3,
            base: Lsn(99),
        };
        let mut bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        bytes[8] = 2;
        assert_eq!(SegmentHeader::decode(&bytes), Err(HeaderError::Version(2)));
    }
}
