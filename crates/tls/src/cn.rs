//! The subject common name (CN) of an X.509 certificate, for etcd's
//! `--peer-cert-allowed-cn`.
//!
//! A small DER reader rather than an X.509 crate: only the path
//! Certificate → tbsCertificate → subject → CN is walked, and every length
//! is checked against what remains, so a malformed certificate yields
//! `None`, never a panic. The certificates it reads were verified by
//! rustls first.

use crate::der::{element, expect};

/// DER tags this walk meets.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0] EXPLICIT` version of tbsCertificate.
const VERSION: u8 = 0xa0;
/// OID 2.5.4.3 (id-at-commonName), encoded.
const CN_OID: [u8; 3] = [0x55, 0x04, 0x03];

/// The first CN in the subject of the DER certificate `der`, if it has one
/// that is text.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (mut tbs, _) = expect(cert, SEQUENCE)?;
    if let Some((VERSION, _, rest)) = element(tbs) {
        tbs = rest;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (mut rdns, _) = expect(tbs, SEQUENCE)?;
    while !rdns.is_empty() {
        let (mut set, rest) = expect(rdns, SET)?;
        rdns = rest;
        while !set.is_empty() {
            let (attr, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(attr, OID)?;
            if oid == CN_OID {
                let (_, text, _) = element(value)?;
                return std::str::from_utf8(text).ok().map(str::to_string);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_garbage_der_has_no_name() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x05, 0x30],
        ] {
            assert_eq!(common_name(bad), None, "{bad:?}");
        }
    }

    #[cfg(feature = "generate")]
    #[test]
    fn reads_the_cn_rcgen_wrote() {
        let ca = crate::generate::Authority::new("test CA").unwrap();
        let leaf = ca.issue("node7", &["127.0.0.1".to_string()]).unwrap();
        assert_eq!(common_name(&leaf.der).as_deref(), Some("node7"));
        assert_eq!(common_name(&ca.der).as_deref(), Some("test CA"));
    }
}
