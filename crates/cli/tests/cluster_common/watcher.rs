//! A child process whose output is collected as it runs ([`Watcher`]):
//! `etcdctl watch`, `etcdctl lock`, `etcdctl elect`, `flotilla watch`; a
//! test waits, with a deadline, until the output holds what it expects.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_testkit::{Proc, wait_for};

/// A running process and what it printed so far.
pub struct Watcher {
    pub proc: Proc,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

/// Appends what `from` yields to `to`, on a thread, until it ends.
fn collect(mut from: impl Read + Send + 'static, to: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            to.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

impl Watcher {
    /// `etcdctl watch` at `endpoint` with `args`.
    pub fn start(endpoint: &str, args: &[&str]) -> Watcher {
        Watcher::etcdctl(endpoint, "watch", args)
    }

    /// `etcdctl COMMAND` at `endpoint` with `args`.
    pub fn etcdctl(endpoint: &str, command: &str, args: &[&str]) -> Watcher {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoint, command])
            .args(args);
        Watcher::spawn(&format!("etcdctl {command}"), cmd)
    }

    pub fn spawn(name: &str, mut cmd: Command) -> Watcher {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut proc = Proc::spawn(name, &mut cmd);
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        collect(proc.child.stdout.take().unwrap(), Arc::clone(&out));
        collect(proc.child.stderr.take().unwrap(), Arc::clone(&err));
        Watcher { proc, out, err }
    }

    pub fn errors(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    pub fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits until stdout (or, with `stderr`, stderr) contains `want`.
    pub fn wait_for_output(&self, what: &str, want: &str, stderr: bool) {
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(what, Duration::from_secs(20), || {
                let text = if stderr { self.errors() } else { self.output() };
                text.contains(want).then_some(())
            })
        }));
        assert!(
            found.is_ok(),
            "{what}: wanted {want:?}\nstdout: {:?}\nstderr: {:?}",
            self.output(),
            self.errors()
        );
    }
}
