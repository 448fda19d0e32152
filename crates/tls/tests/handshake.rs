//! Handshakes between [`ServerTls`] and [`ClientTls`] on loopback, as a
//! member's port sees them: who gets in, who is refused and with what
//! error, certificate rotation without a restart, and bad files.
//! (Run with `--features generate`; the certificates are rcgen's.)

#![cfg(feature = "generate")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flotilla_testkit::Scratch;
use flotilla_tls::generate::{Written, write_file, write_set};
use flotilla_tls::{
    ClientTls, ClientTlsFiles, PeerIdentity, ServerTls, ServerTlsFiles, TlsError, TlsFiles,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A CA with members node1 and node2 and a client, in `dir`.
fn set(dir: &Path) -> Written {
    write_set(dir, &["node1".into(), "node2".into()], &[], "client").unwrap()
}

fn member(w: &Written, name: &str) -> TlsFiles {
    let (_, pair) = w.members.iter().find(|(n, _)| n == name).unwrap();
    TlsFiles {
        cert: pair.cert.clone(),
        key: pair.key.clone(),
        ca: Some(w.ca.clone()),
    }
}

/// Mutual TLS for clients and peers, as `flotilla up --tls` sets it.
fn mutual(w: &Written) -> ServerTlsFiles {
    ServerTlsFiles {
        client: member(w, "node1"),
        client_cert_auth: true,
        peer: member(w, "node1"),
        peer_client_cert_auth: true,
        peer_allowed_cn: None,
    }
}

/// Serves `tls` on loopback: each accepted handshake answers `ok`; the
/// server's view of each connection comes out of the receiver.
async fn serve(
    tls: ServerTls,
) -> (
    String,
    mpsc::UnboundedReceiver<Result<PeerIdentity, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let tls = Arc::new(tls);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tls, tx) = (Arc::clone(&tls), tx.clone());
            tokio::spawn(async move {
                match tls.accept(tcp).await {
                    Ok((mut stream, identity)) => {
                        let _ = stream.write_all(b"ok").await;
                        let _ = stream.flush().await;
                        let _ = tx.send(Ok(identity));
                        let mut rest = Vec::new();
                        let _ = stream.read_to_end(&mut rest).await;
                    }
                    Err(e) => drop(tx.send(Err(e.to_string()))),
                }
            });
        }
    });
    (addr, rx)
}

/// Dials `addr` with `client` and reads the server's `ok`.
async fn dial(client: &ClientTls, addr: &str) -> Result<(), String> {
    let talk = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = client
            .connect("127.0.0.1", tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut ok = [0u8; 2];
        tls.read_exact(&mut ok).await.map_err(|e| e.to_string())?;
        assert_eq!(&ok, b"ok");
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), talk)
        .await
        .expect("the handshake ends")
}

fn client(w: &Written, with_cert: bool) -> ClientTls {
    ClientTls::new(&ClientTlsFiles {
        ca: w.ca.clone(),
        cert: with_cert.then(|| w.client.cert.clone()),
        key: with_cert.then(|| w.client.key.clone()),
    })
    .unwrap()
}

async fn server_saw(
    rx: &mut mpsc::UnboundedReceiver<Result<PeerIdentity, String>>,
) -> Result<PeerIdentity, String> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the server ends the handshake")
        .expect("the server runs")
}

