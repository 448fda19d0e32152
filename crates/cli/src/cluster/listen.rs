//! `flotilla server --listen`: the one address a member serves clients and
//! peers on, and the schemes it speaks there.
//!
//! `HOST:PORT` alone speaks what the TLS flags say (TLS with
//! `--cert-file`, plaintext without). etcd operators write URLs, as in
//! `--listen-client-urls`: `https://HOST:PORT` asks for TLS (and needs
//! the certificate flags), `http://HOST:PORT` for plaintext, and both,
//! comma-separated, for both on the one port. Invariant: whatever is
//! asked names one address, and a scheme the flags cannot serve is an
//! error at start, not a surprise at the first connection.

use anyhow::bail;

/// What `--listen` asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Listen {
    /// The address to bind, `HOST:PORT`.
    pub addr: String,
    /// With TLS configured, serve plaintext on the same port as well.
    pub plaintext_too: bool,
}

/// Reads `--listen` given whether TLS certificates are configured.
pub fn parse(listen: &str, tls: bool) -> anyhow::Result<Listen> {
    let (mut plain, mut secure, mut bare) = (false, false, false);
    let mut addrs = Vec::new();
    for item in listen.split(',').map(str::trim) {
        let addr = if let Some(a) = item.strip_prefix("https://") {
            secure = true;
            a
        } else if let Some(a) = item.strip_prefix("http://") {
            plain = true;
            a
        } else if item.contains("://") {
            bail!("--listen {item:?}: only http:// and https:// are served");
        } else {
            bare = true;
            item
        };
        let addr = addr.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') {
            bail!("--listen {item:?} is not HOST:PORT, http://HOST:PORT or https://HOST:PORT");
        }
        addrs.push(addr.to_string());
    }
    addrs.dedup();
    let [addr] = &addrs[..] else {
        bail!(
            "--listen {listen}: a member serves clients and peers on one port, so every \
             URL must name the same HOST:PORT (got {})",
            addrs.join(", ")
        );
    };
    if bare && (plain || secure) {
        bail!("--listen {listen}: give HOST:PORT alone, or URLs with their schemes");
    }
    if secure && !tls {
        bail!("--listen {listen} asks for https://, which needs --cert-file and --key-file");
    }
    if plain && !secure && tls {
        bail!(
            "--listen {listen} asks for plaintext only, but TLS flags are given: list \
             https://{addr} too to serve both schemes on the port, or leave out the TLS flags"
        );
    }
    Ok(Listen {
        addr: addr.clone(),
        plaintext_too: plain && secure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(listen: &str, tls: bool) -> (String, bool) {
        let l = parse(listen, tls).unwrap();
        (l.addr, l.plaintext_too)
    }

    fn err(listen: &str, tls: bool) -> String {
        parse(listen, tls).unwrap_err().to_string()
    }

    #[test]
    fn an_address_alone_speaks_what_the_flags_say() {
        assert_eq!(
            ok("127.0.0.1:2379", false),
            ("127.0.0.1:2379".into(), false)
        );
        assert_eq!(ok("127.0.0.1:2379", true), ("127.0.0.1:2379".into(), false));
    }

    #[test]
    fn urls_name_the_schemes() {
        assert_eq!(ok("http://a:1/", false), ("a:1".into(), false));
        assert_eq!(ok("https://a:1", true), ("a:1".into(), false));
        assert_eq!(ok("http://a:1, https://a:1", true), ("a:1".into(), true));
        assert_eq!(ok("https://a:1,http://a:1", true), ("a:1".into(), true));
    }

    #[test]
    fn what_cannot_be_served_is_refused_and_named() {
        assert!(err("https://a:1", false).contains("needs --cert-file"));
        assert!(err("http://a:1", true).contains("list https://a:1 too"));
        assert!(err("http://a:1,https://b:1", true).contains("one port"));
        assert!(err("a:1,https://a:1", true).contains("alone"));
        assert!(err("unix://a", false).contains("only http:// and https://"));
        assert!(err("http://", false).contains("is not HOST:PORT"));
        assert!(err("http://a:1/x", false).contains("is not HOST:PORT"));
    }
}
