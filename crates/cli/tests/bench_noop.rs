//! `flotilla bench noop-server` answers etcd's KV API (so `bench kv` can
//! measure the gRPC floor against it), and `bench kv` drives it without
//! errors and reports its figures, for a time or a number of requests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{flotilla, run};
use flotilla_testkit::{Proc, Scratch, free_port, wait_for};

#[test]
fn the_noop_server_answers_and_bench_kv_drives_it() {
    let s = Scratch::new("noop");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut server = Proc::spawn(
        "noop-server",
        flotilla(&s.path).args(["bench", "noop-server", "--listen", &addr]),
    );
    wait_for("the no-op server", Duration::from_secs(30), || {
        let (status, _, _) =
            run(flotilla(&s.path).args(["kv", "put", "a", "1", "--endpoints", &addr]));
        status.success().then_some(())
    });
    // Nothing is stored: a get finds no key.
    let (status, out, err) = run(flotilla(&s.path).args(["kv", "get", "a", "--endpoints", &addr]));
    assert!(status.success(), "{err}");
    assert!(!out.contains('1'), "{out}");
    let (status, out, err) = run(flotilla(&s.path).args([
        "bench",
        "kv",
        "--endpoints",
        &addr,
        "--clients",
        "4",
        "--conns",
        "2",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
    ]));
    assert!(status.success(), "{err}");
    assert!(out.contains("errors=0"), "{out}");
    assert!(!out.contains("requests=0 "), "{out}");
    // --total stops the load after exactly that many requests, long
    // before --duration would.
    let (status, out, err) = run(flotilla(&s.path).args([
        "bench",
        "kv",
        "--endpoints",
        &addr,
        "--clients",
        "8",
        "--total",
        "1000",
        "--duration",
        "60s",
        "--warmup",
        "0s",
    ]));
    assert!(status.success(), "{err}");
    assert!(out.contains("requests=1000 errors=0"), "{out}");
    let rate: f64 = out
        .split("throughput=")
        .nth(1)
        .and_then(|r| r.split("/s").next())
        .and_then(|r| r.parse().ok())
        .unwrap();
    // Over the time the 1,000 took, not the 60 s cap.
    assert!(rate > 1000.0 / 30.0, "{out}");
    server.kill();
}
