//! A real client no one here wrote: Debian's `etcdctl` (package
//! `etcd-client`, which `.ci/run` installs) against a 3-member Flotilla
//! cluster: put, get (with a prefix, and as JSON through a follower), del
//! (one key, a range, a prefix, with prev_kv), txn, get sorted and at a
//! revision, endpoint status (also `--cluster`, which dials members with
//! a scheme in `:authority`) and member list, `make-mirror` from one
//! cluster into another, checking the output. Skipped, with a message, where
//! etcdctl is not installed. Also `flotilla kv del` of ranges and
//! prefixes, and writes near and over the request size limit, which need
//! no etcdctl.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::process::Command;
use std::time::Duration;

use cluster_common::Cluster;
use cluster_common::workload;
use common::{etcdctl, etcdctl_missing, etcdctl_ok};
use flotilla_client::Client;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::kv_client::KvClient;
use flotilla_testkit::wait_for;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};

#[test]
fn etcdctl_works_against_flotilla() {
    if etcdctl_missing() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("etcdctl", 3);
    let leader = cluster.wait_leader(&rt);
    let all = cluster.endpoints.join(",");
    let follower = &cluster.endpoints[(leader + 1) % 3];

    assert_eq!(etcdctl_ok(&all, &["put", "app/a", "1"]), "OK\n");
    assert_eq!(
        etcdctl_ok(follower, &["put", "app/b", "2"]),
        "OK\n",
        "a follower forwards"
    );
    assert_eq!(etcdctl_ok(&all, &["put", "other", "3"]), "OK\n");
    assert_eq!(
        etcdctl_ok(&all, &["get", "app/", "--prefix"]),
        "app/a\n1\napp/b\n2\n"
    );
    let json = etcdctl_ok(follower, &["get", "app/a", "-w", "json"]);
    assert!(json.contains("\"count\":1"), "{json}");
    assert!(json.contains("\"raft_term\""), "{json}");
    // A serializable read on the leader, which applied the put before
    // acknowledging it (a follower's may lag).
    let at_leader = &cluster.endpoints[leader];
    assert_eq!(
        etcdctl_ok(at_leader, &["get", "--consistency=s", "other"]),
        "other\n3\n"
    );
    assert_eq!(etcdctl_ok(&all, &["del", "other"]), "1\n");
    assert_eq!(etcdctl_ok(&all, &["get", "other"]), "");

    let txn = "value(\"app/a\") = \"1\"\n\nput app/a 10\n\nput app/a 0\n\n";
    let (success, out, err) = etcdctl(&all, &["txn"], txn);
    assert!(success, "txn failed: {out}{err}");
    assert_eq!(out, "SUCCESS\n\nOK\n");
    assert_eq!(
        etcdctl_ok(&all, &["get", "app/a", "--print-value-only"]),
        "10\n"
    );

    sorted_reads(&all);
    let first = history_reads(&all);
    ignore_value_puts(&all, first);
    range_deletes(&all);
    rt.block_on(txns_etcdctl_cannot_express(follower));

    let status = etcdctl_ok(&all, &["endpoint", "status"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    assert_eq!(
        status.matches(", true, ").count(),
        1,
        "one leader: {status}"
    );
    let members = etcdctl_ok(&all, &["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    assert!(members.contains(&format!("http://{follower}")), "{members}");
    cluster_wide_endpoint_commands(follower, &cluster.endpoints);
}

/// `--cluster` makes etcdctl dial every member's client URL as the
/// grpc-go target `passthrough:///http://HOST:PORT`, whose requests carry
/// `:authority: http://HOST:PORT` (issue 19, item 6; see
/// `flotilla_etcd::authority`).
fn cluster_wide_endpoint_commands(one: &str, members: &[String]) {
    let status = etcdctl_ok(one, &["endpoint", "status", "--cluster"]);
    assert_eq!(status.lines().count(), 3, "{status}");
    for m in members {
        assert!(status.contains(&format!("http://{m}, ")), "{m}: {status}");
    }
    assert_eq!(status.matches(", true, ").count(), 1, "{status}");
    let table = etcdctl_ok(one, &["endpoint", "status", "--cluster", "-w", "table"]);
    for m in members {
        assert!(table.contains(&format!("| http://{m} |")), "{m}: {table}");
    }
    // HashKV: every member hashes its key history up to one revision
    // alike. Each member first serves a linearizable read, so it has
    // applied that revision.
    let json = etcdctl_ok(one, &["get", "x", "-w", "json"]);
    let rev = common::header_revision(&json).to_string();
    for m in members {
        etcdctl_ok(m, &["get", "x"]);
    }
    let out = etcdctl_ok(one, &["endpoint", "hashkv", "--cluster", "--rev", &rev]);
    let hashes: Vec<&str> = out
        .lines()
        .map(|l| l.rsplit(", ").next().unwrap_or(""))
        .collect();
    assert_eq!(hashes.len(), members.len(), "{out}");
    assert!(
        hashes.iter().all(|h| *h == hashes[0] && !h.is_empty()),
        "{out}"
    );
    for m in members {
        assert!(out.contains(&format!("http://{m}, ")), "{m}: {out}");
    }
}

/// A txn op putting `value` at `key`.
fn put_op(key: &str, value: &str) -> pb::RequestOp {
    pb::RequestOp {
        request: Some(pb::request_op::Request::RequestPut(workload::put(
            key, value,
        ))),
    }
}

/// A compare of `key` (with etcd's `range_end` `end`) against `target`.
fn compare(key: &str, end: &str, result: CompareResult, target: TargetUnion) -> pb::Compare {
    pb::Compare {
        result: result as i32,
        target: match target {
            TargetUnion::Value(_) => CompareTarget::Value,
            TargetUnion::Version(_) => CompareTarget::Version,
            TargetUnion::CreateRevision(_) => CompareTarget::Create,
            TargetUnion::ModRevision(_) => CompareTarget::Mod,
            TargetUnion::Lease(_) => CompareTarget::Lease,
        } as i32,
        key: key.to_string().into(),
        target_union: Some(target),
        range_end: end.to_string().into(),
    }
}

/// Transactions that etcdctl's txn syntax cannot express, through etcd's
/// gRPC API: compares over a range of keys (they hold when they hold on
/// every key of the range, and on an empty range as on an absent key), and
/// nested transactions.
async fn txns_etcdctl_cannot_express(endpoint: &str) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut kv = KvClient::new(channel);
    for (k, v) in [("rc/1", "x"), ("rc/2", "y")] {
        kv.put(workload::put(k, v)).await.unwrap();
    }
    let mut txn = async |c: pb::Compare| {
        let req = pb::TxnRequest {
            compare: vec![c],
            success: vec![put_op("rc/ok", "1")],
            failure: vec![],
        };
        kv.txn(req).await.unwrap().into_inner().succeeded
    };
    let in_range = |end, result, target| compare("rc/", end, result, target);
    let every_key_exists = in_range("rc0", CompareResult::Greater, TargetUnion::Version(0));
    assert!(txn(every_key_exists).await, "rc/1 and rc/2 both exist");
    let all_x = in_range("rc0", CompareResult::Equal, TargetUnion::Value("x".into()));
    assert!(!txn(all_x).await, "rc/2 is y, not x");
    let none_in_range = in_range("rc/0", CompareResult::Equal, TargetUnion::CreateRevision(0));
    assert!(
        txn(none_in_range).await,
        "[rc/, rc/0) is empty: as an absent key"
    );
    let value_on_empty = in_range(
        "rc/0",
        CompareResult::NotEqual,
        TargetUnion::Value("".into()),
    );
    assert!(
        !txn(value_on_empty).await,
        "a value compare on no key fails"
    );
    let from_key_on = in_range("\0", CompareResult::Greater, TargetUnion::Version(0));
    assert!(txn(from_key_on).await, "every key from rc/ on exists");
    nested_txns(&mut kv).await;
}

/// An outer transaction whose success branch holds one that fails: the
/// answer nests the same way, and the inner failure branch's put applied.
/// Then etcd's refusal of a key put twice in one transaction.
async fn nested_txns(kv: &mut KvClient<tonic::transport::Channel>) {
    let absent = |k| compare(k, "", CompareResult::Equal, TargetUnion::Version(0));
    let inner = pb::TxnRequest {
        compare: vec![absent("rc/1")],
        success: vec![put_op("nt/then", "1")],
        failure: vec![put_op("nt/else", "2")],
    };
    let outer = pb::TxnRequest {
        compare: vec![absent("nt/outer")],
        success: vec![
            put_op("nt/outer", "0"),
            pb::RequestOp {
                request: Some(pb::request_op::Request::RequestTxn(inner)),
            },
        ],
        failure: vec![],
    };
    let r = kv.txn(outer).await.unwrap().into_inner();
    assert!(r.succeeded);
    let Some(pb::response_op::Response::ResponseTxn(nested)) = &r.responses[1].response else {
        panic!("not a nested answer: {r:?}");
    };
    assert!(!nested.succeeded, "rc/1 exists");
    assert_eq!(nested.responses.len(), 1);
    let get = pb::RangeRequest {
        key: "nt/".into(),
        range_end: "nt0".into(),
        ..Default::default()
    };
    let got = kv.range(get).await.unwrap().into_inner().kvs;
    let keys: Vec<_> = got
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key))
        .collect();
    assert_eq!(keys, ["nt/else", "nt/outer"]);
    let twice = pb::TxnRequest {
        compare: vec![],
        success: vec![put_op("nt/x", "1"), put_op("nt/x", "2")],
        failure: vec![],
    };
    let refused = kv.txn(twice).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "etcdserver: duplicate key given in txn request"
    );
}

