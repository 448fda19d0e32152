//! What Flotilla's MapReduce adds to the course's checks, tested through
//! the built binary: input splits, speculative copies, streaming apps, the
//! errors for bad input, failing commands, the shuffle's map re-execution
//! when a worker dies, and `mr run` restarting crashed workers.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use flotilla_testkit::{Proc, Scratch, wait_for};

const LIMIT: Duration = Duration::from_secs(180);

/// Runs `flotilla mr run` in `cwd`; returns (success, stdout, stderr).
fn mr_run(cwd: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let t = timing();
    let mut cmd = flotilla(cwd);
    cmd.args([
        "mr",
        "run",
        "--progress-interval",
        t.progress_interval,
        "--task-timeout",
        t.task_timeout,
    ]);
    let (status, out, err) = run(cmd.args(args).env("LC_ALL", "C"));
    (status.success(), out, err)
}

// Issue 5: a large file cut into line-aligned splits gives the same output
// as whole-file map tasks.
#[test]
fn splits_of_one_large_file_give_the_same_output() {
    let s = Scratch::new("splits");
    let mut big = Vec::new();
    for text in TEXTS {
        big.extend(std::fs::read(testdata().join(text)).unwrap());
    }
    std::fs::write(s.path.join("big.txt"), &big).unwrap();
    let (ok, out, err) = mr_run(
        &s.path,
        &[
            "--app",
            "wc",
            "--split-size",
            "96KiB",
            "--out",
            "split",
            "big.txt",
        ],
    );
    assert!(ok, "{err}");
    let maps: usize = out
        .split(" map")
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(maps >= 30, "{maps} map tasks: {out}");
    let (ok, _, err) = mr_run(
        &s.path,
        &[
            "--app",
            "wc",
            "--split-size",
            "64MiB",
            "--out",
            "whole",
            "big.txt",
        ],
    );
    assert!(ok, "{err}");
    let split = sorted_output(&s.path.join("split"));
    assert_eq!(split, sorted_output(&s.path.join("whole")));
    assert_eq!(sha256(&split), WC_SHA256, "the same words as the 8 files");
}

// Issue 5: backup copies of a straggler never duplicate output. The reduces
// holding `sherlock` and `tom` keys are slow, so idle workers get backups.
#[test]
fn speculative_copies_never_duplicate_output() {
    let s = Scratch::new("speculate");
    let inputs = link_texts(&s.path);
    let mut args = vec![
        "--app",
        "early_exit",
        "--app-param",
        "reduce_sleep_ms=1500",
        "--workers",
        "3",
    ];
    args.extend(["--speculate-after", "300ms", "--out", "out"]);
    args.extend(inputs.iter().map(String::as_str));
    let (ok, out, err) = mr_run(&s.path, &args);
    assert!(ok, "{err}");
    assert!(
        !out.contains(" 0 backups"),
        "no backup copy started: {out}\n{err}"
    );
    assert!(err.contains("backup copy of reduce task"), "{err}");
    let expected: String = inputs.iter().map(|i| format!("{i} 1\n")).collect();
    assert_eq!(sorted_output(&s.path.join("out")), expected);
    let names: Vec<String> = std::fs::read_dir(s.path.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with("mr-out-")),
        "leftovers: {names:?}"
    );
}

const MAP_CMD: &str = r#"tr -cs 'A-Za-z' '\n' | awk 'NF { print $0 "\t1" }'"#;
const REDUCE_CMD: &str = r#"awk -F'\t' '{ c[$1] += $2 } END { for (k in c) print k "\t" c[k] }'"#;

// Issue 5: a streaming word count (tr and awk) gives the built-in's output.
#[test]
fn a_streaming_app_gives_the_builtin_word_count() {
    let s = Scratch::new("streaming");
    let inputs = link_texts(&s.path);
    let map_cmd = MAP_CMD;
    let mut args = vec![
        "--map-cmd",
        map_cmd,
        "--reduce-cmd",
        REDUCE_CMD,
        "--out",
        "out",
    ];
    args.extend(inputs.iter().map(String::as_str));
    let (ok, _, err) = mr_run(&s.path, &args);
    assert!(ok, "{err}");
    let got = sorted_output(&s.path.join("out"));
    assert_eq!(sha256(&got), WC_SHA256);
    assert_eq!(got, sequential(&s.path, "wc", &[], &inputs));
}

