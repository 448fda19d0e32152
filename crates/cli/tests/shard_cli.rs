//! The README's sharded-store commands, as a user types them: `flotilla
//! up --groups 2` in a scratch directory, then `flotilla shard put`,
//! `append`, `get`, `query`, `move`, `leave`, `status` from the same
//! directory without flags (they find `up`'s endpoints file); bad input
//! gets an error naming what was wrong and exit 1; SIGTERM stops `up`
//! and its servers, and a second `up` restarts the store with its data
//! and joins nothing twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use flotilla_testkit::{Proc, Scratch, free_ports, wait_for};

/// A first port such that it and the next two are free, and the three
/// 1000 above (the servers' consoles).
fn free_base() -> u16 {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    wait_for("free ports for up", Duration::from_secs(10), || {
        // Taken together, so that no other test of this binary is handed
        // base + 1 or base + 2 by free_ports.
        let three = free_ports(3);
        let base = three[0];
        if three != [base, base + 1, base + 2] {
            return None;
        }
        let all = [0, 1, 2, 1000, 1001, 1002];
        (base < u16::MAX - 1003 && all.iter().all(|i| free(base + i))).then_some(base)
    })
}

/// The console of the first server (`up` gives each one on its port plus
/// 1000) shows configuration `num` with `shard` on `gid`.
fn console_shows(base: u16, num: u64, shard: usize, gid: u64) {
    let addr = format!("127.0.0.1:{}", base + 1000);
    let (code, page) = flotilla_testkit::http::get(&addr, "/");
    assert!(
        code == 200 && page.contains("Sharded store"),
        "{code} {page}"
    );
    let (code, api) = flotilla_testkit::http::get(&addr, "/api/shards");
    assert_eq!(code, 200, "{api}");
    assert!(api.contains(&format!("\"num\":{num}")), "{api}");
    let owners = api
        .split("\"shards\":[")
        .nth(1)
        .and_then(|t| t.split(']').next());
    let owner = owners.and_then(|o| o.split(',').nth(shard)).map(str::trim);
    assert_eq!(owner, Some(gid.to_string().as_str()), "{api}");
}

fn flotilla(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Runs a command that must succeed; its standard output.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = flotilla(dir, args);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "flotilla {args:?}: {text}{err}");
    text
}

