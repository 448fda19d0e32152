//! etcd's authentication and role-based access on a 3-member cluster, as
//! an attacker meets it: with auth on, a request without credentials, with
//! a forged token or from a user without the permission is refused on
//! every path that reads or writes a key (Range, a range that reaches past
//! the permission, Txn compares and nested branches, DeleteRange with
//! prev_kv, Watch, lease TimeToLive with keys, Lock), a user cannot grant
//! itself a role, a revoked role holds from the next request (open
//! watches included), and maintenance and membership are a root's. The
//! CLI's `--user` (with the password asked on a terminal) and the
//! client's new token after one is voided. etcd's JWT tokens on every
//! member.
//! Debian's etcdctl drives the setup where it is installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use bytes::Bytes;
use cluster_common::{Cluster, channel};
use flotilla_proto::authpb;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::auth_client::AuthClient;
use flotilla_proto::etcdserverpb::cluster_client::ClusterClient;
use flotilla_proto::etcdserverpb::kv_client::KvClient;
use flotilla_proto::etcdserverpb::lease_client::LeaseClient;
use flotilla_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use flotilla_proto::etcdserverpb::watch_client::WatchClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// `message` carrying `token` (none: no credentials).
fn req<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(t) = token {
        r.metadata_mut().insert("token", t.parse().unwrap());
    }
    r
}

fn range(key: &str, end: &str) -> pb::RangeRequest {
    pb::RangeRequest {
        key: Bytes::from(key.to_owned()),
        range_end: Bytes::from(end.to_owned()),
        ..Default::default()
    }
}

fn put(key: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: Bytes::from(key.to_owned()),
        value: Bytes::from_static(b"v"),
        ..Default::default()
    }
}

fn refused<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, message: &str) {
    let e = r.expect_err("the request went through");
    assert_eq!((e.code(), e.message()), (code, message), "{e:?}");
}

fn denied<T: std::fmt::Debug>(r: Result<T, Status>) {
    refused(r, Code::PermissionDenied, "etcdserver: permission denied");
}

async fn token(auth: &mut AuthClient<Channel>, name: &str, password: &str) -> String {
    let r = pb::AuthenticateRequest {
        name: name.into(),
        password: password.into(),
    };
    auth.authenticate(r).await.unwrap().into_inner().token
}

/// root (role root) and alice (role `a`: read-write on prefix `a/`),
/// then auth on. Through etcdctl when it is installed, else gRPC.
async fn set_up(endpoint: &str, auth: &mut AuthClient<Channel>) {
    if !common::etcdctl_missing() {
        for args in [
            &["user", "add", "root:rootpw"][..],
            &["user", "grant-role", "root", "root"],
            &["role", "add", "a"],
            &[
                "role",
                "grant-permission",
                "a",
                "readwrite",
                "a/",
                "--prefix",
            ],
            &["user", "add", "alice:alicepw"],
            &["user", "grant-role", "alice", "a"],
            &["auth", "enable"],
        ] {
            common::etcdctl_ok(endpoint, args);
        }
        return;
    }
    let user = |name: &str, password: &str| pb::AuthUserAddRequest {
        name: name.into(),
        password: password.into(),
        ..Default::default()
    };
    let grant = |user: &str, role: &str| pb::AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    };
    auth.user_add(user("root", "rootpw")).await.unwrap();
    auth.user_grant_role(grant("root", "root")).await.unwrap();
    auth.role_add(pb::AuthRoleAddRequest { name: "a".into() })
        .await
        .unwrap();
    let perm = authpb::Permission {
        perm_type: authpb::permission::Type::Readwrite as i32,
        key: Bytes::from_static(b"a/"),
        range_end: Bytes::from_static(b"a0"),
    };
    let grant_perm = pb::AuthRoleGrantPermissionRequest {
        name: "a".into(),
        perm: Some(perm),
    };
    auth.role_grant_permission(grant_perm).await.unwrap();
    auth.user_add(user("alice", "alicepw")).await.unwrap();
    auth.user_grant_role(grant("alice", "a")).await.unwrap();
    auth.auth_enable(pb::AuthEnableRequest {}).await.unwrap();
}