/// `get --sort-by --order --limit`: app/a was written last (by the txn,
/// value "10"), app/b before it (value "2").
fn sorted_reads(all: &str) {
    let by_mod = [
        "get",
        "app/",
        "--prefix",
        "--sort-by=MODIFY",
        "--order=DESCEND",
    ];
    assert_eq!(etcdctl_ok(all, &by_mod), "app/a\n10\napp/b\n2\n");
    let by_value = [
        "get",
        "app/",
        "--prefix",
        "--sort-by=VALUE",
        "--order=DESCEND",
    ];
    assert_eq!(etcdctl_ok(all, &by_value), "app/b\n2\napp/a\n10\n");
    let newest = [&by_mod[..], &["--limit", "1"]].concat();
    assert_eq!(etcdctl_ok(all, &newest), "app/a\n10\n");
}

/// A key's history: reads at each revision, `compaction` (refused a
/// second time at the same revision). Returns the revision of hist/k's
/// first write.
fn history_reads(all: &str) -> u64 {
    // History: a key written twice reads at each revision, until a
    // compaction forgets the older one; a second compaction at the same
    // revision is refused, as etcd refuses it.
    etcdctl_ok(all, &["put", "hist/k", "one"]);
    let first = common::header_revision(&etcdctl_ok(all, &["get", "hist/k", "-w", "json"]));
    etcdctl_ok(all, &["put", "hist/k", "two"]);
    let at = |r: u64| etcdctl(all, &["get", "hist/k", "--rev", &r.to_string()], "");
    assert_eq!(
        at(first),
        (true, "hist/k\none\n".to_string(), String::new())
    );
    assert_eq!(
        at(first + 1),
        (true, "hist/k\ntwo\n".to_string(), String::new())
    );
    assert_eq!(
        at(first - 1),
        (true, String::new(), String::new()),
        "not yet written"
    );
    let compacted = etcdctl_ok(all, &["compaction", &(first + 1).to_string()]);
    assert_eq!(compacted, format!("compacted revision {}\n", first + 1));
    let (success, _, err) = at(first);
    assert!(
        !success && err.contains("required revision has been compacted"),
        "{err}"
    );
    assert_eq!(
        at(first + 1),
        (true, "hist/k\ntwo\n".to_string(), String::new())
    );
    let (success, _, err) = etcdctl(all, &["compaction", &(first + 1).to_string()], "");
    assert!(
        !success && err.contains("required revision has been compacted"),
        "a second compaction at one revision: {err}"
    );
    let (success, _, err) = at(first + 2);
    assert!(!success && err.contains("future revision"), "{err}");
    first
}

