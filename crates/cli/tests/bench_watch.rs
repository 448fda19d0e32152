//! `flotilla bench watch` against a real cluster: every event it expects
//! arrives (watchers per key times the puts of the phase with watchers),
//! and bad arguments are refused with what was wrong.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use std::process::Command;

use cluster_common::Cluster;

fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["bench", "watch"])
        .args(args)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn field(line: &str, name: &str) -> String {
    let at = line
        .find(&format!(" {name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    let rest = &line[at + name.len() + 2..];
    rest.split([' ', '/']).next().unwrap().to_string()
}

#[test]
fn every_expected_event_arrives() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("bench-watch", 3);
    cluster.wait_leader(&rt);
    let all = cluster.endpoints.join(",");
    let args = ["--endpoints", &all, "--watchers", "300", "--keys", "30"];
    let (ok, out, err) = bench(
        &[
            &args[..],
            &["--writers", "4", "--duration", "1s", "--warmup", "200ms"],
        ]
        .concat(),
    );
    assert!(ok, "{out}{err}");
    let events: u64 = field(&out, "events").parse().unwrap();
    assert!(events > 0, "{out}");
    assert_eq!(field(&out, "events"), field(&out, "expected"), "{out}");
}

#[test]
fn bad_arguments_are_refused() {
    let (ok, _, err) = bench(&["--watchers", "0"]);
    assert!(!ok && err.contains("must be at least 1"), "{err}");
    let (ok, _, err) = bench(&["--value-size", "4"]);
    assert!(
        !ok && err.contains("--value-size must be at least 8"),
        "{err}"
    );
}
