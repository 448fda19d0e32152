//! `flotilla kv append|txn`, `--output simple|json|table` of the client
//! commands, and a command whose reader left, against a real 3-member
//! cluster on loopback ports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::process::{Command, ExitStatus};

use cluster_common::Cluster;
use common::{etcdctl, etcdctl_missing, run_with_input};

/// Runs `flotilla ARGS --endpoints ALL` with `stdin`: its status, stdout
/// and stderr.
fn flotilla(all: &str, args: &[&str], stdin: &str) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    run_with_input(cmd.args(args).args(["--endpoints", all]), stdin)
}

/// Its stdout, asserting success.
fn ok(all: &str, args: &[&str], stdin: &str) -> String {
    let (status, out, err) = flotilla(all, args, stdin);
    assert!(status.success(), "flotilla {args:?} failed: {out}{err}");
    out
}

#[test]
fn append_txn_and_output_formats_against_a_cluster() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("kv-cli", 3);
    cluster.wait_leader(&rt);
    let all = cluster.endpoints.join(",");
    let all = all.as_str();
    assert_eq!(ok(all, &["kv", "append", "log", "a;"], ""), "OK\n");
    assert_eq!(ok(all, &["kv", "append", "log", "b;"], ""), "OK\n");
    assert_eq!(ok(all, &["kv", "get", "log"], ""), "log\na;b;\n");
    txn(all);
    outputs(all);
    same_txn_output_as_etcdctl(all);
    a_reader_that_left_ends_it_quietly(all);
    bench_kv_sequential_writes_every_key_once(all);
}

/// `flotilla bench kv --sequential --total N --keys N`: the load phase of
/// a benchmark at scale writes each of the N keys once (drawn at random,
/// 40 draws over 40 keys would leave about 15 unwritten).
fn bench_kv_sequential_writes_every_key_once(all: &str) {
    let args = [
        "bench",
        "kv",
        "--clients",
        "4",
        "--conns",
        "2",
        "--keys",
        "40",
        "--total",
        "40",
        "--sequential",
        "--value-size",
        "24",
        "--duration",
        "60s",
        "--warmup",
        "0s",
    ];
    let out = ok(all, &args, "");
    assert!(out.contains("requests=40 errors=0"), "{out}");
    let listed = ok(all, &["kv", "get", "", "--prefix"], "");
    let value = "v".repeat(24);
    let written = listed.lines().filter(|l| *l == value).count();
    assert_eq!(written, 40, "every key once: {listed:?}");
}

/// `flotilla kv get log | head -0`: the reader closes the pipe before
/// anything is printed. The command ends with 141 (128 + SIGPIPE, as a
/// C tool in a pipeline) and says nothing: no panic, no backtrace.
fn a_reader_that_left_ends_it_quietly(all: &str) {
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["kv", "get", "log", "--endpoints", all])
        .stdout(closed_pipe())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert_eq!(err, "");
}

/// `etcdctl txn` with `stdin` (None where etcdctl is not installed).
fn etcdctl_txn(all: &str, stdin: &str) -> Option<String> {
    if etcdctl_missing() {
        return None;
    }
    let (success, out, err) = etcdctl(all, &["txn"], stdin);
    assert!(success, "etcdctl txn: {out}{err}");
    Some(out)
}

/// The same script through etcdctl and `flotilla kv txn`, from the same
/// state, prints the same, on both branches.
fn same_txn_output_as_etcdctl(all: &str) {
    let script = "value(\"x\") = \"1\"\n\nput x 2\nget x\n\nput x 1\nget x --prefix\n\n";
    let Some(failure) = etcdctl_txn(all, script) else {
        eprintln!("etcdctl is not installed: skipping the comparison with etcdctl txn");
        return;
    };
    assert!(failure.starts_with("FAILURE"), "{failure}");
    ok(all, &["kv", "del", "x"], "");
    assert_eq!(ok(all, &["kv", "txn"], script), failure);
    let success = etcdctl_txn(all, script).unwrap();
    assert!(success.starts_with("SUCCESS"), "{success}");
    ok(all, &["kv", "put", "x", "1"], "");
    assert_eq!(ok(all, &["kv", "txn"], script), success);
}