/// `put --ignore-value` and `--ignore-lease` on hist/k, written twice at
/// `first` and `first + 1` ("one", "two").
fn ignore_value_puts(all: &str, first: u64) {
    let at = |r: u64| etcdctl(all, &["get", "hist/k", "--rev", &r.to_string()], "");
    // `put --ignore-value` writes the key again with its value (a new
    // version); of an absent key it is refused, as etcd refuses it.
    // `--ignore-lease` keeps the key's lease: none, with no leases yet.
    assert_eq!(
        etcdctl_ok(all, &["put", "hist/k", "--ignore-value"]),
        "OK\n"
    );
    let json = etcdctl_ok(all, &["get", "hist/k", "-w", "json"]);
    assert!(json.contains("\"version\":3"), "{json}");
    assert_eq!(
        at(first + 2),
        (true, "hist/k\ntwo\n".to_string(), String::new())
    );
    let (success, _, err) = etcdctl(all, &["put", "hist/none", "--ignore-value"], "");
    assert!(
        !success && err.contains("etcdserver: key not found"),
        "{err}"
    );
    assert_eq!(
        etcdctl_ok(all, &["put", "hist/k", "three", "--ignore-lease"]),
        "OK\n"
    );
    assert_eq!(
        at(first + 3),
        (true, "hist/k\nthree\n".to_string(), String::new())
    );
}

