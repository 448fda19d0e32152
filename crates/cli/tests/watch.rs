//! etcd's Watch API against a 3-member Flotilla cluster, with Debian's
//! `etcdctl` (package `etcd-client`) as the client: `watch --prefix` and
//! `watch --prefix --prev-kv` on one member see the puts and deletes made
//! through another, in order, and nothing outside the prefix; `watch
//! --rev 1` replays the key's history, and after `compaction` gets etcd's
//! "required revision has been compacted"; an open watch does not hold up
//! a member's graceful stop. Skipped, with a message, where etcdctl is
//! missing. The stream's protocol (ids given and chosen, duplicates,
//! filters, prev_kv, earlier and later start revisions, a compacted one,
//! progress requests, cancel) is driven with the generated gRPC client,
//! which needs no etcdctl, and so is a stream that stops reading: it
//! catches up from the history, with no change skipped or sent twice.
//! `flotilla watch` replays, then follows, across a member's SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::process::Command;
use std::time::Duration;

use cluster_common::Cluster;
use cluster_common::watcher::Watcher;
use common::{etcdctl_missing, etcdctl_ok};
use flotilla_testkit::wait_for;

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
    let mut cluster = Cluster::start("watch", 3);
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

    // From revision 1: the key's history, then live.
    let mut old = Watcher::start(watch_at, &["foo1", "--rev", "1", "--prev-kv"]);
    let history = "PUT\nfoo1\na\nPUT\nfoo1\na\nfoo1\nc\nDELETE\nfoo1\nc\nfoo1\n\n";
    old.wait_for_output("foo1's history", history, false);
    old.proc.kill();
    let json = etcdctl_ok(put_at, &["get", "foo3", "-w", "json"]);
    let rev = common::header_revision(&json).to_string();
    etcdctl_ok(put_at, &["compaction", &rev]);
    // The watched member has applied the compaction once it serves a
    // linearizable read.
    etcdctl_ok(watch_at, &["get", "foo3"]);
    let mut old = Watcher::start(watch_at, &["foo1", "--rev", "1"]);
    old.wait_for_output(
        "the compacted answer",
        "watch was canceled (etcdserver: mvcc: required revision has been compacted)",
        true,
    );
    let status = old.proc.wait(Duration::from_secs(20));
    assert!(!status.success(), "a canceled watch is an error");

    // An open watch does not hold up a graceful stop (SIGTERM).
    let open = Watcher::start(watch_at, &["--prefix", "foo"]);
    until_watching(put_at, &[&open]);
    cluster.signal(0, "TERM");
    let member = cluster.procs[0].as_mut().unwrap();
    let stopped = member.wait(Duration::from_secs(20));
    assert!(stopped.success(), "member 0 stopped with {stopped}");
}

/// `flotilla watch --rev 1` replays the history, then goes on live; when
/// the member it reads from is SIGKILLed it goes on from the next
/// member, from the revision after the last change it printed: every
/// change once, in order.
#[test]
fn flotilla_watch_replays_and_survives_a_member_kill() {
    use flotilla_proto::etcdserverpb::kv_client::KvClient;
    use grpc::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start("watch-cli", 3);
    cluster.wait_leader(&rt);
    let rest = [cluster.endpoints[1].clone(), cluster.endpoints[2].clone()];
    let put_rest = |key: &'static str, rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let mut kv = KvClient::new(channel(&rest[0]).await);
            put(&mut kv, key, "v").await
        })
    };
    // etcd's numbering: revision 1 is the empty store.
    assert_eq!(put_rest("w/1", &rt), 2);
    assert_eq!(put_rest("w/2", &rt), 3);
    let all = cluster.endpoints.join(",");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.args(["watch", "w/", "--prefix", "--rev", "1", "--count", "4"])
        .args(["--endpoints", &all]);
    let mut w = Watcher::spawn("flotilla watch", cmd);
    w.wait_for_output("the replayed changes", "PUT\nw/1\nv\nPUT\nw/2\nv\n", false);
    cluster.kill(0);
    put_rest("w/3", &rt);
    put_rest("w/4", &rt);
    let status = w.proc.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", w.errors());
    let want = "PUT\nw/1\nv\nPUT\nw/2\nv\nPUT\nw/3\nv\nPUT\nw/4\nv\n";
    assert_eq!(w.output(), want);
}