// Streaming reduce in `group` mode: one run per key, values on stdin.
#[test]
fn a_streaming_reduce_can_read_one_group_per_run() {
    let s = Scratch::new("group");
    let text = "the cat and the hat\nThe end of the cat\n";
    std::fs::write(s.path.join("small.txt"), text).unwrap();
    let map_cmd = MAP_CMD;
    let args = [
        "--map-cmd",
        map_cmd,
        "--reduce-cmd",
        "awk 'END { print NR }'",
    ];
    let (ok, _, err) = mr_run(
        &s.path,
        &[
            &args[..],
            &[
                "--reduce-input",
                "group",
                "--reduces",
                "2",
                "--out",
                "out",
                "small.txt",
            ],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let got = sorted_output(&s.path.join("out"));
    assert_eq!(got, "The 1\nand 1\ncat 2\nend 1\nhat 1\nof 1\nthe 3\n");
}

// Issue 5: a command that exits non-zero fails its task; after 4 failures
// the job stops naming the task, its input and the command's stderr tail.
#[test]
fn a_failing_streaming_command_stops_the_job_after_four_failures() {
    let s = Scratch::new("failing");
    link_texts(&s.path);
    let map_cmd = "echo 'cannot parse line 7' >&2; exit 3";
    let (ok, _, err) = mr_run(
        &s.path,
        &[
            "--map-cmd",
            map_cmd,
            "--reduce-cmd",
            "cat",
            "--out",
            "out",
            "pg-grimm.txt",
        ],
    );
    assert!(!ok);
    let expected = "map task 0 (input pg-grimm.txt bytes 0..540174) failed 4 times; last error: command \
        `echo 'cannot parse line 7' >&2; exit 3` exited with status 3; stderr tail: cannot parse line 7";
    assert!(err.contains(expected), "{err}");
    assert!(sorted_output(&s.path.join("out")).is_empty());
}

/// Runs `mr run` expecting an error before anything starts.
fn refused(cwd: &std::path::Path, args: &[&str], message: &str) {
    let (ok, _, err) = mr_run(cwd, args);
    assert!(!ok, "{args:?} should fail");
    assert!(
        err.contains(message),
        "{args:?}: expected `{message}` in:\n{err}"
    );
    assert!(!err.contains("map 1/"), "{args:?}: the job started:\n{err}");
}

// Issue 5: each bad input gets a clear error before anything starts.
#[test]
fn bad_inputs_are_refused_with_clear_errors() {
    let s = Scratch::new("bad-input");
    let dir = &s.path;
    link_texts(dir);
    std::fs::create_dir(dir.join("a-dir")).unwrap();
    std::fs::write(dir.join("a-file"), "x").unwrap();
    std::fs::create_dir(dir.join("taken")).unwrap();
    let grimm = "pg-grimm.txt";
    let cases: [(&[&str], &str); 8] = [
        (
            &["--out", "o", "missing.txt"],
            "cannot read input file missing.txt: No such file or directory",
        ),
        (&["--out", "o"], "no input files given"),
        (
            &["--out", "o", "a-dir"],
            "input a-dir is not a regular file",
        ),
        (
            &["--out", "a-file/o", grimm],
            "directory a-file/o is not writable: Not a directory",
        ),
        (
            &["--out", "taken", grimm],
            "output directory taken already exists (use --force",
        ),
        (
            &["--reduces", "0", "--out", "o", grimm],
            "the number of reduce tasks must be at least 1",
        ),
        (
            &["--split-size", "2GiB", "--out", "o", grimm],
            "split size 2147483648 is out of range",
        ),
        (
            &["--app-param", "sleep=1", "--out", "o", grimm],
            "app `wc` has no parameter `sleep`",
        ),
    ];
    for (args, message) in cases {
        refused(dir, &[&["--app", "wc"], args].concat(), message);
    }
    let unknown = ["--app", "wordcount", "--out", "o", grimm];
    refused(
        dir,
        &unknown,
        "unknown app `wordcount` (built-in apps: wc, indexer",
    );
    let mut cmd = flotilla(dir);
    cmd.args([
        "mr",
        "run",
        "--app",
        "wc",
        "--progress-interval",
        "20s",
        "--out",
        "o",
        grimm,
    ]);
    let (status, _, err) = run(&mut cmd);
    assert!(
        !status.success() && err.contains("must be shorter than --task-timeout"),
        "{err}"
    );
    assert!(!dir.join("o").exists(), "nothing was created");
    let (ok, _, err) = mr_run(dir, &["--app", "wc", "--force", "--out", "taken", grimm]);
    assert!(ok, "--force replaces: {err}");
}

// Issue 5 / MapReduce paper §3.3: when a worker dies, reducers cannot fetch
// the map outputs it served; the coordinator re-runs those maps.
#[test]
fn a_reducer_that_cannot_fetch_from_a_dead_worker_makes_the_map_run_again() {
    let s = Scratch::new("dead-shuffle");
    let inputs = link_texts(&s.path);
    let mut args = vec![
        "--app",
        "early_exit",
        "--app-param",
        "reduce_sleep_ms=2000",
        "--reduces",
        "1",
        "--out",
        "out",
    ];
    args.extend(["--speculate-after", "off"]);
    let (mut coord, addr) = start_coordinator(&s.path, &args, &inputs);
    let mut a = start_worker(&s.path, &addr, &["--work-dir", "work-a"]);
    wait_for("the map phase to finish on worker A", LIMIT, || {
        coordinator_log(&s.path)
            .contains("map phase done")
            .then_some(())
    });
    // The coordinator's console (its URL printed at the start) has every
    // map done on worker 1.
    let log = coordinator_log(&s.path);
    let console = log
        .split("console: http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no console URL: {log}"))
        .to_string();
    let (status, body) = flotilla_testkit::http::get(&console, "/api/job");
    let job: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, job["state"].as_str()),
        (200, Some("running")),
        "{body}"
    );
    assert_eq!(job["progress"]["maps_done"], 8, "{body}");
    let maps = job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "map");
    for map in maps {
        assert_eq!(
            (map["state"].as_str(), map["attempts"][0]["worker"].as_u64()),
            (Some("done"), Some(1)),
            "{map}"
        );
    }
    // A is sleeping in the reduce (or about to ask for it); its shuffle
    // service dies with it. Either way B gets the reduce (at once, or after
    // A's attempt times out) and cannot fetch from A.
    a.kill();
    let mut b = start_worker(&s.path, &addr, &["--work-dir", "work-b"]);
    assert!(coord.wait(LIMIT).success(), "{}", coordinator_log(&s.path));
    let log = coordinator_log(&s.path);
    assert!(
        log.contains("output on 127.0.0.1:") && log.contains("is lost"),
        "{log}"
    );
    let mut summary = String::new();
    std::io::Read::read_to_string(coord.child.stdout.as_mut().unwrap(), &mut summary).unwrap();
    assert!(summary.contains(" 8 lost map outputs"), "{summary}");
    let expected: String = inputs.iter().map(|i| format!("{i} 1\n")).collect();
    assert_eq!(sorted_output(&s.path.join("out")), expected);
    assert!(b.wait(LIMIT).success());
}

