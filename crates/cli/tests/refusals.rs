//! Issue 19, "no request can hurt the cluster", on real servers:
//!
//! - invalid requests (`put ""`, a Txn holding `put ""`, empty keys in
//!   ranges, deletes and compares, bad sort options, negative numbers,
//!   duplicate keys) sent to the leader and to a follower are refused with
//!   etcd's gRPC code and message, and every member keeps serving;
//! - a command that skips those checks, forwarded to the leader as a
//!   follower of an older build would, is answered as refused and never
//!   reaches the log (where older members would stop on it);
//! - data directories written by the build before the fix, whose log holds
//!   a `put ""` that stopped it for good (`tests/fixtures/
//!   issue19-put-empty-key` of one member and `issue19-put-empty-key-3` of
//!   three, see their READMEs), serve again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use cluster_common::Cluster;
use common::{etcdctl, etcdctl_missing};
use flotilla_kv::{Command, Op, ReadConsistency, Request};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::kv_client::KvClient;
use flotilla_proto::kv::v1 as kvpb;
use flotilla_proto::raft::v1::ProposeRequest;
use flotilla_proto::raft::v1::proposals_client::ProposalsClient;
use flotilla_testkit::wait_for;
use pb::request_op::Request as R;
use tonic::Code;
use tonic::transport::Channel;

const EMPTY_KEY: &str = "etcdserver: key is not provided";

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

fn put(key: &str, value: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: b(key),
        value: b(value),
        ..Default::default()
    }
}

fn txn_of(success: Vec<R>) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: vec![],
        success: success
            .into_iter()
            .map(|r| pb::RequestOp { request: Some(r) })
            .collect(),
        failure: vec![],
    }
}

/// Asserts that `result` is a gRPC error with `code` and `message`.
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, message: &str) {
    let status = result.expect_err("the request is refused");
    assert_eq!(
        (status.code(), status.message()),
        (code, message),
        "{status:?}"
    );
}

/// Sends every kind of invalid request to the member behind `channel`.
async fn invalid_requests(channel: Channel) {
    let kv_channel = channel.clone();
    let mut kv = KvClient::new(channel.clone());
    let invalid = Code::InvalidArgument;
    refused(kv.put(put("", "v")).await, invalid, EMPTY_KEY);
    let txn = txn_of(vec![
        R::RequestPut(put("a", "1")),
        R::RequestPut(put("", "v")),
    ]);
    refused(kv.txn(txn).await, invalid, EMPTY_KEY);
    let nested = txn_of(vec![R::RequestTxn(txn_of(vec![R::RequestPut(put(
        "", "v",
    ))]))]);
    refused(kv.txn(nested).await, invalid, EMPTY_KEY);
    let mut compare = txn_of(vec![R::RequestPut(put("a", "1"))]);
    compare.compare.push(pb::Compare {
        key: Bytes::new(),
        target_union: Some(pb::compare::TargetUnion::Version(0)),
        ..Default::default()
    });
    refused(kv.txn(compare).await, invalid, EMPTY_KEY);
    invalid_ranges(&mut kv).await;
    let delete = pb::DeleteRangeRequest {
        range_end: b("z"),
        ..Default::default()
    };
    refused(kv.delete_range(delete).await, invalid, EMPTY_KEY);
    let twice = txn_of(vec![
        R::RequestPut(put("a", "1")),
        R::RequestPut(put("a", "2")),
    ]);
    refused(
        kv.txn(twice).await,
        invalid,
        "etcdserver: duplicate key given in txn request",
    );
    let mut ignored = put("a", "v");
    ignored.ignore_value = true;
    refused(
        kv.put(ignored).await,
        invalid,
        "etcdserver: value is provided",
    );
    // Flotilla's own session service.
    let mut sessions = kvpb::kv_client::KvClient::new(channel);
    let write = kvpb::SessionWrite {
        client_id: 7,
        seq: 1,
        op: Some(kvpb::session_write::Op::Put(put("", "v"))),
        ..Default::default()
    };
    refused(sessions.write(write).await, invalid, EMPTY_KEY);
    reused_seq(&mut sessions).await;
    invalid_watches(kv_channel).await;
}

