//! Scratch directories for tests' data and logs. Invariants: each is
//! fresh and private to one test (named after the test, the process and
//! a counter), and it is removed when dropped — also when the test
//! failed, after printing its logs' tails — unless
//! `FLOTILLA_KEEP_SCRATCH` is set, to look into a failure.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// How much of each log a failing test prints.
const LOG_TAIL_LINES: usize = 40;

/// A directory removed when dropped.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    /// A fresh, empty directory under the system's temporary directory.
    pub fn new(name: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("flotilla-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Scratch { path }
    }
}

impl Drop for Scratch {
    /// Kept when `FLOTILLA_KEEP_SCRATCH` is set (server logs, data dirs),
    /// to look into a failure.
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tails(&self.path);
        }
        if std::env::var_os("FLOTILLA_KEEP_SCRATCH").is_some() {
            eprintln!("kept {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A failing test shows the last lines of every `*.log` in `dir` (the
/// servers' and workers' logs), so a failure in CI can be read without
/// rerunning it.
fn print_log_tails(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        eprintln!("--- last {} lines of {} ---", tail.len(), log.display());
        for line in tail {
            eprintln!("{line}");
        }
    }
}