// The embedded default restarts workers that die while the job runs.
#[test]
fn mr_run_restarts_crashed_workers() {
    let s = Scratch::new("run-crash");
    let (dir, inputs) = course_layout(&s);
    let mut args = vec![
        "--app",
        "crash",
        "--app-param",
        "stall_max_ms=500",
        "--workers",
        "3",
    ];
    args.extend(["--speculate-after", "2s", "--out", "out"]);
    args.extend(inputs.iter().map(String::as_str));
    let mut cmd = flotilla(&dir);
    let t = timing();
    cmd.args([
        "mr",
        "run",
        "--progress-interval",
        t.progress_interval,
        "--task-timeout",
        t.task_timeout,
    ]);
    let (status, out, err) = run(cmd.args(&args).stderr(Stdio::piped()));
    assert!(status.success(), "{out}\n{err}");
    assert_eq!(
        sha256(&sorted_output(&dir.join("out"))),
        NOCRASH_SHA256,
        "{err}"
    );
}

// An unreachable peer is an error that names it: a worker whose coordinator
// never answers.
#[test]
fn a_worker_that_never_reaches_its_coordinator_says_so() {
    let s = Scratch::new("unreachable");
    let mut cmd = flotilla(&s.path);
    cmd.args([
        "mr",
        "worker",
        "--coordinator",
        "127.0.0.1:1",
        "--connect-timeout",
        "300ms",
    ]);
    let (status, _, err) = run(&mut cmd);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("cannot reach the coordinator at 127.0.0.1:1 within 300ms"),
        "{err}"
    );
}

