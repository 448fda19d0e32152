//! The client-to-server byte stream of one connection, scanned frame by
//! frame (no I/O here): [`Filter::feed`] takes bytes as they arrive and
//! appends what may go on to the server.
//!
//! Stages: the 24-byte connection preface, then frames. A frame that is
//! not part of a header block goes on as it arrives (its header once
//! whole, its payload piece by piece); a header block is held until its
//! last frame. The first block decides, from an outline that decodes at
//! most its `:authority` value ([`super::scan`]): if that has no scheme,
//! the block and everything after go on unchanged and the filter stops
//! looking ([`Filter::is_through`]); if it has one, every block of the
//! connection is decoded with the client's HPACK state and written again
//! ([`super::block`]).
//!
//! Invariants: until the first block is decided, the output is the input
//! byte for byte (held bytes included, once they go on); at most
//! [`HELD_BYTES_MAX`] bytes are held; bytes that cannot be read before
//! the decision go on unchanged for the server to refuse, and after it
//! are an error (the connection is closed), since the server's HPACK
//! state no longer matches the client's.

use loona_hpack::Decoder;

use super::block::{Block, FrameHead, Malformed, TYPE_CONTINUATION, TYPE_HEADERS, without_scheme};
use super::scan;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The most bytes held at once: a 64 KiB header block with its frames'
/// headers, padding and priority fields. A larger block is not read.
pub(super) const HELD_BYTES_MAX: usize = 72 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Some of the preface has not arrived.
    Preface,
    /// At a frame boundary.
    Head,
    /// Passing on the rest of a frame that is not part of a header block.
    Payload { left: usize },
    /// Passing on everything.
    Through,
}

/// One connection's scanner; see the module doc.
pub struct Filter {
    stage: Stage,
    /// The first block had a scheme in `:authority`: every block is
    /// written again.
    rewriting: bool,
    /// Bytes received and not yet passed on, from `pos`.
    pending: Vec<u8>,
    pos: usize,
    block: Option<Block>,
    /// The client's HPACK state, as the server would keep it.
    decoder: Decoder<'static>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("stage", &self.stage)
            .field("rewriting", &self.rewriting)
            .finish_non_exhaustive()
    }
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            stage: Stage::Preface,
            rewriting: false,
            pending: Vec::new(),
            pos: 0,
            block: None,
            decoder: Decoder::new(),
        }
    }
}

impl Filter {
    /// True once everything goes on unchanged and nothing is held: the
    /// caller may stop feeding the filter and pass bytes on itself.
    pub fn is_through(&self) -> bool {
        self.stage == Stage::Through && self.pos == self.pending.len()
    }

    /// True once the connection's header blocks are written again.
    pub fn is_rewriting(&self) -> bool {
        self.rewriting
    }

