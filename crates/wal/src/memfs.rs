//! An in-memory file system that simulates power loss, for crash tests (and
//! for the deterministic simulator's disks).
//!
//! Model: every file keeps its current bytes and the bytes it had at its
//! last `sync_data`; the directory keeps its current entries, the entries
//! at its last `sync_dir`, and the log of changes since. A crash
//! ([`Image::crash`]) keeps the synced state plus, chosen by a seed, some
//! of what was not synced:
//! - directory changes: a prefix of the unsynced log (journaling file
//!   systems apply metadata changes in order);
//! - data appended since the last sync: none, all, a byte prefix (a torn
//!   write), or a prefix of some length in which each 512-byte sector was
//!   either written or reads as zeros (blocks allocated whose data never
//!   reached the disk, including later sectors landing before earlier ones);
//! - a file changed other than by appending: the old or the new bytes.
//!
//! With recording on, an [`Image`] of the whole state is kept after every
//! write, sync, create, rename, remove and truncate, so a test can crash
//! the WAL at each of those points. Paths are reduced to their file names:
//! a `MemFs` is one directory.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::format::SECTOR_BYTES;
use crate::fs::{Fs, FsFile, FsLock, LockError};

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Clone, Debug)]
enum DirOp {
    Link(String, u64),
    Unlink(String),
    Rename(String, String),
}

/// The disk: what a crash acts on.
#[derive(Clone, Debug, Default)]
struct Disk {
    inodes: BTreeMap<u64, Inode>,
    names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    dir_log: Vec<DirOp>,
    next_inode: u64,
}

#[derive(Debug, Default)]
struct Shared {
    disk: Disk,
    locks: BTreeMap<String, String>,
    recording: Option<Vec<Image>>,
    label: u64,
    ops: u64,
    fail_at_op: Option<u64>,
}

/// A moment of a [`MemFs`]'s disk, tagged with the label set at the time.
#[derive(Clone, Debug)]
pub struct Image {
    /// The label given by [`MemFs::set_label`] when the image was taken.
    pub label: u64,
    /// How many mutating operations had run.
    pub op: u64,
    disk: Disk,
}

/// An in-memory, crash-simulating [`Fs`]. Clones share the same disk.
#[derive(Clone, Debug, Default)]
pub struct MemFs {
    shared: Arc<Mutex<Shared>>,
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

/// The crash's choices: a seeded PRNG, so one seed gives one crash.
type Rng = flotilla_raft::rng::SplitMix64;

/// A number in `0..=max`.
fn upto(rng: &mut Rng, max: u64) -> u64 {
    rng.range(0, max.saturating_add(1))
}

impl MemFs {
    /// An empty disk.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic in another test thread must not hide this one's result.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts or stops keeping an [`Image`] after every mutating operation.
    pub fn record(&self, on: bool) {
        self.lock().recording = on.then(Vec::new);
    }

    /// Tags the images taken from now on.
    pub fn set_label(&self, label: u64) {
        self.lock().label = label;
    }

    /// The images recorded so far (recording goes on).
    pub fn take_images(&self) -> Vec<Image> {
        self.lock()
            .recording
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The disk as it is now.
    pub fn image(&self) -> Image {
        let s = self.lock();
        Image {
            label: s.label,
            op: s.ops,
            disk: s.disk.clone(),
        }
    }

    /// Makes the `n`th mutating operation from now (0 = the next) and every
    /// one after it fail with an I/O error, as a dying disk would.
    pub fn fail_after(&self, n: u64) {
        let mut s = self.lock();
        s.fail_at_op = Some(s.ops + n);
    }

    /// The names of the files, sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.lock().disk.names.keys().cloned().collect()
    }

    /// A file's current bytes.
    pub fn file(&self, name: &str) -> Option<Vec<u8>> {
        let s = self.lock();
        let id = s.disk.names.get(name)?;
        s.disk.inodes.get(id).map(|i| i.data.clone())
    }

    /// Replaces a file's bytes, durably (to damage a closed WAL in tests).
    pub fn set_file(&self, name: &str, bytes: Vec<u8>) {
        let mut s = self.lock();
        if let Some(id) = s.disk.names.get(name).copied() {
            s.disk.inodes.insert(
                id,
                Inode {
                    data: bytes.clone(),
                    durable: bytes,
                },
            );
        }
    }

