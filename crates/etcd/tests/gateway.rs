//! etcd's JSON gateway on a member's client port, in process: a single
//! member (`flotilla_etcd::server::run`) on loopback, called over raw
//! HTTP/1.1 as curl calls it. Unary calls and their JSON, etcd's error
//! bodies and statuses, bad bodies, a body over the limit, keep-alive;
//! a watch and a lease keep-alive as streams of `{"result": ...}` lines.
//! The 3-member version, through followers and with the real binary, is
//! `crates/cli/tests/gateway.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use flotilla_etcd::server::{Listeners, ServerConfig, run};
use flotilla_raft::NodeId;
use flotilla_testkit::http::{connect, get, post, read_response, read_until, send};
use flotilla_testkit::{Scratch, wait_for};

/// A member serving on loopback until the test ends; its endpoint.
async fn member(test: &str) -> (String, Scratch, tokio::sync::oneshot::Sender<()>) {
    let scratch = Scratch::new(test);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let cfg = ServerConfig::founder(NodeId(1), endpoint.clone(), scratch.path.join("data"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = Listeners {
        grpc: listener,
        metrics: None,
    };
    tokio::spawn(run(cfg, listeners, async move {
        let _ = stopped.await;
    }));
    let ep = endpoint.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("a leader", Duration::from_secs(30), || {
            (get(&ep, "/health").0 == 200).then_some(())
        })
    })
    .await
    .unwrap();
    (endpoint, scratch, stop)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_answer_as_etcd_s_gateway_does() {
    let (ep, _scratch, _stop) = member("gateway-unary").await;
    tokio::task::spawn_blocking(move || unary_checks(&ep))
        .await
        .unwrap();
}

fn unary_checks(ep: &str) {
    kv_answers(ep);
    maintenance_answers(ep);
    error_answers(ep);
    body_limits(ep);
    paths_and_connections(ep);
}

/// Answers and their JSON, as etcd writes it.
fn kv_answers(ep: &str) {
    let (status, put) = post(ep, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    assert_eq!(status, 200, "{put}");
    assert_eq!(json(&put)["header"]["revision"], "2", "{put}");
    let (status, range) = post(ep, "/v3beta/kv/range", r#"{"key":"Zm9v","bogus":1}"#);
    assert_eq!(status, 200, "unknown fields are ignored: {range}");
    let range = json(&range);
    assert_eq!(range["kvs"][0]["value"], "YmFy", "{range}");
    assert_eq!(range["kvs"][0]["create_revision"], "2", "{range}");
    // Camel-case names are read too; a nested answer has etcd's header.
    let txn = r#"{"success":[{"requestRange":{"key":"Zm9v"}},{"request_put":{"key":"Zm9v","value":"YQ=="}}]}"#;
    let (status, t) = post(ep, "/v3/kv/txn", txn);
    let t = json(&t);
    assert_eq!((status, &t["succeeded"]), (200, &true.into()), "{t}");
    assert_eq!(
        t["responses"][0]["response_range"]["header"]["revision"], "2",
        "{t}"
    );
    assert_eq!(
        t["responses"][1]["response_put"]["header"]["revision"], "3",
        "{t}"
    );
}

/// The maintenance answers etcd 3.4.23 gives without a header, byte for
/// byte, and the lock and election errors it passes on from its client
/// as UNKNOWN (each one compared with etcd's own answer to the same body).
fn maintenance_answers(ep: &str) {
    assert_eq!(post(ep, "/v3/maintenance/alarm", "{}"), (200, "{}".into()));
    assert_eq!(
        post(ep, "/v3/maintenance/defragment", "{}"),
        (200, "{}".into())
    );
    let (status, s) = post(ep, "/v3/maintenance/status", "{}");
    assert_eq!(status, 200, "{s}");
    assert!(json(&s).get("errors").is_none(), "a leader, no alarm: {s}");
    let unknown = |m: &str| format!(r#"{{"error":"{m}","message":"{m}","code":2}}"#);
    assert_eq!(
        post(ep, "/v3/lock/unlock", "{}"),
        (500, unknown("etcdserver: key is not provided"))
    );
    let (status, e) = post(ep, "/v3/election/proclaim", "{}");
    assert_eq!((status, &json(&e)["code"]), (500, &2.into()), "{e}");
    assert_eq!(
        post(ep, "/v3/cluster/member/add", "{}"),
        (
            400,
            r#"{"error":"etcdserver: given member URLs are invalid","message":"etcdserver: given member URLs are invalid","code":3}"#.into()
        )
    );
}

/// etcd's error bodies, field for field, and bad bodies.
fn error_answers(ep: &str) {
    assert_eq!(
        post(ep, "/v3/kv/range", ""),
        (
            400,
            r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#.into()
        ),
        "an empty body is the empty request"
    );
    let (status, e) = post(ep, "/v3/kv/range", r#"{"key":"Zm9v","revision":"99"}"#);
    assert_eq!((status, &json(&e)["code"]), (400, &11.into()), "{e}");
    let (status, e) = post(ep, "/v3/lease/revoke", r#"{"ID":"42"}"#);
    assert_eq!((status, &json(&e)["code"]), (404, &5.into()), "{e}");
    let (status, e) = post(ep, "/v3/maintenance/transfer-leadership", "{}");
    assert_eq!((status, &json(&e)["code"]), (412, &9.into()), "{e}");
    for bad in [
        "not json",
        r#"{"key":"@@"}"#,
        r#"{"key":1}"#,
        "[[[[",
        r#"{"sort_order":"UP"}"#,
    ] {
        let (status, e) = post(ep, "/v3/kv/range", bad);
        assert_eq!((status, &json(&e)["code"]), (400, &3.into()), "{bad}: {e}");
        assert!(e.contains("/etcdserverpb.KV/Range"), "names the call: {e}");
    }
}

/// The body limit, to the byte (JSON may be padded with spaces); a body
/// that never ends.
fn body_limits(ep: &str) {
    // Twice etcd's default request size (1.5 MiB), and 64 KiB for the
    // rest: what base64 and JSON make of the largest request.
    let max = 3 * 1024 * 1024 + 64 * 1024;
    let put = r#"{"key":"Zm9v","value":"YmFy"}"#;
    let padded = |len: usize| format!("{put}{}", " ".repeat(len - put.len()));
    assert_eq!(
        post(ep, "/v3/kv/put", &padded(max)).0,
        200,
        "a body of {max} bytes"
    );
    let (status, e) = post(ep, "/v3/kv/put", &padded(max + 1));
    assert!(
        status == 400 && e.contains(&format!("holds at most {max} bytes")),
        "{e}"
    );
    let huge = format!(r#"{{"key":"Zm9v","value":"{}"}}"#, "A".repeat(4 << 20));
    let (status, e) = post(ep, "/v3/kv/put", &huge);
    assert!(
        status == 400 && e.contains("request is too large"),
        "{status} {e}"
    );
    // A body that never ends is answered once DRAIN_MAX bytes are read.
    let drain = flotilla_etcd::gateway::DRAIN_MAX;
    let mut conn = connect(ep);
    let head = format!(
        "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        2 * drain
    );
    std::io::Write::write_all(&mut conn, head.as_bytes()).unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..(drain >> 20) + 1 {
        let _ = std::io::Write::write_all(&mut conn, &chunk);
    }
    let (status, e) = read_response(&mut conn);
    assert!(
        status == 400 && e.contains(&format!("holds at most {max}")),
        "{e}"
    );
}

/// etcd's answers to paths and methods it does not serve; keep-alive.
fn paths_and_connections(ep: &str) {
    assert_eq!(post(ep, "/v3/kv/nope", "{}"), (404, "Not Found\n".into()));
    assert_eq!(get(ep, "/v3/kv/range").0, 405);
    assert_eq!(get(ep, "/v3/nope"), (404, "Not Found\n".into()));
    assert_eq!(get(ep, "/nope"), (404, "404 page not found\n".into()));
    assert_eq!(
        post(ep, "/nope", "{}"),
        (404, "404 page not found\n".into())
    );
    assert_eq!(
        post(ep, "/health", "{}"),
        (405, "Method Not Allowed\n".into())
    );
    let mut conn = connect(ep);
    for _ in 0..3 {
        send(&mut conn, ep, "/v3/maintenance/status", b"{}", false);
        let (status, s) = read_response(&mut conn);
        assert_eq!((status, &json(&s)["leader"]), (200, &"1".into()), "{s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_answer_one_json_line_per_message() {
    let (ep, _scratch, _stop) = member("gateway-streams").await;
    tokio::task::spawn_blocking(move || stream_checks(&ep))
        .await
        .unwrap();
}

fn stream_checks(ep: &str) {
    let mut watch = connect(ep);
    send(
        &mut watch,
        ep,
        "/v3/watch",
        br#"{"create_request":{"key":"Zm9v"}}"#,
        true,
    );
    let mut seen = String::new();
    read_until(&mut watch, &mut seen, r#"{"result":{"header":"#, 1);
    assert!(seen.contains(r#""created":true"#), "{seen}");
    post(ep, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#);
    read_until(&mut watch, &mut seen, r#""events":[{"kv":{"key":"Zm9v""#, 1);
    assert_eq!(seen.matches("{\"result\":").count(), 2, "{seen}");
    let (_, grant) = post(ep, "/v3/lease/grant", r#"{"TTL":"60"}"#);
    let id = json(&grant)["ID"].as_str().unwrap().to_string();
    let mut keep = connect(ep);
    let body = format!(r#"{{"ID":"{id}"}} {{"ID":"{id}"}}"#);
    send(&mut keep, ep, "/v3/lease/keepalive", body.as_bytes(), true);
    let mut seen = String::new();
    read_until(
        &mut keep,
        &mut seen,
        &format!(r#""ID":"{id}","TTL":"60"}}}}"#),
        2,
    );
    // A stream's bad body is etcd's unknown error (HTTP 500).
    let (status, e) = post(ep, "/v3/lease/keepalive", "junk");
    assert_eq!((status, &json(&e)["code"]), (500, &2.into()), "{e}");
}
