//! etcd's `--quota-backend-bytes` on a 3-member cluster: writes past the
//! quota are refused with etcd's "database space exceeded" and raise a
//! NOSPACE alarm that every member then enforces (deletes still go
//! through); compaction and `flotilla defrag` free the room, `flotilla
//! alarm disarm` clears the alarm, and writes go on. etcdctl's `alarm
//! list` and `endpoint status` show the alarm where etcdctl is installed.
//! The members compare their hashes of the key history meanwhile
//! (`--experimental-corrupt-check-time`), through all of that, and find
//! no difference; a CORRUPT alarm stops every write until disarmed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;
mod common;

use std::time::Duration;

use cluster_common::Cluster;
use common::flotilla_at;
use flotilla_testkit::http::get as http_get;

/// A counter's value in a member's metrics text (0 if absent).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn past_the_quota_writes_are_refused_until_room_is_freed_and_the_alarm_disarmed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start_with(
        "quota",
        3,
        &[
            "--quota-backend-bytes",
            "300000",
            "--experimental-corrupt-check-time",
            "100ms",
            "--experimental-initial-corrupt-check",
        ],
    );
    cluster.wait_leader(&rt);
    let all = cluster.endpoints.join(",");
    let value = "x".repeat(20_000);
    let mut refused = None;
    for i in 0..40 {
        let (code, _, err) = flotilla_at(&all, &["kv", "put", &format!("k{}", i % 3), &value]);
        if code != 0 {
            refused = Some((i, err));
            break;
        }
    }
    let (at, err) = refused.expect("the quota never refused a write");
    assert!((10..=20).contains(&at), "refused at write {at}");
    assert!(
        err.contains("etcdserver: mvcc: database space exceeded"),
        "{err}"
    );
    let (_, listed, _) = flotilla_at(&all, &["alarm", "list"]);
    assert!(listed.contains("alarm:NOSPACE"), "{listed}");
    if !common::etcdctl_missing() {
        let status = common::etcdctl_ok(&all, &["endpoint", "status"]);
        let lines: Vec<&str> = status.lines().collect();
        assert_eq!(lines.len(), 3, "{status}");
        assert!(
            lines.iter().all(|l| l.contains("alarm:NOSPACE")),
            "{status}"
        );
    }
    // Small or not, a write that adds data is refused; a delete is not.
    let (code, _, _) = flotilla_at(&all, &["kv", "put", "small", "v"]);
    assert_ne!(code, 0, "a write while the alarm is raised");
    assert_eq!(flotilla_at(&all, &["kv", "del", "k1"]).0, 0);
    // Compact, defragment, disarm: room again.
    let (_, json, _) = flotilla_at(&all, &["kv", "get", "k0", "-w", "json"]);
    let rev = common::header_revision(&json).to_string();
    assert_eq!(flotilla_at(&all, &["kv", "compact", &rev]).0, 0);
    let (code, defragged, _) = flotilla_at(&all, &["defrag"]);
    assert_eq!((code, defragged.lines().count()), (0, 3), "{defragged}");
    let (_, disarmed, _) = flotilla_at(&all, &["alarm", "disarm"]);
    assert!(disarmed.contains("alarm:NOSPACE"), "{disarmed}");
    assert_eq!(flotilla_at(&all, &["alarm", "list"]).1, "");
    assert_eq!(flotilla_at(&all, &["kv", "put", "after", "v"]).0, 0);
    corrupt_checks_find_nothing_and_a_corrupt_alarm_stops_writes(&rt, &cluster, &rev);
}

/// The second half of the test above, on its cluster after the NOSPACE
/// alarm was cleared: `rev` is a revision it compacted at.
fn corrupt_checks_find_nothing_and_a_corrupt_alarm_stops_writes(
    rt: &tokio::runtime::Runtime,
    cluster: &Cluster,
    rev: &str,
) {
    let all = cluster.endpoints.join(",");
    // The leader compared hashes with both others at least twice, and
    // found nothing: no CORRUPT alarm since the disarm.
    flotilla_testkit::wait_for("corruption checks", Duration::from_secs(30), || {
        let compared: u64 = cluster
            .endpoints
            .iter()
            .map(|e| {
                metric(
                    &http_get(e, "/metrics").1,
                    "flotilla_corruption_checks_total",
                )
            })
            .sum();
        (compared >= 4).then_some(())
    });
    assert_eq!(flotilla_at(&all, &["alarm", "list"]).1, "");
    // A CORRUPT alarm (raised here through the API, for member 0 as the
    // leader's hash check raises it) stops every write, deletes and
    // compactions too, while reads go on, until it is disarmed.
    rt.block_on(async {
        use flotilla_proto::etcdserverpb as pb;
        let ch = cluster_common::channel(&cluster.endpoints[0]).await;
        let mut m = pb::maintenance_client::MaintenanceClient::new(ch);
        let corrupt = pb::AlarmRequest {
            action: pb::alarm_request::AlarmAction::Activate as i32,
            member_id: 0,
            alarm: pb::AlarmType::Corrupt as i32,
        };
        let raised = m.alarm(corrupt).await.expect("raise CORRUPT").into_inner();
        assert_eq!(raised.alarms.len(), 1, "{raised:?}");
    });
    for write in [
        &["kv", "put", "k2", "v"][..],
        &["kv", "del", "after"],
        &["kv", "compact", rev],
    ] {
        let (code, _, err) = flotilla_at(&all, write);
        assert_ne!(code, 0, "{write:?} while CORRUPT is raised");
        assert!(err.contains("corrupt cluster"), "{write:?}: {err}");
    }
    let (code, got, _) = flotilla_at(&all, &["kv", "get", "after"]);
    assert_eq!((code, got.as_str()), (0, "after\nv\n"));
    let (_, listed, _) = flotilla_at(&all, &["alarm", "list"]);
    assert_eq!(listed, "memberID:0 alarm:CORRUPT\n");
    let (_, disarmed, _) = flotilla_at(&all, &["alarm", "disarm"]);
    assert!(disarmed.contains("alarm:CORRUPT"), "{disarmed}");
    assert_eq!(flotilla_at(&all, &["kv", "put", "k2", "v"]).0, 0);
}
