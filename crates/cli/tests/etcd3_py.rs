//! A real client no one here wrote: PyPI's `etcd3` (python-etcd3 0.12,
//! which `.ci/run` installs with pip) against a 3-member Flotilla cluster,
//! through every member: gets, prefixes, compare-and-swap and
//! transactions; live watches and a watch replaying history from an old
//! revision; leases (keys, TTLs, refresh, revoke, expiry); its lock recipe
//! between two clients; the member list and status. The checks are in
//! `tests/py/etcd3_client.py`. Skipped, with a message, where python3 or
//! the package is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use std::path::Path;
use std::process::Command;

use cluster_common::run_foreign_client;

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/etcd3_client.py")
}

/// Whether python3 can import etcd3 (and say so when it cannot).
fn etcd3_missing() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import os; os.environ.setdefault('PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION', 'python'); import etcd3"])
        .output();
    let missing = !probe.is_ok_and(|o| o.status.success());
    if missing {
        eprintln!(
            "SKIPPED: python3 with PyPI's etcd3 is not installed (pip install etcd3 'tenacity<7')"
        );
    }
    missing
}

#[test]
fn pypi_etcd3_works_against_flotilla() {
    if etcd3_missing() {
        return;
    }
    run_foreign_client("etcd3-py", |endpoints| {
        let mut cmd = Command::new("python3");
        cmd.arg(script()).args(endpoints);
        cmd
    });
}
