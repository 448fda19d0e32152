//! Certificate checks beyond rustls's WebPKI ones: a peer's CN against
//! `--peer-cert-allowed-cn`, and a peer server's certificate against the
//! address dialed when the ClientHello named [`crate::PEER_SERVER_NAME`].
//!
//! Both wrap rustls's verifiers and delegate everything else to them, so
//! the chain, validity and signature checks are rustls's own.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// A client verifier that also wants the certificate's CN to be `allowed`
/// (etcd's `--peer-cert-allowed-cn`).
#[derive(Debug)]
pub(crate) struct AllowedCn {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) allowed: String,
}

impl ClientCertVerifier for AllowedCn {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cn = crate::common_name(end_entity);
        if cn.as_deref() == Some(self.allowed.as_str()) {
            return Ok(verified);
        }
        tracing::warn!(cn = ?cn, allowed = %self.allowed, "refused a peer whose certificate's CN is not the allowed one");
        Err(Error::General(format!(
            "peer certificate CN {cn:?} is not the allowed CN {:?}",
            self.allowed
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server verifier that checks the certificate against `name` (the
/// address dialed) whatever name the ClientHello carried.
#[derive(Debug)]
pub(crate) struct Dialed {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) name: ServerName<'static>,
}

impl ServerCertVerifier for Dialed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sent: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
