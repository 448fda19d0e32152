//! `flotilla check linearizability` end to end: its exit codes (0 / 1 / 2 /
//! 3), a malformed line named by number, and the HTML page.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/histories")
        .join(rel)
}

fn flotilla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .output()
        .expect("run flotilla")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file in a fresh temporary directory of this test process.
fn temp(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flotilla-check-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write temp file");
    path
}

#[test]
fn linearizable_exits_0_and_not_linearizable_exits_1_with_a_counterexample() {
    let ok = data("kv/c10-ok.txt");
    let out = flotilla(&[
        "check",
        "linearizability",
        ok.to_str().expect("utf-8"),
        "--model",
        "kv",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("linearizable"));

    let bad = data("jepsen-etcd/etcd_000.log");
    let out = flotilla(&["check", "linearizability", bad.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("cannot be ordered"), "{stdout}");
    assert!(stdout.contains("longest linearizable prefix"), "{stdout}");
}

#[test]
fn a_timeout_exits_2_and_says_unknown() {
    let file = data("kv/c50-ok.txt");
    let out = flotilla(&[
        "check",
        "linearizability",
        file.to_str().expect("utf-8"),
        "--timeout",
        "0ms",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("UNKNOWN"));
    assert!(text(&out.stderr).contains("NOT a pass"));
}

#[test]
fn bad_input_exits_3_naming_the_line() {
    let file = temp(
        "bad.jsonl",
        "{\"client\":1,\"call\":1,\"return\":2,\"op\":\"put\",\"key\":\"k\",\"value\":\"v\",\"output\":null}\n\
         {\"client\":2,\"call\":3,\"return\":4,\"op\":\"get\",\"key\":\"k\"}\n",
    );
    let out = flotilla(&["check", "linearizability", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("line 2: a completed `get` needs `output`"),
        "{stderr}"
    );

    let missing = flotilla(&["check", "linearizability", "/nonexistent/history.jsonl"]);
    assert_eq!(missing.status.code(), Some(3));
    let wrong_model = data("kv/c01-ok.txt");
    let out = flotilla(&[
        "check",
        "linearizability",
        wrong_model.to_str().expect("utf-8"),
        "--model",
        "register",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let usage = flotilla(&["check", "linearizability", "--no-such-flag"]);
    assert_eq!(usage.status.code(), Some(3));
}

#[test]
fn jsonl_register_history_and_html_page() {
    let file = temp(
        "register.jsonl",
        "{\"client\":1,\"call\":0,\"return\":5,\"op\":\"write\",\"value\":1}\n\
         {\"client\":2,\"call\":8,\"return\":13,\"op\":\"write\",\"value\":2}\n\
         {\"client\":3,\"call\":16,\"return\":21,\"op\":\"read\",\"output\":1}\n",
    );
    let page = file.with_extension("html");
    let out = flotilla(&[
        "check",
        "linearizability",
        file.to_str().expect("utf-8"),
        "--model",
        "register",
        "--html",
        page.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(&page).expect("page written");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("class=\"op core"),
        "the failing ops are marked"
    );
    assert!(html.contains("client 3"));
}
