//! etcd's leases, and the lock and election recipes built on them, against
//! a 3-member Flotilla cluster, with Debian's `etcdctl` as the client
//! (skipped, with a message, where it is missing) and the generated gRPC
//! client for what etcdctl cannot ask (a chosen lease id):
//! - `lease grant|timetolive|keep-alive|list|revoke` and `put --lease`
//!   through every member (followers forward to the leader), with etcd's
//!   errors for a missing lease, a taken id and a TTL too large;
//! - a lease kept alive by `etcdctl lease keep-alive` outlives its TTL
//!   across a SIGKILL of the leader, and expires once its keeper dies;
//! - `etcdctl lock`: a paused (SIGSTOPped) holder loses the lock once its
//!   session lease expires, the next waiter gets it, and a write guarded
//!   by the old holder's fencing token (its lock key's create revision)
//!   is refused while one guarded by the new holder's is applied;
//! - `etcdctl elect`: when the leader resigns (SIGINT) the next
//!   candidate's proposal takes over, as `elect -l` shows (etcdctl's
//!   election session has a 60 s TTL, so a SIGKILLed candidate is the
//!   lock test's case, with a shorter session).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::time::{Duration, Instant};

use cluster_common::Cluster;
use cluster_common::watcher::Watcher;
use common::{etcdctl, etcdctl_missing, etcdctl_ok};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::lease_client::LeaseClient;
use flotilla_testkit::wait_for;

/// The lease id `etcdctl lease grant` printed ("lease ID granted with ...").
fn granted(out: &str) -> String {
    out.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn etcdctl_leases_work_through_every_member() {
    if etcdctl_missing() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("leases", 3);
    let leader = cluster.wait_leader(&rt);
    let ep = |i: usize| cluster.endpoints[(leader + i) % 3].as_str();
    let lease = granted(&etcdctl_ok(ep(1), &["lease", "grant", "60"]));
    assert_eq!(
        etcdctl_ok(ep(2), &["put", "--lease", &lease, "a", "1"]),
        "OK\n"
    );
    assert_eq!(
        etcdctl_ok(ep(0), &["put", "--lease", &lease, "b", "2"]),
        "OK\n"
    );
    let json = etcdctl_ok(ep(1), &["get", "a", "-w", "json"]);
    let id = i64::from_str_radix(&lease, 16).unwrap();
    assert!(json.contains(&format!("\"lease\":{id}")), "{json}");
    for i in 0..3 {
        let ttl = etcdctl_ok(ep(i), &["lease", "timetolive", "--keys", &lease]);
        assert!(ttl.contains("granted with TTL(60s)"), "{ttl}");
        assert!(ttl.contains("attached keys([a b])"), "{ttl}");
        let kept = etcdctl_ok(ep(i), &["lease", "keep-alive", "--once", &lease]);
        assert_eq!(kept, format!("lease {lease} keepalived with TTL(60)\n"));
    }
    assert!(etcdctl_ok(ep(2), &["lease", "list"]).contains(&lease));
    // The smallest TTL outlives an election (1.5 s, rounded up).
    let short = etcdctl_ok(ep(0), &["lease", "grant", "1"]);
    assert!(short.contains("granted with TTL(2s)"), "{short}");
    // Revoking deletes the keys, in one revision.
    let before = common::header_revision(&etcdctl_ok(ep(0), &["get", "a", "-w", "json"]));
    assert_eq!(
        etcdctl_ok(ep(1), &["lease", "revoke", &lease]),
        format!("lease {lease} revoked\n")
    );
    let after = common::header_revision(&etcdctl_ok(ep(0), &["get", "a", "-w", "json"]));
    assert_eq!(after, before + 1);
    assert_eq!(etcdctl_ok(ep(2), &["get", "", "--from-key"]), "");
    let gone = etcdctl_ok(ep(2), &["lease", "timetolive", &lease]);
    assert_eq!(gone, format!("lease {lease} already expired\n"));
    let (ok, _, err) = etcdctl(ep(1), &["put", "--lease", &lease, "c", "3"], "");
    assert!(
        !ok && err.contains("etcdserver: requested lease not found"),
        "{err}"
    );
}

/// What etcdctl cannot ask: a chosen id, taken twice; a TTL too large; a
/// negative id.
#[test]
fn a_grant_is_refused_as_etcd_refuses_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("lease-grant", 3);
    let leader = cluster.wait_leader(&rt);
    let follower = &cluster.endpoints[(leader + 1) % 3];
    rt.block_on(async {
        let mut leases = LeaseClient::new(cluster_common::channel(follower).await);
        let grant = |ttl, id| pb::LeaseGrantRequest { ttl, id };
        let r = leases
            .lease_grant(grant(30, 42))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.id, r.ttl), (42, 30));
        let taken = leases.lease_grant(grant(30, 42)).await.unwrap_err();
        assert_eq!(taken.code(), tonic::Code::FailedPrecondition);
        assert_eq!(taken.message(), "etcdserver: lease already exists");
        let huge = leases
            .lease_grant(grant(9_000_000_001, 0))
            .await
            .unwrap_err();
        assert_eq!(
            (huge.code(), huge.message()),
            (tonic::Code::OutOfRange, "etcdserver: too large lease TTL")
        );
        let negative = leases.lease_grant(grant(30, -5)).await.unwrap_err();
        assert_eq!(negative.code(), tonic::Code::InvalidArgument);
        assert_eq!(negative.message(), "flotilla: negative lease id: -5");
    });
}