/// etcdctl's txn syntax on stdin: both branches, and a bad line.
fn txn(all: &str) {
    ok(all, &["kv", "put", "k", "v"], "");
    let script = "value(\"k\") = \"v\"\nversion(\"k\") > \"0\"\n\n\
                  put k v2\nget log\n\nput k v1\n\n";
    assert_eq!(
        ok(all, &["kv", "txn"], script),
        "SUCCESS\n\nOK\n\nlog\na;b;\n"
    );
    // Now k is v2: the compare fails and the failure branch runs.
    assert_eq!(ok(all, &["kv", "txn"], script), "FAILURE\n\nOK\n");
    assert_eq!(ok(all, &["kv", "get", "k"], ""), "k\nv1\n");
    let json = ok(
        all,
        &["kv", "txn", "-w", "json"],
        "create(\"nope\") = \"0\"\n\ndel k\n",
    );
    assert!(json.contains("\"succeeded\":true"), "{json}");
    assert!(json.contains("\"deleted\":1"), "{json}");
    let (status, _, err) = flotilla(
        all,
        &["kv", "txn"],
        "mod(\"k\") > \"0\"\nversion(k) = \"1\"\n",
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let interactive = ok(all, &["kv", "txn", "-i"], "\nput i 1\n\n\n");
    assert!(interactive.starts_with("compares:\n"), "{interactive}");
    assert!(interactive.contains("failure requests"), "{interactive}");
    assert!(interactive.ends_with("SUCCESS\n\nOK\n"), "{interactive}");
}

/// json (etcdctl's shape, base64) and table, for kv, status and members.
fn outputs(all: &str) {
    let json = ok(all, &["kv", "get", "log", "-w", "json"], "");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["kvs"][0]["key"], "bG9n", "{json}");
    assert_eq!(v["kvs"][0]["value"], "YTtiOw==", "{json}");
    assert!(v["header"]["raft_term"].as_u64().unwrap() >= 1, "{json}");
    assert!(v["header"]["revision"].as_i64().unwrap() >= 2, "{json}");
    let put = ok(all, &["kv", "put", "t", "1", "-w", "json"], "");
    assert!(put.contains("\"member_id\""), "{put}");
    let table = ok(all, &["kv", "get", "log", "-w", "table"], "");
    assert!(table.contains("| KEY | VALUE | CREATE REV |"), "{table}");
    assert!(table.contains("| log | a;b;  |"), "{table}");
    let del = ok(all, &["kv", "del", "t", "-w", "table"], "");
    assert!(del.contains("| DELETED | REVISION |"), "{del}");
    let members = ok(all, &["member", "list", "-w", "json"], "");
    let v: serde_json::Value = serde_json::from_str(&members).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 3, "{members}");
    let members = ok(all, &["member", "list", "-w", "table"], "");
    assert!(members.contains("| ID "), "{members}");
    assert_eq!(members.lines().count(), 7, "{members}");
    let status = ok(all, &["status", "-w", "simple"], "");
    assert_eq!(status.lines().count(), 3, "{status}");
    assert_eq!(
        status.matches(", true, false,").count(),
        1,
        "one leader: {status}"
    );
    let status = ok(all, &["status"], "");
    assert!(status.contains("| ENDPOINT "), "{status}");
}

#[test]
fn a_write_to_no_reachable_member_fails_at_once_and_says_it_was_not_applied() {
    let port = format!("127.0.0.1:{}", flotilla_testkit::free_port());
    for args in [&["kv", "put", "a", "1"][..], &["kv", "append", "a", "1"]] {
        let (status, _, err) = flotilla(&port, args, "");
        assert_eq!(status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("no endpoint reachable"), "{args:?}: {err}");
        assert!(err.contains("not applied"), "{args:?}: {err}");
    }
}

/// The writing end of a pipe whose reader is already gone: a child's
/// first write to it fails with `BrokenPipe`, whenever it comes.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    writer
}
