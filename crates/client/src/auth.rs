//! Credentials for a cluster with auth on (etcdctl's `--user`): the client
//! authenticates with a user's name and password before its first call,
//! and every call carries the token it got (gRPC metadata `token`, as
//! etcd's clients send it). A token the server no longer takes (expired,
//! or voided by a password change) is replaced by authenticating again,
//! once per call.
//!
//! Invariant: the password and the token are never printed (`Debug`
//! hides them) nor put in an error.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// A connection to one endpoint whose requests carry the client's token.
pub type Conn = InterceptedService<Channel, Token>;

/// The token the client's calls carry, shared by all its connections
/// (none until it authenticates, or without credentials).
#[derive(Clone, Default)]
pub struct Token(Arc<RwLock<Option<AsciiMetadataValue>>>);

impl Token {
    /// Whether a token is held.
    pub(crate) fn is_set(&self) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Holds `token` (none: calls carry none).
    pub(crate) fn set(&self, token: Option<AsciiMetadataValue>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = token;
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = if self.is_set() { "held" } else { "none" };
        write!(f, "Token({held})")
    }
}

impl Interceptor for Token {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let token = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(t) = token {
            request.metadata_mut().insert("token", t);
        }
        Ok(request)
    }
}

/// A user's name and password.
#[derive(Clone)]
pub struct Credentials {
    /// The user's name.
    pub user: String,
    pub(crate) password: String,
}

impl Credentials {
    /// `user` with `password`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The password, for a caller that sends it itself (`flotilla bench
    /// authenticate` times Authenticate calls one by one).
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Whether the server refused a call for its token alone (expired, or
/// voided since): nothing was done, so the call may be made again with a
/// new token.
pub(crate) fn token_refused(s: &Status) -> bool {
    s.code() == Code::Unauthenticated && s.message() == "etcdserver: invalid auth token"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_carry_the_token_held_and_debug_shows_no_secret() {
        let mut token = Token::default();
        let bare = token.call(tonic::Request::new(())).unwrap();
        assert!(bare.metadata().get("token").is_none());
        token.set(Some(AsciiMetadataValue::from_static("secret-token")));
        let carried = token.clone().call(tonic::Request::new(())).unwrap();
        assert_eq!(carried.metadata().get("token").unwrap(), "secret-token");
        assert_eq!(format!("{token:?}"), "Token(held)");
        let c = Credentials::new("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        assert!(format!("{c:?}").contains("\"alice\""), "{c:?}");
        token.set(None);
        assert_eq!(format!("{token:?}"), "Token(none)");
    }

    #[test]
    fn only_an_invalid_token_is_worth_a_new_one() {
        let invalid = Status::unauthenticated("etcdserver: invalid auth token");
        assert!(token_refused(&invalid));
        let empty = Status::invalid_argument("etcdserver: user name is empty");
        assert!(!token_refused(&empty));
        let failed = Status::unauthenticated("etcdserver: authentication failed");
        assert!(!token_refused(&failed));
    }
}
