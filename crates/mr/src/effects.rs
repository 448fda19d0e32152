//! The real [`Effects`] for the apps: this process's id, the wall clock,
//! blocking sleeps (tasks run on blocking threads), a PRNG seeded from the
//! clock and pid, `exit(1)` for the crash app, and marker files in the job's
//! marker directory (the output directory, as the course's apps use their
//! working directory).

use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_mapreduce::apps::{AppError, Effects};

/// See the module docs.
#[derive(Debug)]
pub(crate) struct RealEffects {
    marker_dir: PathBuf,
    rng: Mutex<u64>,
}

impl RealEffects {
    pub(crate) fn new(marker_dir: PathBuf) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        RealEffects {
            marker_dir,
            rng: Mutex::new(nanos ^ (u64::from(std::process::id()) << 32)),
        }
    }

    fn err(&self, what: &str, name: &str, e: std::io::Error) -> AppError {
        AppError::Effect(format!(
            "{what} {}: {e}",
            self.marker_dir.join(name).display()
        ))
    }
}

/// Whether process `pid` is alive: it exists and is not a zombie (the
/// course's `kill(pid, 0)` also counts zombies, but a crashed worker that
/// its parent has not reaped yet is not running anything).
fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    match stat.rfind(')') {
        Some(i) => !stat[i + 1..].trim_start().starts_with('Z'),
        None => false,
    }
}

impl Effects for RealEffects {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn unix_time_secs(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn random_below(&self, n: u64) -> u64 {
        let mut state = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        // splitmix64
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }

    fn crash(&self) -> ! {
        std::process::exit(1)
    }

    fn create_marker(&self, name: &str) -> Result<(), AppError> {
        fs::write(self.marker_dir.join(name), b"x").map_err(|e| self.err("create", name, e))
    }

    fn remove_marker(&self, name: &str) -> Result<(), AppError> {
        fs::remove_file(self.marker_dir.join(name)).map_err(|e| self.err("remove", name, e))
    }

    fn count_live_markers(&self, prefix: &str) -> Result<usize, AppError> {
        let entries = fs::read_dir(&self.marker_dir).map_err(|e| self.err("list", "", e))?;
        Ok(entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix(prefix)?.parse::<u32>().ok()
            })
            .filter(|&pid| alive(pid))
            .count())
    }

    fn count_files(&self, prefix: &str) -> Result<usize, AppError> {
        let entries = fs::read_dir(&self.marker_dir).map_err(|e| self.err("list", "", e))?;
        Ok(entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .count())
    }
}
