//! A structural pass over an HPACK header block (RFC 7541 §6) that
//! decodes no Huffman string: it counts the block's Huffman-coded strings
//! and finds `:authority`'s value where the block names the field itself.
//!
//! Why: the HPACK crate's decoder builds its Huffman table for every
//! Huffman-coded string it meets (20 to 60 µs each), so a full decode of
//! a block made of many tiny strings costs far more than the server's
//! own decoding. This pass lets the filter decide on an ordinary client's
//! first block by decoding at most the `:authority` value, and refuse to
//! decode blocks with more strings than any gRPC client sends.

use std::borrow::Cow;

use loona_hpack::huffman::HuffmanDecoder;

/// The most Huffman-coded strings in a block the filter decodes; a gRPC
/// request carries about ten (path, authority, content type, user agent,
/// `te`, a timeout, a little metadata).
pub(super) const HUFFMAN_STRINGS_MAX: usize = 32;
/// `:authority`'s index in the HPACK static table (RFC 7541 Appendix A).
const STATIC_AUTHORITY: usize = 1;
/// Longer literal names are not decoded to compare with `:authority`.
const NAME_BYTES_MAX: usize = 16;

/// A string literal as encoded.
#[derive(Clone, Copy, Debug)]
pub(super) struct Str<'a> {
    huffman: bool,
    bytes: &'a [u8],
}

impl Str<'_> {
    /// The string's octets; `None` if its Huffman code is invalid.
    pub fn decoded(&self) -> Option<Cow<'_, [u8]>> {
        if !self.huffman {
            return Some(Cow::Borrowed(self.bytes));
        }
        HUFFMAN
            .with(|decoder| match decoder.try_borrow_mut() {
                Ok(mut decoder) => decoder.decode(self.bytes),
                Err(_) => HuffmanDecoder::new().decode(self.bytes),
            })
            .ok()
            .map(Cow::Owned)
    }
}

std::thread_local! {
    /// The HPACK crate's Huffman decoder builds its code table on `new`
    /// (tens of µs); its `decode` keeps no state between calls, so one per
    /// thread serves every connection's first block.
    static HUFFMAN: std::cell::RefCell<HuffmanDecoder> =
        std::cell::RefCell::new(HuffmanDecoder::new());
}

/// What the pass found in a block.
#[derive(Debug, Default)]
pub(super) struct Outline<'a> {
    pub huffman_strings: usize,
    /// The encoded value of the first field named `:authority` by the
    /// static table or a literal name (not by a dynamic table entry).
    pub authority: Option<Str<'a>>,
}

/// Outlines `block`; `None` if it breaks HPACK's encoding rules (the
/// HPACK decoder would refuse it too).
pub(super) fn outline(block: &[u8]) -> Option<Outline<'_>> {
    let mut found = Outline::default();
    let mut rest = block;
    while let Some(&first) = rest.first() {
        let (name_index, after) = match first {
            // An indexed field: no string.
            0x80.. => {
                rest = integer(rest, 7)?.1;
                continue;
            }
            // A literal with incremental indexing.
            0x40.. => integer(rest, 6)?,
            // A dynamic table size update.
            0x20.. => {
                rest = integer(rest, 5)?.1;
                continue;
            }
            // A literal without indexing or never indexed.
            _ => integer(rest, 4)?,
        };
        rest = after;
        let is_authority = if name_index == 0 {
            let name;
            (name, rest) = string(rest)?;
            found.huffman_strings += usize::from(name.huffman);
            names_authority(name)
        } else {
            name_index == STATIC_AUTHORITY
        };
        let value;
        (value, rest) = string(rest)?;
        found.huffman_strings += usize::from(value.huffman);
        if is_authority && found.authority.is_none() {
            found.authority = Some(value);
        }
    }
    Some(found)
}

/// Whether a literal name is `:authority`.
fn names_authority(name: Str<'_>) -> bool {
    name.bytes.len() <= NAME_BYTES_MAX
        && name.decoded().is_some_and(|n| n.as_ref() == b":authority")
}

/// A prefixed integer (RFC 7541 §5.1) and the bytes after it; `None` if
/// cut short or over 2^28 (five octets at most, as the HPACK crate).
fn integer(b: &[u8], prefix_bits: u32) -> Option<(usize, &[u8])> {
    let max = (1usize << prefix_bits) - 1;
    let (&first, mut rest) = b.split_first()?;
    let mut value = usize::from(first) & max;
    if value < max {
        return Some((value, rest));
    }
    for shift in [0, 7, 14, 21] {
        let (&byte, after) = rest.split_first()?;
        rest = after;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, rest));
        }
    }
    None
}

/// A string literal (RFC 7541 §5.2) and the bytes after it.
fn string(b: &[u8]) -> Option<(Str<'_>, &[u8])> {
    let huffman = b.first()? & 0x80 != 0;
    let (len, rest) = integer(b, 7)?;
    if rest.len() < len {
        return None;
    }
    let (bytes, rest) = rest.split_at(len);
    Some((Str { huffman, bytes }, rest))
}
