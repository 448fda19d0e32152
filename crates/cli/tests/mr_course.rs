//! The MIT 6.824 Lab 1 checks (`test-mr.sh`), as multi-process tests of the
//! built `flotilla` binary: a `flotilla mr coordinator` and `flotilla mr
//! worker` processes in the course's layout (a fresh `mr-tmp/` with the
//! texts named `../pg-*.txt`), each test in its own directory on its own
//! loopback port. Timings are scaled down unless `FLOTILLA_MR_LONG=1`
//! (see `common::timing`); the properties checked are the course's.

mod common;

use std::time::Duration;

use common::*;
use flotilla_testkit::{Proc, Scratch, wait_for};

const LIMIT: Duration = Duration::from_secs(180);

// test-mr.sh "wc": 3 workers; compared as soon as the coordinator exits, so
// every output must be final by then.
#[test]
fn wc_matches_the_sequential_run() {
    let s = Scratch::new("wc");
    let (dir, inputs) = course_layout(&s);
    let (mut coord, addr) = start_coordinator(&dir, &["--app", "wc", "--out", "out"], &inputs);
    let mut workers: Vec<Proc> = (0..3).map(|_| start_worker(&dir, &addr, &[])).collect();
    assert!(coord.wait(LIMIT).success(), "{}", coordinator_log(&dir));
    let got = sorted_output(&dir.join("out"));
    assert_eq!(sha256(&got), WC_SHA256);
    assert_eq!(got, sequential(&dir, "wc", &[], &inputs));
    for w in &mut workers {
        assert!(w.wait(LIMIT).success());
    }
}

// test-mr.sh "indexer": compared as soon as the foreground worker exits,
// without waiting for the coordinator: no worker exits before all output
// is written.
#[test]
fn indexer_matches_the_sequential_run() {
    let s = Scratch::new("indexer");
    let (dir, inputs) = course_layout(&s);
    let (mut coord, addr) = start_coordinator(&dir, &["--app", "indexer", "--out", "out"], &inputs);
    let _background = start_worker(&dir, &addr, &[]);
    let mut foreground = start_worker(&dir, &addr, &[]);
    assert!(foreground.wait(LIMIT).success());
    let got = sorted_output(&dir.join("out"));
    assert_eq!(sha256(&got), INDEXER_SHA256);
    assert_eq!(got, sequential(&dir, "indexer", &[], &inputs));
    assert!(coord.wait(LIMIT).success());
}

/// Runs a probe app with 2 workers; returns the output once the
/// foreground worker exits.
fn probe(name: &str, app: &str, params: &[String]) -> String {
    let s = Scratch::new(name);
    let (dir, inputs) = course_layout(&s);
    let mut args = vec!["--app", app, "--out", "out"];
    args.extend(param_args(params));
    let (mut coord, addr) = start_coordinator(&dir, &args, &inputs);
    let _background = start_worker(&dir, &addr, &[]);
    let mut foreground = start_worker(&dir, &addr, &[]);
    assert!(foreground.wait(LIMIT).success());
    let got = sorted_output(&dir.join("out"));
    assert!(coord.wait(LIMIT).success(), "{}", coordinator_log(&dir));
    got
}

// test-mr.sh "map parallelism": exactly two worker processes ran maps, and
// some map saw both running at once.
#[test]
fn maps_run_in_parallel() {
    let p = params(&[("probe_sleep_ms", timing().probe_sleep_ms)]);
    let out = probe("mtiming", "mtiming", &p);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("times-")).count(),
        2,
        "{out}"
    );
    let parallel = out
        .lines()
        .filter(|l| l.starts_with("parallel") && l.split(' ').skip(1).any(|v| v == "2"));
    assert!(parallel.count() >= 1, "{out}");
}

// test-mr.sh "reduce parallelism": at least two keys' reduces saw two reduce
// workers at once (`^[a-z] 2`).
#[test]
fn reduces_run_in_parallel() {
    let p = params(&[("probe_sleep_ms", timing().probe_sleep_ms)]);
    let out = probe("rtiming", "rtiming", &p);
    let both = out.lines().filter(|l| {
        let b = l.as_bytes();
        b.len() >= 3 && b[0].is_ascii_lowercase() && l[1..].starts_with(" 2")
    });
    assert!(both.count() >= 2, "{out}");
}

