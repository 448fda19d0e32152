//! etcd's Watch API against a 3-member Flotilla cluster, with Debian's
//! `etcdctl` (package `etcd-client`) as the client: `watch --prefix` and
//! `watch --prefix --prev-kv` on one member see the puts and deletes made
//! through another, in order, and nothing outside the prefix; `watch
//! --rev 1` gets etcd's "required revision has been compacted" (Flotilla
//! keeps no history). Skipped, with a message, where etcdctl is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_common::Cluster;
use common::{Proc, etcdctl_missing, etcdctl_ok, wait_for};

/// A running `etcdctl watch` and what it printed so far.
struct Watcher {
    proc: Proc,
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
    fn start(endpoint: &str, args: &[&str]) -> Watcher {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoint, "watch"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut proc = Proc::spawn("etcdctl watch", &mut cmd);
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        collect(proc.child.stdout.take().unwrap(), Arc::clone(&out));
        collect(proc.child.stderr.take().unwrap(), Arc::clone(&err));
        Watcher { proc, out, err }
    }

    fn errors(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits until stdout (or, with `stderr`, stderr) contains `want`.
    fn wait_for_output(&self, what: &str, want: &str, stderr: bool) {
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

/// Puts `foo0` until every watcher printed it, so that their watches are
/// surely registered (etcdctl prints nothing when a watch is created).
fn until_watching(put_at: &str, watchers: &[&Watcher]) {
    let mut n = 0;
    wait_for("the watches to start", Duration::from_secs(20), || {
        n += 1;
        etcdctl_ok(put_at, &["put", "foo0", &format!("ready{n}")]);
        let seen = |w: &&Watcher| w.output().contains("foo0\nready");
        (0..10)
            .any(|_| {
                let all = watchers.iter().all(seen);
                if !all {
                    std::thread::sleep(Duration::from_millis(20));
                }
                all
            })
            .then_some(())
    });
}

#[test]
fn etcdctl_watch_sees_changes_made_through_another_member() {
    if etcdctl_missing() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("watch", 3);
    cluster.wait_leader(&rt);
    let (watch_at, put_at) = (&cluster.endpoints[0], &cluster.endpoints[1]);
    let mut plain = Watcher::start(watch_at, &["--prefix", "foo"]);
    let mut prev = Watcher::start(watch_at, &["--prefix", "foo", "--prev-kv"]);
    until_watching(put_at, &[&plain, &prev]);

    etcdctl_ok(put_at, &["put", "foo1", "a"]);
    etcdctl_ok(put_at, &["put", "foo2", "b"]);
    etcdctl_ok(put_at, &["put", "foo1", "c"]);
    etcdctl_ok(put_at, &["del", "foo1"]);
    etcdctl_ok(put_at, &["put", "bar", "x"]);
    etcdctl_ok(put_at, &["put", "foo3", "end"]);

    let want = "PUT\nfoo1\na\nPUT\nfoo2\nb\nPUT\nfoo1\nc\nDELETE\nfoo1\n\nPUT\nfoo3\nend\n";
    plain.wait_for_output("the plain watcher's events", want, false);
    let want_prev = "PUT\nfoo1\na\nPUT\nfoo2\nb\nPUT\nfoo1\na\nfoo1\nc\n\
                     DELETE\nfoo1\nc\nfoo1\n\nPUT\nfoo3\nend\n";
    prev.wait_for_output("the prev-kv watcher's events", want_prev, false);
    assert!(!plain.output().contains("bar"), "{}", plain.output());
    assert!(!prev.output().contains("bar"), "{}", prev.output());
    plain.proc.kill();
    prev.proc.kill();

    let mut old = Watcher::start(watch_at, &["foo1", "--rev", "1"]);
    old.wait_for_output(
        "the compacted answer",
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)",
        true,
    );
    let status = old.proc.wait(Duration::from_secs(20));
    assert!(!status.success(), "a canceled watch is an error");
}