/// `del KEY END`, `del --prefix`, `del --prev-kv`, `del "" --prefix`:
/// each prints the number of keys deleted; the keys are gone afterwards.
/// Keys under `r/` keep clear of the `app/` keys already there.
fn range_deletes(all: &str) {
    for k in ["r/a", "r/b", "r/c", "r/d/1", "r/d/2", "r/dz"] {
        assert_eq!(etcdctl_ok(all, &["put", k, &format!("v{k}")]), "OK\n");
    }
    assert_eq!(etcdctl_ok(all, &["del", "r/a", "r/c"]), "2\n", "[r/a, r/c)");
    assert_eq!(etcdctl_ok(all, &["get", "r/a", "r/c"]), "");
    assert_eq!(
        etcdctl_ok(all, &["get", "r/c"]),
        "r/c\nvr/c\n",
        "end excluded"
    );
    assert_eq!(etcdctl_ok(all, &["del", "--prefix", "r/d/"]), "2\n");
    assert_eq!(
        etcdctl_ok(all, &["get", "--prefix", "r/d"]),
        "r/dz\nvr/dz\n"
    );
    assert_eq!(etcdctl_ok(all, &["del", "--prefix", "r/nothing/"]), "0\n");
    assert_eq!(
        etcdctl_ok(all, &["del", "--prev-kv", "r/c", "r/e"]),
        "2\nr/c\nvr/c\nr/dz\nvr/dz\n"
    );
    let json = etcdctl_ok(all, &["del", "--prefix", "", "-w", "json"]);
    assert!(
        json.contains("\"deleted\":3"),
        "app/a, app/b and hist/k: {json}"
    );
    assert_eq!(etcdctl_ok(all, &["get", "--prefix", ""]), "");
}

fn flotilla(endpoints: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    let (status, out, err) = common::run(cmd.args(["kv", "--endpoints", endpoints]).args(args));
    assert!(status.success(), "flotilla kv {args:?} failed: {out}{err}");
    out
}

