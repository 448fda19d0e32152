//! Why a TLS configuration could not be built: always with the file (or
//! flag) that was wrong.

use std::path::PathBuf;

/// A TLS configuration that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file could not be written (`flotilla certs`).
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the kind wanted.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        what: String,
    },
    /// The key does not belong to the certificate, or rustls refused it.
    #[error("the key in {key} does not fit the certificate in {cert}: {detail}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        detail: String,
    },
    /// A CA file holds certificates rustls cannot use as trust anchors.
    #[error("{path}: not a usable CA certificate: {detail}")]
    Ca {
        /// The CA file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The flags do not make a configuration (say, client certificate
    /// authentication without a CA to check them with).
    #[error("{0}")]
    Flags(String),
    /// A certificate could not be made (`flotilla certs`).
    #[error("generating {what}: {detail}")]
    Generate {
        /// Which certificate.
        what: String,
        /// Why.
        detail: String,
    },
}
