//! Why a task attempt failed. Every variant names the file, command or peer
//! involved, so the job's final error message says what went wrong where.

use std::io;
use std::path::PathBuf;

use flotilla_mapreduce::apps::AppError;
use flotilla_mapreduce::record::RecordError;
use flotilla_mapreduce::task::AttemptId;

/// A failed task attempt.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create", "rename" ...).
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// An intermediate file is corrupt.
    #[error("{}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: RecordError,
    },
    /// The app's map or reduce function failed.
    #[error("app error: {0}")]
    App(#[from] AppError),
    /// A streaming command could not run or exited non-zero.
    #[error("command `{cmd}` {status}; stderr tail: {stderr_tail}")]
    Command {
        /// The shell command.
        cmd: String,
        /// How it ended ("exited with status 3", "could not start: ...").
        status: String,
        /// The last lines of its standard error.
        stderr_tail: String,
    },
    /// A map output could not be read (missing file, dead shuffle host).
    #[error("cannot fetch map task {map_index} output (attempt {}) from {from}: {why}", map_attempt.0)]
    Fetch {
        /// The map task.
        map_index: u32,
        /// Its accepted attempt.
        map_attempt: AttemptId,
        /// The host or the shared file.
        from: String,
        /// Why.
        why: String,
    },
    /// The coordinator no longer wants the attempt.
    #[error("abandoned: another attempt finished first")]
    Abandoned,
}

impl TaskError {
    /// An I/O error on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> TaskError {
        let path = path.into();
        move |source| TaskError::Io { op, path, source }
    }
}
