//! The intermediate record format: a map output partition is a sequence of
//! `(key, value)` records sorted by key (bytewise), each written as
//! `varint(key length) key varint(value length) value` (LEB128 varints).
//! Keys and values are arbitrary bytes.
//!
//! Readers check every length against [`RECORD_BYTES_MAX`] and report a
//! record cut short by the end of the stream as [`RecordError::Truncated`],
//! so a corrupt file is an error naming its offset, never a panic or a
//! giant allocation.

use std::io::{self, BufRead, Write};

/// The largest key or value a record may hold.
pub const RECORD_BYTES_MAX: u64 = 1 << 30;

/// A record stream that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The underlying reader failed.
    #[error("read error at byte {offset}: {source}")]
    Io {
        /// Where in the stream.
        offset: u64,
        /// The I/O error.
        source: io::Error,
    },
    /// The stream ended inside a record.
    #[error("truncated record at byte {offset}")]
    Truncated {
        /// Where the record started.
        offset: u64,
    },
    /// A length is larger than [`RECORD_BYTES_MAX`] or does not fit a varint.
    #[error("corrupt record length at byte {offset}")]
    BadLength {
        /// Where the length started.
        offset: u64,
    },
}

/// Appends `n` as a LEB128 varint.
fn put_varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// Encodes one record into `buf`.
pub fn encode(buf: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    put_varint(buf, key.len() as u64);
    buf.extend_from_slice(key);
    put_varint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

/// Writes one record; returns the bytes written.
pub fn write<W: Write>(w: &mut W, key: &[u8], value: &[u8]) -> io::Result<u64> {
    let mut head = Vec::with_capacity(20);
    put_varint(&mut head, key.len() as u64);
    w.write_all(&head)?;
    w.write_all(key)?;
    let mut n = head.len() + key.len();
    head.clear();
    put_varint(&mut head, value.len() as u64);
    w.write_all(&head)?;
    w.write_all(value)?;
    n += head.len() + value.len();
    Ok(n as u64)
}

/// Reads records one at a time into caller-owned buffers.
#[derive(Debug)]
pub struct Reader<R> {
    inner: R,
    offset: u64,
}

impl<R: BufRead> Reader<R> {
    /// Reads from `inner`, which starts at a record boundary.
    pub fn new(inner: R) -> Self {
        Reader { inner, offset: 0 }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next record into `key` and `value` (cleared first). Returns
    /// `false` at a clean end of stream.
    pub fn next_into(
        &mut self,
        key: &mut Vec<u8>,
        value: &mut Vec<u8>,
    ) -> Result<bool, RecordError> {
        let start = self.offset;
        let Some(klen) = self.varint(true)? else {
            return Ok(false);
        };
        self.bytes(klen, key, start)?;
        let Some(vlen) = self.varint(false)? else {
            return Err(RecordError::Truncated { offset: start });
        };
        self.bytes(vlen, value, start)?;
        Ok(true)
    }

    /// Reads a varint; `None` at the end of the stream before its first byte
    /// when `eof_ok`.
    fn varint(&mut self, eof_ok: bool) -> Result<Option<u64>, RecordError> {
        let start = self.offset;
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8];
            match self.inner.read_exact(&mut byte) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    if shift == 0 && eof_ok {
                        return Ok(None);
                    }
                    return Err(RecordError::Truncated { offset: start });
                }
                Err(source) => {
                    return Err(RecordError::Io {
                        offset: start,
                        source,
                    });
                }
            }
            self.offset += 1;
            n |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                if n > RECORD_BYTES_MAX {
                    return Err(RecordError::BadLength { offset: start });
                }
                return Ok(Some(n));
            }
        }
        Err(RecordError::BadLength { offset: start })
    }

    fn bytes(&mut self, len: u64, out: &mut Vec<u8>, start: u64) -> Result<(), RecordError> {
        out.clear();
        let got = (&mut self.inner)
            .take(len)
            .read_to_end(out)
            .map_err(|source| RecordError::Io {
                offset: start,
                source,
            })?;
        self.offset += got as u64;
        if (got as u64) < len {
            return Err(RecordError::Truncated { offset: start });
        }
        Ok(())
    }
}

use std::io::Read as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        encode(&mut buf, b"key", b"value");
        encode(&mut buf, b"", &[7u8; 300]);
        let mut w = Vec::new();
        assert_eq!(write(&mut w, b"key", b"value").unwrap(), 10);
        assert_eq!(&buf[..10], &w[..]);
        let mut r = Reader::new(&buf[..]);
        let (mut k, mut v) = (Vec::new(), Vec::new());
        assert!(r.next_into(&mut k, &mut v).unwrap());
        assert_eq!((&k[..], &v[..]), (&b"key"[..], &b"value"[..]));
        assert!(r.next_into(&mut k, &mut v).unwrap());
        assert_eq!((k.len(), v.len()), (0, 300));
        assert!(!r.next_into(&mut k, &mut v).unwrap());
    }

    #[test]
    fn a_cut_record_is_reported_with_its_offset() {
        let mut buf = Vec::new();
        encode(&mut buf, b"a", b"b");
        encode(&mut buf, b"key", b"value");
        buf.truncate(buf.len() - 2);
        let mut r = Reader::new(&buf[..]);
        let (mut k, mut v) = (Vec::new(), Vec::new());
        assert!(r.next_into(&mut k, &mut v).unwrap());
        let err = r.next_into(&mut k, &mut v).unwrap_err();
        assert!(matches!(err, RecordError::Truncated { offset: 4 }), "{err}");
    }

    #[test]
    fn a_huge_length_is_rejected_before_allocating() {
        let buf = [0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        let err = Reader::new(&buf[..]).next_into(&mut Vec::new(), &mut Vec::new());
        assert!(matches!(err, Err(RecordError::BadLength { offset: 0 })));
    }
}
