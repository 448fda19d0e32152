//! etcd's JWT tokens (`--auth-token jwt,pub-key=FILE,priv-key=FILE,
//! sign-method=RS256,ttl=5m`): signed with a key pair that every member
//! holds, so that any member, or anything else given the public key,
//! checks a token without asking.
//!
//! A token is RFC 7519's compact form: base64url(header) . base64url(claims)
//! . base64url(signature), with etcd's claims `username`, `revision` and
//! `exp`. `revision` is the auth revision of the user's last password
//! change (`flotilla_kv::User::since`), so a new password or a deleted user
//! voids the tokens made before, as with the simple tokens.
//!
//! Keys are PEM files as openssl writes them: RSA private keys in PKCS#1 or
//! PKCS#8, EC private keys in SEC1 or PKCS#8, public keys as
//! SubjectPublicKeyInfo. The public key must be the private key's own:
//! a member whose files do not match refuses to start, rather than hand
//! out tokens no member accepts.
//!
//! Invariants: a token verifies only with the configured algorithm (its
//! header's `alg` must name it; `none` and every other value are refused)
//! and the configured public key, before `exp`, for a user that exists
//! with the same `revision`. Nothing in a token is trusted before its
//! signature is checked.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};

use flotilla_kv::AuthError;

/// The signing algorithms etcd's `sign-method` names that this build
/// offers (RFC 7518 names).
const METHODS: &str = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384";

/// A JWT signing algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
}

impl Method {
    fn parse(name: &str) -> Result<Method, String> {
        Ok(match name {
            "RS256" => Method::Rs256,
            "RS384" => Method::Rs384,
            "RS512" => Method::Rs512,
            "PS256" => Method::Ps256,
            "PS384" => Method::Ps384,
            "PS512" => Method::Ps512,
            "ES256" => Method::Es256,
            "ES384" => Method::Es384,
            other => {
                return Err(format!(
                    "sign-method {other:?} is not offered; use one of {METHODS}"
                ));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Method::Rs256 => "RS256",
            Method::Rs384 => "RS384",
            Method::Rs512 => "RS512",
            Method::Ps256 => "PS256",
            Method::Ps384 => "PS384",
            Method::Ps512 => "PS512",
            Method::Es256 => "ES256",
            Method::Es384 => "ES384",
        }
    }

    fn rsa_signing(self) -> Option<&'static dyn signature::RsaEncoding> {
        Some(match self {
            Method::Rs256 => &signature::RSA_PKCS1_SHA256,
            Method::Rs384 => &signature::RSA_PKCS1_SHA384,
            Method::Rs512 => &signature::RSA_PKCS1_SHA512,
            Method::Ps256 => &signature::RSA_PSS_SHA256,
            Method::Ps384 => &signature::RSA_PSS_SHA384,
            Method::Ps512 => &signature::RSA_PSS_SHA512,
            Method::Es256 | Method::Es384 => return None,
        })
    }

    fn ecdsa_signing(self) -> Option<&'static signature::EcdsaSigningAlgorithm> {
        match self {
            Method::Es256 => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
            Method::Es384 => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
            _ => None,
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Method::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Method::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Method::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Method::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Method::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Method::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            Method::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Method::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }
}

/// The private half.
enum Signer {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

/// A member's JWT key pair and algorithm.
pub struct JwtKey {
    method: Method,
    signer: Signer,
    /// The public key as ring verifies with it (PKCS#1 RSAPublicKey, or
    /// the EC point), taken from the private key and checked against the
    /// public key file.
    public: Vec<u8>,
    rng: SystemRandom,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("method", &self.method.name())
            .finish_non_exhaustive()
    }
}

/// The JSON of a token's claims, etcd's names.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

impl JwtKey {
    /// Reads and checks the key files for `method` (etcd's `sign-method`).
    pub fn load(public: &Path, private: &Path, method: &str) -> Result<JwtKey, String> {
        let method = Method::parse(method)?;
        let in_file = |what: &str| format!("{}: {what}", private.display());
        let key = PrivateKeyDer::from_pem_slice(&read(private)?)
            .map_err(|e| in_file(&format!("no PEM private key in it: {e}")))?;
        let rng = SystemRandom::new();
        let signer = match (method.ecdsa_signing(), &key) {
            (None, PrivateKeyDer::Pkcs1(k)) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            (None, PrivateKeyDer::Pkcs8(k)) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            (None, _) => return Err(in_file("not an RSA key, which sign-method wants")),
            (Some(alg), PrivateKeyDer::Pkcs8(k)) => {
                let pair = EcdsaKeyPair::from_pkcs8(alg, k.secret_pkcs8_der(), &rng)
                    .map_err(|e| in_file(&format!("not a key for {}: {e}", method.name())))?;
                return Self::finish(method, public, Signer::Ecdsa(pair), rng);
            }
            (Some(alg), PrivateKeyDer::Sec1(k)) => {
                let (scalar, point) = der::sec1(k.secret_sec1_der())
                    .ok_or_else(|| in_file("a SEC1 EC key without its public key"))?;
                let pair = EcdsaKeyPair::from_private_key_and_public_key(alg, scalar, point, &rng)
                    .map_err(|e| in_file(&format!("not a key for {}: {e}", method.name())))?;
                return Self::finish(method, public, Signer::Ecdsa(pair), rng);
            }
            (Some(_), _) => return Err(in_file("not an EC key, which sign-method wants")),
        }
        .map_err(|e| in_file(&format!("not a usable RSA key: {e}")))?;
        Self::finish(method, public, Signer::Rsa(signer), rng)
    }