mod grpc {
    //! The stream's protocol, driven over gRPC with the generated client.

    use flotilla_proto::etcdserverpb as pb;
    use flotilla_proto::etcdserverpb::kv_client::KvClient;
    use flotilla_proto::etcdserverpb::watch_client::WatchClient;
    use pb::watch_create_request::FilterType;
    use pb::watch_request::RequestUnion;
    use tokio::sync::mpsc;
    use tonic::Streaming;
    use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
    use tonic::transport::Channel;

    pub use crate::cluster_common::channel;

    pub async fn put(kv: &mut KvClient<Channel>, key: &str, value: &str) -> i64 {
        kv.put(crate::cluster_common::workload::put(key, value))
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .revision
    }

    pub async fn del(kv: &mut KvClient<Channel>, key: &str) -> i64 {
        let r = pb::DeleteRangeRequest {
            key: key.to_string().into(),
            ..Default::default()
        };
        let h = kv.delete_range(r).await.unwrap().into_inner().header;
        h.unwrap().revision
    }

    pub struct Stream {
        tx: mpsc::Sender<pb::WatchRequest>,
        rx: Streaming<pb::WatchResponse>,
    }

    impl Stream {
        pub async fn open(ch: Channel) -> Stream {
            let (tx, rx) = mpsc::channel(16);
            let rx = WatchClient::new(ch)
                .watch(ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            Stream { tx, rx }
        }

        pub async fn send(&self, r: RequestUnion) {
            let r = pb::WatchRequest {
                request_union: Some(r),
            };
            self.tx.send(r).await.unwrap();
        }

        pub async fn create(&self, c: pb::WatchCreateRequest) {
            self.send(RequestUnion::CreateRequest(c)).await;
        }

        /// The next response, failing after a bounded wait.
        pub async fn next(&mut self) -> pb::WatchResponse {
            let wait = std::time::Duration::from_secs(20);
            let next = tokio::time::timeout(wait, self.rx.message()).await;
            next.expect("a watch response in time").unwrap().unwrap()
        }
    }

    pub fn create(key: &str, end: &str, start: i64, id: i64) -> pb::WatchCreateRequest {
        pb::WatchCreateRequest {
            key: key.to_string().into(),
            range_end: end.to_string().into(),
            start_revision: start,
            watch_id: id,
            ..Default::default()
        }
    }

    pub fn no_delete_with_prev(mut c: pb::WatchCreateRequest) -> pb::WatchCreateRequest {
        c.filters = vec![FilterType::Nodelete as i32];
        c.prev_kv = true;
        c
    }

    /// (watch id, revision, [(type, key, prev value)]) of an event response.
    pub type Seen = (i64, i64, Vec<(i32, String, Option<String>)>);

