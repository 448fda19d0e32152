//! The engine: one log shared by many groups, its group commit and its
//! compaction. See the crate docs for how a driver uses it.
//!
//! Locks: `io` (the file side: the open segment, what is flushed) is taken
//! before `state` (the memory side), never the other way, and `state` is
//! held only for memory work, so appends from one thread do not wait for
//! another thread's `fdatasync`. Only the holder of `io` writes or syncs,
//! so a caller of [`Wal::sync_to`] that finds its LSN already durable when
//! it gets `io` returns at once: that is the group commit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use flotilla_raft::Snapshot;

use crate::error::WalError;
use crate::fs::{Fs, FsFile, FsLock, LockError, StdFs};
use crate::group::GroupLog;
use crate::handle::GroupHandle;
use crate::ids::{GroupId, Lsn};
use crate::record::put_clear;
use crate::recover::{RecoveryReport, recover};
use crate::snapfile;
use crate::state::{Doom, Op, State};
use crate::stream::Stream;

/// How much of a snapshot file is written between two syncs.
const SNAPSHOT_SYNC_BYTES: usize = 4 << 20;

/// Tuning knobs; the defaults suit a server.
#[derive(Debug, Clone)]
pub struct Options {
    /// A segment is closed and a new one started once it holds this many
    /// bytes (a record is never split, so a segment may exceed it by one).
    pub segment_bytes: u64,
    /// Recent entries kept in memory per group, in payload bytes.
    pub cache_bytes_per_group: usize,
    /// Buffered record bytes beyond which a write hands them to the OS
    /// (without syncing) rather than keep growing the buffer.
    pub buffer_bytes_max: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_bytes: 64 << 20,
            cache_bytes_per_group: 4 << 20,
            buffer_bytes_max: 16 << 20,
        }
    }
}

/// Counters, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// `fdatasync` calls on segments (group commits and rotations).
    pub syncs: u64,
    /// Segment files on disk (or about to be created).
    pub segments: usize,
    /// Segment files deleted by compaction since open.
    pub segments_deleted: u64,
}

#[derive(Debug, Default)]
struct Io {
    /// The segment being appended to, and its path for error messages.
    file: Option<(PathBuf, Box<dyn FsFile>)>,
    file_dirty: bool,
    dir_dirty: bool,
    flushed: Lsn,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub fs: Arc<dyn Fs>,
    pub options: Options,
    state: Mutex<State>,
    io: Mutex<Io>,
    durable: AtomicU64,
    syncs: AtomicU64,
    deleted: AtomicU64,
    /// The first write or sync failure; set once, read without locking.
    poisoned: OnceLock<String>,
    report: RecoveryReport,
    _lock: Box<dyn FsLock>,
}

/// The write-ahead log engine. Cheap to clone: clones share one engine, so
/// hand one to each thread (see the crate docs).
#[derive(Debug, Clone)]
pub struct Wal {
    pub(crate) shared: Arc<Shared>,
}

/// The name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