    /// Checks that the public key file holds the private key's own half.
    fn finish(
        method: Method,
        public_path: &Path,
        signer: Signer,
        rng: SystemRandom,
    ) -> Result<JwtKey, String> {
        let public = match &signer {
            Signer::Rsa(k) => k.public().as_ref().to_vec(),
            Signer::Ecdsa(k) => k.public_key().as_ref().to_vec(),
        };
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(&read(public_path)?).map_err(|e| {
            format!(
                "{}: no PEM public key (BEGIN PUBLIC KEY) in it: {e}",
                public_path.display()
            )
        })?;
        if der::spki_key(spki.as_ref()) != Some(public.as_slice()) {
            return Err(format!(
                "{} is not the public half of the private key",
                public_path.display()
            ));
        }
        Ok(JwtKey {
            method,
            signer,
            public,
            rng,
        })
    }

    /// A token for `username`, whose password changed at auth revision
    /// `revision`, expiring at Unix second `exp`.
    pub fn issue(&self, username: &str, revision: u64, exp: u64) -> Result<String, AuthError> {
        let header = Header {
            alg: self.method.name().to_string(),
            typ: Some("JWT".to_string()),
        };
        let claims = Claims {
            username: username.to_string(),
            revision,
            exp,
        };
        let header = serde_json::to_vec(&header).map_err(|_| AuthError::InvalidAuthToken)?;
        let claims = serde_json::to_vec(&claims).map_err(|_| AuthError::InvalidAuthToken)?;
        let signed = format!("{}.{}", B64.encode(header), B64.encode(claims));
        let signature = match &self.signer {
            Signer::Rsa(k) => {
                let encoding = self
                    .method
                    .rsa_signing()
                    .ok_or(AuthError::InvalidAuthToken)?;
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(encoding, &self.rng, signed.as_bytes(), &mut sig)
                    .map_err(|_| AuthError::InvalidAuthToken)?;
                sig
            }
            Signer::Ecdsa(k) => k
                .sign(&self.rng, signed.as_bytes())
                .map_err(|_| AuthError::InvalidAuthToken)?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{signed}.{}", B64.encode(signature)))
    }

    /// The user and revision a token names, if its signature is good and
    /// it has not expired at Unix second `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<(String, u64), AuthError> {
        let bad = AuthError::InvalidAuthToken;
        let (signed, sig) = token.rsplit_once('.').ok_or(bad)?;
        let (header, claims) = signed.split_once('.').ok_or(bad)?;
        let sig = B64.decode(sig).map_err(|_| bad)?;
        UnparsedPublicKey::new(self.method.verification(), &self.public)
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| bad)?;
        let header: Header =
            serde_json::from_slice(&B64.decode(header).map_err(|_| bad)?).map_err(|_| bad)?;
        if header.alg != self.method.name() {
            return Err(bad);
        }
        let claims: Claims =
            serde_json::from_slice(&B64.decode(claims).map_err(|_| bad)?).map_err(|_| bad)?;
        if claims.exp <= now {
            return Err(bad);
        }
        Ok((claims.username, claims.revision))
    }
}