    /// Runs a mutating operation: counts it, fails it if told to, records
    /// an image after it.
    fn mutate<T>(&self, f: impl FnOnce(&mut Disk) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.lock();
        if s.fail_at_op.is_some_and(|at| s.ops >= at) {
            return Err(io::Error::other("injected I/O error"));
        }
        let out = f(&mut s.disk)?;
        s.ops += 1;
        // A copy of the whole disk: only when asked for (it made every
        // write cost the disk's size).
        if s.recording.is_some() {
            let image = Image {
                label: s.label,
                op: s.ops,
                disk: s.disk.clone(),
            };
            if let Some(images) = s.recording.as_mut() {
                images.push(image);
            }
        }
        Ok(out)
    }
}

impl Image {
    /// The disk after a power loss at this moment; `seed` picks what of the
    /// unsynced state survives (see the module docs).
    pub fn crash(&self, seed: u64) -> MemFs {
        let mut rng = Rng::new(seed);
        let d = &self.disk;
        let mut names = d.durable_names.clone();
        let kept = upto(&mut rng, d.dir_log.len() as u64) as usize;
        for op in &d.dir_log[..kept] {
            apply_dir_op(&mut names, op);
        }
        let mut inodes = BTreeMap::new();
        for id in names.values() {
            if let Some(inode) = d.inodes.get(id) {
                let data = surviving_bytes(inode, &mut rng);
                inodes.insert(
                    *id,
                    Inode {
                        data: data.clone(),
                        durable: data,
                    },
                );
            }
        }
        self.rebuilt(inodes, names)
    }

    /// The disk at this moment with nothing lost (a clean stop).
    pub fn intact(&self) -> MemFs {
        let d = &self.disk;
        let inodes = d
            .inodes
            .iter()
            .map(|(id, i)| {
                let data = i.data.clone();
                (
                    *id,
                    Inode {
                        data: data.clone(),
                        durable: data,
                    },
                )
            })
            .collect();
        self.rebuilt(inodes, d.names.clone())
    }

    fn rebuilt(&self, inodes: BTreeMap<u64, Inode>, names: BTreeMap<String, u64>) -> MemFs {
        let disk = Disk {
            inodes,
            durable_names: names.clone(),
            names,
            dir_log: Vec::new(),
            next_inode: self.disk.next_inode,
        };
        MemFs {
            shared: Arc::new(Mutex::new(Shared {
                disk,
                ..Shared::default()
            })),
        }
    }
}

fn apply_dir_op(names: &mut BTreeMap<String, u64>, op: &DirOp) {
    match op {
        DirOp::Link(name, id) => {
            names.insert(name.clone(), *id);
        }
        DirOp::Unlink(name) => {
            names.remove(name);
        }
        DirOp::Rename(from, to) => {
            if let Some(id) = names.remove(from) {
                names.insert(to.clone(), id);
            }
        }
    }
}

fn surviving_bytes(inode: &Inode, rng: &mut Rng) -> Vec<u8> {
    let (data, durable) = (&inode.data, &inode.durable);
    if data == durable {
        return data.clone();
    }
    if !data.starts_with(durable) {
        let pick = if upto(rng, 1) == 0 { durable } else { data };
        return pick.clone();
    }
    let (start, end) = (durable.len(), data.len());
    let cut = start + upto(rng, (end - start) as u64) as usize;
    match upto(rng, 3) {
        0 => durable.clone(),
        1 => data.clone(),
        2 => data[..cut].to_vec(),
        _ => {
            let mut out = data[..cut].to_vec();
            let mut at = start;
            while at < cut {
                let next = ((at / SECTOR_BYTES + 1) * SECTOR_BYTES).min(cut);
                if upto(rng, 1) == 0 {
                    out[at..next].fill(0);
                }
                at = next;
            }
            out
        }
    }
}

#[derive(Debug)]
struct MemFile {
    fs: MemFs,
    inode: u64,
}

impl FsFile for MemFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let id = self.inode;
        self.fs.mutate(|d| {
            let inode = d.inodes.get_mut(&id).ok_or_else(|| not_found("(open)"))?;
            inode.data.extend_from_slice(buf);
            Ok(())
        })
    }

    fn write_all_vectored(&mut self, bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
        // One write: a crash may tear it anywhere, as it may a writev.
        let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.write_all(&joined)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let id = self.inode;
        self.fs.mutate(|d| {
            let inode = d.inodes.get_mut(&id).ok_or_else(|| not_found("(open)"))?;
            inode.durable = inode.data.clone();
            Ok(())
        })
    }
}

