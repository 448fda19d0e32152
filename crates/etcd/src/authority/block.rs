//! One HTTP/2 header block (RFC 9113 §4.3): gathered from its HEADERS
//! frame and any CONTINUATION frames, decoded with the client's HPACK
//! state, and written again as literals, with `:authority`'s scheme
//! removed, in frames the server accepts.
//!
//! Invariants: a block written again uses no HPACK dynamic table (only
//! literals without indexing, no Huffman), so the server's decoder, which
//! never sees the client's own encoding, stays consistent with it; every
//! frame written carries at most [`FRAME_PAYLOAD_BYTES_MAX`] bytes.

use loona_hpack::Decoder;
use loona_hpack::decoder::DecoderError;

/// The frame types and flags this module reads (RFC 9113 §6.2, §6.10).
pub(super) const TYPE_HEADERS: u8 = 0x1;
pub(super) const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The E bit, stream dependency and weight of a HEADERS frame with the
/// PRIORITY flag.
const PRIORITY_BYTES: usize = 5;

/// The largest frame payload written: SETTINGS_MAX_FRAME_SIZE's initial
/// value, which every server accepts whatever it announces later.
pub(super) const FRAME_PAYLOAD_BYTES_MAX: usize = 16_384;
/// The largest decoded header list (counted as RFC 7541 §4.1 does:
/// name, value and 32 bytes per field) this module writes again; the
/// server refuses far smaller lists (hyper's default is 16 KiB), and the
/// bound keeps a small block of references to one large table entry from
/// growing without end.
pub(super) const HEADER_LIST_BYTES_MAX: usize = 64 * 1024;
/// The client's HPACK dynamic table may be no larger: the server announces
/// no other SETTINGS_HEADER_TABLE_SIZE than the initial 4,096.
const CLIENT_TABLE_BYTES_MAX: usize = 4096;

/// Why a header block could not be read. Before a connection is known to
/// need rewriting its bytes then go to the server unchanged (which
/// refuses what is malformed, as it always did); after, the connection
/// is closed.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    /// The frames around the block break HTTP/2's framing rules.
    #[error("header block framing: {0}")]
    Framing(&'static str),
    /// The block's HPACK encoding does not decode.
    #[error("header block encoding: {0}")]
    Hpack(DecoderError),
    /// The block, or the header list it decodes to, is over the bounds.
    #[error("header block too large")]
    TooLarge,
    /// The block has more Huffman-coded strings than the filter decodes
    /// ([`super::scan::HUFFMAN_STRINGS_MAX`]).
    #[error("header block with too many Huffman-coded strings")]
    TooCostly,
}

/// A frame's 9-byte header (RFC 9113 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FrameHead {
    /// Payload length.
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    /// Stream id, without the reserved bit.
    pub stream: u32,
}

impl FrameHead {
    pub const BYTES: usize = 9;

    /// Reads a frame header from the first [`Self::BYTES`] of `b`, if
    /// there are that many.
    pub fn parse(b: &[u8]) -> Option<FrameHead> {
        let h: &[u8; Self::BYTES] = b.get(..Self::BYTES)?.try_into().ok()?;
        Some(FrameHead {
            len: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
            kind: h[3],
            flags: h[4],
            stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }

    /// Appends this header; `len` must fit in 24 bits.
    pub fn write(&self, out: &mut Vec<u8>) {
        debug_assert!(self.len < 1 << 24, "frame length {}", self.len);
        let len = (self.len as u32).to_be_bytes();
        out.extend_from_slice(&len[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&self.stream.to_be_bytes());
    }
}

/// A header block being gathered: a HEADERS frame, then CONTINUATION
/// frames of the same stream until one has END_HEADERS.
#[derive(Debug)]
pub(super) struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_BYTES]>,
    fragment: Vec<u8>,
    /// The frames as received, to pass on unchanged if need be.
    pub raw: Vec<u8>,
    pub complete: bool,
}

impl Block {
    /// A block begun by a HEADERS frame (`frame`: header and payload).
    /// On error, `raw` still holds the frame.
    pub fn start(head: FrameHead, frame: &[u8]) -> (Block, Result<(), Malformed>) {
        let mut block = Block {
            stream: head.stream,
            end_stream: head.flags & FLAG_END_STREAM != 0,
            priority: None,
            fragment: Vec::new(),
            raw: frame.to_vec(),
            complete: head.flags & FLAG_END_HEADERS != 0,
        };
        let read = block.read_headers_payload(head.flags, &frame[FrameHead::BYTES..]);
        (block, read)
    }

    fn read_headers_payload(&mut self, flags: u8, payload: &[u8]) -> Result<(), Malformed> {
        let mut payload = payload;
        let mut pad = 0;
        if flags & FLAG_PADDED != 0 {
            let (&len, rest) = payload
                .split_first()
                .ok_or(Malformed::Framing("PADDED with no pad length"))?;
            pad = usize::from(len);
            payload = rest;
        }
        if flags & FLAG_PRIORITY != 0 {
            let (fields, rest) = payload
                .split_first_chunk::<PRIORITY_BYTES>()
                .ok_or(Malformed::Framing("PRIORITY fields cut short"))?;
            self.priority = Some(*fields);
            payload = rest;
        }
        let end = payload
            .len()
            .checked_sub(pad)
            .ok_or(Malformed::Framing("padding longer than the payload"))?;
        self.fragment.extend_from_slice(&payload[..end]);
        Ok(())
    }