/// A watch etcd would not create is answered created and canceled at
/// once, under watch id -1, with the reason.
async fn invalid_watches(channel: Channel) {
    let create = |start_revision, filters| pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: b("w"),
                start_revision,
                filters,
                ..Default::default()
            },
        )),
    };
    let cases = [
        (
            create(-1, vec![]),
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (create(0, vec![7]), "flotilla: unknown watch filter 7"),
    ];
    for (request, reason) in cases {
        let mut watch = pb::watch_client::WatchClient::new(channel.clone());
        let stream = tonic::codegen::tokio_stream::iter(vec![request]);
        let mut answers = watch.watch(stream).await.unwrap().into_inner();
        let r = answers.message().await.unwrap().expect("an answer");
        assert!(r.created && r.canceled, "{r:?}");
        assert_eq!((r.watch_id, r.cancel_reason.as_str()), (-1, reason));
    }
}

/// A session seq reused for a write of another kind gets
/// `FAILED_PRECONDITION` (the wire fuzzer found it answered `INTERNAL`).
async fn reused_seq(sessions: &mut kvpb::kv_client::KvClient<Channel>) {
    let write = |op| kvpb::SessionWrite {
        client_id: 9,
        seq: 1,
        op: Some(op),
        ..Default::default()
    };
    let put = write(kvpb::session_write::Op::Put(put("s", "1")));
    sessions.write(put).await.unwrap();
    let delete = write(kvpb::session_write::Op::DeleteRange(
        pb::DeleteRangeRequest {
            key: b("s"),
            ..Default::default()
        },
    ));
    let status = sessions.write(delete).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("already used seq 1"),
        "{status:?}"
    );
}

async fn invalid_ranges(kv: &mut KvClient<Channel>) {
    let invalid = Code::InvalidArgument;
    let range = |f: fn(&mut pb::RangeRequest)| {
        let mut r = pb::RangeRequest {
            key: b("a"),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    refused(
        kv.range(range(|r| r.key = Bytes::new())).await,
        invalid,
        EMPTY_KEY,
    );
    refused(
        kv.range(range(|r| r.sort_order = 7)).await,
        invalid,
        "etcdserver: invalid sort option",
    );
    refused(
        kv.range(range(|r| r.limit = -1)).await,
        invalid,
        "flotilla: negative limit: -1",
    );
}

/// Every member answers its status and the cluster takes a write and a
/// read through each member.
fn all_serve(rt: &tokio::runtime::Runtime, cluster: &Cluster, key: &str) {
    let client = {
        let _g = rt.enter();
        cluster.client()
    };
    for i in 0..cluster.endpoints.len() {
        rt.block_on(client.status_of(i))
            .unwrap_or_else(|e| panic!("member {} stopped: {e}", i + 1));
    }
    rt.block_on(client.put(put(key, "ok"))).unwrap();
    for i in 0..cluster.endpoints.len() {
        let mut kv = KvClient::new(client.channel(i).unwrap());
        let r = rt
            .block_on(kv.range(pb::RangeRequest {
                key: b(key),
                ..Default::default()
            }))
            .unwrap()
            .into_inner();
        assert_eq!(r.kvs.len(), 1, "member {} reads {key}", i + 1);
    }
}

#[test]
fn invalid_requests_are_refused_at_leader_and_follower_and_no_member_stops() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("refusals", 3);
    let leader = cluster.wait_leader(&rt);
    let follower = (leader + 1) % 3;
    let client = {
        let _g = rt.enter();
        cluster.client()
    };
    for i in [leader, follower] {
        rt.block_on(invalid_requests(client.channel(i).unwrap()));
    }
    if !etcdctl_missing() {
        for i in [leader, follower] {
            let (ok, _, err) = etcdctl(&cluster.endpoints[i], &["put", "", "v"], "");
            assert!(!ok && err.contains(EMPTY_KEY), "{err}");
            let (ok, _, err) = etcdctl(&cluster.endpoints[i], &["txn"], "\n\nput \"\" v\n\n");
            assert!(!ok && err.contains(EMPTY_KEY), "{err}");
        }
    }
    all_serve(&rt, &cluster, "after-refusals");
}

/// The command of a `put ""` in a session of its own, as an older build
/// proposed it.
fn put_empty_key_command() -> Bytes {
    Command {
        stamp_ms: 1,
        request: Request {
            client: 1 << 62,
            seq: 1,
            read: ReadConsistency::Linearizable,
            resumed: false,
            op: Op::Txn(flotilla_kv::Txn {
                compares: vec![],
                success: vec![Op::put("x", "1"), Op::put("", "v")],
                failure: vec![],
            }),
        },
    }
    .encode()
}

#[test]
fn a_forwarded_command_that_fails_the_checks_is_refused_before_it_is_proposed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("refused-forward", 3);
    let leader = cluster.wait_leader(&rt);
    let client = {
        let _g = rt.enter();
        cluster.client()
    };
    rt.block_on(client.put(put("before", "1"))).unwrap();
    let status = rt.block_on(client.status_of(leader)).unwrap();
    let header = status.header.unwrap();
    // As a follower of an older build forwards it (it checked less).
    let mut proposals = ProposalsClient::new(client.channel(leader).unwrap());
    let answer = rt
        .block_on(proposals.propose(ProposeRequest {
            cluster_id: header.cluster_id,
            command: put_empty_key_command(),
        }))
        .expect("the leader answers what decodes")
        .into_inner();
    assert!(!answer.not_leader);
    let reply = flotilla_kv::Reply::decode(&answer.reply).unwrap();
    assert_eq!(
        reply.outcome,
        flotilla_kv::Outcome::Refused(flotilla_kv::Refusal::EmptyKey {
            role: flotilla_kv::KeyRole::Write
        })
    );
    // Nothing reached the log: the commit index and the revision stand,
    // and the refused txn's `put x` did not happen either.
    let after = rt.block_on(client.status_of(leader)).unwrap();
    assert_eq!(after.raft_index, status.raft_index);
    assert_eq!(after.header.unwrap().revision, header.revision);
    assert_eq!(rt.block_on(client.get("x")).unwrap(), None);
    all_serve(&rt, &cluster, "after-refused-forward");
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/issue19-put-empty-key/data")
}

