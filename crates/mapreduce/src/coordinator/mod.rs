//! The MapReduce coordinator as an I/O-free state machine.
//!
//! ```text
//!   worker ── Register ──────────▶ ┌─────────────┐ ──▶ Registered
//!   worker ── RequestTask ───────▶ │ Coordinator │ ──▶ Reply(Map | Reduce | Wait | Exit)
//!   worker ── Progress ──────────▶ │  handle()   │ ──▶ KeepGoing
//!   worker ── Done / Failed ─────▶ │             │ ──▶ Finished, Retry, JobDone, ...
//!   reducer ─ FetchFailed ───────▶ │             │ ──▶ MapLost (map re-run)
//!   runtime ─ Tick ──────────────▶ └─────────────┘ ──▶ TimedOut
//! ```
//!
//! Rules (the course's, plus what production MapReduce adds):
//! 1. Map tasks are handed out first, lowest index first; a reduce task only
//!    when every map task has an accepted result.
//! 2. An attempt not heard from (start or progress report) for
//!    [`Config::task_timeout`] is presumed dead; its task becomes idle and is
//!    handed out again. Its late report is still accepted if no other attempt
//!    has finished first.
//! 3. The first finished attempt of a task wins; every later report is a
//!    [`Action::Duplicate`] and changes nothing.
//! 4. Speculation: when a worker asks and nothing idle is left in the current
//!    phase, it gets a backup copy of the longest-running task whose single
//!    attempt started at least [`Config::speculate_after`] ago.
//! 5. A reducer that cannot read a map output reports it; that map (and every
//!    other map whose output lives on the same host) loses its result and
//!    runs again; the reduce task runs again once every map is done.
//! 6. A task that fails (reports an error) [`Config::max_task_failures`]
//!    times stops the job; every worker is then told to exit.
//! 7. The job is done when every reduce task has an accepted result: each
//!    reduce output was renamed into place before its worker reported.

mod handlers;
mod table;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::task::{AttemptId, DoneReport, Reply, Split, TaskKind, TaskRef, WorkerId};
use crate::time::Millis;
use table::Task;

/// The coordinator's tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Number of reduce tasks (partitions).
    pub n_reduce: u32,
    /// An attempt not heard from for this long is presumed dead.
    pub task_timeout: Millis,
    /// Start a backup copy of a task running this long near the end of a
    /// phase; `None` disables speculation.
    pub speculate_after: Option<Millis>,
    /// A task failing this many times stops the job.
    pub max_task_failures: u32,
    /// How long a worker with nothing to do waits before asking again.
    pub wait_hint: Millis,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            n_reduce: 10,
            task_timeout: Millis::from_secs(10),
            speculate_after: Some(Millis::from_secs(10)),
            max_task_failures: 4,
            wait_hint: Millis(200),
        }
    }
}

/// A configuration the coordinator cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// There must be at least one reduce task.
    #[error("the number of reduce tasks must be at least 1")]
    NoReduces,
    /// A task must be allowed at least one failure... of one attempt.
    #[error("max task failures must be at least 1")]
    NoFailuresAllowed,
    /// A zero timeout would declare every attempt dead at once.
    #[error("the task timeout must be above zero")]
    ZeroTimeout,
}

/// What happens to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A worker introduces itself; `host` is its shuffle address or empty.
    Register {
        /// Shuffle address.
        host: String,
        /// Current time.
        now: Millis,
    },
    /// A worker has nothing running and asks for a task.
    RequestTask {
        /// Who asks.
        worker: WorkerId,
        /// Current time.
        now: Millis,
    },
    /// A worker's heartbeat for a running attempt.
    Progress {
        /// Who reports.
        worker: WorkerId,
        /// The attempt.
        task: TaskRef,
        /// Input bytes processed so far.
        bytes_done: u64,
        /// Current time.
        now: Millis,
    },
    /// An attempt finished; its outputs are in place.
    Done {
        /// Who reports.
        worker: WorkerId,
        /// The attempt.
        task: TaskRef,
        /// Sizes.
        report: DoneReport,
        /// Current time.
        now: Millis,
    },
    /// An attempt failed.
    Failed {
        /// Who reports.
        worker: WorkerId,
        /// The attempt.
        task: TaskRef,
        /// Why.
        error: String,
        /// Current time.
        now: Millis,
    },
    /// A reduce attempt could not read a map output.
    FetchFailed {
        /// Who reports.
        worker: WorkerId,
        /// The reduce attempt.
        task: TaskRef,
        /// The map output it could not read.
        map_index: u32,
        /// Which attempt of that map.
        map_attempt: AttemptId,
        /// Why.
        error: String,
        /// Current time.
        now: Millis,
    },
    /// Time passes: check timeouts.
    Tick {
        /// Current time.
        now: Millis,
    },
}