// etcd's `--auth-token jwt,...`: a token one member signs is a standard
// JWT that every other member accepts, for what its user may do only; a
// token whose claims were changed is refused everywhere.
#[test]
fn jwt_tokens_from_one_member_hold_on_every_other() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/jwt");
    let spec = format!(
        "jwt,pub-key={},priv-key={},sign-method=RS256,ttl=2m",
        keys.join("rsa.pub.pem").display(),
        keys.join("rsa.pem").display()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let args = ["--bcrypt-cost", "4", "--auth-token", spec.as_str()];
    let cluster = Cluster::start_with("auth-jwt", 3, &args);
    cluster.wait_leader(&rt);
    rt.block_on(async {
        let ch: Vec<Channel> = connect_all(&cluster.endpoints).await;
        let mut auth = AuthClient::new(ch[0].clone());
        set_up(&cluster.endpoints[0], &mut auth).await;
        let alice = token(&mut auth, "alice", "alicepw").await;
        let parts: Vec<&str> = alice.split('.').collect();
        assert_eq!(parts.len(), 3, "{alice}");
        let header = String::from_utf8(B64.decode(parts[0]).unwrap()).unwrap();
        assert!(header.contains(r#""alg":"RS256""#), "{header}");
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[1]).unwrap()).expect("the claims are JSON");
        assert_eq!(claims["username"], "alice");
        let exp = claims["exp"].as_u64().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            (now + 100..=now + 121).contains(&exp),
            "ttl=2m: {exp} at {now}"
        );

        for c in &ch[1..] {
            let mut kv = KvClient::new(c.clone());
            kv.put(req(put("a/jwt"), Some(&alice))).await.unwrap();
            denied(kv.range(req(range("b/x", ""), Some(&alice))).await);
        }
        let mut as_root = claims.clone();
        as_root["username"] = "root".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(serde_json::to_vec(&as_root).unwrap()),
            parts[2]
        );
        let mut kv = KvClient::new(ch[2].clone());
        refused(
            kv.range(req(range("b/x", ""), Some(&forged))).await,
            Code::Unauthenticated,
            "etcdserver: invalid auth token",
        );
    });
}

#[test]
fn with_auth_on_only_what_a_user_s_roles_allow_gets_through() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start_with("auth", 3, &["--bcrypt-cost", "4"]);
    cluster.wait_leader(&rt);
    rt.block_on(async {
        // Each client on its own member: checks hold whoever takes them.
        let ch: Vec<Channel> = connect_all(&cluster.endpoints).await;
        let mut auth = AuthClient::new(ch[0].clone());
        set_up(&cluster.endpoints[1], &mut auth).await;
        let root = token(&mut auth, "root", "rootpw").await;
        let alice = token(&mut auth, "alice", "alicepw").await;
        refused(
            auth.authenticate(pb::AuthenticateRequest {
                name: "alice".into(),
                password: "wrong".into(),
            })
            .await,
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        );
        let mut kv = KvClient::new(ch[2].clone());
        nobody_gets_in(&mut kv, &ch[1], &alice).await;
        alice_stays_in_her_prefix(&mut kv, &ch[1], &alice, &root).await;
        admin_is_root_s(&ch[0], &alice, &root).await;
        the_cli_logs_in(&cluster.endpoints);
        a_voided_token_is_replaced(&cluster.endpoints, &mut auth, &alice, &root).await;
        // Alice's token died with her password change: a new one.
        let alice = token(&mut auth, "alice", "alicepw").await;
        revoked_means_refused(&mut auth, &mut kv, &ch[1], &alice, &root).await;
    });
}

/// `flotilla ARGS --endpoints ENDPOINTS`: whether it succeeded, its
/// stdout and stderr.
fn flotilla(endpoints: &[String], args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.args(args).args(["--endpoints", &endpoints.join(",")]);
    let (status, out, err) = common::run_with_input(&mut cmd, "");
    (status.success(), out, err)
}

