//! Just enough DER (X.690) to walk to a field: one element's tag,
//! contents and what follows, with every length checked against what
//! remains, so malformed input yields `None`, never a panic or a read past
//! the end. Shared by the certificate CN reader ([`crate::common_name`])
//! and the JWT key loader of the etcd server.

/// One DER element: its tag, its contents, and what follows it.
pub fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The contents of the element at the start of `der`, and what follows,
/// if its tag is `tag`.
pub fn expect(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, body, rest) = element(der)?;
    (t == tag).then_some((body, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_long_and_malformed() {
        let body = [0xaau8; 300];
        let with = |head: &[u8], n: usize| [head, &body[..n]].concat();
        // Short form, up to 127.
        let e = with(&[0x04, 0x7f], 127);
        assert_eq!(
            element(&e).map(|(t, c, r)| (t, c.len(), r.len())),
            Some((4, 127, 0))
        );
        // 0x80 is no length (BER's indefinite form): refused.
        assert_eq!(element(&with(&[0x04, 0x80], 128)), None);
        // Long forms of one to four bytes; five is refused.
        let e = with(&[0x04, 0x81, 0x80], 128);
        assert_eq!(element(&e).map(|(_, c, _)| c.len()), Some(128));
        let e = with(&[0x04, 0x82, 0x01, 0x2c], 300);
        assert_eq!(element(&e).map(|(_, c, _)| c.len()), Some(300));
        let e = with(&[0x04, 0x84, 0, 0, 0, 1], 1);
        assert_eq!(element(&e).map(|(_, c, _)| c.len()), Some(1));
        assert_eq!(element(&with(&[0x04, 0x85, 0, 0, 0, 0, 1], 1)), None);
        // A long form cut short, or contents shorter than said.
        assert_eq!(element(&[0x04, 0x82, 0x01]), None);
        assert_eq!(
            element(&[0x04, 0x81, 0x00]).map(|(_, c, r)| (c.len(), r.len())),
            Some((0, 0))
        );
        assert_eq!(element(&with(&[0x04, 0x05], 4)), None);
        assert_eq!(element(&[0x04]), None);
        // (The fold's `|` and `^` agree: the shifted value's low byte
        // is zero. cargo-mutants' `^` mutant is equivalent.)
    }
}
