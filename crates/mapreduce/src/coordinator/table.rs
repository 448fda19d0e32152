//! The coordinator's per-task bookkeeping: which attempts are believed to be
//! running, which attempt's result was accepted, how often the task failed.
//!
//! Invariants: a task is *idle* (ready to hand out) exactly when it has no
//! accepted result and no live attempt; once a result is accepted the task
//! keeps no live attempt (later reports of other attempts are duplicates).

use crate::task::{AttemptId, DoneReport, WorkerId};
use crate::time::Millis;

/// An attempt believed to be running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub(crate) id: AttemptId,
    pub(crate) worker: WorkerId,
    pub(crate) started: Millis,
    /// Last time the worker reported on it (start or progress).
    pub(crate) heard: Millis,
    pub(crate) bytes_done: u64,
}

/// The accepted result of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) attempt: AttemptId,
    /// The shuffle address of the worker that holds a map's output.
    pub(crate) host: String,
    pub(crate) report: DoneReport,
}

/// One map or reduce task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Task {
    pub(crate) live: Vec<Attempt>,
    pub(crate) accepted: Option<Accepted>,
    pub(crate) failures: u32,
}

impl Task {
    pub(crate) fn is_idle(&self) -> bool {
        self.accepted.is_none() && self.live.is_empty()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.accepted.is_some()
    }

    /// Removes attempt `id` from the live set; returns it if it was there.
    pub(crate) fn take_live(&mut self, id: AttemptId) -> Option<Attempt> {
        let i = self.live.iter().position(|a| a.id == id)?;
        Some(self.live.remove(i))
    }

    pub(crate) fn live_mut(&mut self, id: AttemptId) -> Option<&mut Attempt> {
        self.live.iter_mut().find(|a| a.id == id)
    }

    /// Input bytes processed by the best live attempt.
    pub(crate) fn live_bytes(&self) -> u64 {
        self.live.iter().map(|a| a.bytes_done).max().unwrap_or(0)
    }
}

/// Index of the first idle task.
pub(crate) fn first_idle(tasks: &[Task]) -> Option<usize> {
    tasks.iter().position(Task::is_idle)
}

/// The task that most deserves a backup copy on `worker` at `now`: not done,
/// exactly one live attempt (on another worker) that started at least
/// `after` ago; the longest-running one first, ties to the lower index.
pub(crate) fn speculation_candidate(
    tasks: &[Task],
    worker: WorkerId,
    now: Millis,
    after: Millis,
) -> Option<usize> {
    tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_done() && t.live.len() == 1)
        .filter(|(_, t)| t.live[0].worker != worker && now.since(t.live[0].started) >= after)
        .min_by_key(|(i, t)| (t.live[0].started, *i))
        .map(|(i, _)| i)
}
