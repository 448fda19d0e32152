//! Helpers for the tests that drive the built `flotilla` binary: the
//! MapReduce course's directory layout, timings and reference outputs,
//! starting coordinators and workers, running commands and `etcdctl`, and
//! reading outputs the way the course's script does (`sort mr-out* |
//! grep .`). What is not about `flotilla` (scratch directories, ports,
//! polling with deadlines, processes) is in `flotilla_testkit`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flotilla_testkit::{Proc, Scratch, wait_for};

/// sha256 of the C-locale-sorted outputs on the 8 texts (spec §1.4).
pub const WC_SHA256: &str = "08d25f8329d8b7054a8330033736775249ffd98ca861f12e24e0cda079322c19";
/// Indexer on `../pg-*.txt` (the test script's layout).
pub const INDEXER_SHA256: &str = "f038ad1d663919a5a86dc537f704236792f101c19e03999479cd00fdac560eb5";
/// nocrash on `../pg-*.txt`.
pub const NOCRASH_SHA256: &str = "c3a7a1747c70eb7a4de09289a2b6daf52855e23888ee54806f0dc1de9c9ba578";

/// The eight texts, by name.
pub const TEXTS: [&str; 8] = [
    "pg-being_ernest.txt",
    "pg-dorian_gray.txt",
    "pg-frankenstein.txt",
    "pg-grimm.txt",
    "pg-huckleberry_finn.txt",
    "pg-metamorphosis.txt",
    "pg-sherlock_holmes.txt",
    "pg-tom_sawyer.txt",
];

/// Whether to use the course's full timings (`FLOTILLA_MR_LONG=1`).
pub fn long() -> bool {
    std::env::var("FLOTILLA_MR_LONG").is_ok_and(|v| v == "1")
}

/// Durations the tests pass to coordinators and apps: small by default, the
/// course's with `FLOTILLA_MR_LONG=1`. Ratios that the checks rely on are
/// kept (the job-count maps stay well under the speculation threshold).
pub struct Timing {
    pub probe_sleep_ms: u64,
    pub jobcount_min_ms: u64,
    pub jobcount_span_ms: u64,
    pub early_exit_sleep_ms: u64,
    pub stall_max_ms: u64,
    pub task_timeout: &'static str,
    pub speculate_after: &'static str,
    pub jobcount_speculate_after: &'static str,
    pub crash_speculate_after: &'static str,
    pub jobcount_task_timeout: &'static str,
    pub progress_interval: &'static str,
}

pub fn timing() -> Timing {
    if long() {
        Timing {
            probe_sleep_ms: 1000,
            jobcount_min_ms: 2000,
            jobcount_span_ms: 3000,
            early_exit_sleep_ms: 3000,
            stall_max_ms: 10000,
            task_timeout: "10s",
            speculate_after: "10s",
            jobcount_speculate_after: "10s",
            crash_speculate_after: "10s",
            jobcount_task_timeout: "10s",
            progress_interval: "1s",
        }
    } else {
        Timing {
            probe_sleep_ms: 300,
            jobcount_min_ms: 150,
            jobcount_span_ms: 250,
            early_exit_sleep_ms: 800,
            stall_max_ms: 1500,
            task_timeout: "1s",
            speculate_after: "1s",
            jobcount_speculate_after: "2s",
            crash_speculate_after: "2s",
            jobcount_task_timeout: "4s",
            progress_interval: "100ms",
        }
    }
}

/// `testdata/mr` in the repository.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/mr")
        .canonicalize()
        .unwrap()
}

/// The course's layout: the texts beside a fresh `mr-tmp/` in which the
/// processes run, with inputs named `../pg-*.txt`. Returns (mr-tmp, inputs).
pub fn course_layout(scratch: &Scratch) -> (PathBuf, Vec<String>) {
    for text in TEXTS {
        std::os::unix::fs::symlink(testdata().join(text), scratch.path.join(text)).unwrap();
    }
    let dir = scratch.path.join("mr-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    (dir, TEXTS.iter().map(|t| format!("../{t}")).collect())
}

/// Links the texts into `dir` under their bare names; returns the names.
pub fn link_texts(dir: &Path) -> Vec<String> {
    for text in TEXTS {
        std::os::unix::fs::symlink(testdata().join(text), dir.join(text)).unwrap();
    }
    TEXTS.iter().map(|t| t.to_string()).collect()
}

/// The `flotilla` binary, run in `cwd`.
pub fn flotilla(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

/// Runs a command to completion; returns (status, stdout, stderr).
pub fn run(cmd: &mut Command) -> (ExitStatus, String, String) {
    let out = cmd.output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status, text(out.stdout), text(out.stderr))
}

/// Runs `cmd` with `stdin` as its standard input (closed after it);
/// returns its status, stdout and stderr.
pub fn run_with_input(cmd: &mut Command, stdin: &str) -> (ExitStatus, String, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status, text(out.stdout), text(out.stderr))
}

/// Whether Debian's `etcdctl` (package `etcd-client`) is missing; says
/// so, for the tests that skip then.
pub fn etcdctl_missing() -> bool {
    let missing = Command::new("etcdctl").arg("version").output().is_err();
    if missing {
        eprintln!("SKIPPED: etcdctl is not installed (Debian package etcd-client)");
    }
    missing
}

/// `etcdctl` (v3 API, 10 s command timeout) against `endpoints` with
/// `args` and `stdin`: whether it succeeded, its stdout and stderr.
pub fn etcdctl(endpoints: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoints, "--command-timeout", "10s"])
        .args(args);
    let (status, out, err) = run_with_input(&mut cmd, stdin);
    (status.success(), out, err)
}