/// `--auth-token`, as etcd spells it: `simple`, or `jwt,` and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSpec {
    /// The default: tokens signed with the cluster's replicated key.
    Simple,
    /// JWT with these files and method; `ttl` if given.
    Jwt {
        /// `pub-key=`.
        public: PathBuf,
        /// `priv-key=`.
        private: PathBuf,
        /// `sign-method=`.
        method: String,
        /// `ttl=` (Go's duration syntax, as etcd: `5m`, `300s`, `1h30m`).
        ttl: Option<std::time::Duration>,
    },
}

impl std::str::FromStr for TokenSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<TokenSpec, String> {
        let mut parts = spec.split(',');
        match parts.next() {
            Some("simple") if parts.next().is_none() => return Ok(TokenSpec::Simple),
            Some("simple") => return Err("--auth-token simple takes no options".into()),
            Some("jwt") => {}
            _ => return Err(format!("--auth-token {spec:?}: expected simple or jwt,...")),
        }
        let (mut public, mut private, mut method, mut ttl) = (None, None, None, None);
        for option in parts {
            let (name, value) = option
                .split_once('=')
                .ok_or_else(|| format!("--auth-token option {option:?} is not NAME=VALUE"))?;
            match name {
                "pub-key" => public = Some(PathBuf::from(value)),
                "priv-key" => private = Some(PathBuf::from(value)),
                "sign-method" => method = Some(value.to_string()),
                "ttl" => ttl = Some(go_duration(value)?),
                other => {
                    return Err(format!(
                        "--auth-token option {other:?} is unknown \
                         (pub-key, priv-key, sign-method, ttl)"
                    ));
                }
            }
        }
        let need = |what: &str| format!("--auth-token jwt needs {what}=");
        Ok(TokenSpec::Jwt {
            public: public.ok_or_else(|| need("pub-key"))?,
            private: private.ok_or_else(|| need("priv-key"))?,
            method: method.ok_or_else(|| need("sign-method"))?,
            ttl,
        })
    }
}

/// A duration in Go's syntax as etcd reads `ttl=`: numbers with units
/// `h`, `m`, `s`, `ms`, one after another (`1h30m`, `300s`).
fn go_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("ttl={text:?} is not a duration such as 5m, 300s or 1h30m");
    let mut total = std::time::Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1000,
            "ms" => 1,
            _ => return Err(bad()),
        };
        total += std::time::Duration::from_millis(n.checked_mul(unit).ok_or_else(bad)?);
        rest = &rest[unit_len..];
    }
    if total < std::time::Duration::from_secs(1) {
        return Err(format!("ttl={text}: a token must last at least a second"));
    }
    Ok(total)
}

/// Just enough DER to take a key out of its wrapping.
mod der {
    use flotilla_tls::der::{element, expect};

    const SEQUENCE: u8 = 0x30;
    const BIT_STRING: u8 = 0x03;
    const OCTET_STRING: u8 = 0x04;
    const INTEGER: u8 = 0x02;
    /// SEC1's `[1] EXPLICIT` public key.
    const PUBLIC_KEY: u8 = 0xa1;

    /// The key bits of a SubjectPublicKeyInfo: SEQUENCE { algorithm,
    /// BIT STRING (no unused bits) }.
    pub(super) fn spki_key(spki: &[u8]) -> Option<&[u8]> {
        let (body, _) = expect(spki, SEQUENCE)?;
        let (_, rest) = expect(body, SEQUENCE)?;
        let (bits, _) = expect(rest, BIT_STRING)?;
        match bits.split_first()? {
            (0, key) => Some(key),
            _ => None,
        }
    }