    /// Adds a CONTINUATION frame (`frame`: header and payload); on error,
    /// `raw` holds it too.
    pub fn continue_with(&mut self, head: FrameHead, frame: &[u8]) -> Result<(), Malformed> {
        self.raw.extend_from_slice(frame);
        if head.kind != TYPE_CONTINUATION || head.stream != self.stream {
            return Err(Malformed::Framing("a header block interrupted"));
        }
        self.fragment.extend_from_slice(&frame[FrameHead::BYTES..]);
        self.complete = head.flags & FLAG_END_HEADERS != 0;
        Ok(())
    }

    /// The block's HPACK encoding.
    pub fn fragment(&self) -> &[u8] {
        &self.fragment
    }

    /// The block's header list, in order, decoded with the client's
    /// `decoder` (whose dynamic table it updates).
    pub fn decode(&self, decoder: &mut Decoder<'static>) -> Result<Vec<Field>, Malformed> {
        decoder.set_max_allowed_table_size(CLIENT_TABLE_BYTES_MAX);
        let mut fields = Vec::new();
        let mut list_bytes = 0usize;
        decoder
            .decode_with_cb(&self.fragment, |name, value| {
                list_bytes = list_bytes.saturating_add(name.len() + value.len() + 32);
                // Past the bound, the rest is decoded (to keep the table
                // right) but not kept.
                if list_bytes <= HEADER_LIST_BYTES_MAX {
                    fields.push(Field {
                        name: name.into_owned(),
                        value: value.into_owned(),
                    });
                }
            })
            .map_err(Malformed::Hpack)?;
        if list_bytes > HEADER_LIST_BYTES_MAX {
            return Err(Malformed::TooLarge);
        }
        Ok(fields)
    }

    /// Appends the block with `fields` as HEADERS and, past
    /// [`FRAME_PAYLOAD_BYTES_MAX`], CONTINUATION frames, keeping the
    /// stream, END_STREAM and the priority fields (padding is dropped).
    pub fn write(&self, fields: &[Field], out: &mut Vec<u8>) {
        let mut encoded = Vec::new();
        for f in fields {
            encode_literal(f, &mut encoded);
        }
        let mut flags = if self.end_stream { FLAG_END_STREAM } else { 0 };
        let priority: &[u8] = match &self.priority {
            Some(fields) => {
                flags |= FLAG_PRIORITY;
                fields
            }
            None => &[],
        };
        let room = FRAME_PAYLOAD_BYTES_MAX - priority.len();
        let (first, mut rest) = encoded.split_at(encoded.len().min(room));
        if rest.is_empty() {
            flags |= FLAG_END_HEADERS;
        }
        let head = FrameHead {
            len: priority.len() + first.len(),
            kind: TYPE_HEADERS,
            flags,
            stream: self.stream,
        };
        head.write(out);
        out.extend_from_slice(priority);
        out.extend_from_slice(first);
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(rest.len().min(FRAME_PAYLOAD_BYTES_MAX));
            rest = after;
            let head = FrameHead {
                len: chunk.len(),
                kind: TYPE_CONTINUATION,
                flags: if rest.is_empty() { FLAG_END_HEADERS } else { 0 },
                stream: self.stream,
            };
            head.write(out);
            out.extend_from_slice(chunk);
        }
    }
}

/// One decoded header field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Field {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl Field {
    /// `:authority`'s value without a `scheme://` prefix (and without
    /// any path after the host and port), if it has one.
    pub fn authority_without_scheme(&self) -> Option<&[u8]> {
        if self.name != b":authority" {
            return None;
        }
        without_scheme(&self.value)
    }
}

/// `value` without its `scheme://` (RFC 3986 §3.1: a letter, then letters,
/// digits, `+`, `-`, `.`) and without any `/path` after the authority;
/// `None` if it has no scheme or nothing is left.
pub(super) fn without_scheme(value: &[u8]) -> Option<&[u8]> {
    let sep = value.windows(3).position(|w| w == b"://")?;
    let (scheme, rest) = (&value[..sep], &value[sep + 3..]);
    let first_is_letter = scheme.first().is_some_and(u8::is_ascii_alphabetic);
    let scheme_chars = |c: &u8| c.is_ascii_alphanumeric() || b"+-.".contains(c);
    if !first_is_letter || !scheme.iter().all(scheme_chars) {
        return None;
    }
    let authority = rest.split(|&c| c == b'/').next().unwrap_or_default();
    (!authority.is_empty()).then_some(authority)
}

/// Appends `field` as a literal header field without indexing, with a
/// literal name and no Huffman coding (RFC 7541 §6.2.2), its
/// `:authority` without a scheme.
fn encode_literal(field: &Field, out: &mut Vec<u8>) {
    let value = field.authority_without_scheme().unwrap_or(&field.value);
    out.push(0x00);
    encode_string(&field.name, out);
    encode_string(value, out);
}

/// A string literal without Huffman coding (RFC 7541 §5.2).
fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    encode_integer(s.len(), 7, out);
    out.extend_from_slice(s);
}

/// An integer with an N-bit prefix, the bits above it zero (RFC 7541
/// §5.1).
fn encode_integer(value: usize, prefix_bits: u32, out: &mut Vec<u8>) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(value as u8);
        return;
    }
    out.push(max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}