// test-mr.sh "job count": maps take 2-5 s (scaled down here); each map task
// runs exactly once when nothing fails. The output must be exactly `a 8`
// (the later staff version's stricter check).
#[test]
fn each_map_task_runs_exactly_once() {
    let t = timing();
    let s = Scratch::new("jobcount");
    let (dir, inputs) = course_layout(&s);
    let p = params(&[
        ("map_sleep_min_ms", t.jobcount_min_ms),
        ("map_sleep_span_ms", t.jobcount_span_ms),
    ]);
    let mut args = vec![
        "--app",
        "jobcount",
        "--out",
        "out",
        "--speculate-after",
        t.jobcount_speculate_after,
    ];
    // A late heartbeat on a loaded machine must not re-run a map either.
    args.extend(["--task-timeout", t.jobcount_task_timeout]);
    args.extend(param_args(&p));
    let (mut coord, addr) = start_coordinator(&dir, &args, &inputs);
    let _bg = start_worker(&dir, &addr, &[]);
    let mut fg = start_worker(&dir, &addr, &[]);
    assert!(fg.wait(LIMIT).success());
    let mut late: Vec<Proc> = (0..2).map(|_| start_worker(&dir, &addr, &[])).collect();
    for w in &mut late {
        w.wait(LIMIT);
    }
    assert_eq!(sorted_output(&dir.join("out")), "a 8\n");
    assert!(coord.wait(LIMIT).success());
}

// test-mr.sh "early exit": the output when the first process exits equals
// the output after all have exited.
#[test]
fn no_process_exits_before_the_output_is_final() {
    let s = Scratch::new("early-exit");
    let (dir, inputs) = course_layout(&s);
    let p = params(&[("reduce_sleep_ms", timing().early_exit_sleep_ms)]);
    let mut args = vec!["--app", "early_exit", "--out", "out"];
    args.extend(param_args(&p));
    let (coord, addr) = start_coordinator(&dir, &args, &inputs);
    let mut procs = vec![coord];
    procs.extend((0..3).map(|_| start_worker(&dir, &addr, &[])));
    wait_for("the first process to exit", LIMIT, || {
        procs.iter_mut().find_map(Proc::exited)
    });
    let first = sorted_output(&dir.join("out"));
    for p in &mut procs {
        p.wait(LIMIT);
    }
    let last = sorted_output(&dir.join("out"));
    assert_eq!(first, last);
    let expected: String = inputs.iter().map(|i| format!("{i} 1\n")).collect();
    assert_eq!(last, expected);
}

// test-mr.sh "crash": workers crash (exit at once) or stall at random while
// they are restarted; the output still equals the sequential nocrash run.
// Map outputs go to a shared directory, as in the course.
#[test]
fn workers_that_crash_or_stall_do_not_change_the_output() {
    let t = timing();
    let s = Scratch::new("crash");
    let (dir, inputs) = course_layout(&s);
    let p = params(&[("stall_max_ms", t.stall_max_ms)]);
    let shared = dir.join("shared");
    let shared_arg = shared.to_string_lossy().into_owned();
    let mut args = vec![
        "--app",
        "crash",
        "--out",
        "out",
        "--shared-dir",
        &shared_arg,
    ];
    // Backups start later than timeouts, so both paths run.
    args.extend(["--speculate-after", t.crash_speculate_after]);
    args.extend(param_args(&p));
    let (mut coord, addr) = start_coordinator(&dir, &args, &inputs);
    let mut workers: Vec<Proc> = (0..4).map(|_| start_worker(&dir, &addr, &[])).collect();
    let mut restarts = 0;
    // The course's restart loops: while the coordinator runs, replace every
    // worker that crashed (a worker told to exit exits with success).
    wait_for("the crash job to finish", LIMIT, || {
        if let Some(status) = coord.exited() {
            return Some(status);
        }
        for w in &mut workers {
            if w.exited().is_some_and(|s| !s.success()) {
                *w = start_worker(&dir, &addr, &[]);
                restarts += 1;
            }
        }
        None
    });
    let got = sorted_output(&dir.join("out"));
    assert_eq!(sha256(&got), NOCRASH_SHA256, "after {restarts} restarts");
    assert_eq!(got, sequential(&dir, "nocrash", &[], &inputs));
    assert!(coord.wait(LIMIT).success());
    eprintln!("{restarts} worker restarts\n{}", coordinator_log(&dir));
}
