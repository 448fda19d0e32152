//! The server side: the client port's and the peer side's rustls
//! configurations, and accepting a connection with the one its
//! ClientHello asks for.
//!
//! Invariant: a connection tagged [`Side::Peer`] by a server whose peer
//! side requires client certificates presented a certificate that chains
//! to the peer CA (and has the allowed CN, if one is set); the peer
//! services trust that tag ([`PeerIdentity`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::reload::Reloading;
use crate::{PEER_SERVER_NAME, TlsError, files};

/// A certificate, its key and the CA that checks the other end.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// This end's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA bundle the other end's certificates must chain to.
    pub ca: Option<PathBuf>,
}

/// A server's TLS flags, as etcd names them.
#[derive(Clone, Debug, Default)]
pub struct ServerTlsFiles {
    /// `--cert-file`, `--key-file`, `--trusted-ca-file`.
    pub client: TlsFiles,
    /// `--client-cert-auth`: clients must present a certificate from the
    /// trusted CA.
    pub client_cert_auth: bool,
    /// `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`.
    pub peer: TlsFiles,
    /// `--peer-client-cert-auth`: members must present a certificate from
    /// the peer CA.
    pub peer_client_cert_auth: bool,
    /// `--peer-cert-allowed-cn`: and with this CN.
    pub peer_allowed_cn: Option<String>,
}

/// Which configuration accepted a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A client of etcd's API (or a plaintext connection).
    Client,
    /// A member, by the name in its ClientHello.
    Peer,
}

/// What the peer services know of a connection: put in each request's
/// extensions by the server's connection type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Whether the connection was accepted on the peer side with a
    /// certificate checked against the peer CA.
    pub verified_peer: bool,
    /// The common name of the certificate a client presented on the client
    /// side (checked against the client CA): etcd authenticates it as
    /// that user when a request carries no token.
    pub client_cn: Option<String>,
}

/// TLS of a server's port. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct ServerTls {
    client: Reloading<ServerConfig>,
    /// `None` for a service with one side only ([`ServerTls::single`]):
    /// every connection gets the client configuration.
    peer: Option<Reloading<ServerConfig>>,
    peer_cert_auth: bool,
}

/// The client verifier for `files`' CA: mandatory when `required`.
fn client_verifier(
    files: &TlsFiles,
    required: bool,
    allowed_cn: Option<&str>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let Some(ca) = &files.ca else {
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(files::roots(ca)?, crate::provider());
    if !required {
        builder = builder.allow_unauthenticated();
    }
    let inner = builder.build().map_err(|e| TlsError::Ca {
        path: ca.clone(),
        detail: e.to_string(),
    })?;
    Ok(match allowed_cn {
        Some(cn) => Arc::new(crate::verify::AllowedCn {
            inner,
            allowed: cn.to_string(),
        }),
        None => inner,
    })
}

/// One side's configuration, read from its files now.
fn server_config(
    files: &TlsFiles,
    required: bool,
    allowed_cn: Option<&str>,
) -> Result<ServerConfig, TlsError> {
    let verifier = client_verifier(files, required, allowed_cn)?;
    let certs = files::certs(&files.cert)?;
    let key = files::key(&files.key)?;
    let mut config = ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Flags(format!("TLS protocol versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            detail: e.to_string(),
        })?;
    // gRPC clients offer only h2 and get it; a client that offers both
    // (curl, a browser, Go's HTTP client) gets HTTP/1.1, where etcd's
    // /health and JSON gateway are served: rustls picks by the server's
    // order.
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"h2".to_vec()];
    Ok(config)
}

/// A side's configuration, rebuilt when any of its files changes.
fn reloading(
    files: &TlsFiles,
    required: bool,
    allowed_cn: Option<String>,
) -> Result<Reloading<ServerConfig>, TlsError> {
    let mut watched = vec![files.cert.clone(), files.key.clone()];
    watched.extend(files.ca.clone());
    let files = files.clone();
    Reloading::new(watched, move || {
        server_config(&files, required, allowed_cn.as_deref())
    })
}

