//! Auth tokens: what Authenticate answers and every later request carries
//! (gRPC metadata `token`, as etcd's clients send it).
//!
//! A token is `hex(user).since.expires.hex(mac)`: the user, the auth
//! revision of its last password change (`flotilla_kv::User::since`), the
//! Unix second it expires at, and an HMAC-SHA256 of the rest under the
//! cluster's token key (`flotilla_kv::Auth::token_key`, chosen when auth
//! was turned on and replicated with the auth store). So any member
//! checks any member's token without asking, as etcd's JWT tokens; a new
//! password, a deleted user or auth turned off and on again voids the
//! tokens made before.
//!
//! With `--auth-token jwt,...` tokens are etcd's JWTs instead
//! ([`super::jwt`]); the same user and `since` checks apply.
//!
//! Invariants: a token verifies only under the key it was made with, for
//! a user that exists with the same `since`, before it expires; the MAC
//! is compared in constant time.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use flotilla_kv::{Auth, AuthError};

use super::jwt::JwtKey;

type HmacSha256 = Hmac<Sha256>;

/// How tokens are made and checked: etcd's `--auth-token`.
#[derive(Clone, Debug, Default)]
pub enum Tokens {
    /// Signed with the cluster's replicated key (the format above).
    #[default]
    Simple,
    /// etcd's JWT, signed with a key pair every member holds.
    Jwt(Arc<JwtKey>),
}

