//! Running one map attempt: read the split, call the app's map (or the map
//! command), sort the output by partition and key with a memory budget,
//! and write one sorted run per partition, each renamed into place.
//!
//! Output names carry the attempt id, so a duplicate or speculative attempt
//! never overwrites the output the coordinator accepted.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use flotilla_mapreduce::apps::App;
use flotilla_mapreduce::record;
use flotilla_mapreduce::task::{DoneReport, MapTask, map_output_name};

use super::effects::RealEffects;
use super::error::TaskError;
use super::files::AtomicFile;
use super::job::{AppSpec, JobSpec};
use super::sort::SortBuffer;
use super::streaming;

/// What every task of a worker shares.
pub(crate) struct TaskEnv {
    /// The job.
    pub(crate) spec: JobSpec,
    /// The built-in app, `None` for streaming.
    pub(crate) app: Option<Box<dyn App>>,
    /// Side effects for the apps.
    pub(crate) fx: RealEffects,
    /// Where this worker's map outputs go (shared or local).
    pub(crate) map_dir: PathBuf,
    /// Local scratch space (spills, fetched inputs).
    pub(crate) scratch: PathBuf,
    /// TLS toward other workers' shuffle services (`None`: plaintext).
    pub(crate) dial: Option<std::sync::Arc<flotilla_tls::ClientTls>>,
}

/// A running attempt's progress counter and cancel flag.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub(crate) bytes: AtomicU64,
    pub(crate) cancel: AtomicBool,
}

impl Control {
    pub(crate) fn check(&self) -> Result<(), TaskError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(TaskError::Abandoned);
        }
        Ok(())
    }
}

/// Reads bytes `start..end` of the split's file.
fn read_split(task: &MapTask) -> Result<Vec<u8>, TaskError> {
    let split = &task.split;
    let path = PathBuf::from(&split.file);
    let mut file = File::open(&path).map_err(TaskError::io("open input", &path))?;
    file.seek(SeekFrom::Start(split.start))
        .map_err(TaskError::io("seek input", &path))?;
    let mut data = Vec::with_capacity(split.len() as usize);
    file.take(split.len())
        .read_to_end(&mut data)
        .map_err(TaskError::io("read input", &path))?;
    if (data.len() as u64) < split.len() {
        return Err(TaskError::Io {
            op: "read input",
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("file shrank: wanted bytes {}..{}", split.start, split.end),
            ),
        });
    }
    Ok(data)
}

/// Runs one map attempt; see the module docs.
pub(crate) fn run(
    env: &TaskEnv,
    task: &MapTask,
    control: &Control,
) -> Result<DoneReport, TaskError> {
    let data = read_split(task)?;
    control
        .bytes
        .store(data.len() as u64 / 2, Ordering::Relaxed);
    let n_reduce = env.spec.n_reduce;
    let prefix = format!(".spill-m{}-a{}", task.index, task.attempt.0);
    let mut buffer = SortBuffer::new(
        env.app.as_deref(),
        n_reduce,
        env.spec.sort_buffer_bytes,
        &env.scratch,
        &prefix,
    );
    match (&env.spec.app, &env.app) {
        (AppSpec::BuiltIn { .. }, Some(app)) => {
            let mut failed = None;
            app.map(&env.fx, &task.split.file, &data, &mut |k, v| {
                if failed.is_none()
                    && let Err(e) = buffer.push(k, v)
                {
                    failed = Some(e);
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        (AppSpec::Streaming { map_cmd, .. }, _) => {
            let env_vars = [
                ("MR_TASK", format!("map {}", task.index)),
                ("MR_INPUT_FILE", task.split.file.clone()),
            ];
            streaming::run(
                map_cmd,
                &env_vars,
                |w| streaming::write_all(w, &data),
                |line| {
                    let (k, v) = streaming::split_line(line);
                    buffer.push(k, v)
                },
            )?;
        }
        (AppSpec::BuiltIn { name, .. }, None) => {
            unreachable!("the worker builds built-in app {name} before running tasks")
        }
    }
    control.check()?;
    let bytes_in = data.len() as u64;
    drop(data);
    let partition_bytes = write_partitions(env, task, buffer)?;
    control.bytes.store(bytes_in, Ordering::Relaxed);
    Ok(DoneReport {
        bytes_out: partition_bytes.iter().sum(),
        partition_bytes,
        bytes_in,
    })
}

/// Writes every partition file (empty ones too) and renames them into place.
fn write_partitions(
    env: &TaskEnv,
    task: &MapTask,
    buffer: SortBuffer<'_>,
) -> Result<Vec<u64>, TaskError> {
    let n_reduce = env.spec.n_reduce;
    let suffix = format!("w{}", std::process::id());
    let mut files = Vec::with_capacity(n_reduce as usize);
    for p in 0..n_reduce {
        let dest = env
            .map_dir
            .join(map_output_name(task.index, task.attempt, p));
        files.push(AtomicFile::beside(dest, &suffix)?);
    }
    let mut encoded = Vec::with_capacity(256);
    buffer.finish(|p, k, v| {
        encoded.clear();
        record::encode(&mut encoded, k, v);
        files[p as usize].write(&encoded)
    })?;
    files.into_iter().map(AtomicFile::commit).collect()
}
