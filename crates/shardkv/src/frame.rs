//! The frame around every snapshot of this crate's machines:
//! `magic (4 bytes) | version: u8 | crc32c(body): u32 LE | body`.
//! Unframing takes untrusted bytes and says what was wrong: not this
//! kind of snapshot, a version this build does not read, or a checksum
//! that does not match.

use bytes::Bytes;

const HEADER_LEN: usize = 9;

/// `body` framed with `magic` and `version`.
pub(crate) fn frame(magic: [u8; 4], version: u8, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&magic);
    out.push(version);
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// The body of a `what` snapshot framed with `magic` and `version`.
pub(crate) fn unframe(
    data: &Bytes,
    magic: [u8; 4],
    version: u8,
    what: &str,
) -> Result<Bytes, String> {
    if data.len() < HEADER_LEN || data[..4] != magic {
        return Err(format!("not a {what} snapshot ({} bytes)", data.len()));
    }
    if data[4] != version {
        return Err(format!(
            "{what} snapshot version {} (this build reads {version})",
            data[4]
        ));
    }
    let crc = u32::from_le_bytes([data[5], data[6], data[7], data[8]]);
    let body = data.slice(HEADER_LEN..);
    if crc32c::crc32c(&body) != crc {
        return Err(format!("{what} snapshot checksum mismatch"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_each_fault_is_named() {
        let framed = frame(*b"TEST", 3, b"body");
        assert_eq!(
            unframe(&framed, *b"TEST", 3, "test").unwrap(),
            Bytes::from_static(b"body")
        );
        let empty = frame(*b"TEST", 3, b"");
        assert_eq!(unframe(&empty, *b"TEST", 3, "test").unwrap(), Bytes::new());
        let short = unframe(&framed.slice(..8), *b"TEST", 3, "test").unwrap_err();
        assert!(short.contains("not a test snapshot (8 bytes)"), "{short}");
        let other = unframe(&framed, *b"ELSE", 3, "test").unwrap_err();
        assert!(other.contains("not a test snapshot"), "{other}");
        let newer = unframe(&framed, *b"TEST", 2, "test").unwrap_err();
        assert!(newer.contains("version 3 (this build reads 2)"), "{newer}");
        let mut bad = framed.to_vec();
        bad[10] ^= 1;
        let bad = unframe(&Bytes::from(bad), *b"TEST", 3, "test").unwrap_err();
        assert!(bad.contains("checksum mismatch"), "{bad}");
    }
}
