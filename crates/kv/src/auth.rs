//! etcd's authentication store, replicated: whether auth is on, users
//! (bcrypt password hashes, roles), roles (key permissions), the store's
//! auth revision, and the key that signs tokens. It changes only through
//! [`AuthOp`]s applied from the log, so every replica holds the same one,
//! and it decides which user may run which [`Op`] ([`Auth::permits`]).
//!
//! Invariants:
//! - the revision grows by one with every change that succeeds, and only
//!   then (etcd's auth revision);
//! - while auth is on, user `root` exists and holds role `root`: the
//!   operations that would break this are refused ([`AuthError::InvalidAuthMgmt`]),
//!   and auth cannot be turned on without it;
//! - role `root` may do everything whatever permissions it lists; every
//!   other user may do what the union of its roles' permissions covers,
//!   range by range, as etcd's merged permission intervals do (a range
//!   that reaches past them is refused, not cut down);
//! - a user's `since` is the revision of its last password change: a token
//!   names it, so a new password (or a deleted and re-added user) makes
//!   older tokens invalid;
//! - passwords arrive hashed: the member that takes a request hashes it
//!   (bcrypt is slow and salted, so it cannot run in the apply path, where
//!   every replica must reach the same state).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use thiserror::Error;

use crate::command::{Compare, CompareSpan, Op, Txn};
use crate::lease::Leases;

/// The user every cluster with auth on has, which may do everything.
pub const ROOT: &str = "root";

/// What a permission allows (etcd's `authpb.Permission.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PermKind {
    /// Reads.
    Read,
    /// Writes.
    Write,
    /// Both.
    ReadWrite,
}

impl PermKind {
    fn allows(self, write: bool) -> bool {
        match self {
            PermKind::ReadWrite => true,
            PermKind::Read => !write,
            PermKind::Write => write,
        }
    }
}

/// A permission on a key or a range of keys, with etcd's `range_end`: empty
/// names the single key `key`, `"\0"` every key from `key` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// What it allows.
    pub kind: PermKind,
    /// The key, or the first key of the range.
    pub key: Bytes,
    /// etcd's range end (see above).
    pub range_end: Bytes,
}

impl Permission {
    /// The permission's keys as `[start, end)`, `None` meaning no end.
    fn span(&self) -> (Bytes, Option<Bytes>) {
        span(&self.key, &self.range_end)
    }
}

/// `[key, range_end)` in etcd's terms as `[start, end)`: an empty end is
/// the single key, `"\0"` no end.
pub fn span(key: &Bytes, range_end: &Bytes) -> (Bytes, Option<Bytes>) {
    if range_end.is_empty() {
        let mut next = key.to_vec();
        next.push(0);
        (key.clone(), Some(Bytes::from(next)))
    } else if range_end.as_ref() == [0] {
        (key.clone(), None)
    } else {
        (key.clone(), Some(range_end.clone()))
    }
}

/// A user.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct User {
    /// Its password's bcrypt hash; `None`: it has none, and cannot
    /// authenticate with one (etcd's `--no-password`).
    pub password: Option<String>,
    /// Its roles.
    pub roles: BTreeSet<String>,
    /// The auth revision of its last password change (or its creation):
    /// tokens issued before name an older one.
    pub since: u64,
}

/// A role: the permissions it grants, ordered by key and range end.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Role {
    /// Its permissions.
    pub perms: Vec<Permission>,
}