/// The store revision in the header of an etcdctl `-w json` answer
/// (the first `"revision":` in it).
pub fn header_revision(json: &str) -> u64 {
    json.split("\"revision\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no header revision in {json}"))
}

/// `flotilla ARGS` against `endpoints` (through `FLOTILLA_ENDPOINTS`):
/// its exit code, stdout and stderr.
pub fn flotilla_at(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = flotilla(&std::env::temp_dir());
    cmd.args(args).env("FLOTILLA_ENDPOINTS", endpoints);
    let (status, out, err) = run(&mut cmd);
    (status.code().unwrap_or(-1), out, err)
}

/// `flotilla ARGS`'s stdout, asserting it exited 0.
pub fn flotilla_ok(endpoints: &str, args: &[&str]) -> String {
    let (code, out, err) = flotilla_at(endpoints, args);
    assert_eq!(code, 0, "flotilla {args:?} failed: {err}");
    out
}

/// `etcdctl`'s stdout, asserting it succeeded.
pub fn etcdctl_ok(endpoints: &str, args: &[&str]) -> String {
    let (success, out, err) = etcdctl(endpoints, args, "");
    assert!(success, "etcdctl {args:?} failed: {out}{err}");
    out
}

/// Sorted non-empty lines of every `mr-out*` file in `dir`, as `sort mr-out* |
/// grep .` gives them in the C locale.
pub fn sorted_output(dir: &Path) -> String {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("mr-out") {
            let data = std::fs::read(entry.path()).unwrap();
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                lines.push(line.to_vec());
            }
        }
    }
    lines.sort();
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&l);
        out.push(b'\n');
    }
    String::from_utf8(out).unwrap()
}

/// The sequential reference (`flotilla mr sequential`), sorted.
pub fn sequential(cwd: &Path, app: &str, params: &[String], inputs: &[String]) -> String {
    let out = cwd.join(format!("seq-{app}.txt"));
    let mut cmd = flotilla(cwd);
    cmd.args(["mr", "sequential", "--app", app, "--out"])
        .arg(&out);
    for p in params {
        cmd.args(["--app-param", p]);
    }
    let (status, _, stderr) = run(cmd.args(inputs));
    assert!(status.success(), "sequential {app}: {stderr}");
    let mut lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    std::fs::remove_file(&out).unwrap();
    lines.retain(|l| !l.is_empty());
    lines.sort();
    lines.into_iter().map(|l| l + "\n").collect()
}

/// sha256 of `data`, by the system's `sha256sum`.
pub fn sha256(data: &str) -> String {
    let (_, out, _) = run_with_input(&mut Command::new("sha256sum"), data);
    out.split_whitespace().next().unwrap_or("").to_string()
}

/// Starts `flotilla mr coordinator` on a free loopback port in `cwd`, its
/// stderr in `cwd/coordinator.log`; returns it and its address.
pub fn start_coordinator(cwd: &Path, args: &[&str], inputs: &[String]) -> (Proc, String) {
    let addr_file = cwd.join("coordinator.addr");
    let log = std::fs::File::create(cwd.join("coordinator.log")).unwrap();
    let t = timing();
    let mut cmd = flotilla(cwd);
    cmd.args([
        "mr",
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--addr-file",
    ])
    .arg(&addr_file)
    .args(["--progress-interval", t.progress_interval])
    .args(["--wait-hint", "50ms"])
    .args(args)
    .args(inputs)
    .stdout(Stdio::piped())
    .stderr(log);
    if !args.contains(&"--task-timeout") {
        cmd.args(["--task-timeout", t.task_timeout]);
    }
    let mut proc = Proc::spawn("coordinator", &mut cmd);
    let addr = wait_for("the coordinator's address", Duration::from_secs(30), || {
        if let Some(status) = proc.exited() {
            panic!(
                "coordinator exited early ({status}): {}",
                coordinator_log(cwd)
            );
        }
        std::fs::read_to_string(&addr_file).ok()
    });
    (proc, addr)
}

/// What the coordinator printed on stderr so far.
pub fn coordinator_log(cwd: &Path) -> String {
    std::fs::read_to_string(cwd.join("coordinator.log")).unwrap_or_default()
}

/// Starts `flotilla mr worker` in `cwd`, its stderr in `cwd/worker-N.log`.
pub fn start_worker(cwd: &Path, addr: &str, extra: &[&str]) -> Proc {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let log = std::fs::File::create(cwd.join(format!("worker-{n}.log"))).unwrap();
    let mut cmd = flotilla(cwd);
    cmd.args(["mr", "worker", "--coordinator", addr])
        .args(extra);
    if !extra.contains(&"--work-dir") {
        // Inside the scratch directory, so a crashed worker leaves nothing
        // in the system's temporary directory.
        cmd.arg("--work-dir").arg(cwd.join(format!("work-{n}")));
    }
    cmd.stdout(Stdio::null()).stderr(log);
    Proc::spawn(&format!("worker {n}"), &mut cmd)
}

/// `--app-param` arguments.
pub fn params(kv: &[(&str, u64)]) -> Vec<String> {
    kv.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// `["--app-param", p, ...]`.
pub fn param_args(params: &[String]) -> Vec<&str> {
    params
        .iter()
        .flat_map(|p| ["--app-param", p.as_str()])
        .collect()
}
