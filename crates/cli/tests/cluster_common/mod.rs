//! Helpers for the tests that run real `flotilla server` processes on
//! loopback ports: start, kill -9 (by PID, only processes the test
//! started), restart, and find the leader, polling with bounded deadlines.
//! In a cluster started by [`Cluster::start_proxied`], members reach each
//! other only through the fault proxies of [`flotilla_testkit::proxy`],
//! one per directed link, so a test can partition, stall, delay and cut
//! any directed link; clients talk to the members directly.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use flotilla_client::Client;
use flotilla_testkit::proxy::Net;
use flotilla_testkit::{Proc, Scratch, free_ports, wait_until};

pub mod faults;
pub mod netns;
pub mod watcher;
pub mod workload;

/// A gRPC channel to the member at `endpoint` (`host:port`), connected.
pub async fn channel(endpoint: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A cluster of server processes.
pub struct Cluster {
    pub scratch: Scratch,
    pub endpoints: Vec<String>,
    pub procs: Vec<Option<Proc>>,
    /// Each member's `--peers`: its own address, the others' proxies.
    peers: Vec<String>,
    /// The proxies between members, if any.
    net: Option<Net>,
    /// Per member, the command that runs `flotilla` (e.g. `ip netns exec
    /// m1`); empty: run it directly.
    prefixes: Vec<Vec<String>>,
    /// Extra flags for every member.
    pub extra: Vec<String>,
}

impl Cluster {
    /// Starts `n` members.
    pub fn start(name: &str, n: usize) -> Cluster {
        Cluster::start_with(name, n, &[])
    }

    /// Starts `n` members with `extra` flags.
    pub fn start_with(name: &str, n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_on(name, n, extra, false)
    }

    /// Starts `n` members with `extra` flags, linked through proxies.
    pub fn start_proxied(name: &str, n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_on(name, n, extra, true)
    }

    /// Starts one member per directory of `data`, each on a copy of it
    /// (`data` is a fixture: it is never written), with `extra` flags.
    pub fn start_from(name: &str, data: &[PathBuf], extra: &[&str]) -> Cluster {
        let scratch = Scratch::new(name);
        for (i, dir) in data.iter().enumerate() {
            copy_dir(dir, &scratch.path.join(format!("node{}", i + 1)));
        }
        Cluster::start_in(scratch, data.len(), extra, false)
    }

    fn start_on(name: &str, n: usize, extra: &[&str], proxied: bool) -> Cluster {
        Cluster::start_in(Scratch::new(name), n, extra, proxied)
    }

    fn start_in(scratch: Scratch, n: usize, extra: &[&str], proxied: bool) -> Cluster {
        let endpoints: Vec<String> = free_ports(n)
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let net = proxied.then(|| Net::start(&endpoints));
        let peers = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| match &net {
                        Some(net) if i != j => format!("{}={}", j + 1, net.addr(i, j)),
                        _ => format!("{}={}", j + 1, endpoints[j]),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        let mut c = Cluster {
            scratch,
            endpoints,
            procs: (0..n).map(|_| None).collect(),
            peers,
            net,
            prefixes: vec![Vec::new(); n],
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            c.restart(i);
        }
        c
    }

    /// Starts members at `endpoints`, member i run through `prefixes[i]`.
    pub fn start_at(
        name: &str,
        endpoints: Vec<String>,
        prefixes: Vec<Vec<String>>,
        extra: &[&str],
    ) -> Cluster {
        let n = endpoints.len();
        let peers = (0..n)
            .map(|j| format!("{}={}", j + 1, endpoints[j]))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            scratch: Scratch::new(name),
            endpoints,
            procs: (0..n).map(|_| None).collect(),
            peers: vec![peers; n],
            net: None,
            prefixes,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            c.restart(i);
        }
        c
    }

    /// The proxies between members.
    pub fn net(&self) -> &Net {
        self.net
            .as_ref()
            .expect("the cluster was started with proxies")
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
        let exe = env!("CARGO_BIN_EXE_flotilla");
        let mut cmd = match self.prefixes[i].split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        cmd.arg("server")
            .args(["--id", &(i + 1).to_string(), "--listen", &self.endpoints[i]])
            .args(["--peers", &self.peers[i]])
            .arg("--data-dir")
            .arg(self.scratch.path.join(format!("node{}", i + 1)))
            .args(&self.extra)
            // Members list one another at different (proxy) addresses.
            .args(
                self.net
                    .iter()
                    .flat_map(|_| ["--cluster-token", "flotilla-test"]),
            )
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
        self.procs[i]
            .as_ref()
            .expect("member is running")
            .signal(signal);
    }

    /// A client over every endpoint (call inside a runtime).
    pub fn client(&self) -> Client {
        self.client_with_timeout(Duration::from_secs(3))
    }

    /// A client over every endpoint whose requests may take `timeout`
    /// (call inside a runtime).
    pub fn client_with_timeout(&self, timeout: Duration) -> Client {
        Client::new(&self.endpoints, timeout).unwrap()
    }

    /// `k` clients over every endpoint, client `c` starting at member
    /// `c % n`, so that clients talk to every member (call inside a
    /// runtime).
    pub fn clients(&self, k: usize, timeout: Duration) -> Vec<std::sync::Arc<Client>> {
        let n = self.endpoints.len();
        (0..k)
            .map(|c| {
                let mut eps = self.endpoints.clone();
                eps.rotate_left(c % n);
                std::sync::Arc::new(Client::new(&eps, timeout).unwrap())
            })
            .collect()
    }

    /// Waits for the running members to agree on a leader; returns its
    /// 0-based index.
    pub fn wait_leader(&self, rt: &tokio::runtime::Runtime) -> usize {
        let all: Vec<usize> = (0..self.procs.len()).collect();
        self.wait_leader_of(rt, &all)
    }

    /// Waits for the running members among `members` to agree on a
    /// leader that is one of them (the rest may be cut off). On timeout,
    /// the panic says what each member last reported.
    pub fn wait_leader_of(&self, rt: &tokio::runtime::Runtime, members: &[usize]) -> usize {
        let client = {
            let _g = rt.enter();
            self.client()
        };
        let mut last = Vec::new();
        let found = wait_until(Duration::from_secs(30), || {
            last.clear();
            let mut seen = None;
            let mut agreed = true;
            for (i, p) in self.procs.iter().enumerate() {
                if p.is_none() || !members.contains(&i) {
                    continue;
                }
                match rt.block_on(client.status_of(i)) {
                    Ok(s) => {
                        last.push(format!(
                            "member {}: leader {} term {} commit {} applied {}",
                            i + 1,
                            s.leader,
                            s.raft_term,
                            s.raft_index,
                            s.raft_applied_index
                        ));
                        agreed &= s.leader != 0 && seen.is_none_or(|l| l == s.leader);
                        seen = Some(s.leader);
                    }
                    Err(e) => {
                        last.push(format!("member {}: {e}", i + 1));
                        agreed = false;
                    }
                }
            }
            let leader = seen.filter(|_| agreed)?;
            let l = usize::try_from(leader).ok()?.checked_sub(1)?;
            (members.contains(&l) && self.procs.get(l).is_some_and(Option::is_some))
                .then_some(leader)
        });
        match found {
            Some(leader) => leader as usize - 1,
            None => panic!(
                "timed out after 30s waiting for members {:?} to agree on a leader among them; \
                 last seen:\n  {}",
                members.iter().map(|i| i + 1).collect::<Vec<_>>(),
                last.join("\n  ")
            ),
        }
    }
}

/// Copies the directory tree `from` to `to` (created).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Runs a client program no one here wrote against a fresh 3-member
/// cluster named `name`: `program` gets the endpoints, a follower's
/// first and the leader's last, and must exit well printing "ALL OK".
pub fn run_foreign_client(name: &str, program: impl FnOnce(&[String]) -> std::process::Command) {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let cluster = Cluster::start(name, 3);
    let leader = cluster.wait_leader(&rt);
    let mut endpoints = cluster.endpoints.clone();
    endpoints.rotate_left((leader + 1) % 3);
    let out = program(&endpoints)
        .output()
        .expect("the client program starts");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "{stdout}\n{stderr}"
    );
}
