//! TLS end to end with the real binary: `flotilla up --tls` (mutual TLS
//! for clients and peers, certificates from its throwaway CA), the
//! `flotilla` client commands with and without the right certificates,
//! Debian's `etcdctl` with `--cacert/--cert/--key` where it is installed,
//! `flotilla server` refusing missing or garbage certificate files
//! with an error that names the file, and a member with another CA's
//! certificates refused by the cluster's members, a rotation to a new
//! CA while a client writes, without a restart or a failed write, and a
//! member serving plaintext and TLS clients on one port when asked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{etcdctl, etcdctl_missing, flotilla, run};
use flotilla_testkit::{Proc, Scratch, free_ports, wait_for};

const MEMBERS: u16 = 3;

/// A first port such that it, the next ones and their metrics ports
/// (1000 above) are free.
fn free_base() -> u16 {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    wait_for("free ports for up", Duration::from_secs(10), || {
        let base = free_ports(1)[0];
        let all = (0..MEMBERS).all(|i| free(base + i) && free(base + 1000 + i));
        (base < 60000 && all).then_some(base)
    })
}

/// `flotilla up --tls` in `dir`, once it printed that it is up.
fn up_tls(dir: &Path, base: u16) -> Proc {
    let out = std::fs::File::create(dir.join("up.out")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.current_dir(dir)
        .args(["up", "--tls", "--base-port", &base.to_string()])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut up = Proc::spawn("flotilla up --tls", &mut cmd);
    wait_for(
        "up --tls to elect a leader",
        Duration::from_secs(60),
        || {
            if let Some(status) = up.exited() {
                let out = std::fs::read_to_string(dir.join("up.out")).unwrap_or_default();
                panic!("up exited ({status}): {out}");
            }
            let out = std::fs::read_to_string(dir.join("up.out")).unwrap_or_default();
            out.contains("press Ctrl-C").then_some(())
        },
    );
    up
}

/// Runs `flotilla args` in `dir`: success, stdout, stderr.
fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let (status, out, err) = run(flotilla(dir).args(args));
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    (status.success(), out, err)
}

#[test]
fn a_tls_cluster_serves_clients_with_certificates_from_its_ca_only() {
    let scratch = Scratch::new("cli-tls-up");
    let dir = scratch.path.as_path();
    let base = free_base();
    let mut up = up_tls(dir, base);
    let printed = std::fs::read_to_string(dir.join("up.out")).unwrap();
    assert!(
        printed.contains("endpoints: https://127.0.0.1:"),
        "{printed}"
    );
    assert!(
        printed.contains("--cacert flotilla-data/tls/ca.pem"),
        "{printed}"
    );
    console_over_tls(&printed, base);

    // In the same directory the client commands find the certificates.
    assert_eq!(cli(dir, &["kv", "put", "k", "v"]).1.trim(), "OK");
    assert_eq!(cli(dir, &["kv", "get", "k"]).1, "k\nv\n");
    let ep = format!("https://127.0.0.1:{base}");
    let tls = [
        "--cacert",
        "flotilla-data/tls/ca.pem",
        "--cert",
        "flotilla-data/tls/client.pem",
        "--key",
        "flotilla-data/tls/client-key.pem",
    ];
    let mut args = vec!["kv", "get", "k", "--endpoints", &ep];
    args.extend(tls);
    assert_eq!(cli(dir, &args).1, "k\nv\n");

    refusals(dir, base);
    a_member_of_another_ca_gets_nowhere(dir, base);
    etcdctl_checks(dir, &ep);
    rotation_while_a_client_writes(dir, &ep);
    up.signal("TERM");
    assert!(up.wait(Duration::from_secs(30)).success());
}

/// The console's URL is printed, and its `/api/cluster` (plain HTTP on
/// the metrics port) has every member's status, asked over the members'
/// mutual TLS.
fn console_over_tls(printed: &str, base: u16) {
    let metrics = format!("127.0.0.1:{}", base + 1000);
    assert!(
        printed.contains(&format!("console: http://{metrics}/")),
        "{printed}"
    );
    wait_for("every member's status", Duration::from_secs(20), || {
        let (status, body) = flotilla_testkit::http::get(&metrics, "/api/cluster");
        let all: serde_json::Value = serde_json::from_str(&body).ok()?;
        let all = all.as_array()?;
        let answered = all.iter().filter(|m| m.get("error").is_none()).count();
        let leaders = all.iter().filter(|m| m["role"] == "leader").count();
        (status == 200 && all.len() == 3 && answered == 3 && leaders == 1).then_some(())
    });
}

