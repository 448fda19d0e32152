//! The container image and `deploy/compose.yaml`, run for real on the
//! machine's Docker Engine: `deploy/build-image.sh` builds the image from
//! the `flotilla` binary cargo built for this test (no base image, no
//! registry), Compose starts the 3-member cluster under a project name
//! of this test's own, and the test checks, from outside the containers:
//! every member turns healthy through the image's `HEALTHCHECK`; a key
//! written through member 1 reads back through member 3; with the
//! leader's container stopped the other two elect a leader and take
//! writes; the stopped member, started again, comes back with its data
//! from its volume; the server runs as uid 10001, not root.
//!
//! It only ever stops or removes what it created: the Compose project
//! `flotilla-test-<pid>` (its containers, network and volumes) and the
//! image `flotilla-test-<pid>:local`, torn down by a guard even when an
//! assertion fails. Every wait is bounded and names what it waited for.
//!
//! Skipped, with a message, where the docker client, its engine or
//! Compose (`docker compose` or `docker-compose`) is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The uid and gid the images run the server as.
const USER: &str = "10001:10001";
/// How long any one wait may take.
const WAIT: Duration = Duration::from_secs(60);
/// How often a wait asks Docker again: each ask is a docker command, so
/// not every 20 ms as the in-process waits do.
const POLL: Duration = Duration::from_millis(250);

/// Polls `f` every [`POLL`] until it returns `Some`, failing after
/// [`WAIT`] with `what` and the last thing `f` said.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let why = match f() {
            Ok(v) => return v,
            Err(why) => why,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}; last: {why}"
        );
        std::thread::sleep(POLL);
    }
}

/// Runs `cmd`; its output (never fails: a missing program is an error
/// output with no status).
fn run(cmd: &mut Command) -> Result<Output, String> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))
}

/// Stdout of `cmd` if it exited 0, else what it said.
fn ok(cmd: &mut Command) -> Result<String, String> {
    let out = run(cmd)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn docker(args: &[&str]) -> Result<String, String> {
    ok(Command::new("docker").args(args))
}

/// The Compose command of this machine (`docker compose`, else
/// `docker-compose`), or why the test is skipped.
fn compose_command() -> Result<Vec<String>, String> {
    docker(&["version", "--format", "{{.Server.Version}}"])
        .map_err(|e| format!("no docker engine answered: {e}"))?;
    if docker(&["compose", "version"]).is_ok() {
        return Ok(vec!["docker".into(), "compose".into()]);
    }
    ok(Command::new("docker-compose").arg("version"))
        .map(|_| vec!["docker-compose".into()])
        .map_err(|e| format!("neither `docker compose` nor docker-compose works: {e}"))
}

/// The repository's root (this crate is crates/cli).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the test created, removed when dropped, pass or fail.
struct Deployment {
    compose: Vec<String>,
    project: String,
    image: String,
    /// Host ports: the client ports of members 1-3, then their consoles'.
    ports: Vec<u16>,
}

impl Deployment {
    fn new(compose: Vec<String>) -> Deployment {
        let pid = std::process::id();
        Deployment {
            compose,
            project: format!("flotilla-test-{pid}"),
            image: format!("flotilla-test-{pid}:local"),
            ports: flotilla_testkit::free_ports(6),
        }
    }

    /// A Compose command on this project, with its variables set.
    fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("-f")
            .arg(repo().join("deploy/compose.yaml"))
            .args(["-p", &self.project])
            .args(args)
            .env("FLOTILLA_IMAGE", &self.image);
        for (i, port) in self.ports.iter().enumerate() {
            let kind = if i < 3 { "CLIENT" } else { "CONSOLE" };
            cmd.env(
                format!("FLOTILLA_{kind}_PORT_{}", i % 3 + 1),
                port.to_string(),
            );
        }
        cmd
    }

    /// Member `n`'s (1-3) client endpoint on the host.
    fn endpoint(&self, n: usize) -> String {
        format!("127.0.0.1:{}", self.ports[n - 1])
    }

    /// Member `n`'s container id.
    fn container(&self, n: usize) -> String {
        let service = format!("flotilla-{n}");
        let id = ok(&mut self.compose(&["ps", "-q", &service])).unwrap();
        let id = id.trim().to_string();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    /// The last lines of every member's log and health checks, for a
    /// failure's message.
    fn diagnose(&self) -> String {
        let mut out = String::new();
        for n in 1..=3 {
            let Ok(id) = ok(&mut self.compose(&["ps", "-q", &format!("flotilla-{n}")])) else {
                continue;
            };
            let id = id.trim();
            let health = docker(&["inspect", "-f", "{{json .State.Health}}", id]);
            let logs = run(Command::new("docker").args(["logs", "--tail", "20", id]));
            let logs = logs.map_or_else(|e| e, |o| String::from_utf8_lossy(&o.stderr).into());
            out += &format!("\n== member {n} health: {health:?}\n{logs}");
        }
        out
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("containers at the failure:{}", self.diagnose());
        }
        let down = ok(&mut self.compose(&["down", "-v", "--remove-orphans", "--timeout", "5"]));
        if let Err(e) = down {
            eprintln!("tearing down {}: {e}", self.project);
        }
        // Only this test's tag; the image goes once no container uses it.
        if let Err(e) = docker(&["rmi", &self.image]) {
            eprintln!("removing {}: {e}", self.image);
        }
    }
}

/// Runs the `flotilla` client on the host against `endpoints`.
fn flotilla(endpoints: &str, args: &[&str]) -> Result<String, String> {
    ok(Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .args(["--endpoints", endpoints, "--timeout-secs", "2"]))
}