/// What the coordinator asks its runtime to do or tells it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Reply to `Register`.
    Registered {
        /// The new worker's id.
        worker: WorkerId,
    },
    /// Reply to `RequestTask`.
    Reply {
        /// To whom.
        worker: WorkerId,
        /// The answer.
        reply: Reply,
    },
    /// Reply to `Progress`: whether the attempt is still wanted.
    KeepGoing {
        /// To whom.
        worker: WorkerId,
        /// The attempt.
        task: TaskRef,
        /// False once another attempt finished or the job ended.
        keep_going: bool,
    },
    /// An attempt was handed out.
    Started {
        /// The attempt.
        task: TaskRef,
        /// On which worker.
        worker: WorkerId,
        /// Whether it is a backup copy of a running attempt.
        speculative: bool,
    },
    /// An attempt's result was accepted.
    Finished {
        /// The attempt.
        task: TaskRef,
        /// On which worker.
        worker: WorkerId,
    },
    /// An attempt finished after another one had; ignored.
    Duplicate {
        /// The attempt.
        task: TaskRef,
        /// On which worker.
        worker: WorkerId,
    },
    /// An attempt was not heard from within the timeout.
    TimedOut {
        /// The attempt.
        task: TaskRef,
        /// On which worker.
        worker: WorkerId,
    },
    /// An attempt failed; the task will run again.
    Retry {
        /// The attempt.
        task: TaskRef,
        /// How many times the task has failed.
        failures: u32,
        /// Why.
        error: String,
    },
    /// A map task's output was lost; it will run again.
    MapLost {
        /// The map task.
        map_index: u32,
        /// Where its output was (empty: the shared directory).
        host: String,
        /// The reducer's error.
        error: String,
    },
    /// Every map task has a result (again, after a lost output).
    MapPhaseDone,
    /// Every reduce output is final.
    JobDone,
    /// The job stopped.
    JobFailed {
        /// Why, naming the task and its input.
        message: String,
    },
    /// A message that makes no sense (unknown task, wrong sizes) was dropped.
    Rejected {
        /// From whom.
        worker: WorkerId,
        /// What was wrong.
        why: String,
    },
}

/// Where the job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Tasks remain.
    Running,
    /// Every reduce output is final.
    Done,
    /// Stopped; the message says why.
    Failed(String),
}

/// Counters for the job's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Attempts handed out.
    pub attempts: u64,
    /// Attempts beyond each task's first (timeouts, backups, retries, lost maps).
    pub reexecuted: u64,
    /// Of which backup copies.
    pub speculative: u64,
    /// Attempts presumed dead.
    pub timeouts: u64,
    /// Failure reports.
    pub failures: u64,
    /// Map results lost to unreadable outputs.
    pub maps_lost: u64,
    /// Results that arrived after another attempt's.
    pub duplicates: u64,
}

/// A snapshot for progress bars.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Map tasks with a result.
    pub maps_done: u32,
    /// Map tasks.
    pub maps_total: u32,
    /// Reduce tasks with a result.
    pub reduces_done: u32,
    /// Reduce tasks.
    pub reduces_total: u32,
    /// Input bytes mapped (finished tasks plus running attempts' progress).
    pub map_bytes_done: u64,
    /// Input bytes.
    pub map_bytes_total: u64,
    /// Intermediate bytes reduced so far.
    pub reduce_bytes_done: u64,
    /// Intermediate bytes (known once the map phase is done).
    pub reduce_bytes_total: u64,
    /// Bytes written to `mr-out-*`.
    pub output_bytes: u64,
    /// Registered workers.
    pub workers: usize,
}