    pub fn seen(r: &pb::WatchResponse) -> Seen {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let events = r
            .events
            .iter()
            .map(|e| {
                let kv = e.kv.clone().unwrap_or_default();
                let prev = e.prev_kv.as_ref().map(|p| text(&p.value));
                (e.r#type, text(&kv.key), prev)
            })
            .collect();
        let rev = r.header.as_ref().map_or(0, |h| h.revision);
        (r.watch_id, rev, events)
    }

    /// On a member that applied revision `r`, compacted at `r`, and
    /// nothing later: a watch from `r - 1` (compacted), watch 1 on
    /// `[a, b)` from the next revision,
    /// watch 7 on `a1` from 3 revisions on, no deletes, with prev_kv, and
    /// a refused duplicate id 7. Returns the revision the watches start
    /// after.
    pub async fn open_watches(s: &mut Stream, r: i64) -> i64 {
        s.create(create("a", "b", r - 1, 0)).await;
        let first = s.next().await;
        assert!(first.created && first.watch_id == 0, "{first:?}");
        let compacted = s.next().await;
        assert!(
            compacted.canceled && compacted.compact_revision == r,
            "{compacted:?}"
        );
        assert!(compacted.cancel_reason.contains("has been compacted"));

        s.create(create("a", "b", 0, 0)).await;
        let auto = s.next().await;
        assert!(
            auto.created && !auto.canceled && auto.watch_id == 1,
            "{auto:?}"
        );
        let r = auto.header.as_ref().unwrap().revision;
        s.create(no_delete_with_prev(create("a1", "", r + 3, 7)))
            .await;
        let seven = s.next().await;
        assert!(seven.created && seven.watch_id == 7, "{seven:?}");
        s.create(create("x", "", 0, 7)).await;
        let dup = s.next().await;
        assert!(dup.created && dup.canceled && dup.watch_id == -1, "{dup:?}");

        r
    }

    /// After the changes of the protocol test (a1 put at `r + 1` and
    /// `r + 3`, deleted at `r + 5`): a watch created now from `r + 1`
    /// replays every change of a1 since, with the pair before each.
    pub async fn replay_from_history(s: &mut Stream, r: i64) {
        let (put_, del_) = (0, 1);
        let mut from_history = create("a1", "", r + 1, 9);
        from_history.prev_kv = true;
        s.create(from_history).await;
        let nine = s.next().await;
        assert!(nine.created && nine.watch_id == 9, "{nine:?}");
        let mut replayed = Vec::new();
        while replayed.len() < 3 {
            replayed.push(seen(&s.next().await));
        }
        let with_prev = |t, prev: Option<&str>| vec![(t, "a1".to_string(), prev.map(String::from))];
        let want: Vec<Seen> = vec![
            (9, r + 1, with_prev(put_, None)),
            (9, r + 3, with_prev(put_, Some("1"))),
            (9, r + 5, with_prev(del_, Some("3"))),
        ];
        assert_eq!(replayed, want);
    }
}

#[test]
fn the_watch_stream_follows_etcd_s_protocol() {
    use flotilla_proto::etcdserverpb as pb;
    use flotilla_proto::etcdserverpb::kv_client::KvClient;
    use flotilla_proto::etcdserverpb::watch_request::RequestUnion;
    use flotilla_proto::etcdserverpb::{WatchCancelRequest, WatchProgressRequest};
    use grpc::*;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("watch-grpc", 3);
    cluster.wait_leader(&rt);
    rt.block_on(async {
        let mut kv = KvClient::new(channel(&cluster.endpoints[1]).await);
        put(&mut kv, "z", "first").await;
        let r = put(&mut kv, "z", "0").await;
        let compact = pb::CompactionRequest {
            revision: r,
            physical: false,
        };
        kv.compact(compact).await.unwrap();
        let watched = channel(&cluster.endpoints[2]).await;
        // A linearizable read there: that member has applied the put and
        // the compaction.
        let range = pb::RangeRequest {
            key: "z".into(),
            ..Default::default()
        };
        let seen_there = KvClient::new(watched.clone()).range(range).await.unwrap();
        assert_eq!(seen_there.into_inner().header.unwrap().revision, r);

        let mut s = Stream::open(watched).await;

        let r = open_watches(&mut s, r).await;
        assert_eq!(put(&mut kv, "a1", "1").await, r + 1);
        assert_eq!(put(&mut kv, "a2", "2").await, r + 2);
        assert_eq!(put(&mut kv, "a1", "3").await, r + 3);
        assert_eq!(put(&mut kv, "c", "out of range").await, r + 4);
        assert_eq!(del(&mut kv, "a1").await, r + 5);
        // The watched member applies on its own time: read until the
        // last change, then ask for progress, which comes after it.
        let mut got = Vec::new();
        while got.last().is_none_or(|g: &Seen| g.1 < r + 5) {
            got.push(seen(&s.next().await));
        }
        s.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
            .await;
        let progress = s.next().await;
        assert_eq!(progress.watch_id, -1, "{progress:?}");
        assert!(progress.events.is_empty());
        assert!(progress.header.unwrap().revision >= r + 5);
        let (put_, del_) = (0, 1);
        let ev = |t, k: &str| vec![(t, k.to_string(), None)];
        let want: Vec<Seen> = vec![
            (1, r + 1, ev(put_, "a1")),
            (1, r + 2, ev(put_, "a2")),
            (1, r + 3, ev(put_, "a1")),
            (7, r + 3, vec![(put_, "a1".into(), Some("1".into()))]),
            (1, r + 5, ev(del_, "a1")),
        ];
        assert_eq!(got, want);

        replay_from_history(&mut s, r).await;

        s.send(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: 1,
        }))
        .await;
        let canceled = s.next().await;
        assert!(canceled.canceled && canceled.watch_id == 1, "{canceled:?}");
    });
}