/// `flotilla kv --user` (etcdctl's flag): alice writes and reads her
/// prefix and nothing else; a wrong password and no user are refused
/// with the server's reason, and the password is never echoed.
fn the_cli_logs_in(endpoints: &[String]) {
    let alice = ["--user", "alice:alicepw"];
    let put = flotilla(
        endpoints,
        &[&["kv", "put", "a/cli", "v"][..], &alice].concat(),
    );
    assert_eq!(put, (true, "OK\n".into(), String::new()));
    let get = [
        "kv",
        "get",
        "a/cli",
        "--user",
        "alice",
        "--password",
        "alicepw",
    ];
    assert_eq!(
        flotilla(endpoints, &get),
        (true, "a/cli\nv\n".into(), String::new())
    );
    let (ok, _, err) = flotilla(endpoints, &[&["kv", "get", "b/x"][..], &alice].concat());
    assert!(
        !ok && err.contains("etcdserver: permission denied"),
        "{err}"
    );
    let wrong = ["kv", "get", "a/cli", "--user", "alice:wrongpw"];
    let (ok, _, err) = flotilla(endpoints, &wrong);
    assert!(!ok, "{err}");
    assert!(err.contains("authenticating as \"alice\""), "{err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("wrongpw"), "{err}");
    let (ok, _, err) = flotilla(endpoints, &["kv", "get", "a/cli"]);
    assert!(
        !ok && err.contains("etcdserver: user name is empty"),
        "{err}"
    );
    asked_on_a_terminal(endpoints);
    // The load generator carries --user's token on every request.
    let bench = [
        "bench",
        "kv",
        "--clients",
        "1",
        "--conns",
        "1",
        "--duration",
        "1s",
        "--warmup",
        "0s",
    ];
    let as_root = [&bench[..], &["--user", "root:rootpw"]].concat();
    let (ok, out, err) = flotilla(endpoints, &as_root);
    assert!(ok && out.contains(" errors=0 "), "{out}{err}");
    let (_, out, err) = flotilla(endpoints, &bench);
    assert!(!out.contains(" errors=0 "), "without --user: {out}{err}");
    authenticate_timings(endpoints);
}

/// `flotilla bench authenticate` checks each kind's verdict as it times
/// it (the right password in, a wrong one and a missing user out) and
/// prints the three kinds' times and their ratios.
fn authenticate_timings(endpoints: &[String]) {
    let bench = ["bench", "authenticate", "--rounds", "2"];
    let (ok, out, err) = flotilla(
        endpoints,
        &[&bench[..], &["--user", "alice:alicepw"]].concat(),
    );
    assert!(ok, "{out}{err}");
    for kind in [
        "right password",
        "wrong password",
        "missing user",
        "missing_over_wrong=",
    ] {
        assert!(out.contains(kind), "{kind}: {out}");
    }
    // A password that is not alice's is caught before any figure.
    let (ok, _, err) = flotilla(endpoints, &[&bench[..], &["--user", "alice:nope"]].concat());
    assert!(
        !ok && err.contains("the known user's password was refused"),
        "{err}"
    );
}

/// `--user alice` alone asks for the password on the terminal, as
/// etcdctl: run under `script`, which gives it a terminal and types what
/// the test writes; without a terminal it says how to give one.
fn asked_on_a_terminal(endpoints: &[String]) {
    let get = ["kv", "get", "a/cli", "--user", "alice"];
    let (ok, _, err) = flotilla(endpoints, &get);
    assert!(!ok && err.contains("--user alice has no password"), "{err}");
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped the prompt: util-linux's script is not installed");
        return;
    }
    let command = format!(
        "{} kv get a/cli --user alice --endpoints {}",
        env!("CARGO_BIN_EXE_flotilla"),
        endpoints.join(",")
    );
    let mut script = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    script
        .stdin
        .take()
        .unwrap()
        .write_all(b"alicepw\n")
        .unwrap();
    let out = script.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Password for alice: "), "{said}");
    assert!(said.contains("a/cli\r\nv\r\n"), "{said}");
}

