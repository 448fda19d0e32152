//! [`incoming`] with [`ServerTls::single`], as MapReduce's coordinator
//! and shuffle use them: who gets in, that a refused or stalled handshake
//! neither ends the stream nor holds up the next client, and that
//! plaintext passes through untouched.
//! (Run with `--features generate`; the certificates are rcgen's.)

#![cfg(feature = "generate")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use flotilla_testkit::Scratch;
use flotilla_tls::generate::{Written, write_set};
use flotilla_tls::{Accepted, ClientTls, ClientTlsFiles, ServerTls, TlsFiles, incoming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;
use tonic::transport::server::Connected;

fn set(dir: &Path) -> Written {
    write_set(dir, &["node1".into()], &[], "client").unwrap()
}

fn node1(w: &Written) -> TlsFiles {
    let (_, pair) = &w.members[0];
    TlsFiles {
        cert: pair.cert.clone(),
        key: pair.key.clone(),
        ca: Some(w.ca.clone()),
    }
}

fn client(w: &Written, with_cert: bool) -> ClientTls {
    ClientTls::new(&ClientTlsFiles {
        ca: w.ca.clone(),
        cert: with_cert.then(|| w.client.cert.clone()),
        key: with_cert.then(|| w.client.key.clone()),
    })
    .unwrap()
}

/// Dials `addr` over TLS, writes `hi` and reads the echo.
async fn echo_through(client: &ClientTls, addr: std::net::SocketAddr) -> Result<(), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut tls = client
        .connect("127.0.0.1", tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"hi").await.map_err(|e| e.to_string())?;
    let mut back = [0u8; 2];
    tls.read_exact(&mut back).await.map_err(|e| e.to_string())?;
    assert_eq!(&back, b"hi");
    Ok(())
}

/// Takes the next accepted connection and echoes two bytes on it; returns
/// the CN its client showed.
async fn accept_and_echo(conns: &mut flotilla_tls::Incoming) -> Option<String> {
    let mut conn = tokio::time::timeout(Duration::from_secs(10), conns.next())
        .await
        .expect("a connection arrives")
        .expect("the stream goes on")
        .expect("accepted");
    let cn = conn.connect_info().client_cn;
    let mut two = [0u8; 2];
    conn.read_exact(&mut two).await.unwrap();
    conn.write_all(&two).await.unwrap();
    conn.flush().await.unwrap();
    cn
}

#[tokio::test]
async fn a_client_the_ca_vouches_for_gets_in_past_refused_and_stalled_ones() {
    let scratch = Scratch::new("incoming-mutual");
    let w = set(&scratch.path.join("a"));
    let other = set(&scratch.path.join("b"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = Arc::new(ServerTls::single(&node1(&w), true).unwrap());
    let mut conns = incoming(listener, Some(tls));
    let refused = conns.refused();

    // A client that opens TCP and says nothing, first in line.
    let _stalled = TcpStream::connect(addr).await.unwrap();
    // A client without a certificate, and one of another CA: refused.
    assert!(echo_through(&client(&w, false), addr).await.is_err());
    let stranger = ClientTls::new(&ClientTlsFiles {
        ca: w.ca.clone(),
        cert: Some(other.client.cert.clone()),
        key: Some(other.client.key.clone()),
    })
    .unwrap();
    assert!(echo_through(&stranger, addr).await.is_err());

    let good = client(&w, true);
    let (ours, cn) = tokio::join!(echo_through(&good, addr), accept_and_echo(&mut conns));
    ours.unwrap();
    assert_eq!(cn.as_deref(), Some("client"));
    // The server counts a refusal just after sending its alert.
    let counted = async {
        while refused.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), counted)
        .await
        .expect("both refusals are counted");
    assert_eq!(refused.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn without_client_cert_auth_any_client_that_trusts_the_server_gets_in() {
    let scratch = Scratch::new("incoming-one-way");
    let w = set(&scratch.path);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = Arc::new(ServerTls::single(&node1(&w), false).unwrap());
    let mut conns = incoming(listener, Some(tls));
    let anonymous = client(&w, false);
    let (ours, cn) = tokio::join!(echo_through(&anonymous, addr), accept_and_echo(&mut conns));
    ours.unwrap();
    assert_eq!(cn, None);
}

#[tokio::test]
async fn without_tls_connections_pass_through_as_they_are() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut conns = incoming(listener, None);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"hi").await.unwrap();
    let conn = conns.next().await.unwrap().unwrap();
    assert!(matches!(conn, Accepted::Plain(_)));
    let info = conn.connect_info();
    assert_eq!(info.tcp.remote_addr, Some(tcp.local_addr().unwrap()));
}

#[test]
fn single_refuses_flags_that_make_no_configuration() {
    let scratch = Scratch::new("incoming-flags");
    let w = set(&scratch.path);
    let no_ca = TlsFiles {
        ca: None,
        ..node1(&w)
    };
    let e = ServerTls::single(&no_ca, true).unwrap_err().to_string();
    assert!(
        e.contains("--client-cert-auth needs --trusted-ca-file"),
        "{e}"
    );
    ServerTls::single(&no_ca, false).unwrap();
    let no_cert = TlsFiles {
        cert: Default::default(),
        ..node1(&w)
    };
    let e = ServerTls::single(&no_cert, false).unwrap_err().to_string();
    assert!(e.contains("--cert-file and --key-file"), "{e}");
    let missing = scratch.path.join("gone.pem");
    let e = ServerTls::single(
        &TlsFiles {
            key: missing.clone(),
            ..node1(&w)
        },
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains(&missing.display().to_string()), "{e}");
}

// The server's side ends the TLS session (close_notify, then FIN): the
// client reads the end of the stream while the server still holds the
// connection. And a dropped `Incoming` stops accepting.
#[tokio::test]
async fn a_shutdown_reaches_the_client_and_a_dropped_stream_closes_the_port() {
    let scratch = Scratch::new("incoming-shutdown");
    let w = set(&scratch.path);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = Arc::new(ServerTls::single(&node1(&w), false).unwrap());
    let mut conns = incoming(listener, Some(tls));
    let dial = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = client(&w, false).connect("127.0.0.1", tcp).await.unwrap();
        tls.write_all(b"hi").await.unwrap();
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).await.unwrap();
        rest
    };
    let serve = async {
        let mut conn = conns.next().await.unwrap().unwrap();
        let mut two = [0u8; 2];
        conn.read_exact(&mut two).await.unwrap();
        conn.write_all(b"bye").await.unwrap();
        conn.shutdown().await.unwrap();
        conn
    };
    let (rest, _held) =
        tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(dial, serve) })
            .await
            .expect("the client sees the end while the server holds the connection");
    assert_eq!(rest, b"bye");
    drop(conns);
    let closed = async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the port closes once the stream is dropped");
}