/// Whether `key` is present, read through `endpoint`.
fn present(endpoint: &str, key: &str) -> bool {
    !etcdctl_ok(endpoint, &["get", key]).is_empty()
}

#[test]
fn a_kept_lease_outlives_a_leader_kill_and_expires_once_its_keeper_dies() {
    if etcdctl_missing() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start("lease-expiry", 3);
    let leader = cluster.wait_leader(&rt);
    let all = cluster.endpoints.join(",");
    let lease = granted(&etcdctl_ok(&all, &["lease", "grant", "3"]));
    etcdctl_ok(&all, &["put", "--lease", &lease, "alive", "1"]);
    let mut keeper = Watcher::etcdctl(&all, "lease", &["keep-alive", &lease]);
    keeper.wait_for_output("the first keep-alive", "keepalived with TTL(3)", false);
    cluster.kill(leader);
    let rest: Vec<&str> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.endpoints[i].as_str())
        .collect();
    let rest = rest.join(",");
    cluster.wait_leader_of(&rt, &[(leader + 1) % 3, (leader + 2) % 3]);
    // Three TTLs after the kill, through a new leader, it is still there.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(9) {
        assert!(present(&rest, "alive"), "a kept lease expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    keeper.proc.kill();
    let died = Instant::now();
    wait_for("the lease to expire", Duration::from_secs(20), || {
        (!present(&rest, "alive")).then_some(())
    });
    // TTL + one election (the new leader's extension) + a tick, and the
    // keeper's last keep-alive came up to a TTL / 3 before it died.
    assert!(
        died.elapsed() < Duration::from_secs(8),
        "{:?}",
        died.elapsed()
    );
}

/// The lock key `etcdctl lock NAME` printed, and its create revision: the
/// fencing token.
fn lock_key(holder: &Watcher, all: &str, name: &str) -> (String, i64) {
    holder.wait_for_output("the lock", &format!("{name}/"), false);
    let key = holder.output().lines().next().unwrap().to_string();
    let json = etcdctl_ok(all, &["get", &key, "-w", "json"]);
    let at = json.find("\"create_revision\":").unwrap() + 18;
    let rev: i64 = json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    (key, rev)
}

/// A write of `value` to `resource`, guarded by `token`: applied only if
/// `key` still has that create revision.
fn fenced_write(all: &str, key: &str, token: i64, value: &str) -> bool {
    let txn = format!("create(\"{key}\") = \"{token}\"\n\nput resource {value}\n\n\n");
    let (ok, out, err) = etcdctl(all, &["txn"], &txn);
    assert!(ok, "{err}");
    out.starts_with("SUCCESS")
}

#[test]
fn a_paused_lock_holder_loses_the_lock_and_its_fencing_token() {
    if etcdctl_missing() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("lock", 3);
    cluster.wait_leader(&rt);
    let all = cluster.endpoints.join(",");
    let mut first = Watcher::etcdctl(&all, "lock", &["--ttl", "2", "fence"]);
    let (first_key, first_token) = lock_key(&first, &all, "fence");
    assert!(fenced_write(&all, &first_key, first_token, "from-first"));
    let mut second = Watcher::etcdctl(&all, "lock", &["--ttl", "2", "fence"]);
    // The second queues (its key is there) and waits while the first
    // holds and keeps its session alive, past the session's TTL.
    wait_for("the second to queue", Duration::from_secs(20), || {
        let keys = etcdctl_ok(&all, &["get", "fence/", "--prefix", "--keys-only"]);
        (keys.lines().filter(|l| !l.is_empty()).count() == 2).then_some(())
    });
    let queued = Instant::now();
    while queued.elapsed() < Duration::from_secs(4) {
        assert_eq!(second.output(), "", "two holders at once");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Paused, the first holder stops keeping its session alive.
    first.proc.signal("STOP");
    let (second_key, second_token) = lock_key(&second, &all, "fence");
    assert_ne!(second_key, first_key);
    assert!(second_token > first_token);
    assert!(!fenced_write(&all, &first_key, first_token, "late-first"));
    assert!(fenced_write(&all, &second_key, second_token, "from-second"));
    assert_eq!(
        etcdctl_ok(&all, &["get", "resource", "--print-value-only"]),
        "from-second\n"
    );
    first.proc.signal("CONT");
    first.proc.kill();
    second.proc.kill();
}

#[test]
fn etcdctl_elect_passes_leadership_when_the_leader_resigns() {
    if etcdctl_missing() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("elect", 3);
    cluster.wait_leader(&rt);
    let all = cluster.endpoints.join(",");
    let mut one = Watcher::etcdctl(&all, "elect", &["chief", "p1"]);
    one.wait_for_output("the first campaign", "chief/", false);
    let mut two = Watcher::etcdctl(&all, "elect", &["chief", "p2"]);
    let mut observer = Watcher::etcdctl(&all, "elect", &["-l", "chief"]);
    observer.wait_for_output("the first leader", "\np1\n", false);
    one.proc.signal("INT");
    assert!(one.proc.wait(Duration::from_secs(20)).success());
    two.wait_for_output("the second campaign", "chief/", false);
    observer.wait_for_output("the second leader", "\np2\n", false);
    two.proc.kill();
    observer.proc.kill();
}
