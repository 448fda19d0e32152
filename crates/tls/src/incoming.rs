//! Accepted connections for a tonic server on one port with no peer side
//! (MapReduce's coordinator and each worker's shuffle): plaintext, or
//! TLS with [`ServerTls`], as one stream that
//! `Server::serve_with_incoming` takes.
//!
//! Handshakes run on their own tasks, each bounded by
//! [`HANDSHAKE_LIMIT`], so a client that stalls mid-handshake holds up no
//! one else. A refused handshake never ends the stream: it is logged (at
//! warn for the first and every 100th, at debug for every one) and
//! counted ([`Incoming::refused`]).
//!
//! Invariant: every connection the stream yields has completed its TLS
//! handshake under the current configuration when TLS is on; with
//! `client_cert_auth`, its client presented a certificate the CA vouches
//! for.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::{PeerIdentity, ServerTls};

/// How long a client has to finish its TLS handshake.
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Accepted connections not yet taken by the server: enough for a burst of
/// workers connecting at once.
const BACKLOG: usize = 64;

/// A connection accepted by [`incoming`].
#[derive(Debug)]
pub enum Accepted {
    /// Plaintext (the server has no TLS).
    Plain(TcpStream),
    /// TLS, with what the handshake showed of the client.
    Tls(Box<TlsStream<TcpStream>>, PeerIdentity),
}

/// What a request's handler can learn of its connection.
#[derive(Clone, Debug)]
pub struct AcceptedInfo {
    /// The addresses, as tonic gives them for plain TCP.
    pub tcp: TcpConnectInfo,
    /// The client certificate's CN, for TLS connections that showed one.
    pub client_cn: Option<String>,
}

impl Connected for Accepted {
    type ConnectInfo = AcceptedInfo;

    fn connect_info(&self) -> AcceptedInfo {
        match self {
            Accepted::Plain(tcp) => AcceptedInfo {
                tcp: tcp.connect_info(),
                client_cn: None,
            },
            Accepted::Tls(stream, identity) => AcceptedInfo {
                tcp: stream.get_ref().0.connect_info(),
                client_cn: identity.client_cn.clone(),
            },
        }
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Accepted::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Accepted::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Accepted::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(s) => Pin::new(s).poll_flush(cx),
            Accepted::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Accepted::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Accepted::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections accepted on a listener, for `serve_with_incoming`.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<io::Result<Accepted>>,
    refused: Arc<AtomicU64>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Incoming {
    /// How many handshakes were refused so far (the count an operator
    /// sees in the log's warnings).
    pub fn refused(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.refused)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // The listener closes with its task: the port stops accepting when
        // the server that took this stream ends.
        self.acceptor.abort();
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Accepted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Accepts on `listener` (Nagle's delay off: RPCs are small), with TLS when
/// `tls` is given. Must be called inside a tokio runtime.
pub fn incoming(listener: TcpListener, tls: Option<Arc<ServerTls>>) -> Incoming {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let refused = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&refused);
    let acceptor = tokio::spawn(async move {
        loop {
            let (tcp, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of descriptors, or a connection reset before it was
                // taken: the listener itself is still good.
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &tls else {
                if tx.send(Ok(Accepted::Plain(tcp))).await.is_err() {
                    return;
                }
                continue;
            };
            let (tls, tx, counter) = (Arc::clone(tls), tx.clone(), Arc::clone(&counter));
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_LIMIT, tls.accept(tcp)).await {
                    Ok(Ok((stream, identity))) => {
                        let _ = tx.send(Ok(Accepted::Tls(Box::new(stream), identity))).await;
                    }
                    Ok(Err(e)) => {
                        note_refused(&counter, from, &e.to_string());
                    }
                    Err(_) => {
                        note_refused(&counter, from, "did not finish its handshake in time");
                    }
                }
            });
        }
    });
    Incoming {
        rx,
        refused,
        acceptor,
    }
}

/// Counts and logs a refused handshake: at warn the first and every 100th,
/// so an operator sees a stranger knocking but a scanner cannot fill the
/// log.
/// Returns how many were refused so far, this one included.
fn note_refused(counter: &AtomicU64, from: SocketAddr, why: &str) -> u64 {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    if loud(n) {
        tracing::warn!(%from, refused_so_far = n, "refused a TLS handshake: {why}");
    } else {
        tracing::debug!(%from, "refused a TLS handshake: {why}");
    }
    n
}

/// Whether the `n`-th refusal (from 1) is logged at warn.
fn loud(n: u64) -> bool {
    n == 1 || n.is_multiple_of(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_and_every_hundredth_are_loud_and_all_are_counted() {
        let loud_ones: Vec<u64> = (1..=300).filter(|&n| loud(n)).collect();
        assert_eq!(loud_ones, [1, 100, 200, 300]);
        let counter = AtomicU64::new(0);
        let from = SocketAddr::from(([127, 0, 0, 1], 1));
        assert_eq!(note_refused(&counter, from, "test"), 1);
        assert_eq!(note_refused(&counter, from, "test"), 2);
        assert_eq!(counter.load(Ordering::Relaxed), 2);
    }
}
