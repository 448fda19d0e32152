//! etcd's Lock (`v3lockpb`) and Election (`v3electionpb`) services on a
//! 3-member cluster, driven with the generated gRPC clients as etcd's
//! gateway and non-Go clients use them: locks are granted in queue order,
//! released by Unlock or by the holder's lease; a waiter whose call is
//! cancelled leaves the queue; an election's leader proclaims, resigns
//! and is observed in order, with etcd's errors for a stale leader, no
//! leader and a missing leader key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::time::Duration;

use cluster_common::{Cluster, channel};
use common::{flotilla_at, flotilla_ok};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::kv_client::KvClient;
use flotilla_proto::etcdserverpb::lease_client::LeaseClient;
use flotilla_proto::v3electionpb as epb;
use flotilla_proto::v3electionpb::election_client::ElectionClient;
use flotilla_proto::v3lockpb as lpb;
use flotilla_proto::v3lockpb::lock_client::LockClient;
use tonic::transport::Channel;

async fn grant(ch: &Channel, ttl: i64) -> i64 {
    let r = LeaseClient::new(ch.clone())
        .lease_grant(pb::LeaseGrantRequest { ttl, id: 0 })
        .await
        .unwrap();
    r.into_inner().id
}

/// How many keys start with `prefix`, read through `ch`.
async fn queued(ch: &Channel, prefix: &str) -> i64 {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let req = pb::RangeRequest {
        key: prefix.as_bytes().to_vec().into(),
        range_end: end.into(),
        count_only: true,
        ..Default::default()
    };
    KvClient::new(ch.clone())
        .range(req)
        .await
        .unwrap()
        .into_inner()
        .count
}

/// Polls until `prefix` holds `n` keys.
async fn until_queued(ch: &Channel, prefix: &str, n: i64) {
    for _ in 0..200 {
        if queued(ch, prefix).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{prefix} never held {n} keys");
}

#[test]
fn locks_are_granted_in_queue_order_and_released() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("lock-grpc", 3);
    let leader = cluster.wait_leader(&rt);
    let follower = cluster.endpoints[(leader + 1) % 3].clone();
    rt.block_on(async {
        let ch = channel(&follower).await;
        let (l1, l2, l3) = (
            grant(&ch, 30).await,
            grant(&ch, 30).await,
            grant(&ch, 30).await,
        );
        let mut locks = LockClient::new(ch.clone());
        let lock = |lease| lpb::LockRequest {
            name: "job".into(),
            lease,
        };
        let first = locks.lock(lock(l1)).await.unwrap().into_inner();
        assert_eq!(first.key, format!("job/{l1:x}").into_bytes());
        let mut waiter = LockClient::new(ch.clone());
        let second = tokio::spawn(async move { waiter.lock(lock(l2)).await });
        until_queued(&ch, "job/", 2).await;
        assert!(!second.is_finished(), "two holders at once");
        // A waiter that gives up leaves the queue.
        let mut quitter = LockClient::new(ch.clone());
        let third = tokio::spawn(async move { quitter.lock(lock(l3)).await });
        until_queued(&ch, "job/", 3).await;
        third.abort();
        until_queued(&ch, "job/", 2).await;
        let released = locks.unlock(lpb::UnlockRequest {
            key: first.key.clone(),
        });
        let released = released.await.unwrap().into_inner();
        let second = second.await.unwrap().unwrap().into_inner();
        assert_eq!(second.key, format!("job/{l2:x}").into_bytes());
        assert!(second.header.unwrap().revision > released.header.unwrap().revision - 1);
        // The holder's lease ending releases the lock.
        let mut leases = LeaseClient::new(ch.clone());
        leases
            .lease_revoke(pb::LeaseRevokeRequest { id: l2 })
            .await
            .unwrap();
        until_queued(&ch, "job/", 0).await;
        let err = locks.lock(lock(424_242)).await.unwrap_err();
        assert_eq!(err.message(), "etcdserver: requested lease not found");
    });
}

