//! Tests of the auth store: etcd's rules for users, roles and auth on,
//! and which user may run which operation, through the store's checks
//! and through the log's encoding.

use bytes::Bytes;

use super::*;
use crate::check::Refusal;
use crate::store::Store;
use crate::{Command, Response};

fn run(s: &mut Store, op: Op) -> Result<Response, Refusal> {
    s.check_state(&op)?;
    Ok(s.apply(&op))
}

fn auth(s: &mut Store, a: AuthOp) -> Result<Response, Refusal> {
    run(s, Op::Auth(a))
}

fn as_user(user: &str, op: Op) -> Op {
    Op::AsUser {
        user: user.into(),
        op: Box::new(op),
    }
}

fn user_add(name: &str) -> AuthOp {
    AuthOp::UserAdd {
        name: name.into(),
        password: Some(format!("hash-of-{name}")),
    }
}

fn grant_role(user: &str, role: &str) -> AuthOp {
    AuthOp::UserGrantRole {
        user: user.into(),
        role: role.into(),
    }
}

fn perm(role: &str, kind: PermKind, key: &'static str, end: &'static str) -> AuthOp {
    AuthOp::RoleGrantPermission {
        role: role.into(),
        perm: Permission {
            kind,
            key: Bytes::from_static(key.as_bytes()),
            range_end: Bytes::from_static(end.as_bytes()),
        },
    }
}

fn denied() -> Result<Response, Refusal> {
    Err(Refusal::Auth(AuthError::PermissionDenied))
}

/// A store with auth on: root, and `alice` who may read and write the
/// keys under `a/` and read the single key `b`.
fn store_with_alice() -> Store {
    let mut s = Store::with_history();
    for a in [
        user_add(ROOT),
        grant_role(ROOT, ROOT),
        user_add("alice"),
        AuthOp::RoleAdd { name: "a".into() },
        perm("a", PermKind::ReadWrite, "a/", "a0"),
        perm("a", PermKind::Read, "b", ""),
        grant_role("alice", "a"),
        AuthOp::Enable {
            token_key: Bytes::from_static(b"k"),
        },
    ] {
        auth(&mut s, a).expect("setting up auth");
    }
    s
}

#[test]
fn auth_is_turned_on_only_with_a_root_that_holds_role_root() {
    let mut s = Store::new();
    let enable = || AuthOp::Enable {
        token_key: Bytes::from_static(b"k"),
    };
    let no_root = Err(Refusal::Auth(AuthError::RootUserNotExist));
    assert!(!s.auth().enabled());
    assert_eq!(auth(&mut s, enable()), no_root);
    auth(&mut s, user_add(ROOT)).unwrap();
    let not_root = Err(Refusal::Auth(AuthError::RootRoleNotExist));
    assert_eq!(auth(&mut s, enable()), not_root);
    auth(&mut s, grant_role(ROOT, ROOT)).unwrap();
    assert_eq!(auth(&mut s, enable()), Ok(Response::Authed));
    assert!(s.auth().enabled());
    assert_eq!(s.auth().token_key().as_ref(), b"k");
    assert_eq!(s.auth().revision(), 3, "one revision per change");
    assert_eq!(s.revision(), 0, "auth changes take no store revision");
}

#[test]
fn admin_calls_are_root_s_once_auth_is_on() {
    let mut s = store_with_alice();
    assert_eq!(s.auth().admin(ROOT), Ok(()));
    assert_eq!(s.auth().admin("alice"), Err(AuthError::PermissionDenied));
    assert_eq!(s.auth().admin(""), Err(AuthError::UserEmpty));
    assert_eq!(s.auth().users().collect::<Vec<_>>(), ["alice", ROOT]);
    assert_eq!(s.auth().roles().collect::<Vec<_>>(), ["a"]);
    auth(&mut s, AuthOp::Disable).unwrap();
    assert_eq!(s.auth().admin(""), Ok(()), "with auth off anyone may");
}

#[test]
fn root_keeps_its_power_while_auth_is_on() {
    let mut s = store_with_alice();
    let mgmt = Err(Refusal::Auth(AuthError::InvalidAuthMgmt));
    let delete_root = AuthOp::UserDelete { name: ROOT.into() };
    assert_eq!(auth(&mut s, delete_root.clone()), mgmt);
    let revoke = AuthOp::UserRevokeRole {
        user: ROOT.into(),
        role: ROOT.into(),
    };
    assert_eq!(auth(&mut s, revoke), mgmt);
    let delete_role = AuthOp::RoleDelete { name: ROOT.into() };
    assert_eq!(auth(&mut s, delete_role), mgmt);
    let by_root = as_user(ROOT, Op::Auth(delete_root.clone()));
    assert_eq!(
        run(&mut s, by_root),
        mgmt,
        "root may not take its own power"
    );
    auth(&mut s, AuthOp::Disable).unwrap();
    assert_eq!(auth(&mut s, delete_root), Ok(Response::Authed));
}