/// A change of the auth store (etcd's Auth service's writes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthOp {
    /// Turns auth on, with a new key to sign tokens (chosen by the member
    /// that took the request, so that every replica holds the same one).
    Enable {
        /// The token signing key.
        token_key: Bytes,
    },
    /// Turns auth off.
    Disable,
    /// Adds a user.
    UserAdd {
        /// Its name.
        name: String,
        /// Its password's hash; `None`: no password.
        password: Option<String>,
    },
    /// Deletes a user.
    UserDelete {
        /// Its name.
        name: String,
    },
    /// Sets a user's password.
    UserChangePassword {
        /// Its name.
        name: String,
        /// The new password's hash; `None`: no password.
        password: Option<String>,
    },
    /// Grants a role to a user.
    UserGrantRole {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
    /// Revokes a role from a user.
    UserRevokeRole {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
    /// Adds a role.
    RoleAdd {
        /// Its name.
        name: String,
    },
    /// Deletes a role, and revokes it from every user.
    RoleDelete {
        /// Its name.
        name: String,
    },
    /// Grants a permission to a role (replacing the kind of one on the
    /// same keys).
    RoleGrantPermission {
        /// The role.
        role: String,
        /// The permission.
        perm: Permission,
    },
    /// Revokes the permission on exactly `key` and `range_end`.
    RoleRevokePermission {
        /// The role.
        role: String,
        /// The permission's key.
        key: Bytes,
        /// Its range end.
        range_end: Bytes,
    },
}

/// Why the auth store refused a request, with etcd's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum AuthError {
    /// Auth cannot be turned on without user `root`.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// Auth cannot be turned on while `root` lacks role `root`.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// The user exists.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// No user name was given (or, with auth on, no credentials).
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// The user does not exist.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// The role exists.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// The role does not exist.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// No role name was given.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// The user may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// The user does not hold the role.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// The role does not hold the permission.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// The change would leave auth on without a root that may do all.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// Auth is off.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// A wrong user name or password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// A token that is malformed, forged, expired, or of a changed user.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
}

/// The replicated auth store.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Auth {
    pub(crate) enabled: bool,
    pub(crate) revision: u64,
    pub(crate) users: BTreeMap<String, User>,
    pub(crate) roles: BTreeMap<String, Role>,
    pub(crate) token_key: Bytes,
}

