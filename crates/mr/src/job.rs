//! A job's definition, checked before anything starts: the app exists and
//! its parameters parse, every input is a readable file, the output
//! directory is new (or `force` is given) and writable. The inputs are then
//! cut into line-aligned splits.
//!
//! [`JobSpec`] is what every worker learns at registration (it travels as
//! the protobuf `JobSpec`); [`PreparedJob`] adds what only the coordinator
//! needs.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_mapreduce::apps::{self, AppError};
use flotilla_mapreduce::coordinator::{Config as CoreConfig, ConfigError};
use flotilla_mapreduce::split;
use flotilla_mapreduce::task::Split;
use flotilla_proto::mapreduce::v1 as pb;

use super::streaming::ReduceInput;

/// The smallest split size allowed.
pub const SPLIT_BYTES_MIN: u64 = 1 << 10;
/// The largest split size allowed: a map task reads its whole split into
/// memory, which bounds a worker's memory.
pub const SPLIT_BYTES_MAX: u64 = 1 << 30;

/// Which app a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSpec {
    /// A built-in app with its parameters.
    BuiltIn {
        /// Its name.
        name: String,
        /// `--app-param` values.
        params: BTreeMap<String, String>,
    },
    /// Map and reduce commands.
    Streaming {
        /// Map command.
        map_cmd: String,
        /// Reduce command.
        reduce_cmd: String,
        /// How reduce reads.
        reduce_input: ReduceInput,
    },
}

/// What a worker needs to run any task of the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Unique per run.
    pub job_id: u64,
    /// The app.
    pub app: AppSpec,
    /// Reduce tasks.
    pub n_reduce: u32,
    /// Where `mr-out-*` go (and the probe apps' marker files).
    pub output_dir: PathBuf,
    /// Shared intermediate directory, or `None` for the shuffle service.
    pub shared_dir: Option<PathBuf>,
    /// A map task's sort buffer.
    pub sort_buffer_bytes: u64,
    /// Heartbeat period.
    pub progress_interval: Duration,
}

/// The user's description of a job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The app.
    pub app: AppSpec,
    /// Input paths, as given (they become the apps' document names).
    pub inputs: Vec<String>,
    /// Output directory.
    pub output_dir: PathBuf,
    /// Overwrite the `mr-out-*` files of an existing output directory.
    pub force: bool,
    /// Nominal split size.
    pub split_bytes: u64,
    /// Shared intermediate directory (the embedded default), or `None`.
    pub shared_dir: Option<PathBuf>,
    /// A map task's sort buffer.
    pub sort_buffer_bytes: u64,
    /// Heartbeat period.
    pub progress_interval: Duration,
    /// Scheduling tunables (the number of reduce tasks is here).
    pub core: CoreConfig,
}

/// A job that passed every check.
#[derive(Debug, Clone)]
pub struct PreparedJob {
    /// What workers get.
    pub spec: JobSpec,
    /// One map task per split.
    pub splits: Vec<Split>,
    /// Scheduling tunables.
    pub core: CoreConfig,
    /// Total input size.
    pub input_bytes: u64,
}

/// Why a job cannot start.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No input file.
    #[error("no input files given")]
    NoInputs,
    /// An input cannot be read.
    #[error("cannot read input file {path}: {source}")]
    Input {
        /// As given.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// An input is a directory or a device.
    #[error("input {path} is not a regular file")]
    NotAFile {
        /// As given.
        path: String,
    },
    /// The output directory exists and `force` was not given.
    #[error("output directory {} already exists (use --force to replace its mr-out-* files)", .path.display())]
    OutputExists {
        /// The directory.
        path: PathBuf,
    },
    /// The output path exists and is not a directory.
    #[error("output path {} is not a directory", .path.display())]
    OutputNotDir {
        /// The path.
        path: PathBuf,
    },
    /// A directory cannot be created or written.
    #[error("directory {} is not writable: {source}", .path.display())]
    NotWritable {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The app or its parameters are wrong.
    #[error(transparent)]
    App(#[from] AppError),
    /// The scheduling tunables are wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The split size is out of range.
    #[error(
        "split size {bytes} is out of range: a map task holds its split in memory, so it must be between 1 KiB and 1 GiB"
    )]
    SplitSize {
        /// As given.
        bytes: u64,
    },
    /// A streaming job lacks a command.
    #[error("a streaming job needs both --map-cmd and --reduce-cmd")]
    StreamingIncomplete,
}

