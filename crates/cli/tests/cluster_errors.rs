//! Bad input to the cluster commands gets a clear message and a non-zero
//! exit, never a panic: an unreachable endpoint, a port in use, a data
//! directory of another cluster. And a single-member server answers
//! `GET /metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{flotilla, run};
use flotilla_testkit::{Proc, Scratch, free_port, wait_for};

fn assert_clean_failure(status: std::process::ExitStatus, stderr: &str, needle: &str) {
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
}

#[test]
fn unreachable_endpoint_is_a_clear_error() {
    let s = Scratch::new("unreachable");
    let ep = format!("127.0.0.1:{}", free_port());
    let (status, _, err) = run(flotilla(&s.path).args(["kv", "get", "k", "--endpoints", &ep]));
    assert_clean_failure(status, &err, "no endpoint reachable");
    let (status, out, err) = run(flotilla(&s.path).args(["status", "--endpoints", &ep]));
    assert_clean_failure(status, &err, "no member answered");
    assert!(out.contains("unreachable"), "{out}");
}

#[test]
fn port_in_use_is_a_clear_error() {
    let s = Scratch::new("port-in-use");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, _, err) = run(flotilla(&s.path)
        .args(["server", "--id", "1", "--listen", &addr])
        .args(["--peers", &format!("1={addr}"), "--data-dir", "d"]));
    assert_clean_failure(status, &err, &format!("cannot listen on {addr}"));
}

fn server(s: &Scratch, addr: &str, metrics: Option<&str>) -> Proc {
    let mut cmd = flotilla(&s.path);
    cmd.args(["server", "--id", "1", "--listen", addr]).args([
        "--peers",
        &format!("1={addr}"),
        "--data-dir",
        "d",
        // Small, so that the metrics test sees the log compacted.
        "--snapshot-entries",
        "4",
    ]);
    if let Some(m) = metrics {
        cmd.args(["--metrics-listen", m]);
    }
    Proc::spawn("server", &mut cmd)
}

#[test]
fn data_dir_of_another_cluster_is_refused() {
    let s = Scratch::new("other-cluster");
    let first = format!("127.0.0.1:{}", free_port());
    let mut p = server(&s, &first, None);
    wait_for("the member file", Duration::from_secs(30), || {
        s.path.join("d/member").exists().then_some(())
    });
    p.kill();
    let second = format!("127.0.0.1:{}", free_port());
    let (status, _, err) = run(flotilla(&s.path)
        .args(["server", "--id", "1", "--listen", &second])
        .args(["--peers", &format!("1={second}"), "--data-dir", "d"]));
    assert_clean_failure(status, &err, "belongs to");
}

fn scrape(addr: &str) -> String {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_server_serves_metrics() {
    let s = Scratch::new("metrics");
    let addr = format!("127.0.0.1:{}", free_port());
    let maddr = format!("127.0.0.1:{}", free_port());
    let _p = server(&s, &addr, Some(&maddr));
    wait_for("a leader", Duration::from_secs(30), || {
        let (status, _, _) =
            run(flotilla(&s.path).args(["kv", "put", "a", "1", "--endpoints", &addr]));
        status.success().then_some(())
    });
    let text = scrape(&maddr);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("flotilla_raft_is_leader 1"), "{text}");
    assert!(
        text.contains("flotilla_grpc_request_seconds_count{method=\"Put\"}"),
        "{text}"
    );
    assert!(
        text.contains("flotilla_wal_fsync_seconds_bucket{le=\"+Inf\"}"),
        "{text}"
    );
    // Snapshots are encoded off the Raft task and come back to compact the
    // log: after a few more writes one must have landed.
    for k in ["b", "c", "d", "e"] {
        let (status, _, err) =
            run(flotilla(&s.path).args(["kv", "put", k, "1", "--endpoints", &addr]));
        assert!(status.success(), "{err}");
    }
    wait_for("a snapshot", Duration::from_secs(30), || {
        let text = scrape(&maddr);
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("flotilla_snapshots_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("flotilla_snapshots_total in /metrics");
        (n > 0).then_some(())
    });
}
