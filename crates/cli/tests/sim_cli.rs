//! `flotilla sim raft|kv|hosted` end to end: a short run reports its seeds with no
//! violation and exits 0; seed numbers out of range are usage errors
//! (exit 3) naming the flag, never a panic; a run whose reader left ends
//! quietly.

use std::process::{Command, Output};

fn flotilla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .output()
        .expect("run flotilla")
}

#[test]
fn a_short_sim_run_passes_and_bad_seed_ranges_are_refused() {
    for sim in ["raft", "kv", "hosted"] {
        let out = flotilla(&["sim", sim, "--seeds", "3", "--start", "5"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "sim {sim}: {stdout}");
        assert!(
            stdout.contains("seeds=3 violations=0"),
            "sim {sim}: {stdout}"
        );
        for bad in [&["--start", "0"][..], &["--seed", "0"], &["--seeds", "0"]] {
            let out = flotilla(&[&["sim", sim][..], bad].concat());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "sim {sim} {bad:?}: {stderr}");
            assert!(stderr.contains(bad[0]), "sim {sim} {bad:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "sim {sim} {bad:?}: {stderr}");
        }
    }
}

#[test]
fn hosted_refuses_a_group_it_cannot_run() {
    for bad in [
        &["--members", "0"][..],
        &["--clients", "0"],
        &["--secs", "0"],
    ] {
        let out = flotilla(&[&["sim", "hosted"][..], bad].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{bad:?}: {stderr}");
        assert!(stderr.contains(bad[0]), "{bad:?}: {stderr}");
    }
}

/// `flotilla sim raft ... | head -0`: the reader closed the pipe before
/// the first `println!`. The run ends with 141 (128 + SIGPIPE, as a C
/// tool in a pipeline) and prints no panic.
#[test]
fn a_reader_that_left_ends_a_run_quietly() {
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["sim", "raft", "--seeds", "1"])
        .stdout(closed_pipe())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run flotilla");
    let out = child.wait_with_output().expect("wait for flotilla");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The writing end of a pipe whose reader is already gone: a child's
/// first write to it fails with `BrokenPipe`, whenever it comes.
fn closed_pipe() -> std::io::PipeWriter {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    writer
}