/// What etcd's lock and election servers do that its recipes' clients
/// lean on: a contender without a lease holds one of its own, of 60
/// seconds that nothing renews (as etcd's orphaned session: a holder that
/// went away does not hold the lock for ever); an empty name is a queue
/// like any other; refusals come back as its in-process client's errors,
/// UNKNOWN.
#[test]
fn contenders_without_a_lease_hold_one_of_their_own_and_refusals_are_unknown() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("recipes-etcd", 3);
    cluster.wait_leader(&rt);
    rt.block_on(async {
        let ch = channel(&cluster.endpoints[1]).await;
        let mut locks = LockClient::new(ch.clone());
        let mut leases = LeaseClient::new(ch.clone());
        let lock = |name: &'static str, lease| lpb::LockRequest {
            name: name.into(),
            lease,
        };
        let err = locks.lock(lock("job", 424_242)).await.unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (
                tonic::Code::Unknown,
                "etcdserver: requested lease not found"
            )
        );
        let unnamed = locks
            .unlock(lpb::UnlockRequest { key: "".into() })
            .await
            .unwrap_err();
        assert_eq!(
            (unnamed.code(), unnamed.message()),
            (tonic::Code::Unknown, "etcdserver: key is not provided")
        );
        let l1 = grant(&ch, 30).await;
        let empty = locks.lock(lock("", l1)).await.unwrap().into_inner();
        assert_eq!(empty.key, format!("/{l1:x}").into_bytes());
        let own = locks.lock(lock("job", 0)).await.unwrap().into_inner();
        assert_ne!(session_lease_of(&mut leases, &own.key, "job/").await, l1);
        let mut e = ElectionClient::new(ch.clone());
        let campaign = epb::CampaignRequest {
            name: "chief".into(),
            lease: 0,
            value: "d".into(),
        };
        let led = e.campaign(campaign).await.unwrap().into_inner().leader;
        let led = led.unwrap();
        let own = session_lease_of(&mut leases, &led.key, "chief/").await;
        assert_eq!(led.lease, own);
        let missing = e
            .proclaim(epb::ProclaimRequest {
                leader: None,
                value: "x".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unknown);
    });
}

/// The lease a contender's key `key` (under `prefix`) names, checked to
/// be a session lease granted for 60 seconds.
async fn session_lease_of(leases: &mut LeaseClient<Channel>, key: &[u8], prefix: &str) -> i64 {
    let hex = std::str::from_utf8(key)
        .unwrap()
        .strip_prefix(prefix)
        .unwrap();
    let id = i64::from_str_radix(hex, 16).unwrap();
    assert_ne!(id, 0, "a lease of its own");
    let ttl = leases
        .lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.granted_ttl, 60);
    assert_eq!(ttl.keys, vec![key.to_vec()]);
    id
}

fn value(r: &epb::LeaderResponse) -> String {
    String::from_utf8(r.kv.as_ref().unwrap().value.to_vec()).unwrap()
}