/// Runs a command that must fail with exit 1; its standard error.
fn refused(dir: &Path, args: &[&str]) -> String {
    let out = flotilla(dir, args);
    assert_eq!(out.status.code(), Some(1), "flotilla {args:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Starts `flotilla up --groups 2` in `dir` and waits for its banner.
fn up(dir: &Path, base: u16) -> Proc {
    up_with(dir, base, &[])
}

/// [`up`] with `extra` flags.
fn up_with(dir: &Path, base: u16, extra: &[&str]) -> Proc {
    let log = std::fs::File::create(dir.join("up.out")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.current_dir(dir)
        .args(["up", "--groups", "2", "--base-port", &base.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let p = Proc::spawn("up --groups 2", &mut cmd);
    wait_for("up's banner", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(dir.join("up.out")).ok()?;
        text.contains("press Ctrl-C to stop").then_some(())
    });
    p
}

fn stop(mut up: Proc) {
    up.signal("TERM");
    assert!(up.wait(Duration::from_secs(30)).success());
}

#[test]
fn the_readme_commands_work_and_bad_input_is_named() {
    let scratch = Scratch::new("shard-cli");
    let dir = scratch.path.as_path();
    let base = free_base();
    let first = up(dir, base);
    let banner = std::fs::read_to_string(dir.join("up.out")).unwrap();
    assert!(
        banner.contains("sharded store up: 3 members, each hosting the controller and groups 1-2")
            && banner.contains(&format!("console: http://127.0.0.1:{}/", base + 1000)),
        "{banner}"
    );
    assert_eq!(ok(dir, &["shard", "put", "hello", "world"]), "OK\n");
    assert_eq!(ok(dir, &["shard", "append", "hello", "!"]), "OK\n");
    assert_eq!(ok(dir, &["shard", "get", "hello"]), "world!\n");
    assert_eq!(
        ok(dir, &["shard", "get", "nothing"]),
        "",
        "a key without a value prints nothing"
    );
    let query = ok(dir, &["shard", "query"]);
    assert!(
        query.starts_with("configuration 1\n  group 1: shards [0, 1, 2, 3, 4]"),
        "{query}"
    );
    let moved = ok(dir, &["shard", "move", "4", "2"]);
    assert!(
        moved.contains("group 2: shards [4, 5, 6, 7, 8, 9]"),
        "{moved}"
    );
    console_shows(base, 2, 4, 2);
    let left = ok(dir, &["shard", "leave", "1"]);
    assert!(
        left.contains("configuration 3\n  group 2: shards [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"),
        "{left}"
    );
    assert_eq!(
        ok(dir, &["shard", "get", "hello"]),
        "world!\n",
        "after its shard moved"
    );
    let status = ok(dir, &["shard", "status"]);
    assert_eq!(status.matches("(member ").count(), 3, "{status}");
    for (args, want) in [
        (
            &["shard", "join", "9"][..],
            "group 9 is not hosted by these servers (they host [1, 2])",
        ),
        (
            &["shard", "move", "10", "2"],
            "shard 10 does not exist (there are 10)",
        ),
        (&["shard", "put", "", "x"], "the key is empty"),
        (
            &["shard", "leave", "5"],
            "group 5 is not in the configuration",
        ),
    ] {
        let err = refused(dir, args);
        assert!(err.contains(want), "flotilla {args:?}: {err}");
    }
    let err = refused(dir, &["shard", "--endpoints", "nohost", "get", "k"]);
    assert!(err.contains("nohost"), "{err}");
    stop(first);
    // Again in the same directory: the same store, its data kept, and no
    // group joined twice (configuration 3 stays the latest).
    let second = up(dir, base);
    assert_eq!(ok(dir, &["shard", "get", "hello"]), "world!\n");
    assert!(ok(dir, &["shard", "query"]).starts_with("configuration 3\n"));
    stop(second);
}

/// Starts `flotilla shard server` `id` of three on `ports`, with its
/// certificate from `certs/` (as `flotilla certs` names them) and client
/// certificates checked.
fn tls_server(dir: &Path, id: usize, ports: &[u16]) -> Proc {
    let tls = [
        "--cert-file".into(),
        format!("certs/node{id}.pem"),
        "--key-file".into(),
        format!("certs/node{id}-key.pem"),
        "--trusted-ca-file".into(),
        "certs/ca.pem".into(),
        "--client-cert-auth".into(),
    ];
    let peers: Vec<String> = (ports.iter().enumerate())
        .map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1))
        .collect();
    let log = std::fs::File::create(dir.join(format!("node{id}.log"))).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.current_dir(dir)
        .args(["shard", "server", "--id", &id.to_string()])
        .args(["--peers", &peers.join(","), "--groups", "1,2"])
        .args(["--data-dir", &format!("node{id}")])
        .args(&tls)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    Proc::spawn(&format!("shard server {id}"), &mut cmd)
}

// Issue 21/23: the shard servers speak mutual TLS with etcd's flags, to
// clients and among themselves (a put commits only once a majority of a
// group's replicas, on other servers, has it); a client without TLS, or
// without a certificate, is refused.
#[test]
fn shard_servers_speak_mutual_tls_and_refuse_plaintext() {
    let scratch = Scratch::new("shard-tls");
    let dir = scratch.path.as_path();
    assert!(flotilla(dir, &["certs", "--dir", "certs"]).status.success());
    let ports = free_ports(3);
    let servers: Vec<Proc> = (1..=3).map(|id| tls_server(dir, id, &ports)).collect();
    let endpoints: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let endpoints = endpoints.join(",");
    let with = |timeout: &str, extra: &[&str], args: &[&str]| {
        let mut all = vec![
            "shard",
            "--endpoints",
            &endpoints,
            "--timeout-secs",
            timeout,
        ];
        all.extend_from_slice(extra);
        all.extend_from_slice(args);
        flotilla(dir, &all)
    };
    let client = [
        "--cacert",
        "certs/ca.pem",
        "--cert",
        "certs/client.pem",
        "--key",
        "certs/client-key.pem",
    ];
    let ok_tls = |args: &[&str]| {
        let out = with("30", &client, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok_tls(&["join", "1", "2"]);
    assert_eq!(ok_tls(&["put", "hello", "tls"]), "OK\n");
    assert_eq!(ok_tls(&["get", "hello"]), "tls\n");
    for (extra, what, hint) in [
        (&[][..], "plaintext", "is the server serving TLS?"),
        (
            &["--cacert", "certs/ca.pem"],
            "no client certificate",
            "refused this client's certificate",
        ),
    ] {
        let out = with("2", extra, &["get", "hello"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("127.0.0.1:") && err.contains(hint),
            "{what}: {err}"
        );
    }
    drop(servers);
}

// `up --groups --tls`: the servers get certificates from a CA `up` makes
// and check clients'; the client commands in the same directory find
// them (the endpoints file says `https://`), and a plaintext client is
// refused with a hint.
#[test]
fn up_groups_with_tls_serves_the_same_commands() {
    let scratch = Scratch::new("shard-up-tls");
    let dir = scratch.path.as_path();
    let base = free_base();
    let cluster = up_with(dir, base, &["--tls"]);
    let banner = std::fs::read_to_string(dir.join("up.out")).unwrap();
    assert!(banner.contains("tls: clients use --cacert "), "{banner}");
    let endpoints = std::fs::read_to_string(dir.join("flotilla-data/endpoints")).unwrap();
    assert!(
        endpoints.starts_with(&format!("https://127.0.0.1:{base}\n")),
        "{endpoints}"
    );
    assert_eq!(ok(dir, &["shard", "put", "hello", "tls"]), "OK\n");
    assert_eq!(ok(dir, &["shard", "get", "hello"]), "tls\n");
    let plain = format!("127.0.0.1:{base}");
    let err = refused(
        dir,
        &[
            "shard",
            "--endpoints",
            &plain,
            "--timeout-secs",
            "2",
            "get",
            "hello",
        ],
    );
    assert!(err.contains("is the server serving TLS?"), "{err}");
    stop(cluster);
}