/// `--cert-file`, `--key-file`, `--trusted-ca-file` of member `name` of
/// the CA in `dir`.
fn tls_flags(dir: &str, name: &str) -> Vec<String> {
    vec![
        "--cert-file".into(),
        format!("{dir}/{name}.pem"),
        "--key-file".into(),
        format!("{dir}/{name}-key.pem"),
        "--trusted-ca-file".into(),
        format!("{dir}/ca.pem"),
    ]
}

// Issue 23: the coordinator and the workers speak mutual TLS with etcd's
// flags, the shuffle included (no shared directory: reducers fetch map
// outputs from the workers' shuffle services); a worker without TLS or
// with another CA's certificate is refused and told why.
#[test]
fn coordinator_and_workers_speak_mutual_tls_and_refuse_strangers() {
    let s = Scratch::new("mr-tls");
    let inputs = link_texts(&s.path);
    for dir in ["tls", "other"] {
        let (status, _, err) = run(flotilla(&s.path).args(["certs", "--dir", dir]));
        assert!(status.success(), "{err}");
    }
    let mut args: Vec<String> = ["--app", "wc", "--reduces", "3", "--out", "out"]
        .map(String::from)
        .to_vec();
    args.extend(tls_flags("tls", "node1"));
    args.push("--client-cert-auth".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut coord, addr) = start_coordinator(&s.path, &args, &inputs);

    let refused = |extra: &[String]| {
        let mut cmd = flotilla(&s.path);
        cmd.args(["mr", "worker", "--coordinator", &addr])
            .args(["--connect-timeout", "1s"])
            .args(extra);
        let (status, _, err) = run(&mut cmd);
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(err.contains("cannot reach the coordinator"), "{err}");
        err
    };
    let plain = refused(&[]);
    assert!(plain.contains("is the coordinator serving TLS?"), "{plain}");
    // Another CA's certificate, though it trusts the coordinator's CA.
    let mut stranger = tls_flags("other", "node2");
    stranger[5] = "tls/ca.pem".into();
    refused(&stranger);
    wait_for("the coordinator to log a refused handshake", LIMIT, || {
        coordinator_log(&s.path)
            .contains("refused a TLS handshake")
            .then_some(())
    });

    let workers: Vec<Proc> = ["node2", "node3"]
        .iter()
        .map(|name| {
            let flags = tls_flags("tls", name);
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            start_worker(&s.path, &addr, &flags)
        })
        .collect();
    assert!(coord.wait(LIMIT).success(), "{}", coordinator_log(&s.path));
    assert_eq!(sha256(&sorted_output(&s.path.join("out"))), WC_SHA256);
    for mut worker in workers {
        assert!(worker.wait(LIMIT).success());
    }
}

// `mr run --tls`: the embedded default with a throwaway CA, removed with
// the intermediate directory.
#[test]
fn mr_run_tls_gives_the_same_output_and_leaves_no_keys() {
    let s = Scratch::new("mr-run-tls");
    let inputs = link_texts(&s.path);
    let mut args = vec!["--tls", "--app", "wc", "--out", "out"];
    args.extend(inputs.iter().map(String::as_str));
    let (ok, _, err) = mr_run(&s.path, &args);
    assert!(ok, "{err}");
    assert_eq!(sha256(&sorted_output(&s.path.join("out"))), WC_SHA256);
    assert!(!s.path.join("out/.mr-intermediate").exists());
    let (ok, _, err) = mr_run(
        &s.path,
        &[
            "--tls",
            "--cert-file",
            "x.pem",
            "--app",
            "wc",
            "--out",
            "o2",
        ],
    );
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}
