//! The encoding of auth: an operation on behalf of a user (op tag 17:
//! the user's name, then the op), the auth store's changes (op tag 18,
//! then a change tag), auth refusals (refusal tag 8, then an error code),
//! and the auth store in snapshots.
//!
//! Names are UTF-8 as every encoder writes them; bytes that are not
//! decode with replacement characters, alike on every replica, rather
//! than stopping a member on a log entry.

use std::collections::BTreeSet;

use flotilla_raft::codec::{DecodeError, Decoder, put_bytes, put_u64};

use super::{R, bad_tag};
use crate::auth::{Auth, AuthError, AuthOp, PermKind, Permission, Role, User};
use crate::command::Op;

/// Reads a name.
pub(super) fn string(d: &mut Decoder, what: &'static str) -> Result<String, DecodeError> {
    let b = d.bytes(what)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_password(out: &mut Vec<u8>, p: Option<&String>) {
    match p {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            put_str(out, p);
        }
    }
}

fn password(d: &mut Decoder) -> Result<Option<String>, DecodeError> {
    Ok(if d.bool("password flag")? {
        Some(string(d, "password hash")?)
    } else {
        None
    })
}

/// Appends op tags 17 ([`Op::AsUser`]) and 18 ([`Op::Auth`]).
pub(super) fn put_auth_op(out: &mut Vec<u8>, op: &Op) {
    match op {
        Op::AsUser { user, op } => {
            out.push(17);
            put_str(out, user);
            super::put_op(out, op);
        }
        Op::Auth(a) => {
            out.push(18);
            put_change(out, a);
        }
        _ => unreachable!("put_auth_op given {op:?}"),
    }
}

fn put_change(out: &mut Vec<u8>, a: &AuthOp) {
    match a {
        AuthOp::Enable { token_key } => {
            out.push(0);
            put_bytes(out, token_key);
        }
        AuthOp::Disable => out.push(1),
        AuthOp::UserAdd { name, password } => {
            out.push(2);
            put_str(out, name);
            put_password(out, password.as_ref());
        }
        AuthOp::UserDelete { name } => {
            out.push(3);
            put_str(out, name);
        }
        AuthOp::UserChangePassword { name, password } => {
            out.push(4);
            put_str(out, name);
            put_password(out, password.as_ref());
        }
        AuthOp::UserGrantRole { user, role } | AuthOp::UserRevokeRole { user, role } => {
            out.push(if matches!(a, AuthOp::UserGrantRole { .. }) {
                5
            } else {
                6
            });
            put_str(out, user);
            put_str(out, role);
        }
        AuthOp::RoleAdd { name } | AuthOp::RoleDelete { name } => {
            out.push(if matches!(a, AuthOp::RoleAdd { .. }) {
                7
            } else {
                8
            });
            put_str(out, name);
        }
        AuthOp::RoleGrantPermission { role, perm } => {
            out.push(9);
            put_str(out, role);
            put_perm(out, perm);
        }
        AuthOp::RoleRevokePermission {
            role,
            key,
            range_end,
        } => {
            out.push(10);
            put_str(out, role);
            put_bytes(out, key);
            put_bytes(out, range_end);
        }
    }
}

/// Reads an auth change (after op tag 18).
pub(super) fn auth_op(d: &mut Decoder) -> R<AuthOp> {
    Ok(match d.u8("auth change tag")? {
        0 => AuthOp::Enable {
            token_key: d.bytes("token key")?,
        },
        1 => AuthOp::Disable,
        2 => AuthOp::UserAdd {
            name: string(d, "user name")?,
            password: password(d)?,
        },
        3 => AuthOp::UserDelete {
            name: string(d, "user name")?,
        },
        4 => AuthOp::UserChangePassword {
            name: string(d, "user name")?,
            password: password(d)?,
        },
        5 => AuthOp::UserGrantRole {
            user: string(d, "user name")?,
            role: string(d, "role name")?,
        },
        6 => AuthOp::UserRevokeRole {
            user: string(d, "user name")?,
            role: string(d, "role name")?,
        },
        7 => AuthOp::RoleAdd {
            name: string(d, "role name")?,
        },
        8 => AuthOp::RoleDelete {
            name: string(d, "role name")?,
        },
        9 => AuthOp::RoleGrantPermission {
            role: string(d, "role name")?,
            perm: perm(d)?,
        },
        10 => AuthOp::RoleRevokePermission {
            role: string(d, "role name")?,
            key: d.bytes("permission key")?,
            range_end: d.bytes("permission range end")?,
        },
        t => return Err(bad_tag(d, "auth change", t)),
    })
}

