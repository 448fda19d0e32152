//! Accepting a connection on the client port: TLS first if configured,
//! then the split between HTTP/1.1 (etcd's `/health`, `/version`,
//! `/metrics` and the JSON gateway, [`crate::gateway`]) and gRPC.
//!
//! Plaintext connections are told apart by peeking at their first bytes
//! ([`crate::http::opens_http1`]). A TLS connection is told apart by the
//! protocol its handshake agreed on (ALPN `h2` or `http/1.1`) or, when
//! the client offered none, by its first decrypted bytes, which are then
//! handed back to whoever serves it ([`Rewound`]).
//!
//! With TLS and `plaintext_too` (etcd's `--listen-client-urls` naming
//! both schemes for one address) the port serves both: a connection
//! whose first byte opens a TLS record (a ClientHello's handshake record,
//! 0x16, which no HTTP/1.1 method and no HTTP/2 preface starts with) is
//! handshaken, any other is served in plaintext.
//!
//! Invariants: when TLS is configured without `plaintext_too`, no byte is
//! served in plaintext; a plaintext connection never carries a verified
//! peer identity, so the peer service refuses it wherever a peer
//! certificate is required; each connection is looked at in a task of
//! its own and within [`crate::http::HEAD_TIMEOUT`], so a client that
//! sends nothing, or stalls its handshake, holds up no other; a failed
//! handshake closes only its own connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use flotilla_tls::{PeerIdentity, ServerStream, ServerTls};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::service::Routes;
use tonic::transport::server::Connected;

use crate::conns::{Permitted, write_through};
use crate::core::Core;

