//! Where records are encoded: a [`Sink`] is either a plain `Vec<u8>` or a
//! [`Stream`], which keeps large entry payloads as shared [`Bytes`] rather
//! than copying them, and hands the whole to one vectored write.
//!
//! Invariant: the logical bytes of a `Stream` are its buffer with each
//! shared payload inserted before the buffer byte at its offset; shared
//! offsets never decrease. A payload shared at offset `x` therefore comes
//! before any bytes pushed after it, so a frame begun at offset `x` never
//! includes it.

use std::io::IoSlice;

use bytes::Bytes;

/// Payloads at least this large are written in place, not copied: below
/// it, one more slice in the vectored write costs more than the copy.
pub const SHARE_MIN: usize = 1024;

/// A place to encode records into.
pub trait Sink {
    /// The owned bytes, to append to (and to patch frame headers in).
    fn buf(&mut self) -> &mut Vec<u8>;
    /// Appends `data`, by reference if the sink can.
    fn share(&mut self, data: &Bytes);
    /// The logical length: owned plus shared bytes.
    fn len(&self) -> usize;
    /// Whether nothing was written.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// CRC32C of the logical bytes from owned offset `at` to the end.
    fn crc_from(&self, at: usize) -> u32;
}

impl Sink for Vec<u8> {
    fn buf(&mut self) -> &mut Vec<u8> {
        self
    }
    fn share(&mut self, data: &Bytes) {
        self.extend_from_slice(data);
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn crc_from(&self, at: usize) -> u32 {
        crc32c::crc32c(&self[at..])
    }
}

/// Encoded records waiting to be written.
#[derive(Debug, Default)]
pub struct Stream {
    buf: Vec<u8>,
    shared: Vec<(usize, Bytes)>,
    shared_len: usize,
}

impl Sink for Stream {
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn share(&mut self, data: &Bytes) {
        if data.len() < SHARE_MIN {
            self.buf.extend_from_slice(data);
        } else {
            self.shared.push((self.buf.len(), data.clone()));
            self.shared_len += data.len();
        }
    }

    fn len(&self) -> usize {
        self.buf.len() + self.shared_len
    }

    fn crc_from(&self, at: usize) -> u32 {
        let first = self.shared.partition_point(|(off, _)| *off < at);
        let mut crc = 0;
        let mut prev = at;
        for (off, data) in &self.shared[first..] {
            crc = crc32c::crc32c_append(crc, &self.buf[prev..*off]);
            crc = crc32c::crc32c_append(crc, data);
            prev = *off;
        }
        crc32c::crc32c_append(crc, &self.buf[prev..])
    }
}

impl Stream {
    /// Empties the stream, keeping its capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.shared.clear();
        self.shared_len = 0;
    }

    /// The capacity of the owned buffer (to keep the larger spare).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The logical bytes as slices, in order, for a vectored write.
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        let mut out = Vec::with_capacity(2 * self.shared.len() + 1);
        let mut prev = 0;
        for (off, data) in &self.shared {
            if *off > prev {
                out.push(IoSlice::new(&self.buf[prev..*off]));
            }
            out.push(IoSlice::new(data));
            prev = *off;
        }
        if self.buf.len() > prev {
            out.push(IoSlice::new(&self.buf[prev..]));
        }
        out
    }

    /// The logical bytes, copied into one buffer.
    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<u8> {
        self.slices()
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_and_a_vec_hold_the_same_bytes_and_checksums() {
        let big = Bytes::from(vec![7u8; 3000]);
        let small = Bytes::from_static(b"small");
        let mut s = Stream::default();
        let mut v = Vec::new();
        for sink in [&mut s as &mut dyn Sink, &mut v as &mut dyn Sink] {
            sink.buf().extend_from_slice(b"head");
            sink.share(&big);
            sink.share(&small);
            sink.share(&big);
            sink.buf().extend_from_slice(b"tail");
        }
        assert_eq!(s.to_vec(), v);
        assert_eq!(Sink::len(&s), v.len());
        // Owned offset 2 is logical offset 2; owned offset 9 ("small"
        // follows the first shared payload) is past the first payload.
        assert_eq!(s.crc_from(2), v.crc_from(2));
        assert_eq!(s.crc_from(4), v.crc_from(4));
        assert_eq!(s.crc_from(9), crc32c::crc32c(&v[3004 + 5..]));
    }
}