/// A long-lived client whose token the server voided (alice's password
/// set again moves her `since`) authenticates again and goes on.
async fn a_voided_token_is_replaced(
    endpoints: &[String],
    auth: &mut AuthClient<Channel>,
    alice: &str,
    root: &str,
) {
    let credentials = flotilla_client::Credentials::new("alice", "alicepw");
    let client = flotilla_client::Client::new(endpoints, std::time::Duration::from_secs(5))
        .unwrap()
        .with_credentials(credentials);
    assert_eq!(client.get("a/cli").await.unwrap().unwrap(), "v");
    let again = pb::AuthUserChangePasswordRequest {
        name: "alice".into(),
        password: "alicepw".into(),
        ..Default::default()
    };
    auth.user_change_password(req(again, Some(root)))
        .await
        .unwrap();
    let mut kv = KvClient::new(channel(&endpoints[0]).await);
    let old = kv.range(req(range("a/cli", ""), Some(alice))).await;
    refused(old, Code::Unauthenticated, "etcdserver: invalid auth token");
    assert_eq!(client.get("a/cli").await.unwrap().unwrap(), "v");
}

async fn connect_all(endpoints: &[String]) -> Vec<Channel> {
    let mut out = Vec::new();
    for e in endpoints {
        out.push(channel(e).await);
    }
    out
}

async fn nobody_gets_in(kv: &mut KvClient<Channel>, ch: &Channel, alice: &str) {
    let empty = "etcdserver: user name is empty";
    refused(
        kv.range(req(range("a/1", ""), None)).await,
        Code::InvalidArgument,
        empty,
    );
    refused(
        kv.put(req(put("a/1"), None)).await,
        Code::InvalidArgument,
        empty,
    );
    let forged = format!("{}0", &alice[..alice.len() - 1]);
    let bad = "etcdserver: invalid auth token";
    refused(
        kv.range(req(range("a/1", ""), Some(&forged))).await,
        Code::Unauthenticated,
        bad,
    );
    refused(
        kv.range(req(range("a/1", ""), Some("junk"))).await,
        Code::Unauthenticated,
        bad,
    );
    let mut lease = LeaseClient::new(ch.clone());
    let grant = pb::LeaseGrantRequest { ttl: 60, id: 0 };
    refused(
        lease.lease_grant(req(grant, None)).await,
        Code::InvalidArgument,
        empty,
    );
    let mut m = MaintenanceClient::new(ch.clone());
    refused(
        m.hash_kv(req(pb::HashKvRequest { revision: 0 }, None))
            .await,
        Code::InvalidArgument,
        empty,
    );
}

async fn alice_stays_in_her_prefix(
    kv: &mut KvClient<Channel>,
    ch: &Channel,
    alice: &str,
    root: &str,
) {
    let me = Some(alice);
    kv.put(req(put("a/1"), me)).await.unwrap();
    kv.put(req(put("b/1"), Some(root))).await.unwrap();
    denied(kv.put(req(put("b/1"), me)).await);
    denied(kv.range(req(range("b/1", ""), me)).await);
    denied(kv.range(req(range("a/", "b0"), me)).await);
    assert_eq!(
        kv.range(req(range("a/", "a0"), me))
            .await
            .unwrap()
            .into_inner()
            .count,
        1
    );
    let delete = pb::DeleteRangeRequest {
        key: Bytes::from_static(b"b/"),
        range_end: Bytes::from_static(b"b0"),
        prev_kv: true,
    };
    denied(kv.delete_range(req(delete, me)).await);
    let compare_b = pb::Compare {
        key: Bytes::from_static(b"b/1"),
        target: pb::compare::CompareTarget::Version as i32,
        result: pb::compare::CompareResult::Greater as i32,
        target_union: Some(pb::compare::TargetUnion::Version(0)),
        ..Default::default()
    };
    let op = |r: pb::request_op::Request| pb::RequestOp { request: Some(r) };
    let txn = pb::TxnRequest {
        compare: vec![compare_b],
        success: vec![op(pb::request_op::Request::RequestPut(put("a/2")))],
        failure: vec![],
    };
    denied(kv.txn(req(txn, me)).await);
    let nested = pb::TxnRequest {
        compare: vec![],
        success: vec![op(pb::request_op::Request::RequestRange(range("b/1", "")))],
        failure: vec![],
    };
    let outer = pb::TxnRequest {
        compare: vec![],
        success: vec![op(pb::request_op::Request::RequestPut(put("a/3")))],
        failure: vec![op(pb::request_op::Request::RequestTxn(nested))],
    };
    denied(kv.txn(req(outer, me)).await);
    her_leases_show_only_her_keys(kv, ch, alice, root).await;
}

