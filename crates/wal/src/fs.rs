//! The file operations the WAL uses, behind a trait so that tests can run
//! it on [`crate::MemFs`], a file system that simulates crashes (lost
//! unsynced data, torn writes) at every write and sync point.
//!
//! The set is deliberately small: files are created once and only appended
//! to; a file is shortened only at open (a torn tail), renamed only from a
//! temporary name, and read whole at recovery or by range later.
//! [`StdFs`] maps each operation to one `std::fs` call: `sync_data` is
//! `fdatasync`, `sync_dir` opens the directory and `fsync`s it.

use std::fmt::Debug;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A file open for appending.
pub trait FsFile: Send + Debug {
    /// Appends all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Appends the slices in order (one `writev` where the OS allows).
    fn write_all_vectored(&mut self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        for b in bufs.iter() {
            self.write_all(b)?;
        }
        Ok(())
    }
    /// Makes the file's data (and its size) durable: `fdatasync`.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// Holds a directory's lock until dropped.
pub trait FsLock: Send + Sync + Debug {}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Someone else holds it; the lock file's contents, if readable.
    Held(String),
    /// The lock file could not be opened or locked.
    Io(io::Error),
}

/// The file operations the WAL needs.
pub trait Fs: Send + Sync + Debug {
    /// Checks that `dir` exists and is a directory.
    fn check_dir(&self, dir: &Path) -> io::Result<bool>;
    /// The names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Takes an exclusive lock on `path` (created if missing) and writes
    /// `holder` into it for whoever finds it locked.
    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn FsLock>, LockError>;
    /// Creates a new file (failing if it exists) for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Shortens a file to `len` bytes and makes that durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Renames a file (atomically replacing `to`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, deletes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

impl FsFile for StdFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn write_all_vectored(&mut self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        // At most IOV_MAX (1024 on Linux) slices per call.
        while !bufs.is_empty() {
            let n = self.0.write_vectored(&bufs[..bufs.len().min(1024)])?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut bufs, n);
        }
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// `flock(2)` through `File::try_lock`: the lock belongs to the open file
/// description, so a second open in the same process is refused too.
#[derive(Debug)]
struct StdLock(#[allow(dead_code)] File);

impl FsLock for StdLock {}

impl Fs for StdFs {
    fn check_dir(&self, dir: &Path) -> io::Result<bool> {
        Ok(std::fs::metadata(dir)?.is_dir())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn FsLock>, LockError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut who = String::new();
                // Best effort: the holder's note only improves the message.
                let _ = file.read_to_string(&mut who);
                return Err(LockError::Held(who));
            }
            Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        // Not synced: the note is for people, the lock is the flock.
        file.set_len(0).map_err(LockError::Io)?;
        file.seek(SeekFrom::Start(0)).map_err(LockError::Io)?;
        file.write_all(holder.as_bytes()).map_err(LockError::Io)?;
        Ok(Box::new(StdLock(file)))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(StdFile(file)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        File::open(path)?.read_exact_at(buf, offset)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