#[tokio::test]
async fn clients_and_peers_get_in_with_certificates_from_the_ca_and_are_told_apart() {
    let scratch = Scratch::new("tls-round-trip");
    let w = set(&scratch.path);
    let (addr, mut seen) = serve(ServerTls::new(&mutual(&w)).unwrap()).await;

    dial(&client(&w, true), &addr).await.unwrap();
    assert_eq!(
        server_saw(&mut seen).await,
        Ok(PeerIdentity {
            verified_peer: false,
            client_cn: Some("client".into()),
        })
    );

    let peer = ClientTls::for_peers(&member(&w, "node2")).unwrap();
    dial(&peer, &addr).await.unwrap();
    assert_eq!(
        server_saw(&mut seen).await,
        Ok(PeerIdentity {
            verified_peer: true,
            client_cn: None,
        })
    );
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_told_so() {
    let scratch = Scratch::new("tls-untrusted");
    let w = set(&scratch.path.join("a"));
    let other = set(&scratch.path.join("b"));
    let (addr, _seen) = serve(ServerTls::new(&mutual(&w)).unwrap()).await;
    let e = dial(&client(&other, true), &addr).await.unwrap_err();
    assert!(
        e.contains("not one that") && e.contains(&other.ca.display().to_string()),
        "{e}"
    );
    assert!(e.contains("certificate"), "{e}");
}

#[tokio::test]
async fn with_client_cert_auth_a_client_without_a_certificate_is_refused() {
    let scratch = Scratch::new("tls-client-cert-auth");
    let w = set(&scratch.path);
    let (addr, mut seen) = serve(ServerTls::new(&mutual(&w)).unwrap()).await;
    assert!(dial(&client(&w, false), &addr).await.is_err());
    let e = server_saw(&mut seen).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");

    // Without --client-cert-auth the same client gets in.
    let optional = ServerTlsFiles {
        client_cert_auth: false,
        ..mutual(&w)
    };
    let (addr, _seen) = serve(ServerTls::new(&optional).unwrap()).await;
    dial(&client(&w, false), &addr).await.unwrap();
}

#[tokio::test]
async fn a_peer_with_a_certificate_from_another_ca_is_refused() {
    let scratch = Scratch::new("tls-peer-other-ca");
    let w = set(&scratch.path.join("a"));
    let other = set(&scratch.path.join("b"));
    let (addr, mut seen) = serve(ServerTls::new(&mutual(&w)).unwrap()).await;
    // Its own certificate from another CA, trusting ours: the server
    // refuses it.
    let stranger = ClientTls::for_peers(&TlsFiles {
        ca: Some(w.ca.clone()),
        ..member(&other, "node2")
    })
    .unwrap();
    assert!(dial(&stranger, &addr).await.is_err());
    let e = server_saw(&mut seen).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    // A client certificate from the right CA does not make a peer either:
    // its connection is a client's.
    dial(&client(&w, true), &addr).await.unwrap();
    assert_eq!(
        server_saw(&mut seen).await,
        Ok(PeerIdentity {
            verified_peer: false,
            client_cn: Some("client".into()),
        })
    );
}

#[tokio::test]
async fn peer_cert_allowed_cn_refuses_another_cn() {
    let scratch = Scratch::new("tls-allowed-cn");
    let w = set(&scratch.path);
    let files = ServerTlsFiles {
        peer_allowed_cn: Some("node1".into()),
        ..mutual(&w)
    };
    let (addr, mut seen) = serve(ServerTls::new(&files).unwrap()).await;
    let node2 = ClientTls::for_peers(&member(&w, "node2")).unwrap();
    assert!(dial(&node2, &addr).await.is_err());
    let e = server_saw(&mut seen).await.unwrap_err();
    assert!(e.contains("CN") && e.contains("node2"), "{e}");
    let node1 = ClientTls::for_peers(&member(&w, "node1")).unwrap();
    dial(&node1, &addr).await.unwrap();
    assert_eq!(
        server_saw(&mut seen).await,
        Ok(PeerIdentity {
            verified_peer: true,
            client_cn: None,
        })
    );
}

#[tokio::test]
async fn replaced_certificate_files_serve_the_next_connection_without_a_restart() {
    let scratch = Scratch::new("tls-rotation");
    let w = set(&scratch.path.join("old"));
    let new = set(&scratch.path.join("new"));
    let files = ServerTlsFiles {
        client_cert_auth: false,
        ..mutual(&w)
    };
    let (addr, _seen) = serve(ServerTls::new(&files).unwrap()).await;
    let trusts_new = client(&new, false);
    assert!(
        dial(&trusts_new, &addr).await.is_err(),
        "the old certificate is served"
    );
    dial(&client(&w, false), &addr).await.unwrap();

    // Rotate: the new CA's node1 certificate and key replace the files.
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let fresh = member(&new, "node1");
    let served = member(&w, "node1");
    write_file(&served.key, &read(&fresh.key), true).unwrap();
    write_file(&served.cert, &read(&fresh.cert), false).unwrap();

    dial(&trusts_new, &addr).await.unwrap();
    assert!(
        dial(&client(&w, false), &addr).await.is_err(),
        "the old one is gone"
    );

    // A half-done rotation (a key that does not fit) keeps the last good
    // pair in service.
    write_file(&served.key, &read(&member(&new, "node2").key), true).unwrap();
    dial(&trusts_new, &addr).await.unwrap();
}

/// The error's text, which must name `file`.
fn names(e: TlsError, file: &Path) -> String {
    let text = e.to_string();
    assert!(text.contains(&file.display().to_string()), "{text}");
    text
}

#[test]
fn missing_or_garbage_files_are_errors_that_name_the_file() {
    let scratch = Scratch::new("tls-bad-files");
    let w = set(&scratch.path);
    let garbage = scratch.path.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = scratch.path.join("missing.pem");
    let good = mutual(&w);
    let with_client = |f: TlsFiles| ServerTlsFiles {
        client: f,
        ..good.clone()
    };
    let cases = [
        (
            TlsFiles {
                cert: missing.clone(),
                ..good.client.clone()
            },
            &missing,
            "reading",
        ),
        (
            TlsFiles {
                cert: garbage.clone(),
                ..good.client.clone()
            },
            &garbage,
            "no PEM certificate",
        ),
        (
            TlsFiles {
                key: garbage.clone(),
                ..good.client.clone()
            },
            &garbage,
            "private key",
        ),
        (
            TlsFiles {
                ca: Some(garbage.clone()),
                ..good.client.clone()
            },
            &garbage,
            "no PEM certificate",
        ),
        (
            TlsFiles {
                key: w.client.key.clone(),
                ..good.client.clone()
            },
            &w.client.key,
            "does not fit",
        ),
    ];
    for (files, file, what) in cases {
        let e = ServerTls::new(&with_client(files)).unwrap_err();
        let text = names(e, file);
        assert!(text.contains(what), "{text}");
    }
}

#[test]
fn a_client_s_missing_ca_and_a_server_s_missing_flags_are_errors() {
    let scratch = Scratch::new("tls-bad-flags");
    let w = set(&scratch.path);
    let missing = scratch.path.join("missing.pem");
    let good = mutual(&w);
    let e = ClientTls::new(&ClientTlsFiles {
        ca: missing.clone(),
        cert: None,
        key: None,
    })
    .unwrap_err();
    names(e, &missing);
    let e = ServerTls::new(&ServerTlsFiles {
        client: TlsFiles {
            ca: None,
            ..good.client.clone()
        },
        ..good.clone()
    })
    .unwrap_err();
    assert!(e.to_string().contains("--trusted-ca-file"), "{e}");
}
