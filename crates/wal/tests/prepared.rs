//! Snapshot files written ahead of their record (`Wal::prepare_snapshot`):
//! the record then names the prepared file, a crash at any point recovers
//! either the old state or the new snapshot, and a prepared file no record
//! names is deleted.

mod common;

use common::snapshot;

use flotilla_raft::storage::conformance::entry;
use flotilla_raft::{LogIndex, Storage};
use flotilla_wal::{GroupId, MemFs, Options, Wal};

const A: GroupId = GroupId(1);

fn snapshot_files(fs: &MemFs) -> Vec<String> {
    let mut names = fs.file_names();
    names.retain(|n| n.ends_with(".snap"));
    names
}

/// A group with entries 1..=20 synced.
fn twenty_entries(fs: &MemFs) -> (Wal, flotilla_wal::GroupHandle) {
    let wal = common::open_mem(fs, Options::default());
    let mut a = wal.group(A).expect("group");
    let entries: Vec<_> = (1..=20).map(|i| entry(1, i)).collect();
    a.append(&entries).expect("append");
    wal.sync().expect("sync");
    (wal, a)
}

#[test]
fn the_record_names_the_prepared_file_and_every_crash_recovers() {
    let fs = MemFs::new();
    let (wal, mut a) = twenty_entries(&fs);
    fs.record(true);
    wal.prepare_snapshot(A, &snapshot(10)).expect("prepare");
    let prepared = snapshot_files(&fs);
    assert_eq!(prepared.len(), 1, "{prepared:?}");
    a.save_snapshot(&snapshot(10)).expect("save");
    wal.sync().expect("sync");
    assert_eq!(snapshot_files(&fs), prepared, "no second file was written");
    let images = fs.take_images();
    assert!(images.len() > 4, "{} images", images.len());
    for (k, image) in images.iter().enumerate() {
        for seed in 0..4 {
            let wal = common::open_mem(&image.crash(seed), Options::default());
            let state = wal
                .group(A)
                .expect("group")
                .initial_state()
                .expect("recover");
            match state.snapshot {
                Some(s) => {
                    assert_eq!(s, snapshot(10), "image {k} seed {seed}");
                    assert_eq!(state.entries.first().map(|e| e.index), Some(LogIndex(11)));
                }
                None => assert_eq!(state.entries.len(), 20, "image {k} seed {seed}"),
            }
        }
    }
    drop(a);
    let wal = common::open_mem(&fs.image().crash(9), Options::default());
    let state = wal
        .group(A)
        .expect("group")
        .initial_state()
        .expect("recover");
    assert_eq!(state.snapshot, Some(snapshot(10)), "synced, so it survives");
}

#[test]
fn a_prepared_file_no_record_names_is_deleted() {
    let fs = MemFs::new();
    let (wal, a) = twenty_entries(&fs);
    wal.prepare_snapshot(A, &snapshot(10)).expect("prepare");
    assert_eq!(snapshot_files(&fs).len(), 1);
    drop((a, wal));
    let wal = common::open_mem(&fs, Options::default());
    assert_eq!(snapshot_files(&fs), Vec::<String>::new());
    assert_eq!(wal.recovery_report().removed.len(), 1);
    let state = wal
        .group(A)
        .expect("group")
        .initial_state()
        .expect("recover");
    assert_eq!((state.snapshot, state.entries.len()), (None, 20));
}

#[test]
fn a_stale_prepared_file_is_replaced_and_then_deleted() {
    let fs = MemFs::new();
    let (wal, mut a) = twenty_entries(&fs);
    // Two prepares with no write between still get distinct files.
    wal.prepare_snapshot(A, &snapshot(5)).expect("prepare 5");
    wal.prepare_snapshot(A, &snapshot(8)).expect("prepare 8");
    assert_eq!(snapshot_files(&fs).len(), 2);
    // A save of another snapshot writes its own file; the prepared one,
    // which it does not match, goes once the save is durable.
    a.save_snapshot(&snapshot(12)).expect("save");
    wal.sync().expect("sync");
    a.append(&[entry(1, 21)]).expect("append");
    wal.sync().expect("sync");
    assert_eq!(snapshot_files(&fs).len(), 1, "{:?}", snapshot_files(&fs));
    drop(a);
    let wal = common::open_mem(&fs.image().crash(3), Options::default());
    let state = wal
        .group(A)
        .expect("group")
        .initial_state()
        .expect("recover");
    assert_eq!(state.snapshot, Some(snapshot(12)));
    assert_eq!(state.entries.len(), 9, "entries 13..=21");
}

#[test]
fn ranges_of_the_current_snapshot_s_data_read_back_from_its_file() {
    for prepare in [false, true] {
        let fs = MemFs::new();
        let (wal, mut a) = twenty_entries(&fs);
        let snap = snapshot(10);
        if prepare {
            wal.prepare_snapshot(A, &snap).expect("prepare");
        }
        a.save_snapshot(&snap).expect("save");
        // Not synced yet: the read flushes the file first.
        let len = snap.data.len() as u64;
        let whole = a.read_snapshot_data(&snap.meta, 0, len).expect("read");
        assert_eq!(whole, Some(snap.data.clone()), "prepared {prepare}");
        let tail = a.read_snapshot_data(&snap.meta, 3, len - 3).expect("read");
        assert_eq!(tail, Some(snap.data.slice(3..)));
        let empty = a.read_snapshot_data(&snap.meta, len, 0).expect("read");
        assert_eq!(empty, Some(bytes::Bytes::new()));
        let past = a.read_snapshot_data(&snap.meta, 1, len);
        let err = past.expect_err("a range past the data's end").to_string();
        assert!(err.contains(".snap"), "names the file: {err}");
        let other = snapshot(12).meta;
        assert_eq!(a.read_snapshot_data(&other, 0, 1).expect("read"), None);
    }
}