/// Checks `config` and plans its splits; creates the output directory.
pub fn prepare(config: JobConfig) -> Result<PreparedJob, JobError> {
    match &config.app {
        AppSpec::BuiltIn { name, params } => {
            apps::build(name, params)?;
        }
        AppSpec::Streaming {
            map_cmd,
            reduce_cmd,
            ..
        } => {
            if map_cmd.trim().is_empty() || reduce_cmd.trim().is_empty() {
                return Err(JobError::StreamingIncomplete);
            }
        }
    }
    if config.inputs.is_empty() {
        return Err(JobError::NoInputs);
    }
    if !(SPLIT_BYTES_MIN..=SPLIT_BYTES_MAX).contains(&config.split_bytes) {
        return Err(JobError::SplitSize {
            bytes: config.split_bytes,
        });
    }
    let mut splits = Vec::new();
    let mut input_bytes = 0;
    for input in &config.inputs {
        let (file_splits, len) = plan_file(input, config.split_bytes)?;
        splits.extend(file_splits);
        input_bytes += len;
    }
    // Check the tunables before touching the file system.
    flotilla_mapreduce::coordinator::Coordinator::new(config.core.clone(), Vec::new())?;
    prepare_output(&config.output_dir, config.force)?;
    // Workers may run in other directories: hand them absolute paths (input
    // paths stay as given, since they are also the documents' names).
    let output_dir = absolute(&config.output_dir)?;
    let shared_dir = match &config.shared_dir {
        Some(dir) => {
            ensure_writable(dir)?;
            Some(absolute(dir)?)
        }
        None => None,
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let spec = JobSpec {
        job_id: nanos ^ u64::from(std::process::id()),
        app: config.app,
        n_reduce: config.core.n_reduce,
        output_dir,
        shared_dir,
        sort_buffer_bytes: config.sort_buffer_bytes,
        progress_interval: config.progress_interval,
    };
    Ok(PreparedJob {
        spec,
        splits,
        core: config.core,
        input_bytes,
    })
}

/// Opens `input`, checks it is a readable file, and splits it.
fn plan_file(input: &str, split_bytes: u64) -> Result<(Vec<Split>, u64), JobError> {
    let err = |source| JobError::Input {
        path: input.to_string(),
        source,
    };
    let mut file = File::open(input).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(JobError::NotAFile {
            path: input.to_string(),
        });
    }
    // A file that cannot actually be read (EISDIR, EIO) fails here, not
    // later inside a task.
    file.read(&mut [0u8; 1]).map_err(err)?;
    let len = meta.len();
    let splits = split::plan(input, len, split_bytes, |pos| {
        line_start(&mut file, pos, len)
    })
    .map_err(err)?;
    Ok((splits, len))
}

/// The first line start at or after `pos` (see [`split::plan`]).
fn line_start(file: &mut File, pos: u64, len: u64) -> io::Result<u64> {
    if pos == 0 || pos >= len {
        return Ok(pos.min(len));
    }
    file.seek(SeekFrom::Start(pos - 1))?;
    let mut at = pos - 1;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(len);
        }
        if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
            return Ok(at + i as u64 + 1);
        }
        at += n as u64;
    }
}

/// Creates the output directory, or clears a previous run's outputs from it
/// when `force` is given.
fn prepare_output(dir: &Path, force: bool) -> Result<(), JobError> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err(JobError::OutputNotDir {
                path: dir.to_path_buf(),
            });
        }
        Ok(_) if !force => {
            return Err(JobError::OutputExists {
                path: dir.to_path_buf(),
            });
        }
        Ok(_) => {
            let entries = fs::read_dir(dir).map_err(|source| JobError::NotWritable {
                path: dir.to_path_buf(),
                source,
            })?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let stale_temp = name.starts_with(".mr-out-") && name.ends_with(".tmp");
                if name.starts_with("mr-out-") || stale_temp {
                    fs::remove_file(entry.path()).map_err(|source| JobError::NotWritable {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
            }
        }
        Err(_) => {}
    }
    ensure_writable(dir)
}

/// `dir` made absolute (it exists).
fn absolute(dir: &Path) -> Result<PathBuf, JobError> {
    fs::canonicalize(dir).map_err(|source| JobError::NotWritable {
        path: dir.to_path_buf(),
        source,
    })
}

/// Creates `dir` if needed and checks that a file can be created in it.
fn ensure_writable(dir: &Path) -> Result<(), JobError> {
    let fail = |source| JobError::NotWritable {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".flotilla-probe-{}", std::process::id()));
    fs::write(&probe, b"").map_err(fail)?;
    fs::remove_file(&probe).map_err(fail)
}

impl JobSpec {
    /// The wire form.
    pub fn to_pb(&self) -> pb::JobSpec {
        let mut spec = pb::JobSpec {
            job_id: self.job_id,
            n_reduce: self.n_reduce,
            output_dir: self.output_dir.to_string_lossy().into_owned(),
            shared_dir: self
                .shared_dir
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sort_buffer_bytes: self.sort_buffer_bytes,
            progress_interval_ms: self.progress_interval.as_millis().min(u128::from(u32::MAX))
                as u32,
            ..pb::JobSpec::default()
        };
        match &self.app {
            AppSpec::BuiltIn { name, params } => {
                spec.app = name.clone();
                spec.app_params = params.clone().into_iter().collect();
            }
            AppSpec::Streaming {
                map_cmd,
                reduce_cmd,
                reduce_input,
            } => {
                spec.app = "streaming".into();
                spec.map_cmd = map_cmd.clone();
                spec.reduce_cmd = reduce_cmd.clone();
                spec.reduce_input = match reduce_input {
                    ReduceInput::Sorted => pb::ReduceInput::Sorted,
                    ReduceInput::Group => pb::ReduceInput::Group,
                } as i32;
            }
        }
        spec
    }

    /// From the wire form; `None` for a spec that names no app.
    pub fn from_pb(spec: pb::JobSpec) -> Option<JobSpec> {
        let app = match spec.app.as_str() {
            "" => return None,
            "streaming" => AppSpec::Streaming {
                map_cmd: spec.map_cmd,
                reduce_cmd: spec.reduce_cmd,
                reduce_input: match pb::ReduceInput::try_from(spec.reduce_input) {
                    Ok(pb::ReduceInput::Group) => ReduceInput::Group,
                    _ => ReduceInput::Sorted,
                },
            },
            name => AppSpec::BuiltIn {
                name: name.to_string(),
                params: spec.app_params.into_iter().collect(),
            },
        };
        Some(JobSpec {
            job_id: spec.job_id,
            app,
            n_reduce: spec.n_reduce.max(1),
            output_dir: PathBuf::from(spec.output_dir),
            shared_dir: (!spec.shared_dir.is_empty()).then(|| PathBuf::from(spec.shared_dir)),
            sort_buffer_bytes: spec.sort_buffer_bytes,
            progress_interval: Duration::from_millis(u64::from(spec.progress_interval_ms.max(10))),
        })
    }
}