/// `flotilla kv del` in its forms, then reads at a revision and
/// `compact`.
#[test]
fn flotilla_kv_del_deletes_ranges_and_prefixes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("kv-del", 3);
    cluster.wait_leader(&rt);
    let all = cluster.endpoints.join(",");
    for k in ["a", "b", "c", "p/1", "p/2", "q"] {
        assert_eq!(flotilla(&all, &["put", k, "v"]), "OK\n");
    }
    assert_eq!(flotilla(&all, &["del", "a", "c"]), "2\n");
    assert_eq!(
        flotilla(&all, &["range", "a", "z"]),
        "c\nv\np/1\nv\np/2\nv\nq\nv\n"
    );
    assert_eq!(flotilla(&all, &["del", "p/", "--prefix"]), "2\n");
    assert_eq!(flotilla(&all, &["del", "p/", "--prefix"]), "0\n");
    assert_eq!(flotilla(&all, &["del", "c"]), "1\n");
    assert_eq!(flotilla(&all, &["del", "", "--prefix"]), "1\n");
    assert_eq!(flotilla(&all, &["get", "", "--prefix"]), "");
    // The history: revision 6 is before the first delete.
    assert_eq!(flotilla(&all, &["get", "a", "--rev", "6"]), "a\nv\n");
    assert_eq!(
        flotilla(&all, &["range", "a", "c", "--rev", "6"]),
        "a\nv\nb\nv\n"
    );
    assert_eq!(flotilla(&all, &["compact", "7"]), "compacted revision 7\n");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    let args = ["kv", "--endpoints", &all, "get", "a", "--rev", "6"];
    let (status, out, err) = common::run(cmd.args(args));
    assert!(!status.success(), "{out}");
    assert!(
        err.contains("required revision has been compacted"),
        "{err}"
    );
}

/// Writes of 1 MiB replicate to every member, also to one that was down
/// while they were made: catching it up, the leader queues many MiB of
/// appends to it at once, in peer batches larger than gRPC's default
/// 4 MiB message limit (which its peer once refused, again and again, so
/// that it never caught up). A write over the request limit (etcd's
/// `--max-request-bytes`, 1.5 MiB by default) is refused with etcd's
/// error, and the cluster goes on.
#[test]
fn megabyte_writes_replicate_and_too_large_ones_are_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start("big-writes", 3);
    let leader = cluster.wait_leader(&rt);
    let behind = (leader + 1) % 3;
    cluster.kill(behind);
    let _g = rt.enter();
    let client = std::sync::Arc::new(cluster.client_with_timeout(Duration::from_secs(20)));
    let value: bytes::Bytes = vec![b'v'; 1 << 20].into();
    let puts: Vec<_> = (0..8)
        .map(|i| {
            let (client, value) = (client.clone(), value.clone());
            rt.spawn(async move {
                let key = format!("big/{i}").into_bytes().into();
                client
                    .put(pb::PutRequest {
                        key,
                        value,
                        ..Default::default()
                    })
                    .await
            })
        })
        .collect();
    for put in puts {
        rt.block_on(put).unwrap().unwrap();
    }
    cluster.restart(behind);
    for i in 0..3 {
        let member = Client::new(&cluster.endpoints[i..=i], Duration::from_secs(20)).unwrap();
        let range = pb::RangeRequest {
            key: b"big/".to_vec().into(),
            range_end: b"big0".to_vec().into(),
            ..Default::default()
        };
        // The restarted member listens only once it has opened its data,
        // which takes a while on a loaded machine.
        let what = format!("member {} to answer", i + 1);
        let kvs = wait_for(&what, Duration::from_secs(30), || {
            rt.block_on(member.range(range.clone())).ok()
        })
        .kvs;
        assert_eq!(kvs.len(), 8, "member {} holds every write", i + 1);
        assert!(kvs.iter().all(|kv| kv.value == value));
    }
    let too_large = pb::PutRequest {
        key: b"huge".to_vec().into(),
        value: vec![b'v'; 1600 * 1024].into(),
        ..Default::default()
    };
    let err = rt.block_on(client.put(too_large)).unwrap_err();
    assert!(
        err.to_string().contains("etcdserver: request is too large"),
        "{err}"
    );
    let small = pb::PutRequest {
        key: b"after".to_vec().into(),
        value: b"ok".to_vec().into(),
        ..Default::default()
    };
    rt.block_on(client.put(small)).unwrap();
}

