//! The task protocol's types, as the core sees them (the gRPC messages in
//! `flotilla-proto` map one to one onto these), and the names of the files a
//! task writes.
//!
//! Invariants: an [`AttemptId`] is unique across a job, so two attempts of the
//! same task never write the same intermediate file; final outputs are
//! written under a hidden temporary name and renamed into place, so a crashed
//! or duplicate attempt never leaves a partial `mr-out-R` visible.

use std::fmt;

use crate::time::Millis;

/// A worker, numbered by the coordinator when it registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u64);

/// One attempt at running a task; unique across the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptId(pub u64);

/// Map or reduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskKind {
    /// Reads a split, writes one sorted run per partition.
    Map,
    /// Merges one partition of every map output, writes `mr-out-R`.
    Reduce,
}

/// Names one attempt of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskRef {
    /// Map or reduce.
    pub kind: TaskKind,
    /// The task's number within its phase.
    pub index: u32,
    /// Which attempt.
    pub attempt: AttemptId,
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TaskKind::Map => "map",
            TaskKind::Reduce => "reduce",
        };
        write!(f, "{kind} task {} (attempt {})", self.index, self.attempt.0)
    }
}

/// A byte range of an input file: starts at a line start, ends after a newline
/// or at the end of the file (see [`crate::split`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The path exactly as the user gave it; also the app's document name.
    pub file: String,
    /// First byte, inclusive.
    pub start: u64,
    /// Last byte, exclusive.
    pub end: u64,
}

impl Split {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes {}..{}", self.file, self.start, self.end)
    }
}

/// A map task as handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapTask {
    /// Task number.
    pub index: u32,
    /// This attempt.
    pub attempt: AttemptId,
    /// What to read.
    pub split: Split,
}

/// Where one map task's output for one partition is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapOutput {
    /// The map task.
    pub map_index: u32,
    /// The attempt whose output was accepted.
    pub map_attempt: AttemptId,
    /// Shuffle address of the worker holding it, empty for the shared dir.
    pub host: String,
    /// Its exact size in bytes.
    pub bytes: u64,
}

/// A reduce task as handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReduceTask {
    /// Task number, which is also the partition.
    pub index: u32,
    /// This attempt.
    pub attempt: AttemptId,
    /// One entry per map task.
    pub inputs: Vec<MapOutput>,
}

/// Why a worker is told to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// Every output is final.
    JobDone,
    /// The job stopped; the message says why.
    JobFailed(String),
    /// The coordinator does not know the worker.
    UnknownWorker,
}

/// The coordinator's answer to a task request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Run this map task.
    Map(MapTask),
    /// Run this reduce task.
    Reduce(ReduceTask),
    /// Nothing to do now; ask again after this long.
    Wait(Millis),
    /// Stop.
    Exit(ExitReason),
}

/// What a worker reports when an attempt has finished and its outputs are in
/// place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DoneReport {
    /// Map tasks: the size of each of the `n_reduce` partitions.
    pub partition_bytes: Vec<u64>,
    /// Input bytes read.
    pub bytes_in: u64,
    /// Output bytes written.
    pub bytes_out: u64,
}

/// The file name (inside the intermediate directory) of one partition of
/// one map attempt's output.
pub fn map_output_name(map_index: u32, attempt: AttemptId, partition: u32) -> String {
    format!("mr-{map_index}-{partition}.a{}", attempt.0)
}

/// The final output file of reduce task `index`, as in the course.
pub fn reduce_output_name(index: u32) -> String {
    format!("mr-out-{index}")
}

/// Where a reduce attempt writes before the rename. Hidden (a leading dot) so
/// that the course's `sort mr-out*` never sees a partial file.
pub fn reduce_temp_name(index: u32, attempt: AttemptId) -> String {
    format!(".mr-out-{index}.a{}.tmp", attempt.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_never_match_the_course_glob() {
        let tmp = reduce_temp_name(3, AttemptId(9));
        assert!(!tmp.starts_with("mr-out"));
        assert_eq!(reduce_output_name(3), "mr-out-3");
        assert_eq!(map_output_name(1, AttemptId(7), 2), "mr-1-2.a7");
    }
}