/// A client that stops reading while writes go on: once its stream is
/// more than the hub's backlog behind, it reads what it missed from the
/// history, so every change comes, in order, once, with no gap (had a
/// compaction forgotten some of it, the watch would be canceled as
/// compacted, as in etcd).
#[test]
fn a_watcher_that_falls_behind_catches_up_from_the_history() {
    use flotilla_proto::etcdserverpb::kv_client::KvClient;
    use grpc::*;

    const WRITERS: usize = 64;
    const PUTS_EACH: usize = 400;
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The history it catches up from must outlast the writes: no
    // automatic compaction (its default keeps 10,000 revisions).
    let cluster = Cluster::start_with("watch-lag", 1, &["--auto-compaction-retention", "0"]);
    cluster.wait_leader(&rt);
    rt.block_on(async {
        let ch = channel(&cluster.endpoints[0]).await;
        let mut s = Stream::open(ch.clone()).await;
        s.create(create("k", "l", 0, 0)).await;
        let created = s.next().await;
        assert!(created.created, "{created:?}");
        let start = created.header.unwrap().revision;
        // The stream is not read while the writes go on.
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let mut kv = KvClient::new(ch.clone());
                // Large enough that the connection's flow-control windows
                // fill long before the writes end.
                let value = "v".repeat(2048);
                tokio::spawn(async move {
                    for i in 0..PUTS_EACH {
                        put(&mut kv, &format!("k{w}-{i}"), &value).await;
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let last = start + (WRITERS * PUTS_EACH) as i64;
        for next_rev in start + 1..=last {
            let r = s.next().await;
            assert!(!r.canceled, "{r:?}");
            assert_eq!(r.events.len(), 1);
            let kv = r.events[0].kv.as_ref().unwrap();
            assert_eq!(kv.mod_revision, next_rev, "a change skipped or repeated");
        }
    });
}

/// etcd's `fragment`: a watch that asks for it gets a revision whose
/// events exceed 1.5 MiB in several responses, all but the last marked
/// `fragment`; a watch that does not gets them in one. Such a revision
/// takes a write over the default request limit, so the server gets a
/// higher `--max-request-bytes`, as etcd's own test of it does.
#[test]
fn a_large_revision_is_fragmented_for_a_watch_that_asks() {
    use flotilla_proto::etcdserverpb as pb;
    use flotilla_proto::etcdserverpb::kv_client::KvClient;
    use grpc::*;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start_with("watch-fragment", 1, &["--max-request-bytes", "4194304"]);
    cluster.wait_leader(&rt);
    rt.block_on(async {
        let ch = channel(&cluster.endpoints[0]).await;
        let mut s = Stream::open(ch.clone()).await;
        let mut fragmented = create("f", "g", 0, 0);
        fragmented.fragment = true;
        s.create(fragmented).await;
        s.create(create("f", "g", 0, 1)).await;
        for id in [0, 1] {
            let created = s.next().await;
            assert!(created.created && created.watch_id == id, "{created:?}");
        }
        let value = "v".repeat(700 << 10);
        let puts = (0..3)
            .map(|i| pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(
                    cluster_common::workload::put(&format!("f{i}"), &value),
                )),
            })
            .collect();
        let txn = pb::TxnRequest {
            success: puts,
            ..Default::default()
        };
        KvClient::new(ch).txn(txn).await.unwrap();
        let mut parts = Vec::new();
        loop {
            let r = s.next().await;
            assert_eq!(r.watch_id, 0, "{:?}", (r.watch_id, r.fragment));
            let more = r.fragment;
            parts.push(r);
            if !more {
                break;
            }
        }
        assert!(parts.len() >= 2, "{} responses", parts.len());
        let keys: Vec<_> = parts
            .iter()
            .flat_map(|p| &p.events)
            .map(|e| String::from_utf8_lossy(&e.kv.as_ref().unwrap().key).into_owned())
            .collect();
        assert_eq!(keys, ["f0", "f1", "f2"]);
        let whole = s.next().await;
        assert_eq!(whole.watch_id, 1);
        assert!(!whole.fragment);
        assert_eq!(whole.events.len(), 3);
    });
}
