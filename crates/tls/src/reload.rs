//! A value built from files and built again when one of them changes.
//!
//! [`Reloading::current`] looks at the files' metadata (modification
//! time, length, inode) on every call, which costs a few `stat`s per new
//! connection and no task. When they differ from the last build's, the
//! value is rebuilt; a rebuild that fails keeps the previous value (a
//! rotation may write the certificate before the key) and is logged once
//! per change of the files, then tried again on their next change.
//!
//! Invariant: `current` always returns a value that was built
//! successfully from the files as they were at some moment.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::TlsError;

/// What identifies a version of a file: changed by any write or rename.
type Stamp = Option<(SystemTime, u64, u64)>;

/// The builder of a [`Reloading`] value.
type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// A value rebuilt when its files change.
pub struct Reloading<T> {
    files: Vec<PathBuf>,
    build: Build<T>,
    state: Mutex<(Vec<Stamp>, Arc<T>)>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish()
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len(), m.ino()))
        })
        .collect()
}

impl<T> Reloading<T> {
    /// Builds the value from `files` now: an error here is the caller's
    /// (a server refuses to start with files it cannot use).
    pub fn new(
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, TlsError> {
        let seen = stamps(&files);
        let value = Arc::new(build()?);
        Ok(Reloading {
            files,
            build: Box::new(build),
            state: Mutex::new((seen, value)),
        })
    }

    /// The value, rebuilt first if a file changed since the last build.
    pub fn current(&self) -> Arc<T> {
        let now = stamps(&self.files);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 != now {
            match (self.build)() {
                Ok(value) => {
                    tracing::info!(files = ?self.files, "TLS files changed: reloaded");
                    state.1 = Arc::new(value);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS files changed but cannot be used; keeping the previous ones");
                }
            }
            state.0 = now;
        }
        Arc::clone(&state.1)
    }
}
