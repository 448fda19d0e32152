//! Backups: `etcdctl snapshot save` and `flotilla snapshot save` write
//! the same kind of file from a running 3-member cluster; `flotilla
//! snapshot status` reads its hash (equal to the members' HashKV),
//! revision and keys; `flotilla snapshot restore` builds three data
//! directories of a new cluster from it, which starts with the keys, the
//! history's hash and the leases of the backup, and takes writes. A
//! damaged file and a used data directory are refused, saying why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::path::{Path, PathBuf};

use cluster_common::Cluster;
use common::{flotilla_at, flotilla_ok};
use flotilla_testkit::Scratch;

/// Writes 20 keys, deletes one, and puts one on a new lease (its id).
fn fill(all: &str) -> String {
    for i in 0..20 {
        flotilla_ok(all, &["kv", "put", &format!("k{i:02}"), &format!("v{i}")]);
    }
    flotilla_ok(all, &["kv", "del", "k07"]);
    let lease = flotilla_ok(all, &["lease", "grant", "600"]);
    let lease = lease.split_whitespace().nth(1).unwrap().to_string();
    flotilla_ok(all, &["kv", "put", "--lease", &lease, "leased", "x"]);
    lease
}

/// Saves a backup of `old` with both tools, checks their status against
/// the members' HashKV; the file flotilla wrote.
fn save(old: &Cluster, scratch: &Scratch) -> PathBuf {
    let all = old.endpoints.join(",");
    let file = scratch.path.join("backup.db");
    let file_s = file.to_str().unwrap();
    assert!(flotilla_ok(&all, &["snapshot", "save", file_s]).starts_with("Snapshot saved at"));
    let status = flotilla_ok(&all, &["snapshot", "status", file_s]);
    // revision 1 + 20 puts + a delete + a leased put; 19 + 1 keys.
    assert!(status.contains(", 23, 20, "), "{status}");
    if common::etcdctl_missing() {
        return file;
    }
    let one = &old.endpoints[0];
    let by_etcdctl = scratch.path.join("etcdctl.db");
    common::etcdctl_ok(one, &["snapshot", "save", by_etcdctl.to_str().unwrap()]);
    let theirs = flotilla_ok(&all, &["snapshot", "status", by_etcdctl.to_str().unwrap()]);
    assert_eq!(theirs.split(',').next(), status.split(',').next());
    let hash = u32::from_str_radix(status.split(',').next().unwrap(), 16).unwrap();
    let hashkv = common::etcdctl_ok(one, &["endpoint", "hashkv"]);
    assert!(hashkv.contains(&hash.to_string()), "{hashkv} vs {status}");
    file
}

/// Restores `file` into three new data directories; refuses a used one
/// and a damaged file.
fn restore(file: &Path, scratch: &Scratch) -> Vec<PathBuf> {
    let (file_s, peers) = (
        file.to_str().unwrap(),
        "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3",
    );
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| scratch.path.join(format!("m{i}")))
        .collect();
    let restore = |dir: &Path, id: &str| {
        let dir = dir.to_str().unwrap();
        let args = [
            "snapshot",
            "restore",
            file_s,
            "--data-dir",
            dir,
            "--id",
            id,
            "--peers",
            peers,
        ];
        flotilla_at("", &[&args[..], &["--cluster-token", "restored"]].concat())
    };
    for (i, dir) in dirs.iter().enumerate() {
        let (code, _, err) = restore(dir, &(i + 1).to_string());
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = restore(&dirs[0], "1");
    assert_eq!(code, 1);
    assert!(
        err.contains("is not empty: restore into a new one"),
        "{err}"
    );
    let mut damaged = std::fs::read(file).unwrap();
    damaged[40] ^= 1;
    let bad = scratch.path.join("damaged.db");
    std::fs::write(&bad, damaged).unwrap();
    let (code, _, err) = flotilla_at("", &["snapshot", "status", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("SHA-256 trailer does not match"), "{err}");
    dirs
}

#[test]
fn a_backup_restores_into_a_new_cluster() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scratch = Scratch::new("backup");
    let old = Cluster::start("backup-old", 3);
    old.wait_leader(&rt);
    let lease = fill(&old.endpoints.join(","));
    let file = save(&old, &scratch);
    drop(old);
    let dirs = restore(&file, &scratch);
    let new = Cluster::start_from("backup-new", &dirs, &["--cluster-token", "restored"]);
    new.wait_leader(&rt);
    let all = new.endpoints.join(",");
    assert_eq!(flotilla_ok(&all, &["kv", "get", "k19"]), "k19\nv19\n");
    assert_eq!(flotilla_ok(&all, &["kv", "get", "k07"]), "");
    assert!(
        flotilla_ok(&all, &["lease", "ttl", &lease, "--keys"]).contains("attached keys([leased])")
    );
    flotilla_ok(&all, &["kv", "put", "after", "restore"]);
    let (_, json, _) = flotilla_at(&all, &["kv", "get", "after", "-w", "json"]);
    assert_eq!(common::header_revision(&json), 24);
}