/// Clients without the right certificates are refused, and told why.
fn refusals(dir: &Path, base: u16) {
    let ep = format!("https://127.0.0.1:{base}");
    // A client that trusts another CA is told the server is not vouched for.
    assert!(cli(dir, &["certs", "--dir", "other"]).0);
    let (ok, _, err) = cli(
        dir,
        &[
            "kv",
            "get",
            "k",
            "--endpoints",
            &ep,
            "--cacert",
            "other/ca.pem",
        ],
    );
    assert!(
        !ok && err.contains("not one that other/ca.pem vouches for"),
        "{err}"
    );
    // --client-cert-auth: no certificate, no entry, and a hint why.
    let (ok, _, err) = cli(
        dir,
        &[
            "kv",
            "get",
            "k",
            "--endpoints",
            &ep,
            "--cacert",
            "flotilla-data/tls/ca.pem",
        ],
    );
    assert!(!ok && err.contains("--cert and --key"), "{err}");
    // A plaintext client gets nothing from a TLS port.
    let plain = format!("127.0.0.1:{base}");
    assert!(!cli(dir, &["kv", "get", "k", "--endpoints", &plain]).0);
    // Another CA's client certificate is refused too.
    let (ok, _, _) = cli(
        dir,
        &[
            "kv",
            "get",
            "k",
            "--endpoints",
            &ep,
            "--cacert",
            "flotilla-data/tls/ca.pem",
            "--cert",
            "other/client.pem",
            "--key",
            "other/client-key.pem",
        ],
    );
    assert!(!ok);
}

