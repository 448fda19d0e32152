//! Who is asking, while auth is on: the user a request's token names
//! (gRPC metadata `token`, or `authorization` as etcd's gateway sends it),
//! or, without a token, the common name of its TLS client certificate,
//! as etcd. The services check what they can before they propose or read
//! ([`Core::require_admin`], [`Core::require_permitted`]) and send
//! the rest as [`Op::AsUser`], which every replica checks again as it
//! applies or reads it (`flotilla_kv::Auth::permits`): a permission
//! revoked before a request is applied refuses it, wherever it was
//! checked first.
//!
//! Once the cluster has used auth (its auth store changed at least once),
//! every client request goes as [`Op::AsUser`], whatever this member
//! thinks of auth: with no credentials (or a token this member cannot
//! check yet) as user `""`, which every replica refuses once auth is on.
//! So the check that counts is made where the request is ordered, at the
//! log index, as etcd refuses a request whose auth revision predates auth.
//! A linearizable or serializable read decides after its read index
//! ([`Core::read_as`]), so a follower behind `auth enable` cannot serve
//! one unchecked. A cluster that never used auth sends plain operations,
//! which every earlier build reads, so a rolling upgrade from one keeps
//! working; the one window left is a write taken by a member that has
//! applied no auth change at all while the cluster turns auth on. The
//! checks made before (admin calls, watches, lease keys) use this
//! member's auth store, as etcd's API layer does.

pub mod jwt;
pub mod token;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_kv::{Auth, AuthError, Op, ROOT};
use flotilla_runtime::lock;
use flotilla_tls::PeerIdentity;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::core::Core;
use crate::error::EtcdError;

/// etcd's default `--bcrypt-cost` (Go's `bcrypt.DefaultCost`).
pub const DEFAULT_BCRYPT_COST: u32 = 10;
/// etcd's default simple-token time to live (`--auth-token-ttl`).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);

/// How users' passwords are hashed, and how tokens are made and how long
/// they last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// bcrypt's cost (4 to 31), etcd's `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// How long a token from Authenticate is good for.
    pub token_ttl: Duration,
    /// etcd's `--auth-token`: simple (the default) or JWT.
    pub tokens: token::Tokens,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            bcrypt_cost: DEFAULT_BCRYPT_COST,
            token_ttl: DEFAULT_TOKEN_TTL,
            tokens: token::Tokens::Simple,
        }
    }
}

/// How long a token members send one another lasts: one request's time.
const MEMBER_TOKEN_TTL_S: u64 = 60;

/// Who asks: a user, or `""` for a request without credentials (which
/// every check refuses while auth is on, and lets through while it is
/// off).
pub type Caller = String;

/// `op` as `caller` asks it, always (auth changes, which only builds
/// that know auth read anyway).
pub fn as_user(op: Op, caller: Caller) -> Op {
    Op::AsUser {
        user: caller,
        op: Box::new(op),
    }
}

/// The Unix second now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The caller named by `md` (or `peer`'s certificate) by `auth`.
fn caller_in(
    tokens: &token::Tokens,
    auth: &Auth,
    md: &MetadataMap,
    peer: Option<&PeerIdentity>,
) -> Result<Caller, Status> {
    if !auth.enabled() {
        return Ok(Caller::new());
    }
    match md.get("token").or_else(|| md.get("authorization")) {
        Some(v) => {
            let t = v
                .to_str()
                .map_err(|_| refused(AuthError::InvalidAuthToken))?;
            token::verify(tokens, auth, t, unix_now()).map_err(refused)
        }
        None => Ok(peer.and_then(|p| p.client_cn.clone()).unwrap_or_default()),
    }
}

/// etcd's answer to an auth refusal.
pub fn refused(e: AuthError) -> Status {
    EtcdError::Auth(e).into()
}

/// `op` as `caller` asks it once the cluster has used auth (`auth`'s
/// revision moved), else as it is (see the module docs). A caller other
/// than `""` implies auth was on when it was found, so the revision alone
/// decides.
pub fn as_user_if_used(auth: &Auth, op: Op, caller: Caller) -> Op {
    if auth.revision() > 0 {
        as_user(op, caller)
    } else {
        op
    }
}

