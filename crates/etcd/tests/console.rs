//! The web console's endpoints on one member in process
//! (`flotilla_etcd::server::run` on loopback), called over raw HTTP/1.1:
//! `GET /` is the page, `GET /api/status` and `GET /api/cluster` are the
//! member's real numbers (a write moves the revision and the commit
//! index), other paths are 404 and other methods 405, on the client port
//! and on the metrics port alike. The 3-member version, in a real
//! browser, is `crates/cli/tests/console.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use flotilla_etcd::server::{Listeners, ServerConfig, run};
use flotilla_raft::NodeId;
use flotilla_testkit::http::{get, post};
use flotilla_testkit::{Scratch, wait_for};
use serde_json::Value;

/// A member serving on loopback until the test ends: its client and
/// metrics endpoints.
async fn member(test: &str) -> (String, String, Scratch, tokio::sync::oneshot::Sender<()>) {
    let scratch = Scratch::new(test);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let metrics_ep = metrics.local_addr().unwrap().to_string();
    let cfg = ServerConfig::founder(NodeId(1), endpoint.clone(), scratch.path.join("data"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = Listeners {
        grpc: listener,
        metrics: Some(metrics),
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
    (endpoint, metrics_ep, scratch, stop)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `GET path` on `ep`: 200 and its JSON.
fn get_json(ep: &str, path: &str) -> Value {
    let (status, body) = get(ep, path);
    assert_eq!(status, 200, "{path}: {body}");
    json(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_the_member_s_own_numbers() {
    let (ep, metrics_ep, _scratch, _stop) = member("console-endpoints").await;
    tokio::task::spawn_blocking(move || {
        for port in [&ep, &metrics_ep] {
            page_and_paths(port);
        }
        status_checks(&ep, &metrics_ep);
        cluster_checks(&ep, &metrics_ep);
        log_checks(&ep, &metrics_ep);
    })
    .await
    .unwrap();
}

/// The page, and the paths and methods that are not served.
fn page_and_paths(ep: &str) {
    let (status, page) = get(ep, "/");
    assert_eq!(status, 200);
    assert!(page.contains("<title>Flotilla console</title>"), "{page}");
    assert!(page.contains("/api/cluster"));
    assert_eq!(get(ep, "/nope"), (404, "404 page not found\n".into()));
    assert_eq!(get(ep, "/api/nope").0, 404);
    assert_eq!(post(ep, "/", "{}"), (405, "Method Not Allowed\n".into()));
    assert_eq!(post(ep, "/api/status", "{}").0, 405);
    assert_eq!(post(ep, "/api/cluster", "{}").0, 405);
    assert_eq!(get(ep, "/metrics").0, 200, "metrics still served");
}

/// `/api/status`: this member's fields, and a write moves them.
fn status_checks(ep: &str, metrics_ep: &str) {
    let before = get_json(ep, "/api/status");
    assert_eq!(before["id"], 1, "{before}");
    assert_eq!(before["name"], "node1");
    assert_eq!(before["address"], ep);
    assert_eq!(before["role"], "leader");
    assert_eq!(before["leader"], 1);
    assert!(before["term"].as_u64().unwrap() >= 1, "{before}");
    assert!(before["commit"].as_u64().unwrap() >= 1, "{before}");
    assert!(before["applied"].as_u64().unwrap() <= before["commit"].as_u64().unwrap());
    assert!(before["last_index"].as_u64().unwrap() >= before["commit"].as_u64().unwrap());
    assert!(before["log_bytes"].is_u64(), "{before}");
    assert!(before["db_size"].is_u64(), "{before}");
    assert_eq!(before["alarms"], Value::Array(vec![]));
    assert_eq!(before["version"], flotilla_etcd::cluster::VERSION);
    assert_eq!(before["learner"], false);
    let members = before["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{before}");
    assert_eq!(members[0]["id"], 1);
    assert_eq!(members[0]["learner"], false);
    assert_eq!(members[0]["client_urls"][0], format!("http://{ep}"));

    let (status, put) = post(ep, "/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#);
    assert_eq!(status, 200, "{put}");
    let written: u64 = json(&put)["header"]["revision"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The metrics port answers from the same member; the node's status
    // is published after its Ready, so the indexes are polled for.
    let after = wait_for("the write in the status", Duration::from_secs(10), || {
        let s = get_json(metrics_ep, "/api/status");
        (s["applied"].as_u64() > before["commit"].as_u64()).then_some(s)
    });
    assert_eq!(after["revision"], written, "{after}");
    assert!(after["revision"].as_u64() > before["revision"].as_u64());
    assert!(after["commit"].as_u64() >= after["applied"].as_u64());
}

/// `/api/log`: the last entries, oldest first, ending at the member's
/// last index; payloads only at `/api/log/values`, which is refused once
/// authentication is on.
fn log_checks(ep: &str, metrics_ep: &str) {
    // "logvalue-42" as the value of key "k".
    let (status, put) = post(
        ep,
        "/v3/kv/put",
        r#"{"key":"aw==","value":"bG9ndmFsdWUtNDI="}"#,
    );
    assert_eq!(status, 200, "{put}");
    let log = wait_for("the put in the log", Duration::from_secs(10), || {
        let log = get_json(metrics_ep, "/api/log");
        let last = get_json(metrics_ep, "/api/status")["last_index"].as_u64();
        let entries = log.as_array()?;
        (entries.last()?["index"].as_u64() == last).then_some(entries.clone())
    });
    assert!(!log.is_empty() && log.len() <= 50, "{log:?}");
    for pair in log.windows(2) {
        assert_eq!(
            pair[0]["index"].as_u64().unwrap() + 1,
            pair[1]["index"].as_u64().unwrap()
        );
        assert!(pair[0]["term"].as_u64() <= pair[1]["term"].as_u64());
    }
    assert!(
        log.iter().all(|e| e.get("preview").is_none()),
        "values hidden: {log:?}"
    );
    assert!(
        log.iter().any(|e| e["kind"] == "noop"),
        "the leader's first entry: {log:?}"
    );
    let last = log.last().unwrap();
    assert_eq!(last["kind"], "command", "{last}");
    assert!(last["bytes"].as_u64().unwrap() > 11, "{last}");
    let values = get_json(ep, "/api/log/values");
    let last = values.as_array().unwrap().last().unwrap().clone();
    let preview = last["preview"].as_str().unwrap();
    assert!(preview.contains("logvalue-42"), "{preview}");
    assert_eq!(post(ep, "/api/log", "{}").0, 405);
    for (path, body) in [
        ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/enable", "{}"),
    ] {
        let (status, answer) = post(ep, path, body);
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let (status, refused) = get(metrics_ep, "/api/log/values");
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused.contains("not shown while authentication is enabled"),
        "{refused}"
    );
    assert!(
        get_json(metrics_ep, "/api/log").is_array(),
        "the entries without values still"
    );
}

/// `/api/cluster`: one entry per member, this one answering for itself.
fn cluster_checks(ep: &str, metrics_ep: &str) {
    for port in [ep, metrics_ep] {
        let cluster = get_json(port, "/api/cluster");
        let all = cluster.as_array().unwrap();
        assert_eq!(all.len(), 1, "{cluster}");
        let me = &all[0];
        assert_eq!(me["id"], 1, "{cluster}");
        assert_eq!(me["role"], "leader");
        assert_eq!(me["url"], format!("http://{ep}"));
        assert!(me.get("error").is_none(), "{cluster}");
        assert!(me["revision"].as_u64().unwrap() >= 2, "{cluster}");
    }
}