/// Lease TimeToLive lists a lease's keys: all must be hers to read, as
/// all must be hers to write for her to revoke it.
async fn her_leases_show_only_her_keys(
    kv: &mut KvClient<Channel>,
    ch: &Channel,
    alice: &str,
    root: &str,
) {
    let me = Some(alice);
    let mut lease = LeaseClient::new(ch.clone());
    let id = lease
        .lease_grant(req(pb::LeaseGrantRequest { ttl: 60, id: 0 }, me))
        .await
        .unwrap()
        .into_inner()
        .id;
    let leased = pb::PutRequest {
        lease: id,
        ..put("b/2")
    };
    kv.put(req(leased, Some(root))).await.unwrap();
    let ttl = pb::LeaseTimeToLiveRequest { id, keys: true };
    denied(lease.lease_time_to_live(req(ttl, me)).await);
    let without_keys = pb::LeaseTimeToLiveRequest { id, keys: false };
    lease
        .lease_time_to_live(req(without_keys, me))
        .await
        .unwrap();
    denied(
        lease
            .lease_revoke(req(pb::LeaseRevokeRequest { id }, me))
            .await,
    );
}

async fn admin_is_root_s(ch: &Channel, alice: &str, root: &str) {
    let mut m = MaintenanceClient::new(ch.clone());
    denied(
        m.hash_kv(req(pb::HashKvRequest { revision: 0 }, Some(alice)))
            .await,
    );
    m.hash_kv(req(pb::HashKvRequest { revision: 0 }, Some(root)))
        .await
        .unwrap();
    let mut c = ClusterClient::new(ch.clone());
    let add = pb::MemberAddRequest {
        peer_ur_ls: vec!["http://127.0.0.1:1".into()],
        is_learner: true,
        ..Default::default()
    };
    denied(c.member_add(req(add, Some(alice))).await);
    let mut auth = AuthClient::new(ch.clone());
    let grant_self = pb::AuthUserGrantRoleRequest {
        user: "alice".into(),
        role: "root".into(),
    };
    denied(auth.user_grant_role(req(grant_self, Some(alice))).await);
    denied(
        auth.user_list(req(pb::AuthUserListRequest {}, Some(alice)))
            .await,
    );
    let own = pb::AuthUserGetRequest {
        name: "alice".into(),
    };
    let roles = auth.user_get(req(own, Some(alice))).await.unwrap();
    assert_eq!(roles.into_inner().roles, vec!["a".to_string()]);
    let delete_root = pb::AuthUserDeleteRequest {
        name: "root".into(),
    };
    refused(
        auth.user_delete(req(delete_root, Some(root))).await,
        Code::InvalidArgument,
        "etcdserver: invalid auth management",
    );
}

async fn revoked_means_refused(
    auth: &mut AuthClient<Channel>,
    kv: &mut KvClient<Channel>,
    ch: &Channel,
    alice: &str,
    root: &str,
) {
    let mut watch = WatchClient::new(ch.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: Bytes::from_static(b"a/"),
                range_end: Bytes::from_static(b"a0"),
                ..Default::default()
            },
        )),
    };
    tx.send(create).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut answers = watch
        .watch(req(stream, Some(alice)))
        .await
        .unwrap()
        .into_inner();
    let created = answers.message().await.unwrap().unwrap();
    assert!(created.created && !created.canceled, "{created:?}");
    let revoke = pb::AuthUserRevokeRoleRequest {
        name: "alice".into(),
        role: "a".into(),
    };
    auth.user_revoke_role(req(revoke, Some(root)))
        .await
        .unwrap();
    denied(kv.range(req(range("a/1", ""), Some(alice))).await);
    // The next event cancels her watch instead of reaching her.
    kv.put(req(put("a/9"), Some(root))).await.unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), answers.message())
        .await
        .expect("no answer on the watch")
        .unwrap()
        .unwrap();
    assert!(next.canceled && next.events.is_empty(), "{next:?}");
    assert_eq!(next.cancel_reason, "etcdserver: permission denied");
    drop(tx);
}
