//! A bound on the connections a server holds: each accepted connection
//! takes a permit of a semaphore and gives it back when it closes.
//!
//! Every connection costs its HTTP/2 state, buffers and the calls on it
//! ([`crate::server::STREAMS_PER_CONNECTION_MAX`] at most); without a
//! bound, clients that open connections and keep them (or leak them)
//! grow a server without end. At the bound the server stops accepting:
//! the one connection accepted last waits for a permit, and the rest
//! wait in the kernel's listen backlog (then time out, as they would
//! against a saturated etcd) until a connection closes. A dead client's
//! connection is closed by the server's HTTP/2 keepalive
//! ([`crate::server::CLIENT_KEEPALIVE_TIMEOUT`]), which returns its
//! permit.
//!
//! Invariant: at most `max` connections are served at once.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A connection that holds one permit until it is dropped (closed).
#[derive(Debug)]
pub struct Permitted {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
}

/// `conns`, each waiting for one of `max` permits before it is served.
pub fn capped(
    conns: impl Stream<Item = io::Result<TcpStream>>,
    max: usize,
) -> impl Stream<Item = io::Result<Permitted>> {
    let permits = Arc::new(Semaphore::new(max));
    conns.then(move |conn| {
        let permits = Arc::clone(&permits);
        async move {
            let io = conn?;
            // The semaphore is never closed, so this cannot fail.
            let permit = permits.acquire_owned().await.map_err(io::Error::other)?;
            Ok(Permitted {
                io,
                _permit: permit,
            })
        }
    })
}

impl Permitted {
    /// The connection, to look at its first bytes ([`TcpStream::peek`]).
    pub fn stream(&self) -> &TcpStream {
        &self.io
    }
}

impl Connected for Permitted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Permitted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

/// Implements `AsyncWrite` for a connection wrapper by passing every call
/// to its `io` field: the wrappers here filter or count what comes in,
/// never what goes out. `write_through!(Type)`, or
/// `write_through!(Type<T>)` for a wrapper generic over its inner stream.
macro_rules! write_through {
    ($ty:ident $(<$t:ident>)?) => {
        impl$(<$t: AsyncWrite + Unpin>)? AsyncWrite for $ty$(<$t>)? {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use write_through;

write_through!(Permitted);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn a_connection_beyond_the_cap_waits_until_one_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = capped(crate::server::incoming(listener), 2);
        tokio::pin!(conns);
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let _c = TcpStream::connect(addr).await.unwrap();
        let first = conns.next().await.unwrap().unwrap();
        let _second = conns.next().await.unwrap().unwrap();
        // No permit is left: the third is not served...
        let third = tokio::time::timeout(Duration::from_millis(200), conns.next()).await;
        assert!(third.is_err(), "a third connection was served");
        // ...until one of the first two closes.
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), conns.next()).await;
        assert!(matches!(third, Ok(Some(Ok(_)))), "the third was not served");
    }
}