#[test]
fn a_log_poisoned_by_an_older_build_serves_again() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The fixture's identity comes from its token, not its address.
    let extra = ["--cluster-token", "issue19-fixture"];
    let mut cluster = Cluster::start_from("poisoned", &[fixture()], &extra);
    cluster.wait_leader(&rt);
    let client = {
        let _g = rt.enter();
        cluster.client()
    };
    // What the old build applied before the poisoned entry is there.
    assert_eq!(rt.block_on(client.get("alpha")).unwrap(), Some(b("3")));
    assert_eq!(rt.block_on(client.get("beta")).unwrap(), None);
    assert_eq!(rt.block_on(client.get("gamma")).unwrap(), Some(b("4")));
    let status = wait_for("entry 7 applied", Duration::from_secs(20), || {
        let s = rt.block_on(client.status_of(0)).ok()?;
        (s.raft_applied_index >= 7).then_some(s)
    });
    // Five writes, and the refused `put ""` took no revision.
    assert_eq!(status.header.unwrap().revision, 5);
    let log = std::fs::read_to_string(cluster.log(0)).unwrap();
    assert!(log.contains("refused a committed command"), "{log}");
    assert!(log.contains("index=7"), "{log}");
    all_serve(&rt, &cluster, "after-recovery");
    // And it restarts on its data, now past the entry.
    cluster.kill(0);
    cluster.restart(0);
    cluster.wait_leader(&rt);
    assert_eq!(
        rt.block_on(client.get("after-recovery")).unwrap(),
        Some(b("ok"))
    );
}

#[test]
fn a_three_member_cluster_poisoned_by_an_older_build_serves_again() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/issue19-put-empty-key-3");
    let data: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("node{i}"))).collect();
    let extra = ["--cluster-token", "issue19-fixture-3"];
    let cluster = Cluster::start_from("poisoned-3", &data, &extra);
    let leader = cluster.wait_leader(&rt);
    let client = {
        let _g = rt.enter();
        cluster.client()
    };
    // The new leader commits its term's first entry, past entry 7.
    let committed = wait_for("a commit past entry 7", Duration::from_secs(20), || {
        let s = rt.block_on(client.status_of(leader)).ok()?;
        (s.raft_index >= 8).then_some(s.raft_index)
    });
    for i in 0..3 {
        let s = wait_for(
            "the member applies past entry 7",
            Duration::from_secs(20),
            || {
                rt.block_on(client.status_of(i))
                    .ok()
                    .filter(|s| s.raft_applied_index >= committed)
            },
        );
        assert_eq!(s.header.unwrap().revision, 5, "member {}", i + 1);
        let mut kv = KvClient::new(client.channel(i).unwrap());
        let read = pb::RangeRequest {
            key: b("a"),
            range_end: b("z"),
            serializable: true,
            ..Default::default()
        };
        let r = rt.block_on(kv.range(read)).unwrap().into_inner();
        let pairs: Vec<_> = r
            .kvs
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        assert_eq!(
            pairs,
            [(b("alpha"), b("3")), (b("gamma"), b("4"))],
            "member {}",
            i + 1
        );
    }
    all_serve(&rt, &cluster, "after-recovery");
}
