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

mod fill {
    use std::sync::Arc;

    use flotilla_raft::{ConfState, SnapshotChunk, Term};
    use flotilla_wal::{MemFs, Options};

    use super::*;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(index),
            term: Term(1),
            conf_state: ConfState::with_voters([NodeId(1), NodeId(2)]),
        }
    }

    /// A chunk of the snapshot at `index`, bytes `offset..` of `total`.
    fn chunk(to: u64, index: u64, offset: u64, total: u64, data: &'static [u8]) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(to),
            term: Term(1),
            body: MessageBody::Snapshot(SnapshotChunk {
                meta: meta(index),
                offset,
                total_len: total,
                data: Bytes::from_static(data),
            }),
        }
    }

    fn data(m: &Message) -> Option<&[u8]> {
        match &m.body {
            MessageBody::Snapshot(c) => Some(&c.data[..]),
            _ => None,
        }
    }

    #[test]
    fn released_chunks_are_read_back_and_others_left_alone() {
        let fs = MemFs::new();
        let wal = Wal::open_with_fs("/wal", Options::default(), Arc::new(fs)).expect("open");
        let mut group = wal.group(GroupId(1)).expect("group");
        let state = b"0123456789";
        let snap = Snapshot {
            meta: meta(5),
            data: Bytes::from_static(state),
        };
        group.save_snapshot(&snap).expect("save");
        let heartbeat = Message {
            from: NodeId(1),
            to: NodeId(4),
            term: Term(1),
            body: MessageBody::Heartbeat {
                commit: LogIndex(5),
                read_seq: 0,
            },
        };
        let mut sent = vec![
            chunk(2, 5, 3, 10, b""),
            // Still held in memory (a snapshot not durable yet): as it is.
            chunk(3, 7, 0, 4, b"abcd"),
            // Another snapshot than the WAL's: not sent.
            chunk(4, 6, 0, 10, b""),
            heartbeat.clone(),
            chunk(5, 5, 8, 10, b""),
            // At the end: nothing to read.
            chunk(6, 5, 10, 10, b""),
        ];
        fill_chunks(&group, 4, &mut sent);
        let to: Vec<u64> = sent.iter().map(|m| m.to.get()).collect();
        // The chunk to 4 is gone; the heartbeat to 4 stays.
        assert_eq!(to, [2, 3, 4, 5, 6]);
        assert_eq!(data(&sent[0]), Some(&b"3456"[..]), "at most 4 bytes from 3");
        assert_eq!(data(&sent[1]), Some(&b"abcd"[..]));
        assert_eq!(sent[2], heartbeat);
        assert_eq!(data(&sent[3]), Some(&b"89"[..]), "up to the end");
        assert_eq!(data(&sent[4]), Some(&b""[..]));
    }
}