fn put_perm(out: &mut Vec<u8>, p: &Permission) {
    out.push(match p.kind {
        PermKind::Read => 0,
        PermKind::Write => 1,
        PermKind::ReadWrite => 2,
    });
    put_bytes(out, &p.key);
    put_bytes(out, &p.range_end);
}

fn perm(d: &mut Decoder) -> Result<Permission, DecodeError> {
    let kind = match d.u8("permission kind")? {
        0 => PermKind::Read,
        1 => PermKind::Write,
        2 => PermKind::ReadWrite,
        t => {
            return Err(DecodeError::BadTag {
                what: "permission kind",
                tag: u64::from(t),
                offset: d.offset().saturating_sub(1),
            });
        }
    };
    Ok(Permission {
        kind,
        key: d.bytes("permission key")?,
        range_end: d.bytes("permission range end")?,
    })
}

const ERRORS: [AuthError; 15] = [
    AuthError::RootUserNotExist,
    AuthError::RootRoleNotExist,
    AuthError::UserAlreadyExist,
    AuthError::UserEmpty,
    AuthError::UserNotFound,
    AuthError::RoleAlreadyExist,
    AuthError::RoleNotFound,
    AuthError::RoleEmpty,
    AuthError::PermissionDenied,
    AuthError::RoleNotGranted,
    AuthError::PermissionNotGranted,
    AuthError::InvalidAuthMgmt,
    AuthError::AuthNotEnabled,
    AuthError::AuthFailed,
    AuthError::InvalidAuthToken,
];

/// An auth refusal's code: its place in [`ERRORS`], which only grows.
pub(super) fn error_code(e: AuthError) -> u8 {
    ERRORS.iter().position(|x| *x == e).unwrap_or(0) as u8
}

/// Reads an auth refusal's code.
pub(super) fn error(d: &mut Decoder) -> R<AuthError> {
    let code = d.u8("auth error code")?;
    match ERRORS.get(usize::from(code)) {
        Some(e) => Ok(*e),
        None => Err(bad_tag(d, "auth error code", code)),
    }
}

/// Appends the auth store (snapshots from version 4 on).
pub(crate) fn put_auth(out: &mut Vec<u8>, a: &Auth) {
    out.push(u8::from(a.enabled));
    put_u64(out, a.revision);
    put_bytes(out, &a.token_key);
    put_u64(out, a.users.len() as u64);
    for (name, u) in &a.users {
        put_str(out, name);
        put_password(out, u.password.as_ref());
        put_u64(out, u.since);
        put_u64(out, u.roles.len() as u64);
        for r in &u.roles {
            put_str(out, r);
        }
    }
    put_u64(out, a.roles.len() as u64);
    for (name, r) in &a.roles {
        put_str(out, name);
        put_u64(out, r.perms.len() as u64);
        for p in &r.perms {
            put_perm(out, p);
        }
    }
}

/// Reads the auth store of a snapshot.
pub(crate) fn get_auth(d: &mut Decoder) -> Result<Auth, DecodeError> {
    let mut a = Auth {
        enabled: d.bool("auth enabled flag")?,
        revision: d.u64("auth revision")?,
        token_key: d.bytes("token key")?,
        ..Auth::default()
    };
    for _ in 0..d.count("users")? {
        let name = string(d, "user name")?;
        let password = password(d)?;
        let since = d.u64("user since")?;
        let roles = (0..d.count("user roles")?)
            .map(|_| string(d, "role name"))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let user = User {
            password,
            roles,
            since,
        };
        a.users.insert(name, user);
    }
    for _ in 0..d.count("roles")? {
        let name = string(d, "role name")?;
        let perms = (0..d.count("permissions")?)
            .map(|_| perm(d))
            .collect::<Result<Vec<_>, _>>()?;
        a.roles.insert(name, Role { perms });
    }
    Ok(a)
}
