//! etcd's JSON gateway on the client port of a 3-member cluster, as curl
//! calls it: `POST /v3/kv/put` through a follower and `/v3/kv/range` at
//! another member, a Txn, `/v3beta/` paths, etcd's error bodies and HTTP
//! statuses for bad requests, a body over the limit, keep-alive
//! connections; and the streaming methods: a watch that gets a write's
//! event as one `{"result": ...}` line, a lease kept alive by a request
//! body of two JSON values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cluster_common::Cluster;

/// Sends `POST path` with `body` on `conn` (keep-alive unless `close`).
fn send(conn: &mut TcpStream, endpoint: &str, path: &str, body: &[u8], close: bool) {
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
}

/// Reads one response with a `content-length` from `conn`: (status, body).
fn read_response(conn: &mut TcpStream) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a content-length")
                .trim()
                .parse()
                .unwrap();
            if got.len() >= end + 4 + len {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]).into_owned();
                return (status, body);
            }
        }
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the connection closed mid-response: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// `POST path` on a fresh connection: (status, body).
fn post(endpoint: &str, path: &str, body: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(endpoint).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    send(&mut conn, endpoint, path, body.as_bytes(), true);
    read_response(&mut conn)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn etcd_s_json_gateway_serves_kv_through_any_member() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("gateway-kv", 3);
    let leader = cluster.wait_leader(&rt);
    let follower = &cluster.endpoints[(leader + 1) % 3];
    let other = &cluster.endpoints[(leader + 2) % 3];
    // foo = bar, through a follower ("Zm9v" and "YmFy" in base64).
    let (status, put) = post(follower, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    assert_eq!(status, 200, "{put}");
    let rev = json(&put)["header"]["revision"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, range) = post(other, "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    assert_eq!(status, 200, "{range}");
    let range = json(&range);
    assert_eq!(range["count"], "1");
    let kv = &range["kvs"][0];
    assert_eq!((&kv["key"], &kv["value"]), (&"Zm9v".into(), &"YmFy".into()));
    assert_eq!(
        (&kv["mod_revision"], &kv["version"]),
        (&rev.clone().into(), &"1".into())
    );
    assert!(kv.get("lease").is_none(), "zero values are left out: {kv}");
    // A transaction, under etcd 3.4's other prefix.
    let txn = r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],
        "success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}]}"#;
    let (status, t) = post(other, "/v3beta/kv/txn", txn);
    assert_eq!((status, &json(&t)["succeeded"]), (200, &true.into()), "{t}");
    let (_, deleted) = post(follower, "/v3/kv/deleterange", r#"{"key":"Zm9v"}"#);
    assert_eq!(json(&deleted)["deleted"], "1", "{deleted}");
    // etcd's errors, with its bodies and statuses.
    let (status, e) = post(follower, "/v3/kv/range", r#"{"key":""}"#);
    assert_eq!(status, 400);
    assert_eq!(
        e,
        r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
    );
    let (status, e) = post(follower, "/v3/kv/range", "not json");
    assert_eq!((status, &json(&e)["code"]), (400, &3.into()), "{e}");
    assert!(
        e.contains("etcdserverpb.KV/Range"),
        "the error names the call: {e}"
    );
    let (status, e) = post(
        follower,
        "/v3/kv/range",
        r#"{"key":"Zm9v","revision":"99999"}"#,
    );
    assert_eq!((status, &json(&e)["code"]), (400, &11.into()), "{e}");
    let (status, e) = post(follower, "/v3/lease/revoke", r#"{"ID":"42"}"#);
    assert_eq!((status, &json(&e)["code"]), (404, &5.into()), "{e}");
    assert_eq!(
        post(follower, "/v3/kv/nope", "{}"),
        (404, "Not Found\n".into())
    );
    let huge = format!(r#"{{"key":"Zm9v","value":"{}"}}"#, "A".repeat(4 << 20));
    let (status, e) = post(follower, "/v3/kv/put", &huge);
    assert_eq!(status, 400, "{e}");
    assert!(e.contains("request is too large"), "{e}");
    // A GET on a gateway path is refused, as etcd refuses it.
    let mut conn = TcpStream::connect(follower.as_str()).unwrap();
    conn.write_all(b"GET /v3/kv/range HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut conn).0, 405);
    // Keep-alive: several calls on one connection.
    let mut conn = TcpStream::connect(other.as_str()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for _ in 0..3 {
        send(&mut conn, other, "/v3/maintenance/status", b"{}", false);
        let (status, s) = read_response(&mut conn);
        assert_eq!(status, 200, "{s}");
        assert!(json(&s)["leader"].as_str().is_some(), "{s}");
    }
}

/// Reads the chunked stream on `conn` until `want` appears in it.
fn read_until(conn: &mut TcpStream, seen: &mut String, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "no {want:?} in {seen}");
        match conn.read(&mut buf) {
            Ok(0) => panic!("the stream ended before {want:?}: {seen}"),
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn json_streams_carry_watch_events_and_keep_alives() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("gateway-streams", 3);
    let leader = cluster.wait_leader(&rt);
    let follower = &cluster.endpoints[(leader + 1) % 3];
    let mut watch = TcpStream::connect(follower.as_str()).unwrap();
    watch
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    send(
        &mut watch,
        follower,
        "/v3/watch",
        br#"{"create_request":{"key":"Zm9v"}}"#,
        true,
    );
    let mut seen = String::new();
    read_until(&mut watch, &mut seen, r#""created":true"#);
    // The request body has ended; the watch goes on.
    let leader_ep = &cluster.endpoints[leader];
    let (status, _) = post(leader_ep, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    assert_eq!(status, 200);
    read_until(&mut watch, &mut seen, r#""events":[{"kv":{"key":"Zm9v""#);
    assert!(seen.contains(r#"{"result":{"header":"#), "{seen}");
    assert!(seen.contains(r#""value":"YmFy""#), "{seen}");
    // A lease, kept alive twice by one body of two JSON values.
    let (_, grant) = post(follower, "/v3/lease/grant", r#"{"TTL":"60"}"#);
    let id = json(&grant)["ID"].as_str().unwrap().to_string();
    let mut keep = TcpStream::connect(follower.as_str()).unwrap();
    keep.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let body = format!(r#"{{"ID":"{id}"}} {{"ID":"{id}"}}"#);
    send(
        &mut keep,
        follower,
        "/v3/lease/keepalive",
        body.as_bytes(),
        true,
    );
    let mut seen = String::new();
    let answer = format!(r#""ID":"{id}","TTL":"60"}}}}"#);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while seen.matches(&answer).count() < 2 {
        assert!(Instant::now() < deadline, "one keep-alive answered: {seen}");
        if let Ok(n) = keep.read(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    // A bad stream body: etcd's gateway calls it an unknown error (500).
    let (status, e) = post(follower, "/v3/lease/keepalive", "junk");
    assert_eq!((status, &json(&e)["code"]), (500, &2.into()), "{e}");
}