#[test]
fn names_are_checked_as_etcd_checks_them() {
    let mut s = store_with_alice();
    let refused = |e| Err(Refusal::Auth(e));
    assert_eq!(auth(&mut s, user_add("")), refused(AuthError::UserEmpty));
    assert_eq!(
        auth(&mut s, user_add("alice")),
        refused(AuthError::UserAlreadyExist)
    );
    let add_role = |n: &str| AuthOp::RoleAdd { name: n.into() };
    assert_eq!(auth(&mut s, add_role("")), refused(AuthError::RoleEmpty));
    assert_eq!(
        auth(&mut s, add_role("a")),
        refused(AuthError::RoleAlreadyExist)
    );
    assert_eq!(
        auth(&mut s, grant_role("bob", "a")),
        refused(AuthError::UserNotFound)
    );
    assert_eq!(
        auth(&mut s, grant_role("alice", "b")),
        refused(AuthError::RoleNotFound)
    );
    let revoke = AuthOp::UserRevokeRole {
        user: "alice".into(),
        role: ROOT.into(),
    };
    assert_eq!(auth(&mut s, revoke), refused(AuthError::RoleNotGranted));
    let revoke_perm = AuthOp::RoleRevokePermission {
        role: "a".into(),
        key: Bytes::from_static(b"a/"),
        range_end: Bytes::new(),
    };
    assert_eq!(
        auth(&mut s, revoke_perm),
        refused(AuthError::PermissionNotGranted),
        "a permission is revoked by its exact key and range end"
    );
    let change = AuthOp::UserChangePassword {
        name: "bob".into(),
        password: None,
    };
    assert_eq!(auth(&mut s, change), refused(AuthError::UserNotFound));
    assert_eq!(
        auth(&mut s, perm("b", PermKind::Read, "x", "")),
        refused(AuthError::RoleNotFound)
    );
}

#[test]
fn only_root_s_own_root_role_is_kept() {
    let mut s = store_with_alice();
    auth(&mut s, grant_role("alice", ROOT)).unwrap();
    assert!(s.auth().is_root("alice"));
    let revoke = |user: &str, role: &str| AuthOp::UserRevokeRole {
        user: user.into(),
        role: role.into(),
    };
    assert_eq!(auth(&mut s, revoke("alice", ROOT)), Ok(Response::Authed));
    auth(&mut s, AuthOp::RoleAdd { name: "b".into() }).unwrap();
    auth(&mut s, grant_role(ROOT, "b")).unwrap();
    assert_eq!(auth(&mut s, revoke(ROOT, "b")), Ok(Response::Authed));
}

#[test]
fn a_user_reads_and_writes_only_what_its_roles_cover() {
    let mut s = store_with_alice();
    let alice = |op| as_user("alice", op);
    assert_eq!(
        run(&mut s, alice(Op::put("a/1", "x"))),
        Ok(Response::Written)
    );
    assert_eq!(run(&mut s, alice(Op::put("b/1", "x"))), denied());
    assert_eq!(
        run(&mut s, alice(Op::put("b", "x"))),
        denied(),
        "b is read-only"
    );
    assert!(run(&mut s, alice(Op::get("b"))).is_ok());
    assert!(run(&mut s, alice(Op::prefix("a/", 0))).is_ok());
    assert_eq!(
        run(&mut s, alice(Op::range("a/", None, 0))),
        denied(),
        "a range that reaches past the permission is refused, not cut"
    );
    assert_eq!(
        run(&mut s, alice(Op::range("a/", Some("b\0".into()), 0))),
        denied()
    );
    assert_eq!(
        run(&mut s, alice(Op::delete_prefix("a/", false))).map(|_| ()),
        Ok(())
    );
    assert_eq!(
        run(&mut s, alice(Op::Compact { revision: 1 })).map(|_| ()),
        Ok(())
    );
    let alarm = Op::Alarm {
        raise: true,
        member: 1,
        kind: crate::AlarmKind::NoSpace,
    };
    assert_eq!(run(&mut s, alice(alarm.clone())), denied());
    assert_eq!(run(&mut s, alice(Op::Auth(user_add("eve")))), denied());
    assert_eq!(run(&mut s, as_user(ROOT, alarm)), Ok(Response::Alarmed));
    let nobody = Err(Refusal::Auth(AuthError::UserEmpty));
    assert_eq!(run(&mut s, as_user("", Op::get("a/1"))), nobody);
    assert_eq!(run(&mut s, as_user("mallory", Op::get("a/1"))), denied());
}

