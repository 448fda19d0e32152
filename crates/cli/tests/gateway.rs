//! etcd's JSON gateway on a 3-member cluster of the real binary, as curl
//! calls it: a put through a follower read at another member, a Txn
//! under `/v3beta/`, a delete; a watch opened at a follower that gets
//! the leader's write as one `{"result": ...}` line after its request
//! body ended. The gateway's answers and errors in detail, in process:
//! `crates/etcd/tests/gateway.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use cluster_common::Cluster;
use flotilla_testkit::http::{connect, post, read_until, send};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn etcd_s_json_gateway_serves_through_any_member() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("gateway", 3);
    let leader = cluster.wait_leader(&rt);
    let follower = &cluster.endpoints[(leader + 1) % 3];
    let other = &cluster.endpoints[(leader + 2) % 3];
    // A watch at a follower, from now on; its request body has ended.
    let mut watch = connect(follower);
    let create = br#"{"create_request":{"key":"Zm9v"}}"#;
    send(&mut watch, follower, "/v3/watch", create, true);
    let mut seen = String::new();
    read_until(&mut watch, &mut seen, r#""created":true"#, 1);
    // foo = bar through the other follower ("Zm9v" and "YmFy" in base64).
    let (status, put) = post(other, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    assert_eq!(status, 200, "{put}");
    let rev = json(&put)["header"]["revision"].clone();
    let (status, range) = post(follower, "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    let kv = json(&range)["kvs"][0].clone();
    assert_eq!(status, 200, "{range}");
    assert_eq!(
        (&kv["value"], &kv["mod_revision"]),
        (&"YmFy".into(), &rev),
        "{range}"
    );
    read_until(&mut watch, &mut seen, r#""value":"YmFy""#, 1);
    assert!(seen.contains(&format!(r#""mod_revision":{rev}"#)), "{seen}");
    let txn = r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],
        "success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}]}"#;
    let (status, t) = post(&cluster.endpoints[leader], "/v3beta/kv/txn", txn);
    assert_eq!((status, &json(&t)["succeeded"]), (200, &true.into()), "{t}");
    let (_, deleted) = post(follower, "/v3/kv/deleterange", r#"{"key":"Zm9v"}"#);
    assert_eq!(json(&deleted)["deleted"], "1", "{deleted}");
    read_until(&mut watch, &mut seen, r#""type":"DELETE""#, 1);
    let (status, e) = post(follower, "/v3/kv/range", r#"{"key":""}"#);
    assert_eq!((status, &json(&e)["code"]), (400, &3.into()), "{e}");
}