#[derive(Debug)]
struct MemLock {
    fs: MemFs,
    name: String,
}

impl FsLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.name);
    }
}

impl Fs for MemFs {
    fn check_dir(&self, _dir: &Path) -> io::Result<bool> {
        Ok(true)
    }

    fn list(&self, _dir: &Path) -> io::Result<Vec<String>> {
        Ok(self.file_names())
    }

    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn FsLock>, LockError> {
        let name = name_of(path);
        let mut s = self.lock();
        if let Some(who) = s.locks.get(&name) {
            return Err(LockError::Held(who.clone()));
        }
        s.locks.insert(name.clone(), holder.to_string());
        Ok(Box::new(MemLock {
            fs: self.clone(),
            name,
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let name = name_of(path);
        let inode = self.mutate(|d| {
            if d.names.contains_key(&name) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, name.clone()));
            }
            let id = d.next_inode;
            d.next_inode += 1;
            d.inodes.insert(id, Inode::default());
            d.names.insert(name.clone(), id);
            d.dir_log.push(DirOp::Link(name.clone(), id));
            Ok(id)
        })?;
        Ok(Box::new(MemFile {
            fs: self.clone(),
            inode,
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let name = name_of(path);
        self.file(&name).ok_or_else(|| not_found(&name))
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let data = self.read(path)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let name = name_of(path);
        self.mutate(|d| {
            let id = *d.names.get(&name).ok_or_else(|| not_found(&name))?;
            let inode = d.inodes.get_mut(&id).ok_or_else(|| not_found(&name))?;
            inode.data.truncate(len as usize);
            inode.durable = inode.data.clone();
            Ok(())
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (name_of(from), name_of(to));
        self.mutate(|d| {
            let id = d.names.remove(&from).ok_or_else(|| not_found(&from))?;
            d.names.insert(to.clone(), id);
            d.dir_log.push(DirOp::Rename(from.clone(), to.clone()));
            Ok(())
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let name = name_of(path);
        self.mutate(|d| {
            d.names.remove(&name).ok_or_else(|| not_found(&name))?;
            d.dir_log.push(DirOp::Unlink(name.clone()));
            Ok(())
        })
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        self.mutate(|d| {
            d.durable_names = d.names.clone();
            d.dir_log.clear();
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn unsynced_file_and_name_can_be_lost_synced_ones_cannot() {
        let fs = MemFs::new();
        let mut f = fs.create(Path::new("a")).unwrap();
        f.write_all(b"synced").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new(".")).unwrap();
        f.write_all(b" and not").unwrap();
        fs.create(Path::new("b")).unwrap();
        let mut outcomes = BTreeSet::new();
        for seed in 0..200 {
            let crashed = fs.image().crash(seed);
            let a = crashed.file("a").unwrap();
            assert!(a.starts_with(b"synced"), "synced data lost: {a:?}");
            outcomes.insert((a.len(), crashed.file("b").is_some()));
        }
        assert!(outcomes.len() > 4, "crashes should vary: {outcomes:?}");
    }

    #[test]
    fn recording_keeps_an_image_per_mutation() {
        let fs = MemFs::new();
        fs.record(true);
        fs.set_label(7);
        let mut f = fs.create(Path::new("a")).unwrap();
        f.write_all(b"x").unwrap();
        f.sync_data().unwrap();
        let images = fs.take_images();
        assert_eq!(images.len(), 3);
        assert!(images.iter().all(|i| i.label == 7));
        assert_eq!(images[2].intact().file("a").unwrap(), b"x");
        assert_eq!(images.iter().map(|i| i.op).collect::<Vec<_>>(), [1, 2, 3]);
        fs.record(false);
        f.write_all(b"y").unwrap();
        assert!(fs.take_images().is_empty(), "no image once recording stops");
    }

    #[test]
    fn a_failing_disk_fails_from_the_nth_mutation_on() {
        let fs = MemFs::new();
        let mut f = fs.create(Path::new("a")).unwrap();
        fs.fail_after(2);
        f.write_all(b"1").unwrap();
        f.write_all(b"2").unwrap();
        assert!(f.write_all(b"3").is_err(), "the third write from now fails");
        assert!(f.sync_data().is_err(), "and every one after it");
        assert_eq!(fs.file("a").unwrap(), b"12");
    }
}
