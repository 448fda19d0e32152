//! `flotilla up` never leaves its members behind (issue 19, item 5):
//! SIGTERM or SIGHUP while it still waits for a leader stops them (the
//! members run with a 1 s tick here, so no leader can be elected before
//! the signal, whatever the machine's load), and so does a SIGKILL of
//! `up` itself, which no handler sees: the members' stdin closes.
//! Members are found as the processes whose parent is `up`; every wait
//! polls with a deadline, and only processes this test started are
//! signalled, by PID.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_testkit::{Proc, Scratch, free_ports, wait_for, wait_until};

const MEMBERS: usize = 3;

/// A first port such that it, the next `MEMBERS - 1` and their metrics
/// ports (1000 above) are free.
fn free_base() -> u16 {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    wait_for("free ports for up", Duration::from_secs(10), || {
        let base = free_ports(1)[0];
        let all = (0..MEMBERS as u16).all(|i| free(base + i) && free(base + 1000 + i));
        all.then_some(base)
    })
}

/// The pid's state letter and parent, from /proc/<pid>/stat (`None` once
/// it is gone).
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; it ends at the last ')'.
    let mut rest = text.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is still running (a zombie nobody reaped has ended).
fn running(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The live processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if stat(pid).is_some_and(|(state, ppid)| ppid == parent && state != 'Z') {
            pids.push(pid);
        }
    }
    pids
}

/// Starts `flotilla up` in `dir` with members that cannot elect a
/// leader for several seconds; returns it and its members' pids once all
/// serve (so that a member that exited on its own cannot pass for one
/// that was stopped).
fn start_up(dir: &Path) -> (Proc, Vec<u32>) {
    let config = dir.join("slow.toml");
    // Ten ticks of 1 s before anyone campaigns.
    std::fs::write(&config, "tick-ms = 1000\n").unwrap();
    let base = free_base();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.current_dir(dir)
        .args(["up", "--base-port", &base.to_string()])
        .env("FLOTILLA_CONFIG", &config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let up = Proc::spawn("flotilla up", &mut cmd);
    let pid = up.child.id();
    let members = wait_for("up to start its members", Duration::from_secs(10), || {
        let c = children(pid);
        (c.len() == MEMBERS).then_some(c)
    });
    wait_for("the members to listen", Duration::from_secs(10), || {
        let listening = (0..MEMBERS as u16)
            .all(|i| std::net::TcpStream::connect(("127.0.0.1", base + i)).is_ok());
        listening.then_some(())
    });
    assert!(
        members.iter().all(|&m| running(m)),
        "a member exited on its own; see its log in {}",
        dir.display()
    );
    (up, members)
}

/// Sends `signal` to `pid`.
fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits for every member to be gone.
fn assert_members_stop(members: &[u32], after: &str) {
    let gone = wait_until(Duration::from_secs(15), || {
        members.iter().all(|&m| !running(m)).then_some(())
    });
    let left: Vec<u32> = members.iter().copied().filter(|&m| running(m)).collect();
    for &m in &left {
        // Do not leave them behind for the next test either.
        kill("KILL", m);
    }
    assert!(
        gone.is_some(),
        "members {left:?} still run 15 s after {after}"
    );
}

/// One test, not three: `up` takes consecutive ports, which tests
/// running in parallel could pick overlapping.
#[test]
fn no_member_outlives_up() {
    for signal in ["TERM", "HUP"] {
        let scratch = Scratch::new(&format!("up-{signal}"));
        let (mut up, members) = start_up(&scratch.path);
        kill(signal, up.child.id());
        // Members first: a failure must not leave them running.
        assert_members_stop(
            &members,
            &format!("SIG{signal} to up while it waits for a leader"),
        );
        let status = up.wait(Duration::from_secs(15));
        assert!(status.success(), "up exited with {status} on SIG{signal}");
    }
    // SIGKILL: no handler runs; the members see their stdin close.
    let scratch = Scratch::new("up-KILL");
    let (mut up, members) = start_up(&scratch.path);
    up.kill();
    assert_members_stop(&members, "SIGKILL to up");
}