    /// Takes `input`, appends to `out` what may go on to the server.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
        if self.is_through() {
            out.extend_from_slice(input);
            return Ok(());
        }
        self.pending.extend_from_slice(input);
        let scanned = self.scan(out);
        self.pending.drain(..self.pos);
        self.pos = 0;
        scanned
    }

    /// The client closed its side: what is held goes on unchanged (the
    /// server refuses an incomplete frame), unless blocks are being
    /// rewritten, where a raw fragment would mean nothing to the server.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.rewriting {
            if let Some(block) = self.block.take() {
                out.extend_from_slice(&block.raw);
            }
            out.extend_from_slice(&self.pending[self.pos..]);
        }
        self.block = None;
        self.pending.clear();
        self.pos = 0;
        self.stage = Stage::Through;
    }

    fn scan(&mut self, out: &mut Vec<u8>) -> Result<(), Malformed> {
        loop {
            let avail = &self.pending[self.pos..];
            match self.stage {
                Stage::Preface => {
                    let n = avail.len().min(PREFACE.len());
                    if avail[..n] != PREFACE[..n] {
                        return self.give_up(&[], out, Malformed::Framing("no HTTP/2 preface"));
                    }
                    if n < PREFACE.len() {
                        return Ok(());
                    }
                    self.pass(n, out);
                    self.stage = Stage::Head;
                }
                Stage::Head => {
                    let Some(head) = FrameHead::parse(avail) else {
                        return Ok(());
                    };
                    let in_block = head.kind == TYPE_HEADERS
                        || head.kind == TYPE_CONTINUATION
                        || self.block.is_some();
                    if !in_block {
                        self.pass(FrameHead::BYTES, out);
                        self.stage = Stage::Payload { left: head.len };
                        continue;
                    }
                    let frame_bytes = FrameHead::BYTES + head.len;
                    let held = self.block.as_ref().map_or(0, |b| b.raw.len());
                    if held + frame_bytes > HELD_BYTES_MAX {
                        let held = self.block.take().map(|b| b.raw).unwrap_or_default();
                        return self.give_up(&held, out, Malformed::TooLarge);
                    }
                    if avail.len() < frame_bytes {
                        return Ok(());
                    }
                    let frame = avail[..frame_bytes].to_vec();
                    self.pos += frame_bytes;
                    self.header_frame(head, &frame, out)?;
                }
                Stage::Payload { left } => {
                    let n = left.min(avail.len());
                    if n == 0 && left > 0 {
                        return Ok(());
                    }
                    self.pass(n, out);
                    self.stage = match left - n {
                        0 => Stage::Head,
                        left => Stage::Payload { left },
                    };
                }
                Stage::Through => {
                    self.pass(avail.len(), out);
                    return Ok(());
                }
            }
        }
    }

    /// Passes on the next `n` pending bytes.
    fn pass(&mut self, n: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
    }

    /// A HEADERS or CONTINUATION frame, or any frame while a block is
    /// open (which breaks the block).
    fn header_frame(
        &mut self,
        head: FrameHead,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Malformed> {
        let (block, read) = match self.block.take() {
            Some(mut block) => {
                let read = block.continue_with(head, frame);
                (block, read)
            }
            None if head.kind == TYPE_HEADERS => Block::start(head, frame),
            None => {
                let why = Malformed::Framing("CONTINUATION without HEADERS");
                return self.give_up(frame, out, why);
            }
        };
        if let Err(why) = read {
            return self.give_up(&block.raw, out, why);
        }
        if block.complete {
            self.block_done(&block, out)
        } else {
            self.block = Some(block);
            Ok(())
        }
    }

    /// A whole header block: decides the connection's stage if it is the
    /// first, writes it again when rewriting.
    fn block_done(&mut self, block: &Block, out: &mut Vec<u8>) -> Result<(), Malformed> {
        let Some(outline) = scan::outline(block.fragment()) else {
            return self.give_up(&block.raw, out, Malformed::Framing("not HPACK"));
        };
        if outline.huffman_strings > scan::HUFFMAN_STRINGS_MAX {
            return self.give_up(&block.raw, out, Malformed::TooCostly);
        }
        if !self.rewriting {
            let authority = outline.authority.as_ref().and_then(|a| a.decoded());
            let has_scheme = authority.is_some_and(|a| without_scheme(&a).is_some());
            if !has_scheme {
                out.extend_from_slice(&block.raw);
                self.stage = Stage::Through;
                return Ok(());
            }
            tracing::debug!("client sends a scheme in :authority; rewriting its header blocks");
            self.rewriting = true;
        }
        let fields = match block.decode(&mut self.decoder) {
            Ok(fields) => fields,
            Err(why) => return self.give_up(&block.raw, out, why),
        };
        block.write(&fields, out);
        Ok(())
    }

    /// Stops reading: before rewriting began, the `held` bytes (taken
    /// from `pending` earlier) and the rest go on unchanged for the server
    /// to judge; after, it is an error.
    fn give_up(&mut self, held: &[u8], out: &mut Vec<u8>, why: Malformed) -> Result<(), Malformed> {
        if self.rewriting {
            return Err(why);
        }
        tracing::debug!(%why, "passing the connection through unchanged");
        out.extend_from_slice(held);
        self.block = None;
        self.stage = Stage::Through;
        let rest = self.pending.len() - self.pos;
        self.pass(rest, out);
        Ok(())
    }
}