fn lock_guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere leaves the data as consistent as the panicking
    // code left it; poisoning of the engine itself is tracked in `Io`.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Wal {
    /// Opens (recovering) the log in `dir`, which must exist.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Wal, WalError> {
        Wal::open_with_fs(dir, options, Arc::new(StdFs))
    }

    /// [`Wal::open`] on another file system (tests use [`crate::MemFs`]).
    pub fn open_with_fs(
        dir: impl AsRef<Path>,
        options: Options,
        fs: Arc<dyn Fs>,
    ) -> Result<Wal, WalError> {
        let dir = dir.as_ref().to_path_buf();
        match fs.check_dir(&dir) {
            Ok(true) => {}
            Ok(false) => return Err(WalError::NotADirectory { path: dir }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WalError::DirMissing { path: dir });
            }
            Err(e) => return Err(WalError::io("stat", dir, e)),
        }
        let lock_path = dir.join(LOCK_FILE);
        let lock = match fs.lock(&lock_path, &format!("pid {}", std::process::id())) {
            Ok(lock) => lock,
            Err(LockError::Held(who)) => {
                let who = who.trim();
                let holder = if who.is_empty() {
                    String::new()
                } else {
                    format!(" ({who})")
                };
                return Err(WalError::Locked {
                    path: lock_path,
                    holder,
                });
            }
            Err(LockError::Io(e)) => return Err(WalError::io("lock", lock_path, e)),
        };
        let r = recover(fs.as_ref(), &dir, &options)?;
        let state = State {
            groups: r.groups,
            handles: Default::default(),
            segments: r.segments,
            active_open: false,
            next_seq: r.next_seq,
            next_lsn: r.end,
            ops: Vec::new(),
            buf: Default::default(),
            spare: Default::default(),
            last_snap_file: newest_snap_file(&r.snap_files),
            snap_files: r.snap_files,
            dooms: Vec::new(),
            segment_bytes: options.segment_bytes,
            prepared: Default::default(),
        };
        let io = Io {
            flushed: r.end,
            ..Io::default()
        };
        let shared = Shared {
            dir,
            fs,
            options,
            state: Mutex::new(state),
            io: Mutex::new(io),
            durable: AtomicU64::new(r.end.0),
            syncs: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            poisoned: OnceLock::new(),
            report: r.report,
            _lock: lock,
        };
        Ok(Wal {
            shared: Arc::new(shared),
        })
    }

    /// The handle through which `group` is written and read: it implements
    /// [`flotilla_raft::Storage`]. One handle per group at a time.
    pub fn group(&self, group: GroupId) -> Result<GroupHandle, WalError> {
        let mut st = self.shared.state();
        if !st.handles.insert(group) {
            return Err(WalError::GroupInUse(group));
        }
        Ok(GroupHandle::new(self.shared.clone(), group))
    }

    /// The groups that have state in the log.
    pub fn groups(&self) -> Vec<GroupId> {
        let st = self.shared.state();
        st.groups
            .iter()
            .filter(|(_, g)| !g.is_blank())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Removes a group (its shard moved away): its log, hard state and
    /// snapshots are dropped once this write is durable. It must have no
    /// open handle.
    pub fn remove_group(&self, group: GroupId) -> Result<Lsn, WalError> {
        self.shared.check_poisoned()?;
        let mut st = self.shared.state();
        if st.handles.contains(&group) {
            return Err(WalError::GroupInUse(group));
        }
        let (start, end) = st.write(|b| put_clear(b, group));
        st.groups.remove(&group);
        st.dooms.push(Doom {
            after: end,
            group,
            below: start,
        });
        Ok(end)
    }

    /// Writes `snapshot`'s file for `group` and syncs it, on the calling
    /// thread and outside the group commit: a later
    /// [`GroupHandle::save_snapshot`] of the same snapshot then writes only
    /// the record that names the file, so no sync waits for a large file.
    /// It blocks on the disk: call it from a blocking thread. A failure
    /// leaves the engine usable (`save_snapshot` then writes the file in
    /// line, as without this call). A prepared file that is never saved is
    /// deleted by a later snapshot of the group, or at the next open.
    pub fn prepare_snapshot(&self, group: GroupId, snapshot: &Snapshot) -> Result<(), WalError> {
        self.shared.check_poisoned()?;
        let file = self.shared.state().new_snap_file();
        self.shared.write_snapshot_file(group, file, snapshot)?;
        let mut st = self.shared.state();
        let prepared = crate::state::Prepared {
            file,
            meta: snapshot.meta.clone(),
        };
        if let Some(old) = st.prepared.insert(group, prepared) {
            st.snap_files.entry(group).or_default().insert(old.file);
        }
        Ok(())
    }

    /// Makes every write made so far durable; returns the durable LSN.
    pub fn sync(&self) -> Result<Lsn, WalError> {
        self.sync_to(self.written_lsn())
    }

    /// Returns once everything up to `lsn` is durable, syncing if no other
    /// thread's sync already covered it. One `fdatasync` covers every
    /// group's records written before it started.
    pub fn sync_to(&self, lsn: Lsn) -> Result<Lsn, WalError> {
        self.shared.sync_to(lsn)
    }

    /// Hands buffered records to the OS without waiting for the disk.
    pub fn flush(&self) -> Result<Lsn, WalError> {
        let mut io = self.shared.io();
        self.shared.flush(&mut io)?;
        Ok(io.flushed)
    }

    /// The LSN after the last write.
    pub fn written_lsn(&self) -> Lsn {
        self.shared.state().next_lsn
    }

    /// The LSN up to which every write is on disk.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable()
    }

    /// What recovery found when the log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.shared.report
    }

    /// Counters since open.
    pub fn stats(&self) -> Stats {
        Stats {
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            segments: self.shared.state().segments.len(),
            segments_deleted: self.shared.deleted.load(Ordering::Relaxed),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

/// The highest snapshot file id on disk, so new ids start above it.
fn newest_snap_file(
    files: &std::collections::BTreeMap<GroupId, std::collections::BTreeSet<Lsn>>,
) -> Lsn {
    let newest = files.values().filter_map(|f| f.last().copied()).max();
    newest.unwrap_or_default()
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock_guard(&self.state)
    }

    fn io(&self) -> MutexGuard<'_, Io> {
        lock_guard(&self.io)
    }

    pub fn durable(&self) -> Lsn {
        Lsn(self.durable.load(Ordering::Acquire))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn new_group_log(&self) -> GroupLog {
        GroupLog::new(self.options.cache_bytes_per_group)
    }

    pub fn check_poisoned(&self) -> Result<(), WalError> {
        match self.poisoned.get() {
            Some(cause) => Err(WalError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records a write-side failure: nothing written after it can be
    /// trusted to reach the disk, so the engine stops taking writes.
    fn poison(&self, e: WalError) -> WalError {
        let _ = self.poisoned.set(e.to_string());
        e
    }

    /// Flushes if the buffer outgrew its limit.
    pub fn flush_if_big(&self, pending: usize) -> Result<(), WalError> {
        if pending > self.options.buffer_bytes_max {
            let mut io = self.io();
            self.flush(&mut io)?;
        }
        Ok(())
    }

    /// Makes sure everything up to `lsn` has been handed to the OS (so it
    /// can be read back from the files).
    pub fn flush_to(&self, lsn: Lsn) -> Result<(), WalError> {
        let mut io = self.io();
        if io.flushed < lsn {
            self.flush(&mut io)?;
        }
        Ok(())
    }

    fn flush(&self, io: &mut Io) -> Result<(), WalError> {
        self.check_poisoned()?;
        let (ops, upto) = {
            let mut st = self.state();
            st.seal();
            (std::mem::take(&mut st.ops), st.next_lsn)
        };
        let mut written = Stream::default();
        for op in ops {
            if let Some(bytes) = self.apply_op(io, op).map_err(|e| self.poison(e))? {
                written = bytes;
            }
        }
        io.flushed = upto;
        self.state().recycle(written);
        Ok(())
    }

    /// Carries out one operation; returns a written buffer for reuse.
    fn apply_op(&self, io: &mut Io, op: Op) -> Result<Option<Stream>, WalError> {
        match op {
            Op::Create { seq } => {
                // The previous segment is complete and durable, and its name
                // too, before a later one exists: only the last segment can
                // ever have a torn tail.
                self.sync_file(io)?;
                self.sync_dir(io)?;
                let path = self.path(&segment_name(seq));
                let file = self
                    .fs
                    .create(&path)
                    .map_err(|e| WalError::io("create", &path, e))?;
                io.file = Some((path, file));
                io.dir_dirty = true;
            }
            Op::Write { bytes } => {
                let (path, file) = io
                    .file
                    .as_mut()
                    .expect("a Create op precedes every Write op");
                file.write_all_vectored(&mut bytes.slices())
                    .map_err(|e| WalError::io("write", path.as_path(), e))?;
                io.file_dirty = true;
                return Ok(Some(bytes));
            }
            Op::SnapFile {
                group,
                file,
                snapshot,
            } => self.write_snapshot_file(group, file, &snapshot)?,
        }
        Ok(None)
    }

    fn sync_file(&self, io: &mut Io) -> Result<(), WalError> {
        if io.file_dirty {
            if let Some((path, file)) = io.file.as_mut() {
                file.sync_data()
                    .map_err(|e| WalError::io("fdatasync", path.as_path(), e))?;
                self.syncs.fetch_add(1, Ordering::Relaxed);
            }
            io.file_dirty = false;
        }
        Ok(())
    }

    fn sync_dir(&self, io: &mut Io) -> Result<(), WalError> {
        if io.dir_dirty {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
            io.dir_dirty = false;
        }
        Ok(())
    }

    /// Temporary file, fsync, rename, fsync the directory: the file is
    /// whole and durable before the record naming it is written.
    pub(crate) fn write_snapshot_file(
        &self,
        group: GroupId,
        file: Lsn,
        snap: &Snapshot,
    ) -> Result<(), WalError> {
        let name = snapfile::file_name(group, file);
        let (path, tmp) = (self.path(&name), self.path(&format!("{name}.tmp")));
        let (head, crc) = snapfile::encode(group, file, snap);
        let write = || -> std::io::Result<()> {
            let mut f = self.fs.create(&tmp)?;
            f.write_all(&head)?;
            // Synced piece by piece: a large amount of dirty data would make
            // the file system's next journal commit, and so the log's own
            // fdatasync, wait for all of it.
            for piece in snap.data.chunks(SNAPSHOT_SYNC_BYTES) {
                f.write_all(piece)?;
                f.sync_data()?;
            }
            f.write_all(&crc)?;
            f.sync_data()
        };
        write().map_err(|e| WalError::io("write snapshot", &tmp, e))?;
        self.fs
            .rename(&tmp, &path)
            .map_err(|e| WalError::io("rename", &tmp, e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| WalError::io("fsync directory", &self.dir, e))
    }

    pub fn sync_to(&self, lsn: Lsn) -> Result<Lsn, WalError> {
        if self.durable() >= lsn {
            return Ok(self.durable());
        }
        let mut io = self.io();
        if self.durable() >= lsn {
            return Ok(self.durable());
        }
        self.flush(&mut io)?;
        self.sync_file(&mut io)
            .and_then(|()| self.sync_dir(&mut io))
            .map_err(|e| self.poison(e))?;
        self.durable.store(io.flushed.0, Ordering::Release);
        self.purge(io.flushed).map_err(|e| self.poison(e))?;
        Ok(io.flushed)
    }

    /// Deletes what compaction allows, oldest segment first with a
    /// directory sync after each, so a crash leaves a suffix of segments.
    fn purge(&self, durable: Lsn) -> Result<(), WalError> {
        let plan = self.state().plan_purge(durable);
        for seq in plan.segments {
            let path = self.path(&segment_name(seq));
            self.fs
                .remove(&path)
                .map_err(|e| WalError::io("delete", &path, e))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
            self.deleted.fetch_add(1, Ordering::Relaxed);
        }
        for (group, file) in &plan.snapshots {
            let path = self.path(&snapfile::file_name(*group, *file));
            self.fs
                .remove(&path)
                .map_err(|e| WalError::io("delete", &path, e))?;
        }
        if !plan.snapshots.is_empty() {
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| WalError::io("fsync directory", &self.dir, e))?;
        }
        Ok(())
    }
}