#[test]
fn adjacent_permissions_cover_a_range_together() {
    let mut s = store_with_alice();
    auth(&mut s, perm("a", PermKind::Read, "a0", "c")).unwrap();
    let read = |s: &mut Store, start: &'static str, end: Option<&'static str>| {
        run(
            s,
            as_user("alice", Op::range(start, end.map(Bytes::from), 0)),
        )
        .map(|_| ())
    };
    assert_eq!(
        read(&mut s, "a/", Some("c")),
        Ok(()),
        "[a/, a0) then [a0, c)"
    );
    assert_eq!(read(&mut s, "a/", Some("c\0")), denied().map(|_| ()));
    auth(&mut s, perm("a", PermKind::Read, "c", "\0")).unwrap();
    assert_eq!(
        read(&mut s, "a/", None),
        Ok(()),
        "\"\\0\" reaches every key"
    );
    assert_eq!(
        read(&mut s, "0", None),
        denied().map(|_| ()),
        "0 sorts before a/"
    );
}

#[test]
fn a_transaction_is_checked_on_every_compare_and_both_branches() {
    let mut s = store_with_alice();
    let txn = |compare_key: &'static str, failure: Op| {
        as_user(
            "alice",
            Op::Txn(crate::Txn {
                compares: vec![Compare::value_is(compare_key, "x")],
                success: vec![Op::put("a/1", "x")],
                failure: vec![failure],
            }),
        )
    };
    assert!(run(&mut s, txn("a/1", Op::get("b"))).is_ok());
    assert_eq!(
        run(&mut s, txn("c", Op::get("b"))),
        denied(),
        "a compare reads"
    );
    assert_eq!(
        run(&mut s, txn("a/1", Op::put("b", "x"))),
        denied(),
        "the branch that will not run is checked too"
    );
    let nested = Op::Txn(crate::Txn {
        compares: vec![],
        success: vec![Op::get("c")],
        failure: vec![],
    });
    assert_eq!(run(&mut s, txn("a/1", nested)), denied());
}

#[test]
fn a_delete_that_returns_what_it_removed_needs_read_too() {
    let mut s = store_with_alice();
    auth(&mut s, perm("a", PermKind::Write, "w/", "w0")).unwrap();
    let delete = |prev_kv| as_user("alice", Op::delete_prefix("w/", prev_kv));
    assert!(run(&mut s, delete(false)).is_ok());
    assert_eq!(run(&mut s, delete(true)), denied());
    assert_eq!(run(&mut s, as_user("alice", Op::get("w/1"))), denied());
}

#[test]
fn revoking_a_lease_needs_write_on_each_of_its_keys() {
    let mut s = store_with_alice();
    run(&mut s, Op::LeaseGrant { id: 7, ttl: 60 }).unwrap();
    run(&mut s, Op::put_leased("a/1", "x", 7)).unwrap();
    let revoke = || as_user("alice", Op::LeaseRevoke { id: 7 });
    run(&mut s, Op::put_leased("c", "x", 7)).unwrap();
    assert_eq!(run(&mut s, revoke()), denied());
    run(&mut s, Op::delete("c")).unwrap();
    assert_eq!(run(&mut s, revoke()), Ok(Response::Leased));
}

#[test]
fn a_permission_change_holds_from_the_next_operation() {
    let mut s = store_with_alice();
    let write = || as_user("alice", Op::put("a/1", "x"));
    assert!(run(&mut s, write()).is_ok());
    let revoke = AuthOp::UserRevokeRole {
        user: "alice".into(),
        role: "a".into(),
    };
    auth(&mut s, revoke).unwrap();
    assert_eq!(run(&mut s, write()), denied());
    auth(&mut s, grant_role("alice", "a")).unwrap();
    auth(&mut s, AuthOp::RoleDelete { name: "a".into() }).unwrap();
    assert_eq!(run(&mut s, write()), denied(), "a deleted role is revoked");
    assert!(s.auth().user("alice").unwrap().roles.is_empty());
    auth(&mut s, AuthOp::Disable).unwrap();
    assert!(run(&mut s, write()).is_ok(), "with auth off anyone may");
}

