//! A real client no one here wrote: etcd's Go client (`clientv3` 3.4 and
//! its `concurrency` package, from Debian's golang-etcd-server-dev, which
//! `.ci/run` installs with golang-go) against a 3-member Flotilla cluster:
//! a Mutex between two sessions on different members (the second waits,
//! then holds it, and its key fences a Txn), an Election (campaign,
//! leader, proclaim, observe, resign and handover), and STM transfers
//! between accounts from four goroutines keeping the total. The program is
//! `tests/go/etcd_concurrency.go`, built here in GOPATH mode against the
//! packaged sources. Skipped, with a message, where Go or the package is
//! missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cluster_common::run_foreign_client;

/// Where Debian's Go packages put their sources.
const GOPATH: &str = "/usr/share/gocode";

/// The built program, or why it could not be built (`Ok(None)`: skipped).
fn build() -> Result<Option<PathBuf>, String> {
    let clientv3 = Path::new(GOPATH).join("src/go.etcd.io/etcd/clientv3/concurrency");
    if Command::new("go").arg("version").output().is_err() || !clientv3.is_dir() {
        eprintln!(
            "SKIPPED: Go or etcd's Go client is not installed (Debian: golang-go golang-etcd-server-dev)"
        );
        return Ok(None);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = dir.join("etcd_concurrency");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/etcd_concurrency.go");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", dir.join("go-cache"))
        .env("GOFLAGS", "")
        .output()
        .map_err(|e| format!("go build: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "go build failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    Ok(Some(out))
}

#[test]
fn etcd_go_client_concurrency_works_against_flotilla() {
    let program = match build() {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(e) => panic!("{e}"),
    };
    run_foreign_client("etcd-go", |endpoints| {
        let mut cmd = Command::new(&program);
        cmd.arg(endpoints.join(","));
        cmd
    });
}