impl Auth {
    /// Whether auth is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// The auth revision: the number of changes applied.
    pub fn revision(&self) -> u64 {
        self.revision
    }
    /// The key tokens are signed with (empty until auth was first on).
    pub fn token_key(&self) -> &Bytes {
        &self.token_key
    }
    /// A user.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }
    /// A role.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }
    /// The users' names, in order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }
    /// The roles' names, in order.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// Whether `user` holds role `root` (and so may do everything).
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.contains(ROOT))
    }

    /// Whether `user` may administer the cluster: auth is off, or it is
    /// a root.
    pub fn admin(&self, user: &str) -> Result<(), AuthError> {
        if !self.enabled {
            Ok(())
        } else if user.is_empty() {
            Err(AuthError::UserEmpty)
        } else if self.is_root(user) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// Whether the roles of `user` (not a root: [`Auth::permits`] let
    /// roots through first) grant read (or, with `write`, write) on every
    /// key of `[start, end)` (`None`: no end).
    fn may(&self, user: &str, start: &Bytes, end: Option<&Bytes>, write: bool) -> bool {
        let Some(u) = self.users.get(user) else {
            return false;
        };
        let mut spans: Vec<(Bytes, Option<Bytes>)> = u
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.perms.iter())
            .filter(|p| p.kind.allows(write))
            .map(Permission::span)
            .collect();
        spans.sort();
        covered(&spans, start, end)
    }

    /// Whether `user` may run `op`: every key it reads, readable; every
    /// key it writes, writable; a lease revoke, writable on every key
    /// attached; cluster bookkeeping (alarms, checkpoints, member starts)
    /// and auth changes, a root's.
    pub fn permits(&self, user: &str, op: &Op, leases: &Leases) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.is_root(user) {
            return Ok(());
        }
        if self.op_permitted(user, op, leases) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    fn op_permitted(&self, user: &str, op: &Op, leases: &Leases) -> bool {
        let key_only = |key: &Bytes, write: bool| {
            let (start, end) = span(key, &Bytes::new());
            self.may(user, &start, end.as_ref(), write)
        };
        match op {
            Op::Get { key } => key_only(key, false),
            Op::Range { start, end, .. } => self.may(user, start, end.as_ref(), false),
            Op::Put { key, .. }
            | Op::Append { key, .. }
            | Op::Delete { key }
            | Op::Rewrite { key, .. } => key_only(key, true),
            Op::DeleteRange {
                start,
                end,
                prev_kv,
            } => {
                self.may(user, start, end.as_ref(), true)
                    && (!prev_kv || self.may(user, start, end.as_ref(), false))
            }
            Op::Txn(t) => self.txn_permitted(user, t, leases),
            Op::LeaseRevoke { id } => leases
                .get(*id)
                .is_none_or(|l| l.keys().all(|k| key_only(k, true))),
            Op::Compact { .. } | Op::LeaseGrant { .. } => true,
            Op::LeaseCheckpoint { .. }
            | Op::Alarm { .. }
            | Op::MemberStarted { .. }
            | Op::Auth(_)
            | Op::AsUser { .. } => false,
        }
    }

    fn txn_permitted(&self, user: &str, t: &Txn, leases: &Leases) -> bool {
        t.compares.iter().all(|c| self.compare_permitted(user, c))
            && t.success
                .iter()
                .chain(&t.failure)
                .all(|op| self.op_permitted(user, op, leases))
    }

    fn compare_permitted(&self, user: &str, c: &Compare) -> bool {
        match &c.span {
            CompareSpan::Key => {
                let (start, end) = span(&c.key, &Bytes::new());
                self.may(user, &start, end.as_ref(), false)
            }
            CompareSpan::Range(end) => self.may(user, &c.key, end.as_ref(), false),
        }
    }

    /// Why `op` cannot be applied now, if it cannot: etcd's checks of the
    /// auth store's state (a name that exists, a role not granted, auth
    /// turned on without a root, a root that would lose its power).
    pub fn check(&self, op: &AuthOp) -> Result<(), AuthError> {
        match op {
            AuthOp::Enable { .. } => {
                let root = self.users.get(ROOT).ok_or(AuthError::RootUserNotExist)?;
                if !root.roles.contains(ROOT) {
                    return Err(AuthError::RootRoleNotExist);
                }
                Ok(())
            }
            AuthOp::UserAdd { name, .. } => {
                if name.is_empty() {
                    Err(AuthError::UserEmpty)
                } else if self.users.contains_key(name) {
                    Err(AuthError::UserAlreadyExist)
                } else {
                    Ok(())
                }
            }
            AuthOp::UserDelete { name } => {
                self.user_exists(name)?;
                self.keeps_root(name == ROOT)
            }
            AuthOp::UserChangePassword { name, .. } => self.user_exists(name),
            AuthOp::UserGrantRole { user, role } => {
                self.user_exists(user)?;
                self.role_exists_or_root(role)
            }
            AuthOp::UserRevokeRole { user, role } => {
                let u = self.users.get(user).ok_or(AuthError::UserNotFound)?;
                if !u.roles.contains(role) {
                    return Err(AuthError::RoleNotGranted);
                }
                self.keeps_root(user == ROOT && role == ROOT)
            }
            _ => self.check_role(op),
        }
    }

    /// [`Auth::check`] of the role changes (and of `Disable`, which any
    /// state allows).
    fn check_role(&self, op: &AuthOp) -> Result<(), AuthError> {
        let exists = |role: &str| self.roles.get(role).ok_or(AuthError::RoleNotFound);
        match op {
            AuthOp::RoleAdd { name } => {
                if name.is_empty() {
                    Err(AuthError::RoleEmpty)
                } else if self.roles.contains_key(name) {
                    Err(AuthError::RoleAlreadyExist)
                } else {
                    Ok(())
                }
            }
            AuthOp::RoleDelete { name } => {
                self.keeps_root(name == ROOT)?;
                exists(name).map(|_| ())
            }
            AuthOp::RoleGrantPermission { role, .. } => exists(role).map(|_| ()),
            AuthOp::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let held = exists(role)?
                    .perms
                    .iter()
                    .any(|p| p.key == key && p.range_end == range_end);
                if held {
                    Ok(())
                } else {
                    Err(AuthError::PermissionNotGranted)
                }
            }
            _ => Ok(()),
        }
    }

    fn user_exists(&self, name: &str) -> Result<(), AuthError> {
        if self.users.contains_key(name) {
            Ok(())
        } else {
            Err(AuthError::UserNotFound)
        }
    }

    /// Role `root` may be granted before it is added (etcd's too).
    fn role_exists_or_root(&self, role: &str) -> Result<(), AuthError> {
        if role == ROOT || self.roles.contains_key(role) {
            Ok(())
        } else {
            Err(AuthError::RoleNotFound)
        }
    }

    /// Refuses, while auth is on, a change that takes root's power away.
    fn keeps_root(&self, takes_root: bool) -> Result<(), AuthError> {
        if self.enabled && takes_root {
            Err(AuthError::InvalidAuthMgmt)
        } else {
            Ok(())
        }
    }

    /// Applies `op`, which [`Auth::check`] accepted; enabling auth that
    /// is on already changes nothing.
    pub fn apply(&mut self, op: &AuthOp) {
        let next = self.revision + 1;
        match op {
            AuthOp::Enable { token_key } => {
                if self.enabled {
                    return;
                }
                self.enabled = true;
                self.token_key = token_key.clone();
            }
            AuthOp::Disable => self.enabled = false,
            AuthOp::UserAdd { name, password } => {
                let user = User {
                    password: password.clone(),
                    roles: BTreeSet::new(),
                    since: next,
                };
                self.users.insert(name.clone(), user);
            }
            AuthOp::UserDelete { name } => {
                self.users.remove(name);
            }
            AuthOp::UserChangePassword { name, password } => {
                if let Some(u) = self.users.get_mut(name) {
                    u.password = password.clone();
                    u.since = next;
                }
            }
            AuthOp::UserGrantRole { user, role } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.roles.insert(role.clone());
                }
            }
            AuthOp::UserRevokeRole { user, role } => {
                if let Some(u) = self.users.get_mut(user) {
                    u.roles.remove(role);
                }
            }
            AuthOp::RoleAdd { name } => {
                self.roles.insert(name.clone(), Role::default());
            }
            AuthOp::RoleDelete { name } => {
                self.roles.remove(name);
                for u in self.users.values_mut() {
                    u.roles.remove(name);
                }
            }
            AuthOp::RoleGrantPermission { role, perm } => {
                if let Some(r) = self.roles.get_mut(role) {
                    grant(r, perm);
                }
            }
            AuthOp::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                if let Some(r) = self.roles.get_mut(role) {
                    r.perms
                        .retain(|p| !(p.key == key && p.range_end == range_end));
                }
            }
        }
        self.revision = next;
    }
}

/// Adds `perm` to `role` in key order, or changes the kind of the one on
/// the same keys.
fn grant(role: &mut Role, perm: &Permission) {
    let at = role
        .perms
        .binary_search_by(|p| (&p.key, &p.range_end).cmp(&(&perm.key, &perm.range_end)));
    match at {
        Ok(i) => role.perms[i].kind = perm.kind,
        Err(i) => role.perms.insert(i, perm.clone()),
    }
}

/// Whether the spans (sorted by start) cover all of `[start, end)`.
fn covered(spans: &[(Bytes, Option<Bytes>)], start: &Bytes, end: Option<&Bytes>) -> bool {
    let mut reached = start.clone();
    for (s, e) in spans {
        if *s > reached {
            break;
        }
        match e {
            None => return true,
            Some(e) => reached = reached.max(e.clone()),
        }
        if end.is_some_and(|end| reached >= *end) {
            return true;
        }
    }
    // An empty range (`end <= start`) holds no key: there is nothing to refuse.
    end.is_some_and(|end| reached >= *end)
}

#[cfg(test)]
mod tests;