#[test]
fn an_election_is_led_proclaimed_observed_and_handed_over() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("elect-grpc", 3);
    cluster.wait_leader(&rt);
    let ep = cluster.endpoints.clone();
    rt.block_on(async {
        let ch = channel(&ep[0]).await;
        let other = channel(&ep[2]).await;
        let (l1, l2) = (grant(&ch, 30).await, grant(&ch, 30).await);
        let mut e = ElectionClient::new(ch.clone());
        fn name() -> bytes::Bytes {
            bytes::Bytes::from_static(b"chief")
        }
        let no_leader = e
            .leader(epb::LeaderRequest { name: name() })
            .await
            .unwrap_err();
        assert_eq!(no_leader.message(), "election: no leader");
        let campaign = move |lease, v: &str| epb::CampaignRequest {
            name: name(),
            lease,
            value: v.as_bytes().to_vec().into(),
        };
        let one = e
            .campaign(campaign(l1, "a"))
            .await
            .unwrap()
            .into_inner()
            .leader
            .unwrap();
        let mut observer = ElectionClient::new(other.clone())
            .observe(epb::LeaderRequest { name: name() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(value(&observer.message().await.unwrap().unwrap()), "a");
        let proclaim = |leader: &epb::LeaderKey, v: &str| epb::ProclaimRequest {
            leader: Some(leader.clone()),
            value: v.as_bytes().to_vec().into(),
        };
        e.proclaim(proclaim(&one, "b")).await.unwrap();
        assert_eq!(value(&observer.message().await.unwrap().unwrap()), "b");
        let led = e
            .leader(epb::LeaderRequest { name: name() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(value(&led), "b");
        let mut second = ElectionClient::new(other.clone());
        let two = tokio::spawn(async move { second.campaign(campaign(l2, "c")).await });
        until_queued(&ch, "chief/", 2).await;
        assert!(!two.is_finished(), "two leaders at once");
        e.resign(epb::ResignRequest {
            leader: Some(one.clone()),
        })
        .await
        .unwrap();
        let two = two.await.unwrap().unwrap().into_inner().leader.unwrap();
        assert!(two.rev > one.rev);
        assert_eq!(value(&observer.message().await.unwrap().unwrap()), "c");
        let stale = e.proclaim(proclaim(&one, "late")).await.unwrap_err();
        assert_eq!(stale.message(), "election: not leader");
        let missing = e
            .resign(epb::ResignRequest { leader: None })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unknown);
        assert_eq!(missing.message(), "\"leader\" field must be provided");
    });
}

#[test]
fn flotilla_lease_lock_and_elect() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("recipes-cli", 3);
    cluster.wait_leader(&rt);
    let all = cluster.endpoints.join(",");
    let granted = flotilla_ok(&all, &["lease", "grant", "60"]);
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    flotilla_ok(&all, &["kv", "put", "--lease", &id, "leased", "v"]);
    let ttl = flotilla_ok(&all, &["lease", "ttl", &id, "--keys"]);
    assert!(
        ttl.contains("granted with TTL(60s)") && ttl.contains("attached keys([leased])"),
        "{ttl}"
    );
    assert_eq!(
        flotilla_ok(&all, &["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(60)\n")
    );
    assert!(flotilla_ok(&all, &["lease", "list"]).contains(&id));
    flotilla_ok(&all, &["lease", "revoke", &id]);
    assert_eq!(flotilla_ok(&all, &["kv", "get", "leased"]), "");
    let (code, out, _) = flotilla_at(&all, &["lease", "ttl", &id]);
    assert_eq!((code, out), (1, format!("lease {id} already expired\n")));
    let (code, _, err) = flotilla_at(&all, &["lease", "revoke", "zz"]);
    assert_eq!(code, 3);
    assert!(err.contains("\"zz\" is not a lease id"), "{err}");

    // A command run under the lock sees its key and fencing token; its
    // exit status is the lock's, and the lock is released after it.
    let script = "echo \"$FLOTILLA_LOCK_KEY $FLOTILLA_LOCK_REV\"; exit 3";
    let (code, out, err) = flotilla_at(&all, &["lock", "job", "--", "sh", "-c", script]);
    assert_eq!(code, 3, "{err}");
    assert!(
        out.starts_with("job/")
            && out
                .trim()
                .split(' ')
                .nth(1)
                .unwrap()
                .parse::<i64>()
                .unwrap()
                > 1,
        "{out}"
    );
    let (code, _, _) = flotilla_at(&all, &["lock", "job", "--", "true"]);
    assert_eq!(code, 0, "the lock was released");

    // A candidate leads, is observed, and resigns on SIGINT.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.args(["elect", "boss", "alpha", "--endpoints", &all]);
    let mut candidate = cluster_common::watcher::Watcher::spawn("flotilla elect", cmd);
    candidate.wait_for_output("leadership", "boss/", false);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.args(["elect", "-l", "boss", "--endpoints", &all]);
    let mut observer = cluster_common::watcher::Watcher::spawn("flotilla elect -l", cmd);
    observer.wait_for_output("the leader's value", "alpha\n", false);
    candidate.proc.signal("INT");
    assert!(candidate.proc.wait(Duration::from_secs(20)).success());
    let (_, left, _) = flotilla_at(&all, &["kv", "get", "boss/", "--prefix"]);
    assert_eq!(left, "", "resigning deleted the key");
    observer.proc.kill();
}

#[test]
fn flotilla_sequential_keys_only_grow() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("sequential-cli", 1);
    cluster.wait_leader(&rt);
    let all = cluster.endpoints.join(",");
    // Past a deleted one too.
    assert_eq!(
        flotilla_ok(&all, &["kv", "put", "--sequential", "q/", "a"]),
        "q/00000000000000000001\n"
    );
    assert_eq!(
        flotilla_ok(&all, &["kv", "put", "--sequential", "q/", "b"]),
        "q/00000000000000000002\n"
    );
    flotilla_ok(&all, &["kv", "del", "q/00000000000000000002"]);
    assert_eq!(
        flotilla_ok(&all, &["kv", "put", "--sequential", "q/", "c"]),
        "q/00000000000000000003\n"
    );

    flotilla_ok(&all, &["kv", "put", "plain", "text"]);
    let (code, _, err) = flotilla_at(&all, &["kv", "put", "--sequential", "plain", "x"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("holds \"text\", not a sequence counter"),
        "{err}"
    );
}
