//! Helpers shared by the integration tests: temporary directories, and a
//! model of several groups (MemStorage per group) to compare recovery with.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_raft::storage::InitialState;
use flotilla_raft::{MemStorage, Storage};
use flotilla_wal::{GroupId, MemFs, Options, Wal};

/// A directory under the system temp dir, deleted on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("flotilla-wal-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Options that make segments rotate every few records.
pub fn tiny_segments() -> Options {
    Options {
        segment_bytes: 256,
        cache_bytes_per_group: 24,
        buffer_bytes_max: 1 << 20,
    }
}

pub fn open_mem(fs: &MemFs, options: Options) -> Wal {
    Wal::open_with_fs("/wal", options, Arc::new(fs.clone())).expect("open WAL on MemFs")
}

/// The model: what each group's state should be.
pub type Model = BTreeMap<GroupId, MemStorage>;

/// Every group's state as recovered by `wal`, for the groups in `groups`.
pub fn recovered_states(wal: &Wal, groups: &[GroupId]) -> BTreeMap<GroupId, InitialState> {
    let mut out = BTreeMap::new();
    for &g in groups {
        let mut h = wal.group(g).expect("group handle");
        out.insert(g, h.initial_state().expect("initial state"));
    }
    out
}

/// The model's states, for the same groups (absent ones are empty).
pub fn model_states(model: &Model, groups: &[GroupId]) -> BTreeMap<GroupId, InitialState> {
    groups
        .iter()
        .map(|g| {
            let state = model.get(g).map(|m| m.state().clone()).unwrap_or_default();
            (*g, state)
        })
        .collect()
}

/// splitmix64, for seeded workloads.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// Random bytes, never all zero.
    pub fn bytes(&mut self, len: usize) -> bytes::Bytes {
        let mut v: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        if let Some(b) = v.first_mut() {
            *b |= 1;
        }
        bytes::Bytes::from(v)
    }
}

pub mod workload;

/// A snapshot at `index` (term 1) whose data names the index.
pub fn snapshot(index: u64) -> flotilla_raft::Snapshot {
    flotilla_raft::Snapshot {
        meta: flotilla_raft::SnapshotMeta {
            index: flotilla_raft::LogIndex(index),
            term: flotilla_raft::Term(1),
            conf_state: flotilla_raft::ConfState::default(),
        },
        data: bytes::Bytes::from(format!("state at {index}")),
    }
}
