//! Helpers for the tests that run real `flotilla server` processes on
//! loopback ports: start, kill -9 (by PID, only processes the test
//! started), restart, and find the leader, polling with bounded deadlines.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_node::client::Client;

use crate::common::{Proc, Scratch, wait_for};

/// A cluster of server processes.
pub struct Cluster {
    pub scratch: Scratch,
    pub endpoints: Vec<String>,
    pub procs: Vec<Option<Proc>>,
    peers: String,
    /// Extra flags for every member.
    pub extra: Vec<String>,
}

/// `n` loopback ports that were free a moment ago.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Cluster {
    /// Starts `n` members.
    pub fn start(name: &str, n: usize) -> Cluster {
        Cluster::start_with(name, n, &[])
    }

    /// Starts `n` members with `extra` flags.
    pub fn start_with(name: &str, n: usize, extra: &[&str]) -> Cluster {
        let scratch = Scratch::new(name);
        let endpoints: Vec<String> = free_ports(n)
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let peers = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{}={e}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            scratch,
            endpoints,
            procs: (0..n).map(|_| None).collect(),
            peers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            c.restart(i);
        }
        c
    }

    pub fn log(&self, i: usize) -> PathBuf {
        self.scratch.path.join(format!("node{}.log", i + 1))
    }

    /// Starts member `i` (0-based) again with its data.
    pub fn restart(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "member {} is running", i + 1);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(i))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
        cmd.arg("server")
            .args(["--id", &(i + 1).to_string(), "--listen", &self.endpoints[i]])
            .args(["--peers", &self.peers])
            .arg("--data-dir")
            .arg(self.scratch.path.join(format!("node{}", i + 1)))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.procs[i] = Some(Proc::spawn(&format!("member {}", i + 1), &mut cmd));
    }

    /// kill -9 of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.kill();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to member `i`, by PID.
    pub fn signal(&self, i: usize, signal: &str) {
        let p = self.procs[i].as_ref().expect("member is running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &p.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// A client over every endpoint (call inside a runtime).
    pub fn client(&self) -> Client {
        Client::new(&self.endpoints, Duration::from_secs(3)).unwrap()
    }

    /// Waits for members to agree on a leader; returns its 0-based index.
    pub fn wait_leader(&self, rt: &tokio::runtime::Runtime) -> usize {
        let client = {
            let _g = rt.enter();
            self.client()
        };
        let leader = wait_for("a leader", Duration::from_secs(30), || {
            let mut seen = None;
            for (i, p) in self.procs.iter().enumerate() {
                if p.is_none() {
                    continue;
                }
                let s = rt.block_on(client.status_of(i)).ok()?;
                if s.leader == 0 || seen.is_some_and(|l| l != s.leader) {
                    return None;
                }
                seen = Some(s.leader);
            }
            seen.filter(|&l| self.procs.get(l as usize - 1).is_some_and(Option::is_some))
        });
        leader as usize - 1
    }
}
