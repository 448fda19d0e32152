//! Files that appear atomically: [`AtomicFile`] writes under a hidden
//! temporary name in the destination's directory and renames into place on
//! [`AtomicFile::commit`]; dropping it uncommitted removes the temporary
//! file. A reader therefore sees either no file or the whole file, never a
//! partial one, even if the writer crashes (a crash can leave a hidden
//! `.*.tmp` file behind, which no reader looks at and the job removes).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::TaskError;

/// A file being written; see the module docs.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    out: Option<BufWriter<File>>,
    bytes: u64,
}

impl AtomicFile {
    /// Starts writing `dest` through the temporary file `tmp` (same
    /// directory, so the rename is atomic).
    pub fn create(dest: PathBuf, tmp: PathBuf) -> Result<Self, TaskError> {
        let file = File::create(&tmp).map_err(TaskError::io("create", &tmp))?;
        Ok(AtomicFile {
            tmp,
            dest,
            out: Some(BufWriter::with_capacity(256 * 1024, file)),
            bytes: 0,
        })
    }

    /// Starts writing `dest` through `.<name>.<suffix>.tmp` beside it.
    pub fn beside(dest: PathBuf, suffix: &str) -> Result<Self, TaskError> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dest.with_file_name(format!(".{name}.{suffix}.tmp"));
        Self::create(dest, tmp)
    }

    /// Appends bytes.
    pub fn write(&mut self, buf: &[u8]) -> Result<(), TaskError> {
        let out = self.out.as_mut().expect("written only before commit");
        out.write_all(buf)
            .map_err(TaskError::io("write", &self.tmp))?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes and renames into place; returns the file's size.
    pub fn commit(mut self) -> Result<u64, TaskError> {
        let out = self.out.take().expect("committed once");
        let file = out.into_inner().map_err(|e| TaskError::Io {
            op: "write",
            path: self.tmp.clone(),
            source: e.into_error(),
        })?;
        drop(file);
        fs::rename(&self.tmp, &self.dest)
            .map_err(TaskError::io("rename into place", &self.dest))?;
        Ok(self.bytes)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Not committed: the partial file must not linger.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Removes the hidden temporary files (`.*.tmp`) that crashed attempts left
/// in `dir`; returns how many.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") && fs::remove_file(entry.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Whether `name` is a map output's name (`mr-M-R.aA`, see
/// `flotilla_mapreduce::task::map_output_name`).
fn is_map_output(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("mr-") else {
        return false;
    };
    let Some((parts, attempt)) = rest.split_once(".a") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match parts.split_once('-') {
        Some((m, r)) => digits(m) && digits(r) && digits(attempt),
        None => false,
    }
}

/// Removes the map outputs (and only them) from a job's shared directory
/// once the job has ended; returns how many.
pub fn remove_map_outputs(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_map_output(&name) && fs::remove_file(entry.path()).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_map_output_names_match() {
        assert!(is_map_output("mr-3-7.a12"));
        assert!(!is_map_output("mr-out-3"));
        assert!(!is_map_output("mr-3-7.a12.tmp"));
        assert!(!is_map_output("mr-x-7.a1"));
    }

    #[test]
    fn a_file_appears_only_on_commit_and_vanishes_if_dropped() {
        let dir = std::env::temp_dir().join(format!("flotilla-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("mr-out-0");
        let mut f = AtomicFile::beside(dest.clone(), "a1").unwrap();
        f.write(b"x 1\n").unwrap();
        assert!(!dest.exists());
        assert_eq!(f.commit().unwrap(), 4);
        assert_eq!(fs::read(&dest).unwrap(), b"x 1\n");
        let mut g = AtomicFile::beside(dir.join("mr-out-1"), "a2").unwrap();
        g.write(b"partial").unwrap();
        drop(g);
        assert!(!dir.join("mr-out-1").exists());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
        fs::remove_dir_all(&dir).unwrap();
    }
}