/// A user's operation meets every other check of the store too.
#[test]
fn a_user_s_operation_is_checked_like_any_other() {
    let mut s = store_with_alice();
    let future = Op::range_at("a/", Some("a0".into()), 0, 99);
    let refused = run(&mut s, as_user("alice", future));
    assert!(
        matches!(refused, Err(Refusal::FutureRevision { .. })),
        "{refused:?}"
    );
    let no_lease = run(&mut s, as_user("alice", Op::put_leased("a/1", "x", 42)));
    assert_eq!(no_lease, Err(Refusal::LeaseNotFound { id: 42 }));
    for (kind, refusal) in [
        (crate::AlarmKind::NoSpace, Refusal::NoSpace),
        (crate::AlarmKind::Corrupt, Refusal::Corrupt),
    ] {
        let alarm = |raise| Op::Alarm {
            raise,
            member: 1,
            kind,
        };
        run(&mut s, alarm(true)).unwrap();
        assert_eq!(
            run(&mut s, as_user("alice", Op::put("a/1", "x"))),
            Err(refusal)
        );
        run(&mut s, alarm(false)).unwrap();
    }
}

#[test]
fn a_revoked_permission_is_gone_and_the_others_stay() {
    let mut s = store_with_alice();
    // Same key, another range end: a permission of its own.
    auth(&mut s, perm("a", PermKind::Read, "a/", "")).unwrap();
    let revoke = AuthOp::RoleRevokePermission {
        role: "a".into(),
        key: Bytes::from_static(b"a/"),
        range_end: Bytes::from_static(b"a0"),
    };
    auth(&mut s, revoke).unwrap();
    assert_eq!(run(&mut s, as_user("alice", Op::put("a/1", "x"))), denied());
    assert!(run(&mut s, as_user("alice", Op::get("b"))).is_ok());
    assert!(run(&mut s, as_user("alice", Op::get("a/"))).is_ok());
    assert_eq!(s.auth().role("a").unwrap().perms.len(), 2);
}

#[test]
fn a_new_password_moves_the_user_s_since() {
    let mut s = store_with_alice();
    let before = s.auth().user("alice").unwrap().since;
    let change = AuthOp::UserChangePassword {
        name: "alice".into(),
        password: Some("new".into()),
    };
    auth(&mut s, change).unwrap();
    let u = s.auth().user("alice").unwrap();
    assert!(u.since > before);
    assert_eq!(u.since, s.auth().revision());
    assert_eq!(u.password.as_deref(), Some("new"));
}

#[test]
fn granting_a_permission_on_the_same_keys_changes_its_kind() {
    let mut s = store_with_alice();
    auth(&mut s, perm("a", PermKind::Write, "a/", "a0")).unwrap();
    let perms = &s.auth().role("a").unwrap().perms;
    assert_eq!(perms.len(), 2);
    assert_eq!(perms[0].kind, PermKind::Write);
    assert_eq!(perms[1].key.as_ref(), b"b", "kept in key order");
}

#[test]
fn auth_operations_survive_the_log_s_encoding() {
    let ops = [
        Op::Auth(AuthOp::Enable {
            token_key: Bytes::from_static(b"key"),
        }),
        Op::Auth(AuthOp::Disable),
        Op::Auth(user_add("u")),
        Op::Auth(AuthOp::UserAdd {
            name: "cert".into(),
            password: None,
        }),
        Op::Auth(AuthOp::UserDelete { name: "u".into() }),
        Op::Auth(AuthOp::UserChangePassword {
            name: "u".into(),
            password: Some("h".into()),
        }),
        Op::Auth(grant_role("u", "r")),
        Op::Auth(AuthOp::UserRevokeRole {
            user: "u".into(),
            role: "r".into(),
        }),
        Op::Auth(AuthOp::RoleAdd { name: "r".into() }),
        Op::Auth(AuthOp::RoleDelete { name: "r".into() }),
        Op::Auth(perm("r", PermKind::Read, "a", "\0")),
        Op::Auth(AuthOp::RoleRevokePermission {
            role: "r".into(),
            key: Bytes::from_static(b"a"),
            range_end: Bytes::from_static(b"\0"),
        }),
        as_user("u", Op::put("k", "v")),
    ];
    for op in ops {
        let c = crate::codec::tests::command(op.clone());
        assert_eq!(Command::decode(&c.encode()).unwrap().request.op, op);
    }
}
