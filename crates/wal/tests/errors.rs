//! Clear errors for a directory the WAL cannot use, and for a disk that
//! fails under it.

mod common;

use std::sync::Arc;

use flotilla_raft::Storage;
use flotilla_raft::storage::conformance::entry;
use flotilla_wal::format::{FORMAT_VERSION, SegmentHeader};
use flotilla_wal::{GroupId, Lsn, MemFs, Options, Wal, WalError, segment_name};

use common::TempDir;

#[test]
fn a_missing_directory_is_named() {
    let dir = TempDir::new("missing");
    let path = dir.path().join("nope");
    let err = Wal::open(&path, Options::default()).unwrap_err();
    assert!(matches!(err, WalError::DirMissing { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn a_file_in_place_of_the_directory_is_named() {
    let dir = TempDir::new("notdir");
    let path = dir.path().join("file");
    std::fs::write(&path, b"x").unwrap();
    let err = Wal::open(&path, Options::default()).unwrap_err();
    assert!(matches!(err, WalError::NotADirectory { .. }), "{err}");
}

#[test]
fn a_second_open_of_a_locked_directory_is_refused() {
    let dir = TempDir::new("locked");
    let wal = Wal::open(dir.path(), Options::default()).unwrap();
    let err = Wal::open(dir.path(), Options::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WalError::Locked { .. }), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    drop(wal);
    Wal::open(dir.path(), Options::default()).expect("open after the holder closed");
}

#[test]
fn a_segment_of_another_format_version_is_named() {
    let dir = TempDir::new("version");
    {
        let wal = Wal::open(dir.path(), Options::default()).unwrap();
        let mut g = wal.group(GroupId(1)).unwrap();
        Storage::append(&mut g, &[entry(1, 1)]).unwrap();
        Storage::sync(&mut g).unwrap();
    }
    let path = dir.path().join(segment_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let header = SegmentHeader {
        seq: 1,
        base: Lsn(0),
    };
    assert_eq!(bytes[..32], header.encode());
    bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let err = Wal::open(dir.path(), Options::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            WalError::Version {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains(&segment_name(1)), "{msg}");
}

#[test]
fn a_foreign_file_with_a_segment_name_is_refused() {
    let dir = TempDir::new("foreign");
    std::fs::write(
        dir.path().join(segment_name(1)),
        b"not a WAL segment at all, really",
    )
    .unwrap();
    let err = Wal::open(dir.path(), Options::default()).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
}

#[test]
fn a_failing_disk_poisons_the_engine() {
    let fs = MemFs::new();
    let wal = Wal::open_with_fs("/wal", Options::default(), Arc::new(fs.clone())).unwrap();
    let mut g = wal.group(GroupId(1)).unwrap();
    g.append(&[entry(1, 1)]).unwrap();
    wal.sync().unwrap();
    g.append(&[entry(1, 2)]).unwrap();
    fs.fail_after(0);
    let err = wal.sync().unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    let again = g.append(&[entry(1, 3)]).unwrap_err();
    assert!(matches!(again, WalError::Poisoned { .. }), "{again}");
    assert!(matches!(wal.sync(), Err(WalError::Poisoned { .. })));
}

#[test]
fn bad_appends_are_refused_and_change_nothing() {
    let wal = common::open_mem(&MemFs::new(), Options::default());
    let mut g = wal.group(GroupId(1)).unwrap();
    g.append(&[entry(1, 1), entry(1, 2)]).unwrap();
    let gap = g.append(&[entry(1, 4)]).unwrap_err();
    assert!(matches!(gap, WalError::Gap { .. }), "{gap}");
    let jumbled = g.append(&[entry(1, 3), entry(1, 5)]).unwrap_err();
    assert!(
        matches!(jumbled, WalError::NotConsecutive { .. }),
        "{jumbled}"
    );
    assert_eq!(g.last_index().0, 2);
    let out = g.entries(flotilla_raft::LogIndex(2), flotilla_raft::LogIndex(9));
    assert!(matches!(out, Err(WalError::OutOfRange { .. })));
    assert!(matches!(
        wal.group(GroupId(1)),
        Err(WalError::GroupInUse(_))
    ));
}
