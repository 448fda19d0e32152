//! etcd's `Auth` service: turning auth on and off, Authenticate, users,
//! roles and their permissions, wire-compatible with etcdctl's `auth`,
//! `user` and `role` commands.
//!
//! Changes go through the log as [`AuthOp`]s on behalf of the caller, so
//! every replica applies them, and checks the caller may (a root, once
//! auth is on), at the same index. Passwords are hashed with bcrypt here,
//! off the async threads, before the change is proposed: the log and the
//! snapshots hold hashes only, and no replica spends bcrypt's time as it
//! applies. Reads (UserGet, RoleList ...) wait for a linearizable read
//! index, then read this member's auth store.
//!
//! Authenticate checks the password against the hash here and answers a
//! signed token ([`crate::auth::token`]). A name that does not exist, or
//! a user without a password, costs the same bcrypt comparison (at the
//! configured cost) as a wrong password, so the answer's time tells
//! nothing of which it was; a failure is logged with the user's name,
//! never the password.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use flotilla_kv::{Auth, AuthError, AuthOp, Op, PermKind, Permission};
use flotilla_proto::authpb;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::auth_server;
use flotilla_runtime::lock;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, as_user, refused, token, unix_now};
use crate::core::Core;

/// The `etcdserverpb.Auth` service of one member.
#[derive(Clone)]
pub struct AuthService {
    core: Core,
}

type Answer<T> = Result<Response<T>, Status>;

impl AuthService {
    /// The service over `core`.
    pub fn new(core: Core) -> AuthService {
        AuthService { core }
    }

    /// Proposes `change` as `caller`; the header of its outcome.
    async fn change(&self, caller: Caller, change: AuthOp) -> Result<Header, Status> {
        let (term, revision, _) = self.core.write(as_user(Op::Auth(change), caller)).await?;
        Ok(self.core.header(revision, term))
    }

    /// Proposes the change a request asks, as the request's caller.
    async fn change_for<T>(&self, request: &Request<T>, change: AuthOp) -> Result<Header, Status> {
        let caller = self.core.caller(request)?;
        self.change(caller, change).await
    }

    /// After a linearizable read index, `f` of this member's auth store,
    /// and the header to answer with.
    async fn read<R>(
        &self,
        f: impl FnOnce(&Auth) -> Result<R, AuthError>,
    ) -> Result<(R, Header), Status> {
        self.core.read_barrier().await?;
        let term = self.core.node.term();
        let sm = lock(&self.core.sm);
        let store = sm.replica.store();
        let r = f(store.auth()).map_err(refused)?;
        Ok((r, self.core.header(store.revision(), term)))
    }

    /// A password's bcrypt hash, made on a blocking thread.
    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.core.auth_config.bcrypt_cost;
        let hashed = tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| Status::internal(format!("hashing a password: {e}")))?;
        hashed.map_err(|e| Status::internal(format!("hashing a password: {e}")))
    }

    /// The hash a user add or password change stores: none for a user
    /// without a password, the client's own bcrypt hash if it sent one
    /// (etcd 3.5's `hashedPassword`), else the password's.
    async fn stored(
        &self,
        no_password: bool,
        password: String,
        hashed: String,
    ) -> Result<Option<String>, Status> {
        if no_password {
            return Ok(None);
        }
        if !hashed.is_empty() {
            check_hash(&hashed)?;
            return Ok(Some(hashed));
        }
        Ok(Some(self.hash(password).await?))
    }

    async fn authenticate(&self, r: pb::AuthenticateRequest) -> Result<(String, Header), Status> {
        let (hash, header) = self
            .read(|a| {
                if !a.enabled() {
                    return Err(AuthError::AuthNotEnabled);
                }
                Ok(a.user(&r.name).and_then(|u| u.password.clone()))
            })
            .await?;
        let known = hash.is_some();
        let password = r.password;
        let cost = self.core.auth_config.bcrypt_cost;
        let matched = tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(|| dummy_hash(cost));
            bcrypt::verify(password, &hash)
        })
        .await
        .map_err(|e| Status::internal(format!("checking a password: {e}")))?
        .unwrap_or(false);
        if !(known && matched) {
            tracing::warn!(user = %r.name, "authentication failed");
            return Err(refused(AuthError::AuthFailed));
        }
        let ttl = self.core.auth_config.token_ttl.as_secs();
        let sm = lock(&self.core.sm);
        let token = token::issue(
            &self.core.auth_config.tokens,
            sm.replica.store().auth(),
            &r.name,
            unix_now(),
            ttl,
        )
        .map_err(refused)?;
        Ok((token, header))
    }
}

type Header = Option<pb::ResponseHeader>;

/// A client's own hash, refused unless it is a bcrypt hash.
fn check_hash(hashed: &str) -> Result<(), Status> {
    hashed
        .parse::<bcrypt::HashParts>()
        .map(|_| ())
        .map_err(|e| {
            Status::invalid_argument(format!(
                "etcdserver: hashedPassword is not a bcrypt hash: {e}"
            ))
        })
}

/// A hash at bcrypt cost `cost` to compare against when the user has
/// none, so that a missing user costs what a wrong password costs (users'
/// hashes are made at the configured cost too). Made once per cost, on
/// the blocking thread that first needs it.
fn dummy_hash(cost: u32) -> String {
    static HASHES: Mutex<BTreeMap<u32, String>> = Mutex::new(BTreeMap::new());
    let mut hashes = lock(&HASHES);
    let hash = hashes
        .entry(cost)
        .or_insert_with(|| bcrypt::hash("no user has this password", cost).unwrap_or_default());
    hash.clone()
}

/// A permission from etcd's message, with what was wrong with it.
fn permission(p: Option<authpb::Permission>) -> Result<Permission, Status> {
    let p = p.ok_or_else(|| Status::invalid_argument("etcdserver: permission is not given"))?;
    let kind = match authpb::permission::Type::try_from(p.perm_type) {
        Ok(authpb::permission::Type::Read) => PermKind::Read,
        Ok(authpb::permission::Type::Write) => PermKind::Write,
        Ok(authpb::permission::Type::Readwrite) => PermKind::ReadWrite,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "etcdserver: permission type {} is not READ (0), WRITE (1) or READWRITE (2)",
                p.perm_type
            )));
        }
    };
    Ok(Permission {
        kind,
        key: p.key,
        range_end: p.range_end,
    })
}

fn to_pb(p: &Permission) -> authpb::Permission {
    let t = match p.kind {
        PermKind::Read => authpb::permission::Type::Read,
        PermKind::Write => authpb::permission::Type::Write,
        PermKind::ReadWrite => authpb::permission::Type::Readwrite,
    };
    authpb::Permission {
        perm_type: t as i32,
        key: p.key.clone(),
        range_end: p.range_end.clone(),
    }
}

/// A fresh key to sign tokens with, from the OS's random source.
fn token_key() -> Result<Bytes, Status> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| Status::internal(format!("no random token key: {e}")))?;
    Ok(Bytes::copy_from_slice(&key))
}

mod rpcs;