/// `etcdctl move-leader ID` hands leadership to that member (Raft's
/// leader transfer); a non-member is refused as etcd refuses it, and so
/// is MoveLeader sent to a follower.
#[test]
fn etcdctl_move_leader_hands_over_leadership() {
    if etcdctl_missing() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("move-leader", 3);
    let leader = cluster.wait_leader(&rt);
    let target = (leader + 1) % 3;
    let all = cluster.endpoints.join(",");
    // Member i has id i + 1; etcdctl takes ids in hex.
    let out = etcdctl_ok(&all, &["move-leader", &format!("{:x}", target + 1)]);
    let said = format!(
        "Leadership transferred from {:x} to {:x}\n",
        leader + 1,
        target + 1
    );
    assert_eq!(out, said);
    assert_eq!(cluster.wait_leader(&rt), target);
    let (moved, _, err) = etcdctl(&all, &["move-leader", "63"], "");
    assert!(!moved && err.contains("bad leader transferee"), "{err}");
    let follower = &cluster.endpoints[(target + 1) % 3];
    rt.block_on(async {
        let ch = cluster_common::channel(follower).await;
        let mut m = pb::maintenance_client::MaintenanceClient::new(ch);
        let req = pb::MoveLeaderRequest {
            target_id: leader as u64 + 1,
        };
        let refused = m.move_leader(req).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        assert_eq!(refused.message(), "etcdserver: not leader");
    });
}

/// Kills a child process when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `etcdctl make-mirror` copies one Flotilla cluster's keys under a
/// prefix into another (a read at a revision), then follows the source's
/// changes (a watch from the revision after it): puts and deletes
/// arrive, keys outside the prefix stay out.
#[test]
fn etcdctl_make_mirror_copies_and_follows_a_prefix() {
    if etcdctl_missing() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (src, dst) = (
        Cluster::start("mirror-src", 1),
        Cluster::start("mirror-dst", 1),
    );
    src.wait_leader(&rt);
    dst.wait_leader(&rt);
    let (s, d) = (&src.endpoints[0], &dst.endpoints[0]);
    for i in 0..20 {
        etcdctl_ok(s, &["put", &format!("m/{i}"), &i.to_string()]);
    }
    etcdctl_ok(s, &["put", "other", "x"]);
    let mirror = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", s, "make-mirror", "--prefix", "m/", d])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _mirror = KillOnDrop(mirror);
    let count = |ep: &str| {
        let keys = etcdctl_ok(ep, &["get", "m/", "--prefix", "--keys-only"]);
        keys.lines().filter(|l| !l.is_empty()).count()
    };
    wait_for("the mirror's first copy", Duration::from_secs(30), || {
        (count(d) == 20).then_some(())
    });
    etcdctl_ok(s, &["put", "m/new", "n"]);
    etcdctl_ok(s, &["del", "m/0"]);
    wait_for("the mirror to follow", Duration::from_secs(30), || {
        let new = etcdctl_ok(d, &["get", "m/new"]);
        let gone = etcdctl_ok(d, &["get", "m/0"]).is_empty();
        (new == "m/new\nn\n" && gone).then_some(())
    });
    assert_eq!(etcdctl_ok(d, &["get", "other"]), "", "outside the prefix");
    assert_eq!(count(d), 20, "one key new, one deleted");
}