impl ServerTls {
    /// Reads and checks every file now. The client port and the peer
    /// transport share one port, so both sides need a certificate, and
    /// members need a CA to check each other with.
    pub fn new(files: &ServerTlsFiles) -> Result<ServerTls, TlsError> {
        if files.client.cert.as_os_str().is_empty() || files.client.key.as_os_str().is_empty() {
            return Err(TlsError::Flags(
                "TLS needs --cert-file and --key-file (the client port's certificate)".into(),
            ));
        }
        if files.peer.cert.as_os_str().is_empty() || files.peer.key.as_os_str().is_empty() {
            return Err(TlsError::Flags(
                "clients and members share one port: with --cert-file, give --peer-cert-file \
                 and --peer-key-file too (they may be the same files)"
                    .into(),
            ));
        }
        if files.peer.ca.is_none() {
            return Err(TlsError::Flags(
                "members check each other's certificates: --peer-trusted-ca-file is needed".into(),
            ));
        }
        if files.client_cert_auth && files.client.ca.is_none() {
            return Err(TlsError::Flags(
                "--client-cert-auth needs --trusted-ca-file to check clients' certificates".into(),
            ));
        }
        if files.peer_allowed_cn.is_some() && !files.peer_client_cert_auth {
            return Err(TlsError::Flags(
                "--peer-cert-allowed-cn needs --peer-client-cert-auth".into(),
            ));
        }
        Ok(ServerTls {
            client: reloading(&files.client, files.client_cert_auth, None)?,
            peer: Some(reloading(
                &files.peer,
                files.peer_client_cert_auth,
                files.peer_allowed_cn.clone(),
            )?),
            peer_cert_auth: files.peer_client_cert_auth,
        })
    }

    /// TLS of a port with no peer side (MapReduce's coordinator and
    /// shuffle): one certificate for every connection, and with
    /// `client_cert_auth` every client must present a certificate that
    /// `files.ca` vouches for. Every connection is [`Side::Client`].
    pub fn single(files: &TlsFiles, client_cert_auth: bool) -> Result<ServerTls, TlsError> {
        if files.cert.as_os_str().is_empty() || files.key.as_os_str().is_empty() {
            return Err(TlsError::Flags(
                "TLS needs --cert-file and --key-file (this server's certificate)".into(),
            ));
        }
        if client_cert_auth && files.ca.is_none() {
            return Err(TlsError::Flags(
                "--client-cert-auth needs --trusted-ca-file to check clients' certificates".into(),
            ));
        }
        Ok(ServerTls {
            client: reloading(files, client_cert_auth, None)?,
            peer: None,
            peer_cert_auth: false,
        })
    }

    /// Whether the peer services must refuse connections not accepted as
    /// [`Side::Peer`] with a checked certificate.
    pub fn peer_cert_auth(&self) -> bool {
        self.peer_cert_auth
    }

    /// The TLS handshake on `io`, with the side its ClientHello names.
    /// The caller bounds how long it may take.
    pub async fn accept<S>(&self, io: S) -> io::Result<(TlsStream<S>, PeerIdentity)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let start = acceptor.await?;
        let peer = match start.client_hello().server_name() {
            Some(name) if name == PEER_SERVER_NAME => self.peer.as_ref(),
            _ => None,
        };
        let (side, config) = match peer {
            Some(peer) => (Side::Peer, peer.current()),
            None => (Side::Client, self.client.current()),
        };
        let stream = start.into_stream(config).await?;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        let certified = leaf.is_some();
        let verified_peer = side == Side::Peer && (certified || !self.peer_cert_auth);
        let client_cn = match side {
            Side::Client => leaf.and_then(|c| crate::common_name(c)),
            Side::Peer => None,
        };
        let identity = PeerIdentity {
            verified_peer,
            client_cn,
        };
        Ok((stream, identity))
    }
}

/// Whether a TLS connection agreed on HTTP/2 (`Some(true)`), HTTP/1.1
/// (`Some(false)`), or on nothing (`None`: look at its first bytes).
pub fn negotiated_h2<S>(stream: &TlsStream<S>) -> Option<bool> {
    match stream.get_ref().1.alpn_protocol() {
        Some(b"h2") => Some(true),
        Some(_) => Some(false),
        None => None,
    }
}