impl PartialEq for Tokens {
    fn eq(&self, other: &Tokens) -> bool {
        match (self, other) {
            (Tokens::Simple, Tokens::Simple) => true,
            (Tokens::Jwt(a), Tokens::Jwt(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Tokens {}

/// A token for `user`, made at Unix second `now`, good for `ttl_s` seconds.
pub fn issue(
    tokens: &Tokens,
    auth: &Auth,
    user: &str,
    now: u64,
    ttl_s: u64,
) -> Result<String, AuthError> {
    match tokens {
        Tokens::Simple => issue_simple(auth, user, now, ttl_s),
        Tokens::Jwt(key) => {
            let since = auth.user(user).ok_or(AuthError::AuthFailed)?.since;
            key.issue(user, since, now + ttl_s)
        }
    }
}

/// The user a token names, if it is valid at Unix second `now`.
pub fn verify(tokens: &Tokens, auth: &Auth, token: &str, now: u64) -> Result<String, AuthError> {
    match tokens {
        Tokens::Simple => verify_simple(auth, token, now),
        Tokens::Jwt(key) => {
            let (user, since) = key.verify(token, now)?;
            match auth.user(&user) {
                Some(current) if current.since == since => Ok(user),
                _ => Err(AuthError::InvalidAuthToken),
            }
        }
    }
}

fn issue_simple(auth: &Auth, user: &str, now: u64, ttl_s: u64) -> Result<String, AuthError> {
    let since = auth.user(user).ok_or(AuthError::AuthFailed)?.since;
    let claims = format!("{}.{since}.{}", hex(user.as_bytes()), now + ttl_s);
    let mac = mac(auth, claims.as_bytes())?.finalize().into_bytes();
    Ok(format!("{claims}.{}", hex(&mac)))
}

fn verify_simple(auth: &Auth, token: &str, now: u64) -> Result<String, AuthError> {
    let bad = AuthError::InvalidAuthToken;
    let (claims, tag) = token.rsplit_once('.').ok_or(bad)?;
    let tag = unhex(tag).ok_or(bad)?;
    mac(auth, claims.as_bytes())?
        .verify_slice(&tag)
        .map_err(|_| bad)?;
    let mut parts = claims.split('.');
    let (Some(user), Some(since), Some(expires), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad);
    };
    let user = String::from_utf8(unhex(user).ok_or(bad)?).map_err(|_| bad)?;
    let since: u64 = since.parse().map_err(|_| bad)?;
    let expires: u64 = expires.parse().map_err(|_| bad)?;
    let current = auth.user(&user).ok_or(bad)?;
    if expires <= now || current.since != since {
        return Err(bad);
    }
    Ok(user)
}

fn mac(auth: &Auth, claims: &[u8]) -> Result<HmacSha256, AuthError> {
    if auth.token_key().is_empty() {
        return Err(AuthError::InvalidAuthToken);
    }
    let mut m =
        HmacSha256::new_from_slice(auth.token_key()).map_err(|_| AuthError::InvalidAuthToken)?;
    m.update(claims);
    Ok(m)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use flotilla_kv::{AuthOp, Store};

    fn store(key: &'static [u8]) -> Store {
        let mut s = Store::new();
        for op in [
            AuthOp::UserAdd {
                name: "root".into(),
                password: None,
            },
            AuthOp::UserGrantRole {
                user: "root".into(),
                role: "root".into(),
            },
            AuthOp::Enable {
                token_key: Bytes::from_static(key),
            },
        ] {
            s.apply(&flotilla_kv::Op::Auth(op));
        }
        s
    }

    #[test]
    fn a_token_names_its_user_until_it_expires() {
        let s = store(b"k1");
        let t = issue_simple(s.auth(), "root", 100, 300).unwrap();
        assert_eq!(verify_simple(s.auth(), &t, 100).as_deref(), Ok("root"));
        assert_eq!(verify_simple(s.auth(), &t, 399).as_deref(), Ok("root"));
        assert_eq!(
            verify_simple(s.auth(), &t, 400),
            Err(AuthError::InvalidAuthToken)
        );
    }

    #[test]
    fn forged_foreign_and_stale_tokens_are_refused() {
        let mut s = store(b"k1");
        let t = issue_simple(s.auth(), "root", 100, 300).unwrap();
        let other = store(b"k2");
        assert!(verify_simple(other.auth(), &t, 100).is_err(), "another key");
        let (claims, _) = t.rsplit_once('.').unwrap();
        let longer = claims.replace(".400", ".999999");
        let forged = format!("{longer}.{}", t.rsplit_once('.').unwrap().1);
        assert!(
            verify_simple(s.auth(), &forged, 100).is_err(),
            "a changed expiry"
        );
        for junk in ["", ".", "a.b.c.d", "zz.1.2.00", "726f6f74.1.999"] {
            assert!(verify_simple(s.auth(), junk, 100).is_err(), "{junk:?}");
        }
        s.apply(&flotilla_kv::Op::Auth(AuthOp::UserChangePassword {
            name: "root".into(),
            password: None,
        }));
        assert!(verify_simple(s.auth(), &t, 100).is_err(), "a new password");
    }

    #[test]
    fn jwt_tokens_name_their_user_until_a_new_password_or_removal() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/jwt");
        let key =
            JwtKey::load(&dir.join("ec256.pub.pem"), &dir.join("ec256.pem"), "ES256").unwrap();
        let jwt = Tokens::Jwt(Arc::new(key));
        assert_eq!(jwt, jwt.clone());
        assert_eq!(Tokens::Simple, Tokens::Simple);
        assert_ne!(jwt, Tokens::Simple);
        assert_ne!(Tokens::Simple, jwt);
        let other =
            JwtKey::load(&dir.join("ec256.pub.pem"), &dir.join("ec256.pem"), "ES256").unwrap();
        assert_ne!(
            jwt,
            Tokens::Jwt(Arc::new(other)),
            "another key, though the same files"
        );
        let mut s = store(b"k1");
        let t = issue(&jwt, s.auth(), "root", 100, 300).unwrap();
        assert_eq!(verify(&jwt, s.auth(), &t, 100).as_deref(), Ok("root"));
        assert_eq!(verify(&jwt, s.auth(), &t, 399).as_deref(), Ok("root"));
        assert!(
            verify(&jwt, s.auth(), &t, 400).is_err(),
            "expired at now + ttl"
        );
        assert!(
            verify(&Tokens::Simple, s.auth(), &t, 100).is_err(),
            "not a simple token"
        );
        let simple = issue(&Tokens::Simple, s.auth(), "root", 100, 300).unwrap();
        assert!(verify(&jwt, s.auth(), &simple, 100).is_err(), "not a JWT");
        assert!(issue(&jwt, s.auth(), "nobody", 100, 300).is_err());
        s.apply(&flotilla_kv::Op::Auth(AuthOp::UserChangePassword {
            name: "root".into(),
            password: None,
        }));
        assert!(verify(&jwt, s.auth(), &t, 100).is_err(), "a new password");
        let t = issue(&jwt, s.auth(), "root", 100, 300).unwrap();
        assert!(verify(&jwt, s.auth(), &t, 100).is_ok());
        s.apply(&flotilla_kv::Op::Auth(AuthOp::UserDelete {
            name: "root".into(),
        }));
        assert!(verify(&jwt, s.auth(), &t, 100).is_err(), "a deleted user");
    }
}