    /// The private scalar and public point of a SEC1 ECPrivateKey:
    /// SEQUENCE { INTEGER 1, OCTET STRING key, [0] params OPTIONAL,
    /// [1] BIT STRING point OPTIONAL }.
    pub(super) fn sec1(key: &[u8]) -> Option<(&[u8], &[u8])> {
        let (body, _) = expect(key, SEQUENCE)?;
        let (_, rest) = expect(body, INTEGER)?;
        let (scalar, mut rest) = expect(rest, OCTET_STRING)?;
        while !rest.is_empty() {
            let (tag, inner, next) = element(rest)?;
            if tag == PUBLIC_KEY {
                let (bits, _) = expect(inner, BIT_STRING)?;
                return match bits.split_first()? {
                    (0, point) => Some((scalar, point)),
                    _ => None,
                };
            }
            rest = next;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/jwt")
    }

    fn load(private: &str, public: &str, method: &str) -> Result<JwtKey, String> {
        JwtKey::load(&keys().join(public), &keys().join(private), method)
    }

    const PAIRS: [(&str, &str, &str); 6] = [
        ("rsa.pem", "rsa.pub.pem", "RS256"),
        ("rsa-pkcs8.pem", "rsa-pkcs8.pub.pem", "RS384"),
        ("rsa.pem", "rsa.pub.pem", "RS512"),
        ("rsa-pkcs8.pem", "rsa-pkcs8.pub.pem", "PS256"),
        ("ec256.pem", "ec256.pub.pem", "ES256"),
        ("ec384-pkcs8.pem", "ec384-pkcs8.pub.pem", "ES384"),
    ];

    #[test]
    fn every_kind_of_key_signs_tokens_it_then_accepts_until_they_expire() {
        for (private, public, method) in PAIRS {
            let key = load(private, public, method).unwrap();
            assert_eq!(
                format!("{key:?}"),
                format!("JwtKey {{ method: {method:?}, .. }}")
            );
            let token = key.issue("alice", 7, 1_000).unwrap();
            assert_eq!(token.split('.').count(), 3, "{token}");
            let header = B64.decode(token.split('.').next().unwrap()).unwrap();
            let header: Header = serde_json::from_slice(&header).unwrap();
            assert_eq!(
                (header.alg.as_str(), header.typ.as_deref()),
                (method, Some("JWT"))
            );
            assert_eq!(key.verify(&token, 999), Ok(("alice".into(), 7)), "{method}");
            assert_eq!(key.verify(&token, 1_000), Err(AuthError::InvalidAuthToken));
        }
    }

    #[test]
    fn forged_re_signed_and_foreign_tokens_are_refused() {
        let key = load("rsa.pem", "rsa.pub.pem", "RS256").unwrap();
        let token = key.issue("alice", 7, 1_000).unwrap();
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let root = Claims {
            username: "root".into(),
            revision: 7,
            exp: 1_000,
        };
        parts[1] = B64.encode(serde_json::to_vec(&root).unwrap());
        let bad = Err(AuthError::InvalidAuthToken);
        assert_eq!(key.verify(&parts.join("."), 0), bad, "a changed user");
        let none = B64.encode(br#"{"alg":"none"}"#);
        let unsigned = format!("{none}.{}.", parts[1]);
        assert_eq!(key.verify(&unsigned, 0), bad, "alg none");
        // The same key, another algorithm in the header: refused even with
        // a good signature under that algorithm.
        let ps = load("rsa.pem", "rsa.pub.pem", "PS256").unwrap();
        assert_eq!(key.verify(&ps.issue("alice", 7, 1_000).unwrap(), 0), bad);
        let other = load("rsa-pkcs8.pem", "rsa-pkcs8.pub.pem", "RS256").unwrap();
        assert_eq!(key.verify(&other.issue("alice", 7, 1_000).unwrap(), 0), bad);
        for junk in ["", ".", "..", "a.b.c", "a.b.c.d", &token[..token.len() - 2]] {
            assert_eq!(key.verify(junk, 0), bad, "{junk:?}");
        }
    }

    /// An implementation no one here wrote checks the signature: openssl,
    /// on the signing input and the decoded signature.
    #[test]
    fn openssl_verifies_an_rs256_token() {
        if std::process::Command::new("openssl")
            .arg("version")
            .output()
            .is_err()
        {
            eprintln!("skipped: openssl is not installed");
            return;
        }
        let key = load("rsa.pem", "rsa.pub.pem", "RS256").unwrap();
        let token = key.issue("alice", 7, 1_000).unwrap();
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let dir = std::env::temp_dir().join(format!("flotilla-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("signed"), signed).unwrap();
        std::fs::write(dir.join("sig"), B64.decode(sig).unwrap()).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(keys().join("rsa.pub.pem"))
            .arg("-signature")
            .arg(dir.join("sig"))
            .arg(dir.join("signed"))
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("Verified OK"),
            "{said}"
        );
    }

    #[test]
    fn key_files_that_do_not_make_a_key_pair_are_errors_that_name_them() {
        let cases = [
            (
                "rsa.pem",
                "rsa-pkcs8.pub.pem",
                "RS256",
                "rsa-pkcs8.pub.pem is not the public half",
            ),
            ("rsa.pem", "rsa.pub.pem", "ES256", "not an EC key"),
            ("ec256.pem", "ec256.pub.pem", "RS256", "not an RSA key"),
            ("ec256.pem", "ec256.pub.pem", "ES384", "not a key for ES384"),
            (
                "ec256-nopub.pem",
                "ec256.pub.pem",
                "ES256",
                "without its public key",
            ),
            ("gone.pem", "rsa.pub.pem", "RS256", "reading"),
            ("rsa.pem", "rsa.pem", "RS256", "no PEM public key"),
            ("rsa.pub.pem", "rsa.pub.pem", "RS256", "no PEM private key"),
            ("rsa.pem", "rsa.pub.pem", "HS256", "not offered"),
        ];
        for (private, public, method, says) in cases {
            let e = load(private, public, method).unwrap_err();
            assert!(e.contains(says), "{private} {public} {method}: {e}");
        }
    }

    #[test]
    fn auth_token_reads_as_etcd_s_flag() {
        assert_eq!("simple".parse(), Ok(TokenSpec::Simple));
        assert_eq!(
            "jwt,pub-key=p.pem,priv-key=k.pem,sign-method=ES256,ttl=1h30m".parse(),
            Ok(TokenSpec::Jwt {
                public: "p.pem".into(),
                private: "k.pem".into(),
                method: "ES256".into(),
                ttl: Some(std::time::Duration::from_secs(5400)),
            })
        );
        let no_ttl: TokenSpec = "jwt,priv-key=k,pub-key=p,sign-method=RS256"
            .parse()
            .unwrap();
        assert!(matches!(no_ttl, TokenSpec::Jwt { ttl: None, .. }));
        let errors = [
            ("simple,ttl=5m", "takes no options"),
            ("opaque", "expected simple or jwt"),
            ("jwt,pub-key=p,sign-method=RS256", "needs priv-key="),
            ("jwt,pub-key=p,priv-key=k", "needs sign-method="),
            ("jwt,priv-key=k,sign-method=RS256", "needs pub-key="),
            ("jwt,pub-key", "is not NAME=VALUE"),
            ("jwt,color=red", "is unknown"),
            ("jwt,ttl=5", "not a duration"),
            ("jwt,ttl=5d", "not a duration"),
            ("jwt,ttl=", "not a duration"),
            ("jwt,ttl=500ms", "at least a second"),
        ];
        for (spec, says) in errors {
            let e = spec.parse::<TokenSpec>().unwrap_err();
            assert!(e.contains(says), "{spec}: {e}");
        }
        assert_eq!(go_duration("300s"), Ok(std::time::Duration::from_secs(300)));
        assert_eq!(
            go_duration("1000ms"),
            Ok(std::time::Duration::from_secs(1)),
            "the least"
        );
        assert_eq!(
            go_duration("2m1500ms"),
            Ok(std::time::Duration::from_millis(121_500))
        );
    }
}