/// Each member's health as Docker's `HEALTHCHECK` last judged it.
fn health(d: &Deployment, members: &[usize]) -> Vec<String> {
    members
        .iter()
        .map(|&n| {
            docker(&["inspect", "-f", "{{.State.Health.Status}}", &d.container(n)])
                .map_or_else(|e| e, |s| s.trim().to_string())
        })
        .collect()
}

fn wait_healthy(d: &Deployment, members: &[usize]) {
    let what = format!("members {members:?} to be healthy (Docker's HEALTHCHECK)");
    let started = Instant::now();
    wait_for(&what, || {
        let states = health(d, members);
        if states.iter().all(|s| s == "healthy") {
            Ok(())
        } else {
            Err(format!("{states:?}{}", d.diagnose()))
        }
    });
    eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
}

/// The member the cluster names as leader, asked through `endpoints`.
fn leader(endpoints: &str) -> Result<usize, String> {
    let out = flotilla(endpoints, &["status", "-w", "json"])?;
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|s| s["leader"].as_u64().filter(|&l| l != 0))
        .map(|l| l as usize)
        .ok_or_else(|| format!("no member names a leader: {out}"))
}

/// The value of `key` read through `endpoint` (linearizable).
fn get(endpoint: &str, key: &str) -> Result<String, String> {
    let out = flotilla(endpoint, &["kv", "get", key])?;
    let mut lines = out.lines();
    match (lines.next(), lines.next()) {
        (Some(k), Some(v)) if k == key => Ok(v.to_string()),
        _ => Err(format!("{key} not found through {endpoint}: {out:?}")),
    }
}

/// Whether the image and the server process run as [`USER`]: the
/// image's configured user, and the uid of every process `docker top`
/// lists (an image FROM scratch has no `id` to exec).
fn check_not_root(d: &Deployment, n: usize) {
    let id = d.container(n);
    let user = docker(&["inspect", "-f", "{{.Config.User}}", &id]).unwrap();
    assert_eq!(user.trim(), USER, "the container's configured user");
    let top = docker(&["top", &id, "-eo", "pid,uid,comm"]).unwrap();
    let uids: Vec<&str> = top
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(!uids.is_empty(), "docker top listed no process: {top}");
    assert!(
        uids.iter().all(|&u| u == "10001"),
        "processes not all 10001: {top}"
    );
}

#[test]
fn a_compose_cluster_of_the_image_serves_and_survives_its_leader() {
    let compose = match compose_command() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let started = Instant::now();
    let d = Deployment::new(compose);
    let built = ok(Command::new("bash")
        .arg(repo().join("deploy/build-image.sh"))
        .args([env!("CARGO_BIN_EXE_flotilla"), &d.image]))
    .unwrap();
    eprint!("{built}");
    ok(&mut d.compose(&["up", "-d"])).unwrap();
    wait_healthy(&d, &[1, 2, 3]);
    for n in 1..=3 {
        check_not_root(&d, n);
    }

    let written = flotilla(&d.endpoint(1), &["kv", "put", "greeting", "hello"]).unwrap();
    assert_eq!(written.trim(), "OK");
    assert_eq!(get(&d.endpoint(3), "greeting").unwrap(), "hello");

    let all = (1..=3).map(|n| d.endpoint(n)).collect::<Vec<_>>().join(",");
    let old = wait_for("a leader", || leader(&all));
    docker(&["stop", "--time", "10", &d.container(old)]).unwrap();
    let rest: Vec<usize> = (1..=3).filter(|&n| n != old).collect();
    let (a, b) = (d.endpoint(rest[0]), d.endpoint(rest[1]));
    wait_for("the two survivors to take a write", || {
        flotilla(&a, &["kv", "put", "after", "leader-stopped"])
    });
    assert_eq!(get(&b, "after").unwrap(), "leader-stopped");
    let new = leader(&format!("{a},{b}")).unwrap();
    assert_ne!(new, old, "the stopped member is still named leader");
    eprintln!("stopped leader {old}; member {new} leads the other two");

    // The stopped member's data is on its volume: started again, it
    // rejoins and catches up on what it missed.
    docker(&["start", &d.container(old)]).unwrap();
    wait_healthy(&d, &[1, 2, 3]);
    let back = d.endpoint(old);
    assert_eq!(get(&back, "greeting").unwrap(), "hello");
    assert_eq!(get(&back, "after").unwrap(), "leader-stopped");
    check_not_root(&d, old);
    eprintln!(
        "containers test: {:.1} s with the image build",
        started.elapsed().as_secs_f64()
    );
}

/// The instructions of a Dockerfile's last stage that shape the running
/// container (environment, user, volume, ports, health check, signal,
/// command), continuation lines joined, comments dropped.
fn runtime_shape(dockerfile: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(dockerfile)).unwrap();
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let last_stage = joined
        .rsplit_once("\nFROM ")
        .map_or(joined.as_str(), |(_, stage)| stage);
    let kept = [
        "ENV",
        "USER",
        "WORKDIR",
        "VOLUME",
        "EXPOSE",
        "HEALTHCHECK",
        "STOPSIGNAL",
        "ENTRYPOINT",
        "CMD",
    ];
    last_stage
        .lines()
        .filter(|l| kept.contains(&l.split_whitespace().next().unwrap_or("")))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// The root Dockerfile cannot be built without a registry, so what the
/// container test runs is deploy/Dockerfile.local's image: the two must
/// configure the container the same way.
#[test]
fn the_local_image_is_configured_as_the_dockerfile_s() {
    let full = runtime_shape("Dockerfile");
    assert!(
        full.iter().any(|l| l == &format!("USER {USER}")),
        "{full:#?}"
    );
    assert!(
        full.iter().any(|l| l.starts_with("HEALTHCHECK")),
        "{full:#?}"
    );
    assert_eq!(full, runtime_shape("deploy/Dockerfile.local"));
}
