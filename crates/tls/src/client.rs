//! The dialing side: a rustls client configuration (rebuilt when its
//! files change) and a tonic connector that opens TCP, then TLS.
//!
//! A client (the `flotilla` commands, the client library) checks the
//! server's certificate against the host it dials. A member dialing a
//! peer ([`ClientTls::for_peers`]) names [`crate::PEER_SERVER_NAME`] in
//! its ClientHello, so that the server answers as a peer, and still
//! checks the certificate against the address it dialed.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::reload::Reloading;
use crate::{PEER_SERVER_NAME, TlsError, files};

/// A client's TLS flags, as etcdctl names them.
#[derive(Clone, Debug, Default)]
pub struct ClientTlsFiles {
    /// `--cacert`: the CA bundle servers' certificates must chain to.
    pub ca: PathBuf,
    /// `--cert`: a client certificate, for servers that want one.
    pub cert: Option<PathBuf>,
    /// `--key`: its key.
    pub key: Option<PathBuf>,
}

/// A configuration and the verifier it was built with (peers wrap it per
/// connection to check the address dialed).
#[derive(Debug)]
struct Built {
    config: Arc<ClientConfig>,
    verifier: Arc<dyn ServerCertVerifier>,
}

/// TLS of a client or of a member's peer links. Share it with `Arc`.
#[derive(Debug)]
pub struct ClientTls {
    built: Reloading<Built>,
    peer: bool,
    /// The CA file, named when a server's certificate is refused.
    ca: PathBuf,
    /// Whether a client certificate is configured.
    has_cert: bool,
}

fn build(files: &ClientTlsFiles) -> Result<Built, TlsError> {
    let verifier =
        WebPkiServerVerifier::builder_with_provider(files::roots(&files.ca)?, crate::provider())
            .build()
            .map_err(|e| TlsError::Ca {
                path: files.ca.clone(),
                detail: e.to_string(),
            })?;
    let builder = ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Flags(format!("TLS protocol versions: {e}")))?
        .with_webpki_verifier(Arc::clone(&verifier));
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(files::certs(cert)?, files::key(key)?)
            .map_err(|e| TlsError::KeyMismatch {
                cert: cert.clone(),
                key: key.clone(),
                detail: e.to_string(),
            })?,
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => return Err(TlsError::Flags("--cert needs --key".into())),
        (None, Some(_)) => return Err(TlsError::Flags("--key needs --cert".into())),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Built {
        config: Arc::new(config),
        verifier,
    })
}

impl ClientTls {
    /// A client's TLS, its files read and checked now.
    pub fn new(files: &ClientTlsFiles) -> Result<ClientTls, TlsError> {
        Self::with(files, false)
    }

    /// A member's TLS toward its peers: `files` are its peer certificate,
    /// key and the peer CA.
    pub fn for_peers(files: &crate::TlsFiles) -> Result<ClientTls, TlsError> {
        let Some(ca) = files.ca.clone() else {
            return Err(TlsError::Flags("--peer-trusted-ca-file is needed".into()));
        };
        let files = ClientTlsFiles {
            ca,
            cert: Some(files.cert.clone()),
            key: Some(files.key.clone()),
        };
        Self::with(&files, true)
    }

    fn with(files: &ClientTlsFiles, peer: bool) -> Result<ClientTls, TlsError> {
        let mut watched = vec![files.ca.clone()];
        watched.extend(files.cert.clone());
        watched.extend(files.key.clone());
        let files = files.clone();
        let (ca, has_cert) = (files.ca.clone(), files.cert.is_some());
        let built = Reloading::new(watched, move || build(&files))?;
        Ok(ClientTls {
            built,
            peer,
            ca,
            has_cert,
        })
    }

    /// Whether this client presents a certificate.
    pub fn has_cert(&self) -> bool {
        self.has_cert
    }

    /// TLS over `tcp`, to `host` (a name or an IP address).
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS server name {host:?}: {e}"),
            )
        })?;
        let built = self.built.current();
        let (config, sent) = if self.peer {
            let mut config = (*built.config).clone();
            config
                .dangerous()
                .set_certificate_verifier(Arc::new(crate::verify::Dialed {
                    inner: Arc::clone(&built.verifier),
                    name,
                }));
            let sent = ServerName::try_from(PEER_SERVER_NAME).map_err(io::Error::other)?;
            (Arc::new(config), sent)
        } else {
            (Arc::clone(&built.config), name)
        };
        tokio_rustls::TlsConnector::from(config)
            .connect(sent, tcp)
            .await
            .map_err(|e| {
                let refused = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                let why = match refused {
                    true => format!(
                        "the server's certificate is not one that {} vouches for for {host}",
                        self.ca.display()
                    ),
                    false => "failed".to_string(),
                };
                io::Error::new(e.kind(), format!("TLS handshake with {host}: {why}: {e}"))
            })
    }

    /// A connector for tonic's `Endpoint::connect_with_connector*`.
    pub fn connector(self: &Arc<Self>) -> Connector {
        Connector {
            tls: Arc::clone(self),
        }
    }
}

/// Opens TCP (without Nagle's delay) and TLS to a URI's host and port.
#[derive(Clone, Debug)]
pub struct Connector {
    tls: Arc<ClientTls>,
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let tls = Arc::clone(&self.tls);
        Box::pin(async move {
            let bad = || {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no host:port in {uri}"),
                )
            };
            let host = uri.host().ok_or_else(bad)?.to_string();
            let port = uri.port_u16().ok_or_else(bad)?;
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = TcpStream::connect((bare, port)).await.map_err(|e| {
                io::Error::new(e.kind(), format!("connecting to {host}:{port}: {e}"))
            })?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(tls.connect(&host, tcp).await?))
        })
    }
}

/// The URI tonic dials for endpoint `e` (`host:port`, or with an
/// `http://` or `https://` scheme): always `http://host:port`, since the
/// [`Connector`] speaks TLS itself and tonic sees plain HTTP/2.
pub fn tonic_uri(e: &str) -> String {
    let bare = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .unwrap_or(e);
    format!("http://{bare}")
}

/// A channel to `addr` (`host:port`) over TLS, connected on first use.
pub fn lazy_channel(
    endpoint: tonic::transport::Endpoint,
    tls: &Arc<ClientTls>,
) -> tonic::transport::Channel {
    endpoint.connect_with_connector_lazy(tls.connector())
}

#[cfg(test)]
mod tests {
    use super::tonic_uri;

    #[test]
    fn tonic_dials_plain_http_whatever_the_endpoint_s_scheme() {
        assert_eq!(tonic_uri("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(tonic_uri("http://h:1"), "http://h:1");
        assert_eq!(tonic_uri("https://h:1"), "http://h:1");
        assert_eq!(tonic_uri("[::1]:2379"), "http://[::1]:2379");
    }
}
