//! Unit tests of the snapshot schedule.

use super::*;

/// The indexes at which member `id` would snapshot, applying one entry
/// at a time up to `until`.
fn snapshot_points(id: u64, every: u64, until: u64) -> Vec<u64> {
    let mut last = LogIndex(0);
    let mut points = Vec::new();
    for applied in 1..=until {
        if snapshot_due(NodeId(id), LogIndex(applied), last, every) {
            points.push(applied);
            last = LogIndex(applied);
        }
    }
    points
}

#[test]
fn members_snapshot_every_interval_at_indexes_of_their_own() {
    let every = 1000;
    let all: Vec<Vec<u64>> = (1..=5)
        .map(|id| snapshot_points(id, every, 20_000))
        .collect();
    for (i, points) in all.iter().enumerate() {
        let mut prev = 0;
        for &p in points {
            assert!(p - prev <= every, "member {}: gap {prev}..{p}", i + 1);
            assert!(
                prev == 0 || p - prev == every,
                "member {}: gap {prev}..{p}",
                i + 1
            );
            prev = p;
        }
        assert!(20_000 - prev < every, "member {}: none after {prev}", i + 1);
    }
    // No two of the first three members (a usual group) snapshot within
    // a tenth of the interval of each other.
    for a in 0..3 {
        for b in a + 1..3 {
            for &p in &all[a] {
                for &q in &all[b] {
                    assert!(
                        p.abs_diff(q) >= every / 10,
                        "members {} and {}: {p} and {q}",
                        a + 1,
                        b + 1
                    );
                }
            }
        }
    }
}

#[test]
fn a_tiny_interval_still_snapshots() {
    assert!(snapshot_due(NodeId(7), LogIndex(1), LogIndex(0), 1));
    assert!(snapshot_due(NodeId(7), LogIndex(5), LogIndex(0), 0));
    assert!(!snapshot_due(NodeId(7), LogIndex(5), LogIndex(5), 3));
}

#[test]
fn a_task_names_its_index_and_group_in_logs() {
    let task = SnapshotTask::new(LogIndex(42), Box::new(Bytes::new), None, GroupId(7));
    let shown = format!("{task:?}");
    assert!(
        shown.contains("index: 42") && shown.contains("group: "),
        "{shown}"
    );
}
