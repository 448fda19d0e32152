//! `flotilla server --config FILE` (or `FLOTILLA_CONFIG`): a server starts
//! from a TOML file alone; a flag beats its environment variable, which
//! beats the file; a bad key, a wrong type or a missing file is a clear
//! error naming the file (and the line and key).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{flotilla, run};
use flotilla_testkit::{Proc, Scratch, free_port, wait_for};

fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

fn write_config(s: &Scratch, text: &str) -> String {
    let path = s.path.join("server.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn single_member(addr: &str) -> String {
    format!("id = 1\nlisten = \"{addr}\"\npeers = [\"1={addr}\"]\ndata-dir = \"d\"\ntick-ms = 5\n")
}

#[test]
fn a_server_starts_from_a_config_file_alone() {
    let s = Scratch::new("config-start");
    let addr = free_addr();
    let path = write_config(&s, &single_member(&addr));
    let mut cmd = flotilla(&s.path);
    cmd.env("FLOTILLA_CONFIG", &path).arg("server");
    let _p = Proc::spawn("server", &mut cmd);
    wait_for("the server to serve", Duration::from_secs(30), || {
        let (status, _, _) =
            run(flotilla(&s.path).args(["kv", "put", "a", "1", "--endpoints", &addr]));
        status.success().then_some(())
    });
    assert!(s.path.join("d/member").exists(), "the file's data-dir");
}

/// The `--id` that wins is named in the error: it is not a member.
fn refused_id(s: &Scratch, env: Option<&str>, flag: Option<&str>) -> String {
    let addr = free_addr();
    let path = write_config(s, &single_member(&addr));
    let mut cmd = flotilla(&s.path);
    cmd.args(["server", "--config", &path]);
    if let Some(id) = env {
        cmd.env("FLOTILLA_ID", id);
    }
    if let Some(id) = flag {
        cmd.args(["--id", id]);
    }
    let (status, _, err) = run(&mut cmd);
    assert_eq!(status.code(), Some(1), "{err}");
    err
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file() {
    let s = Scratch::new("config-precedence");
    let err = refused_id(&s, Some("7"), None);
    assert!(err.contains("--id 7 is not one of the members"), "{err}");
    let err = refused_id(&s, Some("7"), Some("9"));
    assert!(err.contains("--id 9 is not one of the members"), "{err}");
}

fn config_error(text: &str) -> String {
    let s = Scratch::new("config-error");
    let path = write_config(&s, text);
    let (status, _, err) = run(flotilla(&s.path).args(["server", "--config", &path]));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(&path), "names the file: {err}");
    err
}

#[test]
fn bad_config_files_are_clear_errors() {
    let err = config_error("id = 1\nlisten-on = \"127.0.0.1:1\"\n");
    assert!(err.contains("line 2, key `listen-on`"), "{err}");
    assert!(err.contains("unknown field"), "{err}");
    let err = config_error("id = \"one\"\n");
    assert!(err.contains("line 1, key `id`"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
    let s = Scratch::new("config-missing");
    let missing = s.path.join("nope.toml");
    let (status, _, err) = run(flotilla(&s.path).args(["server", "--config"]).arg(&missing));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("nope.toml"), "{err}");
}

/// A `--listen` port that is not this member's own `--peers` entry is
/// refused at start, naming both, unless a cluster token says members
/// reach one another at other addresses: then it starts with a warning.
#[test]
fn a_listen_port_not_in_the_members_peers_entry_is_refused_without_a_token() {
    let s = Scratch::new("listen-peers");
    let (listen, listed, other) = (free_addr(), free_addr(), free_addr());
    let peers = format!("1={listed},2={other}");
    let server = |extra: &[&str]| {
        let mut cmd = flotilla(&s.path);
        cmd.args([
            "server", "--id", "1", "--listen", &listen, "--peers", &peers,
        ])
        .args(["--data-dir", "d"])
        .args(extra);
        cmd
    };
    let (status, _, err) = run(&mut server(&[]));
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("--listen {listen}")), "{err}");
    assert!(err.contains(&format!("1={listed}")), "{err}");
    assert!(err.contains("--cluster-token"), "{err}");
    assert!(
        !s.path.join("d").exists(),
        "nothing is written before the check"
    );

    let log = s.path.join("token.log");
    let mut cmd = server(&["--cluster-token", "behind-a-proxy"]);
    cmd.stderr(std::fs::File::create(&log).unwrap());
    let _p = Proc::spawn("server", &mut cmd);
    wait_for("the warning", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("--listen serves another port").then_some(())
    });
}
