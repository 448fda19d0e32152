//! Running one reduce attempt over local copies of its inputs (one sorted
//! run per map task): merge them, group equal keys, reduce each group with
//! the app (or the reduce command), and write `mr-out-R` under a hidden
//! temporary name, renamed into place at the end.
//!
//! Memory: the inputs are already sorted (map tasks sort and spill with a
//! budget), so the reduce side is a streaming merge, each input read through
//! a small buffer, more than [`super::sort::MERGE_FAN_IN`] inputs merged in
//! passes through scratch files. Built-in apps hold one key's values at a
//! time (their reduce takes them all, as the course's do); a `sorted`
//! streaming reduce holds none.
//!
//! Duplicates: an attempt checks, just before its rename, whether the
//! coordinator has told it (through the heartbeat) that another attempt
//! finished first, and abandons if so. Within one heartbeat period two
//! attempts can both rename; both wrote the same partition from the same
//! inputs, so for a deterministic reduce the file is the same either way.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use flotilla_mapreduce::task::{DoneReport, ReduceTask, reduce_output_name, reduce_temp_name};

use super::error::TaskError;
use super::files::AtomicFile;
use super::job::AppSpec;
use super::map_task::{Control, TaskEnv};
use super::sort::{Merger, merge_down};
use super::streaming::{self, ReduceInput};

/// Records between progress updates.
const PROGRESS_EVERY: u32 = 4096;

/// Runs one reduce attempt over `inputs` (local sorted runs).
pub(crate) fn run(
    env: &TaskEnv,
    task: &ReduceTask,
    inputs: Vec<PathBuf>,
    control: &Control,
) -> Result<DoneReport, TaskError> {
    let prefix = format!(".merge-r{}-a{}", task.index, task.attempt.0);
    let runs = merge_down(inputs, &env.scratch, &prefix)?;
    let mut merger = Merger::open(&runs)?;
    let dir = &env.spec.output_dir;
    let mut out = AtomicFile::create(
        dir.join(reduce_output_name(task.index)),
        dir.join(reduce_temp_name(task.index, task.attempt)),
    )?;
    match &env.spec.app {
        AppSpec::Streaming {
            reduce_cmd,
            reduce_input: ReduceInput::Sorted,
            ..
        } => reduce_sorted_cmd(reduce_cmd, task, &mut merger, &mut out, control)?,
        _ => reduce_groups(env, task, &mut merger, &mut out, control)?,
    }
    control.check()?;
    let bytes_in = merger.bytes_read();
    let bytes_out = out.commit()?;
    // Merged runs and fetched copies are scratch; shared map outputs are not.
    for run in runs.iter() {
        if run.starts_with(&env.scratch) {
            let _ = std::fs::remove_file(run);
        }
    }
    Ok(DoneReport {
        partition_bytes: Vec::new(),
        bytes_in,
        bytes_out,
    })
}

/// Built-in apps and `group` streaming: one reduce call per key.
fn reduce_groups(
    env: &TaskEnv,
    task: &ReduceTask,
    merger: &mut Merger,
    out: &mut AtomicFile,
    control: &Control,
) -> Result<(), TaskError> {
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut group_key: Option<Vec<u8>> = None;
    let mut values: Vec<Vec<u8>> = Vec::new();
    let mut line = Vec::new();
    let mut seen = 0u32;
    loop {
        let more = merger.next_into(&mut key, &mut value)?;
        if group_key.as_ref().is_some_and(|g| !more || *g != key) {
            let g = group_key.take().expect("checked just above");
            let result = reduce_one(env, task, &g, &values)?;
            line.clear();
            line.extend_from_slice(&g);
            line.push(b' ');
            line.extend_from_slice(&result);
            line.push(b'\n');
            out.write(&line)?;
            values.clear();
        }
        if !more {
            return Ok(());
        }
        if group_key.is_none() {
            group_key = Some(key.clone());
        }
        values.push(std::mem::take(&mut value));
        seen += 1;
        if seen.is_multiple_of(PROGRESS_EVERY) {
            control.bytes.store(merger.bytes_read(), Ordering::Relaxed);
            control.check()?;
        }
    }
}

fn reduce_one(
    env: &TaskEnv,
    task: &ReduceTask,
    key: &[u8],
    values: &[Vec<u8>],
) -> Result<Vec<u8>, TaskError> {
    if let Some(app) = &env.app {
        return Ok(app.reduce(&env.fx, key, values)?);
    }
    let AppSpec::Streaming { reduce_cmd, .. } = &env.spec.app else {
        unreachable!("a built-in job always has its app")
    };
    let vars = [
        ("MR_TASK", format!("reduce {}", task.index)),
        ("MR_KEY", String::from_utf8_lossy(key).into_owned()),
    ];
    let mut result = Vec::new();
    streaming::run(
        reduce_cmd,
        &vars,
        |w| {
            for v in values {
                streaming::write_all(w, v)?;
                streaming::write_all(w, b"\n")?;
            }
            Ok(())
        },
        |l| {
            if !result.is_empty() {
                result.push(b'\n');
            }
            result.extend_from_slice(l);
            Ok(())
        },
    )?;
    Ok(result)
}

/// `sorted` streaming: one command run fed every record in key order.
fn reduce_sorted_cmd(
    cmd: &str,
    task: &ReduceTask,
    merger: &mut Merger,
    out: &mut AtomicFile,
    control: &Control,
) -> Result<(), TaskError> {
    let vars = [("MR_TASK", format!("reduce {}", task.index))];
    let feed = |w: &mut dyn std::io::Write| {
        let (mut key, mut value) = (Vec::new(), Vec::new());
        let mut line = Vec::new();
        let mut seen = 0u32;
        while merger.next_into(&mut key, &mut value)? {
            line.clear();
            line.extend_from_slice(&key);
            line.push(b'\t');
            line.extend_from_slice(&value);
            line.push(b'\n');
            streaming::write_all(w, &line)?;
            seen += 1;
            if seen.is_multiple_of(PROGRESS_EVERY) {
                control.bytes.store(merger.bytes_read(), Ordering::Relaxed);
            }
        }
        Ok(())
    };
    let mut buf = Vec::new();
    streaming::run(cmd, &vars, feed, |l| {
        let (k, v) = streaming::split_line(l);
        buf.clear();
        buf.extend_from_slice(k);
        if l.contains(&b'\t') {
            buf.push(b' ');
            buf.extend_from_slice(v);
        }
        buf.push(b'\n');
        out.write(&buf)
    })
}
