//! `flotilla sim raft|kv|hosted` end to end: a short run reports its seeds with no
//! violation and exits 0; seed numbers out of range are usage errors
//! (exit 3) naming the flag, never a panic.

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