impl Core {
    /// `op` as the caller of `request` asks it (see [`as_user_if_used`]):
    /// the caller found and the operation wrapped under one lock of the
    /// state machine, as every write does.
    pub fn on_behalf<T>(&self, request: &tonic::Request<T>, op: Op) -> Result<Op, Status> {
        let sm = lock(&self.sm);
        let auth = sm.replica.store().auth();
        let caller = caller_in(
            &self.auth_config.tokens,
            auth,
            request.metadata(),
            request.extensions().get(),
        )?;
        Ok(as_user_if_used(auth, op, caller))
    }

    /// The caller of `request` (see the module docs).
    pub fn caller<T>(&self, request: &tonic::Request<T>) -> Result<Caller, Status> {
        self.caller_of(
            request.metadata(),
            request.extensions().get::<PeerIdentity>(),
        )
    }

    /// The caller of a request with metadata `md` on a connection whose
    /// TLS identity is `peer`.
    pub fn caller_of(
        &self,
        md: &MetadataMap,
        peer: Option<&PeerIdentity>,
    ) -> Result<Caller, Status> {
        caller_in(
            &self.auth_config.tokens,
            lock(&self.sm).replica.store().auth(),
            md,
            peer,
        )
    }

    /// `message` as a member sends it to another (a forwarded request, a
    /// hash to compare): with auth on it carries a short-lived token for
    /// `root`, made with the cluster's token key, which only members hold.
    /// The member that took the client's request checked its caller.
    pub fn internal<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        let token = {
            let sm = lock(&self.sm);
            let auth = sm.replica.store().auth();
            if !auth.enabled() {
                return r;
            }
            token::issue(
                &self.auth_config.tokens,
                auth,
                ROOT,
                unix_now(),
                MEMBER_TOKEN_TTL_S,
            )
        };
        if let Some(v) = token.ok().and_then(|t| t.parse().ok()) {
            r.metadata_mut().insert("token", v);
        }
        r
    }

    /// [`Core::internal`], marked forwarded: the member it goes to answers
    /// it itself or fails, never forwards it on.
    pub fn forwarded<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = self.internal(message);
        r.metadata_mut().insert(
            crate::membership::FORWARDED,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        r
    }

    /// Refuses `request` unless auth is off or its caller is a root (etcd's
    /// admin checks: membership, maintenance, users and roles).
    pub fn require_admin<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        let caller = self.caller(request)?;
        self.require_admin_of(&caller)
    }

    /// Refuses unless auth is off or `caller` is a root.
    pub fn require_admin_of(&self, caller: &str) -> Result<(), Status> {
        let sm = lock(&self.sm);
        sm.replica.store().auth().admin(caller).map_err(refused)
    }

    /// Refuses `request` while auth is on unless its caller is a user
    /// (what etcd asks of every request but the few anyone may make).
    pub fn require_user<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        let caller = self.caller(request)?;
        self.require_user_of(&caller)
    }

    /// Refuses unless auth is off or `caller` is a user that exists.
    pub fn require_user_of(&self, caller: &str) -> Result<(), Status> {
        let sm = lock(&self.sm);
        let auth = sm.replica.store().auth();
        if !auth.enabled() {
            Ok(())
        } else if caller.is_empty() {
            Err(refused(AuthError::UserEmpty))
        } else if auth.user(caller).is_none() {
            Err(refused(AuthError::PermissionDenied))
        } else {
            Ok(())
        }
    }

    /// Refuses unless `caller` may run `op` by this member's auth store
    /// (for what is not itself proposed or read as the caller: a watch,
    /// a lease's keys).
    pub fn require_permitted(&self, caller: &str, op: &Op) -> Result<(), Status> {
        let sm = lock(&self.sm);
        let store = sm.replica.store();
        store
            .auth()
            .permits(caller, op, store.leases())
            .map_err(refused)
    }
}