/// A counter of member `i`'s metrics (0 if absent).
fn counter(base: u16, i: u16, name: &str) -> u64 {
    let (_, body) =
        flotilla_testkit::http::get(&format!("127.0.0.1:{}", base + 1000 + i), "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Each member's (term, leader) as `flotilla status --output json`
/// prints them (one object per line).
fn terms_and_leaders(dir: &Path) -> Vec<(u64, u64)> {
    let (ok, out, err) = cli(dir, &["status", "--output", "json"]);
    assert!(ok, "{err}");
    let members: Vec<(u64, u64)> = out
        .lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).unwrap();
            (m["term"].as_u64().unwrap(), m["leader"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(members.len(), usize::from(MEMBERS), "{out}");
    members
}

/// A member started as member 2, with the same member list (so the same
/// cluster id) but certificates from another CA (`other/`, made by
/// `refusals`), is refused by members 1 and 3 at the TLS handshake: they
/// count it, the cluster's terms and leader stay as they were, and the
/// impostor never learns of a leader.
fn a_member_of_another_ca_gets_nowhere(dir: &Path, base: u16) {
    let before = terms_and_leaders(dir);
    let failed = |i| counter(base, i, "flotilla_tls_handshakes_failed_total");
    let (f1, f3) = (failed(0), failed(2));
    let peers: Vec<String> = (0..MEMBERS)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, base + i))
        .collect();
    // Member 2's port on another loopback address: the real member 2
    // holds 127.0.0.1's.
    let listen = format!("127.0.0.2:{}", base + 1);
    let log = std::fs::File::create(dir.join("impostor.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.current_dir(dir)
        .args(["server", "--id", "2", "--listen", &listen])
        .args(["--peers", &peers.join(","), "--data-dir", "impostor"])
        .args(flotilla_cli_member_flags("other", "node2"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut impostor = Proc::spawn("the impostor", &mut cmd);
    wait_for(
        "members 1 and 3 to refuse the impostor's handshakes",
        Duration::from_secs(30),
        || {
            assert!(impostor.exited().is_none(), "the impostor exited");
            (failed(0) > f1 && failed(2) > f3).then_some(())
        },
    );
    assert_eq!(terms_and_leaders(dir), before);
    impostor.signal("TERM");
    impostor.wait(Duration::from_secs(30));
    let said = std::fs::read_to_string(dir.join("impostor.log")).unwrap();
    assert!(!said.contains("leader=Some"), "{said}");
    let member1 = std::fs::read_to_string(dir.join("flotilla-data/node1.log")).unwrap();
    assert!(
        member1.contains("refused a connection at its TLS handshake"),
        "{member1}"
    );
}

/// Replaces `to` with `from`'s contents through a rename, as a careful
/// operator (or cert-manager) does, so no reader sees half a file.
fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// A long-lived client of `ep` with the TLS files in `tls` (re-read at
/// each new connection), writing `rot/N` until `stop` (or two minutes);
/// `written` counts its acknowledged writes. Returns its errors.
fn writer(
    tls: &Path,
    ep: &str,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Vec<String>> {
    let files = flotilla_tls::ClientTlsFiles {
        ca: tls.join("ca.pem"),
        cert: Some(tls.join("client.pem")),
        key: Some(tls.join("client-key.pem")),
    };
    let ep = ep.to_string();
    std::thread::spawn(move || -> Vec<String> {
        let rt = tokio::runtime::Runtime::new().unwrap();
        // Lazy channels spawn their connection task when made.
        let _in_runtime = rt.enter();
        let tls = Arc::new(flotilla_tls::ClientTls::new(&files).unwrap());
        let client =
            flotilla_client::Client::with_tls(&[ep], Duration::from_secs(5), Some(tls)).unwrap();
        let mut errors = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
            let n = written.load(Ordering::Relaxed);
            let put = flotilla_proto::etcdserverpb::PutRequest {
                key: format!("rot/{n}").into(),
                value: "v".into(),
                ..Default::default()
            };
            match rt.block_on(client.put(put)) {
                Ok(_) => drop(written.fetch_add(1, Ordering::Relaxed)),
                Err(e) => errors.push(e.to_string()),
            }
        }
        errors
    })
}

/// `flotilla kv get rot/0` with only these TLS files.
fn get_with(dir: &Path, ep: &str, [ca, cert, key]: [&str; 3]) -> (bool, String, String) {
    let mut args = vec!["kv", "get", "rot/0", "--endpoints", ep];
    args.extend(["--cacert", ca, "--cert", cert, "--key", key]);
    cli(dir, &args)
}

/// Certificate rotation to a new CA while a long-lived client writes, with
/// no restart: first every member and the client trust both CAs (one
/// bundle), then every certificate is replaced by the new CA's. The
/// client's writes never fail (its connections stay up; new ones get the
/// new files), and afterwards a client knowing only the new CA gets in
/// while one knowing only the old is refused.
fn rotation_while_a_client_writes(dir: &Path, ep: &str) {
    let tls = dir.join("flotilla-data/tls");
    for f in ["ca.pem", "client.pem", "client-key.pem"] {
        std::fs::copy(tls.join(f), dir.join(format!("old-{f}"))).unwrap();
    }
    let (ok, _, err) = cli(dir, &["certs", "--dir", "new"]);
    assert!(ok, "{err}");
    let new = dir.join("new");
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = writer(&tls, ep, Arc::clone(&stop), Arc::clone(&written));
    let progress = |what: &str| {
        let from = written.load(Ordering::Relaxed);
        wait_for(what, Duration::from_secs(30), || {
            (written.load(Ordering::Relaxed) >= from + 20).then_some(())
        });
    };
    progress("the client to write before the rotation");
    let bundle = [
        std::fs::read_to_string(tls.join("ca.pem")).unwrap(),
        std::fs::read_to_string(new.join("ca.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("bundle.pem"), bundle).unwrap();
    replace(&dir.join("bundle.pem"), &tls.join("ca.pem"));
    progress("the client to write with both CAs trusted");
    for name in ["node1", "node2", "node3", "client"] {
        for f in [format!("{name}-key.pem"), format!("{name}.pem")] {
            replace(&new.join(&f), &tls.join(&f));
        }
    }
    progress("the client to write after the rotation");
    let new_only = ["new/ca.pem", "new/client.pem", "new/client-key.pem"];
    let (ok, out, err) = get_with(dir, ep, new_only);
    assert!(ok && out == "rot/0\nv\n", "the new CA alone: {out}{err}");
    let old_only = ["old-ca.pem", "old-client.pem", "old-client-key.pem"];
    let (ok, _, err) = get_with(dir, ep, old_only);
    assert!(!ok && err.contains("old-ca.pem"), "the old CA alone: {err}");
    progress("the client to write after new connections came in");
    stop.store(true, Ordering::Relaxed);
    let errors = writer.join().unwrap();
    assert!(
        errors.is_empty(),
        "writes failed in the rotation: {errors:?}"
    );
}

/// `flotilla up --tls`'s member flags (`crates/cli/src/cluster/tls.rs`)
/// over the certificates `name` in `tls_dir`.
fn flotilla_cli_member_flags(tls_dir: &str, name: &str) -> Vec<String> {
    let file = |f: &str| format!("{tls_dir}/{f}");
    let (cert, key, ca) = (
        file(&format!("{name}.pem")),
        file(&format!("{name}-key.pem")),
        file("ca.pem"),
    );
    let mut flags = Vec::new();
    for side in ["", "peer-"] {
        flags.extend([
            format!("--{side}cert-file"),
            cert.clone(),
            format!("--{side}key-file"),
            key.clone(),
            format!("--{side}trusted-ca-file"),
            ca.clone(),
            format!("--{side}client-cert-auth"),
        ]);
    }
    flags
}

/// Debian's etcdctl (3.4) with etcdctl's TLS flags, where installed.
fn etcdctl_checks(dir: &Path, ep: &str) {
    if etcdctl_missing() {
        return;
    }
    let file = |f: &str| dir.join("flotilla-data/tls").join(f).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client-key.pem"));
    let tls = ["--cacert", &ca, "--cert", &cert, "--key", &key];
    let with = |args: &[&str]| {
        let mut all = tls.to_vec();
        all.extend(args);
        etcdctl(ep, &all, "")
    };
    let (ok, out, err) = with(&["put", "from-etcdctl", "yes"]);
    assert!(ok && out.trim() == "OK", "{out}{err}");
    let (ok, out, err) = with(&["get", "k"]);
    assert!(ok && out == "k\nv\n", "{out}{err}");
    let (ok, out, err) = with(&["endpoint", "status"]);
    assert!(ok && out.contains(ep), "{out}{err}");
    // Members are listed with https:// URLs, so etcdctl's --cluster
    // reaches every member over TLS.
    let (ok, out, err) = with(&["member", "list"]);
    assert!(ok && out.matches("https://").count() == 6, "{out}{err}");
    assert!(!out.contains("http://"), "{out}");
    let (ok, out, err) = with(&["endpoint", "health", "--cluster"]);
    let report = format!("{out}{err}");
    assert!(ok && report.matches("is healthy").count() == 3, "{report}");
    let (ok, out, err) = etcdctl(ep, &["--cacert", &ca, "get", "k"], "");
    assert!(
        !ok,
        "etcdctl without a client certificate got in: {out}{err}"
    );
    assert_eq!(
        cli(dir, &["kv", "get", "from-etcdctl"]).1,
        "from-etcdctl\nyes\n"
    );
}

#[test]
fn missing_or_garbage_certificate_files_stop_the_server_naming_the_file() {
    let scratch = Scratch::new("cli-tls-bad-files");
    let dir = scratch.path.as_path();
    assert!(cli(dir, &["certs", "--dir", "certs"]).0);
    std::fs::write(dir.join("garbage.pem"), "garbage\n").unwrap();
    let port = free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    let server = |cert: &str, key: &str| {
        let args = member_one(&listen, port, [cert, key]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = cli(dir, &args);
        assert!(!ok, "the server started with {cert} {key}");
        err
    };
    let err = server("certs/missing.pem", "certs/node1-key.pem");
    assert!(
        err.contains("certs/missing.pem") && err.contains("No such file"),
        "{err}"
    );
    let err = server("garbage.pem", "certs/node1-key.pem");
    assert!(
        err.contains("garbage.pem") && err.contains("no PEM certificate"),
        "{err}"
    );
    let err = server("certs/node1.pem", "garbage.pem");
    assert!(
        err.contains("garbage.pem") && err.contains("private key"),
        "{err}"
    );
    let err = server("certs/node1.pem", "certs/node2-key.pem");
    assert!(err.contains("does not fit"), "{err}");
}

#[test]
fn bad_client_tls_flags_are_errors_naming_the_file() {
    let scratch = Scratch::new("cli-tls-bad-client-flags");
    let dir = scratch.path.as_path();
    std::fs::write(dir.join("garbage.pem"), "garbage\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_ports(1)[0]);
    let (ok, _, err) = cli(
        dir,
        &[
            "kv",
            "get",
            "k",
            "--endpoints",
            &listen,
            "--cacert",
            "garbage.pem",
        ],
    );
    assert!(!ok && err.contains("garbage.pem"), "{err}");
    let (ok, _, err) = cli(
        dir,
        &[
            "kv",
            "get",
            "k",
            "--endpoints",
            &listen,
            "--cert",
            "certs/client.pem",
        ],
    );
    assert!(!ok && err.contains("--cacert"), "{err}");
}

/// The arguments of `flotilla server` member 1 alone on `listen` (its
/// port `port`), serving clients with `[cert, key]` and peers with
/// `certs`' node1 certificate (mutual TLS).
fn member_one(listen: &str, port: u16, [cert, key]: [&str; 2]) -> Vec<String> {
    let peers = format!("1=127.0.0.1:{port}");
    let node1 = ["certs/node1.pem", "certs/node1-key.pem", "certs/ca.pem"];
    [
        "server",
        "--id",
        "1",
        "--listen",
        listen,
        "--peers",
        &peers,
        "--data-dir",
        "data",
        "--cert-file",
        cert,
        "--key-file",
        key,
        "--peer-cert-file",
        node1[0],
        "--peer-key-file",
        node1[1],
        "--peer-trusted-ca-file",
        node1[2],
        "--peer-client-cert-auth",
    ]
    .map(String::from)
    .to_vec()
}

/// `flotilla server` member 1 alone on `listen`, with `certs`' node1
/// certificate for clients too.
fn one_member(dir: &Path, listen: &str, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    let node1 = ["certs/node1.pem", "certs/node1-key.pem"];
    cmd.current_dir(dir).args(member_one(listen, port, node1));
    cmd
}

#[test]
fn one_port_serves_plaintext_and_tls_clients_when_asked() {
    let scratch = Scratch::new("cli-tls-both");
    let dir = scratch.path.as_path();
    assert!(cli(dir, &["certs", "--dir", "certs"]).0);
    let port = free_ports(1)[0];
    let (plain, secure) = (
        format!("http://127.0.0.1:{port}"),
        format!("https://127.0.0.1:{port}"),
    );
    // Plaintext alone with certificates is a mistake, named at start.
    let (status, _, err) = run(&mut one_member(dir, &plain, port));
    assert!(
        !status.success() && err.contains(&format!("list {secure} too")),
        "{err}"
    );

    let both = format!("{plain},{secure}");
    let log = std::fs::File::create(dir.join("server.out")).unwrap();
    let mut cmd = one_member(dir, &both, port);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut server = Proc::spawn("flotilla server on both schemes", &mut cmd);
    wait_for("a plaintext put", Duration::from_secs(60), || {
        let (ok, out, _) = cli(dir, &["kv", "put", "k", "v", "--endpoints", &plain]);
        (ok && out.trim() == "OK").then_some(())
    });
    let args = [
        "kv",
        "get",
        "k",
        "--endpoints",
        &secure,
        "--cacert",
        "certs/ca.pem",
    ];
    assert_eq!(cli(dir, &args).1, "k\nv\n");
    if !etcdctl_missing() {
        let (ok, out, err) = etcdctl(&plain, &["member", "list"], "");
        assert!(
            ok && out.contains(&format!("{secure},{plain}")),
            "{out}{err}"
        );
        let ca = dir.join("certs/ca.pem").display().to_string();
        let (ok, out, err) = etcdctl(&secure, &["--cacert", &ca, "get", "k"], "");
        assert!(ok && out == "k\nv\n", "{out}{err}");
    }
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(30)).success());
}
