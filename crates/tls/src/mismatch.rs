//! What a failed call most likely means about TLS, when its error does
//! not say. Plaintext spoken to a TLS server reads as an HTTP/2 protocol
//! error, or as a connection closed under the client's preface when the
//! server's refusal wins the race (2 of 4 runs of a MapReduce TLS test
//! here); a client certificate the server refused reads as a connection
//! closed after the handshake. Callers word the hint for their flags.

/// A likely TLS mismatch behind a transport error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The client spoke plaintext; the server likely serves TLS.
    PlaintextToTls,
    /// The client spoke TLS and the connection closed: the server likely
    /// refused its certificate (or its lack of one).
    CertificateRefused,
}

/// The likely mismatch behind `error` (with its causes), for a client
/// that dialed over TLS or not.
pub fn mismatch(error: &str, dialed_tls: bool) -> Option<Mismatch> {
    let closed = [
        "broken pipe",
        "connection reset",
        "connection closed",
        "unexpected EOF",
        "fatal alert",
    ];
    let closed = closed.iter().any(|c| error.contains(c));
    if !dialed_tls && (error.contains("h2 protocol error") || closed) {
        Some(Mismatch::PlaintextToTls)
    } else if dialed_tls && closed {
        Some(Mismatch::CertificateRefused)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_read_as_the_likely_mismatch() {
        let h2 = "Internal error: h2 protocol error: frame with invalid size";
        assert_eq!(mismatch(h2, false), Some(Mismatch::PlaintextToTls));
        assert_eq!(mismatch(h2, true), None);
        for closed in [
            "stream closed because of a broken pipe",
            "connection reset by peer",
            "transport error: connection closed",
            "tls handshake eof: unexpected EOF",
            "received fatal alert: CertificateRequired",
        ] {
            assert_eq!(
                mismatch(closed, true),
                Some(Mismatch::CertificateRefused),
                "{closed}"
            );
            assert_eq!(
                mismatch(closed, false),
                Some(Mismatch::PlaintextToTls),
                "{closed}"
            );
        }
        assert_eq!(mismatch("connection refused", false), None);
        assert_eq!(mismatch("connection refused", true), None);
    }
}
