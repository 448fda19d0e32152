//! TLS for Flotilla's one port (etcd's API, the JSON gateway and the peer
//! transport) and for its clients, on rustls with the `ring` provider.
//!
//! - [`ServerTls`] accepts a connection: a member dialing a peer names
//!   [`PEER_SERVER_NAME`] in its ClientHello and gets the peer
//!   configuration (`--peer-cert-file`, peer CA, `--peer-client-cert-auth`,
//!   `--peer-cert-allowed-cn`); every other client gets the client one
//!   (`--cert-file`, `--trusted-ca-file`, `--client-cert-auth`). The
//!   connection is tagged with the [`Side`] that accepted it, so that the
//!   peer services can refuse clients ([`PeerIdentity`]).
//! - [`ClientTls`] dials over TLS (the client library and the etcdctl-style
//!   flags `--cacert`, `--cert`, `--key`) and, built [`ClientTls::for_peers`],
//!   dials members: the ClientHello names the peer side, and the server's
//!   certificate is still checked against the address dialed, so a member
//!   reaches the member it meant.
//! - [`incoming`] accepts a port's connections for a tonic server with
//!   one side only (MapReduce's coordinator and shuffle), plaintext or
//!   TLS ([`ServerTls::single`]), each handshake on its own task.
//! - Every configuration is rebuilt from its files when one of them
//!   changes ([`reload`]): rotating certificates needs no restart. A
//!   rebuild that fails (a file half written, a key that does not fit)
//!   keeps the previous configuration and logs why.
//!
//! Invariant: nothing read from a file or a peer is unwrapped; every error
//! names the file or the peer it came from ([`TlsError`]).

mod client;
mod cn;
pub mod der;
mod error;
mod files;
mod incoming;
pub mod mismatch;
pub mod pages;
pub mod reload;
mod server;
mod verify;

#[cfg(feature = "generate")]
pub mod generate;

pub use client::{ClientTls, ClientTlsFiles, Connector, lazy_channel, tonic_uri};
pub use cn::common_name;
pub use error::TlsError;
pub use incoming::{Accepted, AcceptedInfo, HANDSHAKE_LIMIT, Incoming, incoming};
pub use server::{PeerIdentity, ServerTls, ServerTlsFiles, Side, TlsFiles, negotiated_h2};
pub use tokio_rustls::server::TlsStream as ServerStream;

/// The server name a member puts in its ClientHello when it dials a peer,
/// so that the server answers with its peer certificate and checks the
/// caller against the peer CA. Not a name certificates must carry: the
/// dialer checks the server's certificate against the address it dialed.
pub const PEER_SERVER_NAME: &str = "peer.flotilla.invalid";

/// The ring crypto provider every configuration here is built with.
/// rustls deprecates it for lacking post-quantum key exchange; ring is
/// still the provider that builds without a C toolchain for aws-lc, which
/// this workspace keeps out (DEPS.md), and etcd's own clients negotiate
/// the classic groups it offers.
#[allow(deprecated)]
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
