//! Many groups on one log: each compacts on its own schedule, a removed
//! group releases its space, one sync serves every group, and each group
//! learns which of its entries are durable.

mod common;

use common::snapshot;

use std::sync::Arc;

use bytes::Bytes;
use flotilla_raft::storage::conformance::entry;
use flotilla_raft::{Entry, LogIndex, Storage, Term};
use flotilla_wal::{GroupId, MemFs, Options, Wal};

const A: GroupId = GroupId(1);
const B: GroupId = GroupId(2);

fn options() -> Options {
    Options {
        segment_bytes: 512,
        cache_bytes_per_group: 32,
        buffer_bytes_max: 1 << 20,
    }
}

fn snapshot_files(fs: &MemFs) -> usize {
    fs.file_names()
        .iter()
        .filter(|n| n.ends_with(".snap"))
        .count()
}

#[test]
fn a_segment_lives_until_every_group_has_compacted_it() {
    let fs = MemFs::new();
    let wal = common::open_mem(&fs, options());
    let (mut a, mut b) = (wal.group(A).unwrap(), wal.group(B).unwrap());
    b.append(&[entry(1, 1), entry(1, 2)]).unwrap();
    for i in 1..=200 {
        a.append(&[entry(1, i)]).unwrap();
    }
    a.save_snapshot(&snapshot(190)).unwrap();
    wal.sync().unwrap();
    // B's entries pin the first segment, so nothing can go.
    assert_eq!(wal.stats().segments_deleted, 0);
    let before = wal.stats().segments;
    assert!(before > 5, "{before} segments");
    b.save_snapshot(&snapshot(2)).unwrap();
    a.append(&[entry(1, 201)]).unwrap();
    wal.sync().unwrap();
    let after = wal.stats().segments;
    assert!(after <= 2, "{before} segments became {after}");
    assert_eq!(snapshot_files(&fs), 2);
    drop((a, b));
    let wal = common::open_mem(&fs.image().crash(1), options());
    let mut a = wal.group(A).unwrap();
    let state = a.initial_state().unwrap();
    assert_eq!(state.snapshot, Some(snapshot(190)));
    let expected: Vec<Entry> = (191..=201).map(|i| entry(1, i)).collect();
    assert_eq!(state.entries, expected);
    assert_eq!(
        wal.group(B).unwrap().initial_state().unwrap().entries,
        vec![]
    );
}

#[test]
fn a_removed_group_releases_its_segments_and_snapshots() {
    let fs = MemFs::new();
    let wal = common::open_mem(&fs, options());
    let mut a = wal.group(A).unwrap();
    for i in 1..=100 {
        a.append(&[entry(1, i)]).unwrap();
    }
    a.save_snapshot(&snapshot(50)).unwrap();
    wal.sync().unwrap();
    assert_eq!(snapshot_files(&fs), 1);
    drop(a);
    wal.remove_group(A).unwrap();
    wal.group(B).unwrap().append(&[entry(1, 1)]).unwrap();
    wal.sync().unwrap();
    assert_eq!(snapshot_files(&fs), 0);
    assert!(wal.stats().segments <= 2, "{:?}", wal.stats());
    assert_eq!(wal.groups(), vec![B]);
    let wal = common::open_mem(&fs.image().crash(2), options());
    assert_eq!(wal.groups(), vec![B]);
}

#[test]
fn durable_index_follows_syncs_and_truncations() {
    let wal = common::open_mem(&MemFs::new(), options());
    let mut a = wal.group(A).unwrap();
    let lsn = a.append(&[entry(1, 1), entry(1, 2), entry(1, 3)]).unwrap();
    assert_eq!(a.durable_index(), LogIndex(0));
    assert!(wal.durable_lsn() < lsn);
    assert!(wal.sync_to(lsn).unwrap() >= lsn);
    assert_eq!(a.durable_index(), LogIndex(3));
    // A conflicting append: entries 2..3 of the old log no longer count.
    a.append(&[entry(2, 2)]).unwrap();
    assert_eq!(a.durable_index(), LogIndex(1));
    wal.sync().unwrap();
    assert_eq!(a.durable_index(), LogIndex(2));
}

#[test]
fn old_entries_are_read_back_from_disk_past_the_cache() {
    let wal = common::open_mem(&MemFs::new(), options());
    let mut a = wal.group(A).unwrap();
    let entries: Vec<Entry> = (1..=300).map(|i| entry(1 + i / 100, i)).collect();
    for chunk in entries.chunks(7) {
        a.append(chunk).unwrap();
    }
    // Not synced yet: reading flushes what it needs first.
    let got = a.entries(LogIndex(1), LogIndex(301)).unwrap();
    assert_eq!(got, entries);
    assert_eq!(
        a.entries(LogIndex(120), LogIndex(125)).unwrap(),
        entries[119..124]
    );
    assert_eq!(a.term(LogIndex(250)), Some(Term(3)));
}

#[test]
fn threads_share_one_engine_and_its_syncs() {
    let fs = MemFs::new();
    let wal = Wal::open_with_fs("/wal", Options::default(), Arc::new(fs.clone())).unwrap();
    let writers: Vec<_> = (1..=4u64)
        .map(|g| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                let mut h = wal.group(GroupId(g)).unwrap();
                for i in 1..=50 {
                    let lsn = h.append(&[entry(g, i)]).unwrap();
                    assert!(wal.sync_to(lsn).unwrap() >= lsn);
                    assert_eq!(h.durable_index(), LogIndex(i));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(wal.stats().syncs <= 200, "{:?}", wal.stats());
    drop(wal);
    let wal = common::open_mem(&fs.image().crash(3), Options::default());
    for g in 1..=4u64 {
        let state = wal.group(GroupId(g)).unwrap().initial_state().unwrap();
        let expected: Vec<Entry> = (1..=50).map(|i| entry(g, i)).collect();
        assert_eq!(state.entries, expected, "group {g}");
    }
}

#[test]
fn large_payloads_are_written_in_place_and_read_back_on_disk() {
    let dir = common::TempDir::new("large");
    let entries: Vec<Entry> = (1..=40)
        .map(|i| Entry {
            data: Bytes::from(vec![i as u8; if i % 3 == 0 { 5000 } else { 700 }]),
            ..entry(1, i)
        })
        .collect();
    {
        let wal = Wal::open(dir.path(), options()).expect("open WAL");
        let mut a = wal.group(A).expect("group handle");
        for chunk in entries.chunks(6) {
            a.append(chunk).unwrap();
        }
        wal.sync().unwrap();
        assert_eq!(a.entries(LogIndex(1), LogIndex(41)).unwrap(), entries);
    }
    let wal = Wal::open(dir.path(), options()).expect("reopen WAL");
    let state = wal.group(A).unwrap().initial_state().unwrap();
    assert_eq!(state.entries, entries);
}
