//! Accepts an HTTP/2 `:authority` that carries a scheme
//! (`http://127.0.0.1:2379`), as etcd's Go server does, by removing the
//! scheme before the server's HTTP/2 layer reads it.
//!
//! Why: `etcdctl endpoint status --cluster` (etcd 3.4) dials each member's
//! client URL as the grpc-go target `passthrough:///http://HOST:PORT`, so
//! its requests arrive with `:authority: http://HOST:PORT`. The `h2`
//! crate parses `:authority` as a URI authority, which has no scheme, and
//! resets such a stream as malformed (`RST_STREAM PROTOCOL_ERROR`).
//!
//! How: [`Normalized`] wraps an accepted connection and reads the
//! client's bytes through a [`filter::Filter`]. The first request's header
//! block decides, and its `:authority` value is the one string decoded
//! for it. Without a scheme (tonic, grpc-go with an ordinary target,
//! etcd's clientv3, Flotilla's peers) the bytes go on unchanged
//! and, from the end of that block on, reads go straight to the socket:
//! ordinary connections pay only for scanning the frames up to their
//! first request (well under a microsecond for tonic's block, a few for
//! grpc-go's Huffman-coded one). With one, every header block of the connection is
//! decoded and written again without the scheme ([`block`]); other frames
//! go on untouched. Writes are never touched.
//!
//! Invariants: bytes the filter cannot read go on unchanged while nothing
//! was rewritten (the server refuses them as it always did); once
//! rewriting, they close the connection instead. Nothing a client sends
//! makes it panic; it holds a bounded number of bytes
//! ([`filter::HELD_BYTES_MAX`]) and decodes no block with more
//! Huffman-coded strings than a gRPC request has
//! ([`scan::HUFFMAN_STRINGS_MAX`]), since each costs the HPACK crate a
//! table build.

mod block;
mod filter;
mod scan;
#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

pub use block::Malformed;
/// The scanner alone, with no I/O: what [`Normalized`] reads through
/// (public for `crates/etcd/fuzz`).
pub use filter::Filter;

/// How many bytes a read through the filter asks of the socket at once.
const READ_CHUNK_BYTES: usize = 8192;

/// A connection whose incoming header blocks have `:authority` without a
/// scheme; see the module doc.
#[derive(Debug)]
pub struct Normalized<T> {
    io: T,
    /// `None` once the filter passes everything through unchanged.
    filter: Option<Box<Filter>>,
    /// Filtered bytes not yet read, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// A read failed on a malformed header block: every later one does.
    refused: bool,
}

impl<T> Normalized<T> {
    /// Wraps a connection from its first byte on.
    pub fn new(io: T) -> Self {
        Normalized {
            io,
            filter: Some(Box::default()),
            out: Vec::new(),
            out_pos: 0,
            refused: false,
        }
    }

    /// Copies filtered bytes into `buf`; false if there are none.
    fn drain_into(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.out_pos == self.out.len() {
            return false;
        }
        let n = (self.out.len() - self.out_pos).min(buf.remaining());
        buf.put_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.filter.is_none() {
                self.out = Vec::new();
            }
        }
        true
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Normalized<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.refused {
                return Poll::Ready(Err(io::ErrorKind::InvalidData.into()));
            }
            if this.drain_into(buf) {
                return Poll::Ready(Ok(()));
            }
            let Some(filter) = this.filter.as_mut() else {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            };
            let mut chunk = [0u8; READ_CHUNK_BYTES];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                filter.finish(&mut this.out);
                this.filter = None;
                if this.out.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            if let Err(why) = filter.feed(read.filled(), &mut this.out) {
                tracing::debug!(%why, "closing a connection");
                this.refused = true;
                this.filter = None;
                this.out = Vec::new();
                this.out_pos = 0;
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, why)));
            }
            if filter.is_through() {
                this.filter = None;
            }
        }
    }
}

crate::conns::write_through!(Normalized<T>);

impl<T: Connected> Connected for Normalized<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