/// The coordinator; see the module docs.
#[derive(Debug)]
pub struct Coordinator {
    config: Config,
    splits: Vec<Split>,
    maps: Vec<Task>,
    reduces: Vec<Task>,
    /// Registered workers and their shuffle addresses.
    workers: BTreeMap<WorkerId, String>,
    /// Attempts ever started per (kind, index), to count re-executions.
    started: BTreeMap<(TaskKind, u32), u32>,
    next_worker: u64,
    next_attempt: u64,
    outcome: Outcome,
    stats: Stats,
}

impl Coordinator {
    /// A coordinator for one map task per split.
    pub fn new(config: Config, splits: Vec<Split>) -> Result<Self, ConfigError> {
        if config.n_reduce == 0 {
            return Err(ConfigError::NoReduces);
        }
        if config.max_task_failures == 0 {
            return Err(ConfigError::NoFailuresAllowed);
        }
        if config.task_timeout == Millis::ZERO {
            return Err(ConfigError::ZeroTimeout);
        }
        let maps = vec![Task::default(); splits.len()];
        let reduces = vec![Task::default(); config.n_reduce as usize];
        Ok(Coordinator {
            config,
            splits,
            maps,
            reduces,
            workers: BTreeMap::new(),
            started: BTreeMap::new(),
            next_worker: 1,
            next_attempt: 1,
            outcome: Outcome::Running,
            stats: Stats::default(),
        })
    }

    /// Handles one event; returns what to do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Register { host, .. } => self.on_register(host, &mut out),
            Event::RequestTask { worker, now } => self.on_request(worker, now, &mut out),
            Event::Progress {
                worker,
                task,
                bytes_done,
                now,
            } => self.on_progress(worker, task, bytes_done, now, &mut out),
            Event::Done {
                worker,
                task,
                report,
                ..
            } => self.on_done(worker, task, report, &mut out),
            Event::Failed {
                worker,
                task,
                error,
                ..
            } => self.on_failed(worker, task, error, &mut out),
            Event::FetchFailed {
                worker,
                task,
                map_index,
                map_attempt,
                error,
                ..
            } => self.on_fetch_failed(worker, task, map_index, map_attempt, error, &mut out),
            Event::Tick { now } => self.on_tick(now, &mut out),
        }
        out
    }

    /// Where the job is.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The job's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The map tasks' splits, by index.
    pub fn splits(&self) -> &[Split] {
        &self.splits
    }

    /// A snapshot for progress bars.
    pub fn progress(&self) -> Progress {
        let done_count = |tasks: &[Task]| tasks.iter().filter(|t| t.is_done()).count() as u32;
        let mut p = Progress {
            maps_done: done_count(&self.maps),
            maps_total: self.maps.len() as u32,
            reduces_done: done_count(&self.reduces),
            reduces_total: self.reduces.len() as u32,
            workers: self.workers.len(),
            ..Progress::default()
        };
        for (task, split) in self.maps.iter().zip(&self.splits) {
            p.map_bytes_total += split.len();
            p.map_bytes_done += match &task.accepted {
                Some(a) => {
                    p.reduce_bytes_total += a.report.bytes_out;
                    split.len()
                }
                None => task.live_bytes().min(split.len()),
            };
        }
        for task in &self.reduces {
            p.reduce_bytes_done += match &task.accepted {
                Some(a) => {
                    p.output_bytes += a.report.bytes_out;
                    a.report.bytes_in
                }
                None => task.live_bytes(),
            };
        }
        p.reduce_bytes_done = p.reduce_bytes_done.min(p.reduce_bytes_total);
        p
    }

    /// What a task works on, for error messages.
    pub fn describe_input(&self, kind: TaskKind, index: u32) -> String {
        match kind {
            TaskKind::Map => match self.splits.get(index as usize) {
                Some(split) => format!("input {split}"),
                None => "no such map task".to_string(),
            },
            TaskKind::Reduce => format!("partition {index} of {} map outputs", self.maps.len()),
        }
    }
}