/// A connection a bounded number of bytes into it: `prefix` was read to
/// look at it and is read again first.
#[derive(Debug)]
pub struct Rewound<T> {
    prefix: Vec<u8>,
    pos: usize,
    io: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewound<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

write_through!(Rewound<T>);

/// A served connection: plaintext, or TLS with what its handshake told.
#[derive(Debug)]
pub enum Conn {
    /// No TLS configured.
    Plain(Permitted),
    /// TLS, and which side of the port accepted it.
    Tls(Box<Rewound<ServerStream<Permitted>>>, PeerIdentity),
}

impl Connected for Conn {
    /// The peer services read this from each request's extensions.
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        match self {
            Conn::Plain(_) => PeerIdentity {
                verified_peer: false,
                client_cn: None,
            },
            Conn::Tls(_, identity) => identity.clone(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Conn::Tls(c, _) => Pin::new(c.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_write(cx, buf),
            Conn::Tls(c, _) => Pin::new(c.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_write_vectored(cx, bufs),
            Conn::Tls(c, _) => Pin::new(c.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(c) => c.is_write_vectored(),
            Conn::Tls(c, _) => c.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_flush(cx),
            Conn::Tls(c, _) => Pin::new(c.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Conn::Tls(c, _) => Pin::new(c.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Up to 4 first bytes of `io`: fewer only if they can no longer start an
/// HTTP/1.1 method, or the stream ended.
async fn first_bytes<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut first = Vec::with_capacity(4);
    while first.len() < 4 && crate::http::may_open_http1(&first) {
        let mut b = [0u8; 4];
        let n = io.read(&mut b[..4 - first.len()]).await?;
        if n == 0 {
            break;
        }
        first.extend_from_slice(&b[..n]);
    }
    Ok(first)
}

/// The TLS handshake on `conn`; true if it speaks HTTP/1.1.
async fn accept_tls(tls: &ServerTls, conn: Permitted) -> io::Result<(Conn, bool)> {
    let (mut stream, identity) = tls.accept(conn).await?;
    let (prefix, http1) = match flotilla_tls::negotiated_h2(&stream) {
        Some(h2) => (Vec::new(), !h2),
        None => {
            let first = first_bytes(&mut stream).await?;
            let http1 = crate::http::is_http1(&first);
            (first, http1)
        }
    };
    let rewound = Rewound {
        prefix,
        pos: 0,
        io: stream,
    };
    Ok((Conn::Tls(Box::new(rewound), identity), http1))
}

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Whether `conn` opens with a TLS handshake record (its first byte,
/// peeked: it stays to be read). The caller bounds the wait.
async fn opens_tls(conn: &tokio::net::TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(conn.peek(&mut first).await, Ok(1) if first[0] == TLS_HANDSHAKE_RECORD)
}

/// The TLS the connection `conn` gets: `tls`, unless the port serves
/// plaintext too and `conn` does not open with a handshake.
async fn tls_for<'a>(
    conn: &Permitted,
    tls: Option<&'a ServerTls>,
    plaintext_too: bool,
) -> Result<Option<&'a ServerTls>, String> {
    if tls.is_none() || !plaintext_too {
        return Ok(tls);
    }
    let within = crate::http::HEAD_TIMEOUT;
    match tokio::time::timeout(within, opens_tls(conn.stream())).await {
        Ok(true) => Ok(tls),
        Ok(false) => Ok(None),
        Err(_) => Err(format!("no first byte within {within:?}")),
    }
}

/// `conn` as served, and whether it speaks HTTP/1.1; why not, if its
/// TLS handshake failed or stalled.
async fn classify(
    conn: Permitted,
    tls: Option<&ServerTls>,
    plaintext_too: bool,
) -> Result<(Conn, bool), String> {
    let within = crate::http::HEAD_TIMEOUT;
    match tls_for(&conn, tls, plaintext_too).await? {
        None => {
            let http1 = tokio::time::timeout(within, crate::http::opens_http1(conn.stream())).await;
            Ok((Conn::Plain(conn), http1 == Ok(true)))
        }
        Some(tls) => match tokio::time::timeout(within, accept_tls(tls, conn)).await {
            Ok(Ok(accepted)) => Ok(accepted),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no handshake within {within:?}")),
        },
    }
}

/// Counts a connection refused at its TLS handshake, and says so at the
/// first and every 100th: a member with another CA's certificate, or a
/// client without one, is an operator's problem to see (etcd logs each
/// "rejected connection"), but one per attempt would let a scanner fill
/// the log.
fn handshake_failed(core: &Core, peer: Option<std::net::SocketAddr>, why: &str) {
    let n = core
        .metrics
        .tls_handshakes_failed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    tracing::debug!(from = ?peer, error = why, "a TLS handshake failed");
    if n == 1 || n.is_multiple_of(100) {
        tracing::warn!(
            from = ?peer,
            error = why,
            refused_so_far = n,
            "refused a connection at its TLS handshake \
             (flotilla_tls_handshakes_failed_total counts them)"
        );
    }
}

/// The connections gRPC serves: every accepted one (within the cap)
/// except those that speak HTTP/1.1, which [`crate::gateway`] serves;
/// with `tls`, over TLS, and also in plaintext where `core`'s URL schemes
/// include plaintext.
pub fn split(
    listener: TcpListener,
    core: Core,
    routes: Routes,
    tls: Option<Arc<ServerTls>>,
) -> impl tokio_stream::Stream<Item = io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    let plaintext_too = core.url_schemes.plain;
    tokio::spawn(async move {
        let incoming = crate::server::incoming(listener);
        let mut conns = std::pin::pin!(crate::conns::capped(
            incoming,
            crate::server::CONNECTIONS_MAX
        ));
        while let Some(conn) = conns.next().await {
            let (tx, core, routes, tls) = (tx.clone(), core.clone(), routes.clone(), tls.clone());
            tokio::spawn(async move {
                let conn = match conn {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let peer = conn.stream().peer_addr().ok();
                match classify(conn, tls.as_deref(), plaintext_too).await {
                    Ok((conn, true)) => crate::gateway::serve(core, routes, conn).await,
                    Ok((conn, false)) => drop(tx.send(Ok(conn)).await),
                    Err(why) => handshake_failed(&core, peer, &why),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
