//! The Raft core's storage conformance suite, run against the WAL on the
//! real file system, on `MemFs`, and with segments small enough that every
//! check crosses segment rotations and compaction.

mod common;

use flotilla_raft::Storage;
use flotilla_raft::storage::conformance::{Harness, run_all};
use flotilla_wal::{GroupHandle, GroupId, MemFs, Options, Wal};

use common::TempDir;

struct OnDisk {
    dirs: Vec<TempDir>,
    options: Options,
}

impl Harness for OnDisk {
    type S = GroupHandle;
    fn fresh(&mut self) -> GroupHandle {
        let dir = TempDir::new("conformance");
        let wal = Wal::open(dir.path(), self.options.clone()).expect("open WAL");
        self.dirs.push(dir);
        wal.group(GroupId(1)).expect("group handle")
    }
    fn reopen(&mut self, s: GroupHandle) -> GroupHandle {
        let dir = s.wal().dir().to_path_buf();
        drop(s);
        let wal = Wal::open(&dir, self.options.clone()).expect("open WAL");
        wal.group(GroupId(1)).expect("group handle")
    }
}

struct InMemory {
    options: Options,
    fs: MemFs,
    seed: u64,
}

impl Harness for InMemory {
    type S = GroupHandle;
    fn fresh(&mut self) -> GroupHandle {
        self.fs = MemFs::new();
        let wal = common::open_mem(&self.fs, self.options.clone());
        wal.group(GroupId(7)).expect("group handle")
    }
    fn reopen(&mut self, mut s: GroupHandle) -> GroupHandle {
        s.sync().expect("sync");
        // Reopen from a crash image taken after the sync: nothing synced may
        // be missing, whatever else the crash loses.
        self.seed += 1;
        self.fs = self.fs.image().crash(self.seed);
        drop(s);
        let wal = common::open_mem(&self.fs, self.options.clone());
        wal.group(GroupId(7)).expect("group handle")
    }
}

#[test]
fn wal_on_disk_passes_the_conformance_suite() {
    run_all(&mut OnDisk {
        dirs: Vec::new(),
        options: Options::default(),
    });
}

#[test]
fn wal_with_tiny_segments_passes_the_conformance_suite() {
    run_all(&mut OnDisk {
        dirs: Vec::new(),
        options: common::tiny_segments(),
    });
}

#[test]
fn wal_on_memfs_after_a_crash_passes_the_conformance_suite() {
    run_all(&mut InMemory {
        options: common::tiny_segments(),
        fs: MemFs::new(),
        seed: 0,
    });
}

#[test]
fn engine_is_shareable_and_handles_are_sendable() {
    fn shareable<T: Send + Sync + Clone>() {}
    fn sendable<T: Send>() {}
    shareable::<Wal>();
    sendable::<GroupHandle>();
}
