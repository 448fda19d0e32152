//! A worker's control loop as an I/O-free state machine: register, ask for a
//! task, run it, report, ask again; retry calls that fail; exit when told to
//! or when the coordinator stays unreachable.
//!
//! The runtime performs each [`WorkerAction`] and feeds the outcome back as a
//! [`WorkerEvent`]. Exactly one call or task is outstanding at a time.
//!
//! Coordinator-gone rule: before the first successful call, the worker keeps
//! trying for [`WorkerConfig::connect_timeout`] (the coordinator may still be
//! starting); afterwards it exits once calls have failed without a break for
//! [`WorkerConfig::gone_after`] (the coordinator exits when the job is done).

use crate::task::{AttemptId, DoneReport, ExitReason, MapTask, ReduceTask, Reply, TaskRef};
use crate::time::Millis;

/// The worker's tunables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// How long to keep trying to reach the coordinator at first.
    pub connect_timeout: Millis,
    /// How long calls may keep failing once connected before the worker
    /// concludes the coordinator is gone.
    pub gone_after: Millis,
    /// Pause between retries of a failed call.
    pub retry_interval: Millis,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            connect_timeout: Millis::from_secs(10),
            gone_after: Millis::from_secs(3),
            retry_interval: Millis(100),
        }
    }
}

/// How a task attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Outputs are in place.
    Done {
        /// The attempt.
        task: TaskRef,
        /// Sizes.
        report: DoneReport,
    },
    /// The attempt failed.
    Failed {
        /// The attempt.
        task: TaskRef,
        /// Why.
        error: String,
    },
    /// A reduce attempt could not read a map output.
    FetchFailed {
        /// The reduce attempt.
        task: TaskRef,
        /// The map output.
        map_index: u32,
        /// Its attempt.
        map_attempt: AttemptId,
        /// Why.
        error: String,
    },
    /// The coordinator said the attempt is no longer wanted.
    Abandoned {
        /// The attempt.
        task: TaskRef,
    },
}

/// What happens to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    /// The process started.
    Start {
        /// Current time.
        now: Millis,
    },
    /// `Register` succeeded.
    Registered {
        /// Current time.
        now: Millis,
    },
    /// `RequestTask` answered.
    Reply {
        /// The answer.
        reply: Reply,
        /// Current time.
        now: Millis,
    },
    /// The task runner finished.
    TaskFinished {
        /// How.
        outcome: TaskOutcome,
        /// Current time.
        now: Millis,
    },
    /// A report call succeeded.
    Reported {
        /// Current time.
        now: Millis,
    },
    /// The last call failed.
    RpcFailed {
        /// Why.
        error: String,
        /// Current time.
        now: Millis,
    },
    /// A [`WorkerAction::SleepUntil`] is over.
    Wake {
        /// Current time.
        now: Millis,
    },
}

/// Why a worker exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerExit {
    /// The job is done.
    JobDone,
    /// The job failed.
    JobFailed(String),
    /// The coordinator does not know this worker.
    UnknownWorker,
    /// The coordinator could not be reached.
    CoordinatorGone {
        /// The last call's error.
        error: String,
        /// Whether it had been reached before (it exits when its job ends)
        /// or never was (wrong address, not started).
        was_connected: bool,
    },
}

/// What the runtime must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerAction {
    /// Call `Register`.
    Register,
    /// Call `RequestTask`.
    RequestTask,
    /// Run a map task (and send heartbeats while it runs).
    RunMap(MapTask),
    /// Run a reduce task (and send heartbeats while it runs).
    RunReduce(ReduceTask),
    /// Call the report matching the outcome.
    Report(TaskOutcome),
    /// Do nothing until then, then send `Wake`.
    SleepUntil(Millis),
    /// Exit the process.
    Exit(WorkerExit),
}

/// The call to repeat after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Register,
    Request,
    Report(TaskOutcome),
}

/// The worker's control state; see the module docs.
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    started: Millis,
    connected: bool,
    failing_since: Option<Millis>,
    pending: Option<Pending>,
}

impl Worker {
    /// A worker that has not started.
    pub fn new(config: WorkerConfig) -> Self {
        Worker {
            config,
            started: Millis::ZERO,
            connected: false,
            failing_since: None,
            pending: None,
        }
    }

    /// Handles one event; returns the next action.
    pub fn handle(&mut self, event: WorkerEvent) -> Vec<WorkerAction> {
        match event {
            WorkerEvent::Start { now } => {
                self.started = now;
                self.call(Pending::Register)
            }
            WorkerEvent::Registered { .. } | WorkerEvent::Reported { .. } => {
                self.succeeded();
                self.call(Pending::Request)
            }
            WorkerEvent::Reply { reply, now } => {
                self.succeeded();
                self.on_reply(reply, now)
            }
            WorkerEvent::TaskFinished { outcome, .. } => match outcome {
                // The coordinator already dropped the attempt: just ask again.
                TaskOutcome::Abandoned { .. } => self.call(Pending::Request),
                outcome => self.call(Pending::Report(outcome)),
            },
            WorkerEvent::RpcFailed { error, now } => self.on_failure(error, now),
            WorkerEvent::Wake { .. } => match self.pending.clone() {
                Some(p) => self.call(p),
                None => self.call(Pending::Request),
            },
        }
    }

    fn succeeded(&mut self) {
        self.connected = true;
        self.failing_since = None;
    }

    fn call(&mut self, pending: Pending) -> Vec<WorkerAction> {
        let action = match &pending {
            Pending::Register => WorkerAction::Register,
            Pending::Request => WorkerAction::RequestTask,
            Pending::Report(outcome) => WorkerAction::Report(outcome.clone()),
        };
        self.pending = Some(pending);
        vec![action]
    }

    fn on_reply(&mut self, reply: Reply, now: Millis) -> Vec<WorkerAction> {
        self.pending = None;
        match reply {
            Reply::Map(task) => vec![WorkerAction::RunMap(task)],
            Reply::Reduce(task) => vec![WorkerAction::RunReduce(task)],
            Reply::Wait(pause) => {
                self.pending = Some(Pending::Request);
                vec![WorkerAction::SleepUntil(now + pause)]
            }
            Reply::Exit(ExitReason::JobDone) => vec![WorkerAction::Exit(WorkerExit::JobDone)],
            Reply::Exit(ExitReason::JobFailed(msg)) => {
                vec![WorkerAction::Exit(WorkerExit::JobFailed(msg))]
            }
            Reply::Exit(ExitReason::UnknownWorker) => {
                vec![WorkerAction::Exit(WorkerExit::UnknownWorker)]
            }
        }
    }

    fn on_failure(&mut self, error: String, now: Millis) -> Vec<WorkerAction> {
        let (since, limit) = if self.connected {
            (
                *self.failing_since.get_or_insert(now),
                self.config.gone_after,
            )
        } else {
            (self.started, self.config.connect_timeout)
        };
        if now.since(since) >= limit {
            let was_connected = self.connected;
            return vec![WorkerAction::Exit(WorkerExit::CoordinatorGone {
                error,
                was_connected,
            })];
        }
        vec![WorkerAction::SleepUntil(now + self.config.retry_interval)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{Split, TaskKind};

    fn map_task() -> MapTask {
        MapTask {
            index: 0,
            attempt: AttemptId(1),
            split: Split {
                file: "f".into(),
                start: 0,
                end: 3,
            },
        }
    }

    #[test]
    fn registers_asks_runs_reports_and_asks_again() {
        let mut w = Worker::new(WorkerConfig::default());
        assert_eq!(
            w.handle(WorkerEvent::Start { now: Millis(0) }),
            [WorkerAction::Register]
        );
        assert_eq!(
            w.handle(WorkerEvent::Registered { now: Millis(1) }),
            [WorkerAction::RequestTask]
        );
        let reply = Reply::Map(map_task());
        assert_eq!(
            w.handle(WorkerEvent::Reply {
                reply,
                now: Millis(2)
            }),
            [WorkerAction::RunMap(map_task())]
        );
        let task = TaskRef {
            kind: TaskKind::Map,
            index: 0,
            attempt: AttemptId(1),
        };
        let outcome = TaskOutcome::Done {
            task,
            report: DoneReport::default(),
        };
        assert_eq!(
            w.handle(WorkerEvent::TaskFinished {
                outcome: outcome.clone(),
                now: Millis(3)
            }),
            [WorkerAction::Report(outcome)]
        );
        assert_eq!(
            w.handle(WorkerEvent::Reported { now: Millis(4) }),
            [WorkerAction::RequestTask]
        );
        let reply = Reply::Exit(ExitReason::JobDone);
        assert_eq!(
            w.handle(WorkerEvent::Reply {
                reply,
                now: Millis(5)
            }),
            [WorkerAction::Exit(WorkerExit::JobDone)]
        );
    }

    #[test]
    fn waits_when_told_and_retries_the_same_call_after_a_failure() {
        let mut w = Worker::new(WorkerConfig::default());
        w.handle(WorkerEvent::Start { now: Millis(0) });
        w.handle(WorkerEvent::Registered { now: Millis(0) });
        let reply = Reply::Wait(Millis(200));
        assert_eq!(
            w.handle(WorkerEvent::Reply {
                reply,
                now: Millis(10)
            }),
            [WorkerAction::SleepUntil(Millis(210))]
        );
        assert_eq!(
            w.handle(WorkerEvent::Wake { now: Millis(210) }),
            [WorkerAction::RequestTask]
        );
        let task = TaskRef {
            kind: TaskKind::Reduce,
            index: 2,
            attempt: AttemptId(9),
        };
        let outcome = TaskOutcome::Failed {
            task,
            error: "boom".into(),
        };
        w.handle(WorkerEvent::TaskFinished {
            outcome: outcome.clone(),
            now: Millis(300),
        });
        let failed = WorkerEvent::RpcFailed {
            error: "refused".into(),
            now: Millis(400),
        };
        assert_eq!(w.handle(failed), [WorkerAction::SleepUntil(Millis(500))]);
        assert_eq!(
            w.handle(WorkerEvent::Wake { now: Millis(500) }),
            [WorkerAction::Report(outcome)]
        );
    }

    #[test]
    fn exits_when_the_coordinator_stays_unreachable() {
        let config = WorkerConfig {
            connect_timeout: Millis(1000),
            gone_after: Millis(300),
            retry_interval: Millis(100),
        };
        let mut w = Worker::new(config);
        w.handle(WorkerEvent::Start { now: Millis(0) });
        let fail = |now| WorkerEvent::RpcFailed {
            error: "refused".into(),
            now: Millis(now),
        };
        // Not yet connected: tries for the whole connect timeout.
        assert_eq!(
            w.handle(fail(900)),
            [WorkerAction::SleepUntil(Millis(1000))]
        );
        w.handle(WorkerEvent::Registered { now: Millis(950) });
        // Connected: gives up after `gone_after` of failures in a row.
        assert_eq!(
            w.handle(fail(2000)),
            [WorkerAction::SleepUntil(Millis(2100))]
        );
        assert_eq!(
            w.handle(fail(2200)),
            [WorkerAction::SleepUntil(Millis(2300))]
        );
        assert_eq!(
            w.handle(fail(2300)),
            [WorkerAction::Exit(WorkerExit::CoordinatorGone {
                error: "refused".into(),
                was_connected: true,
            })]
        );
    }

    #[test]
    fn a_coordinator_never_reached_is_reported_as_such() {
        let config = WorkerConfig {
            connect_timeout: Millis(500),
            ..WorkerConfig::default()
        };
        let mut w = Worker::new(config);
        w.handle(WorkerEvent::Start { now: Millis(0) });
        let failed = WorkerEvent::RpcFailed {
            error: "refused".into(),
            now: Millis(500),
        };
        assert_eq!(
            w.handle(failed),
            [WorkerAction::Exit(WorkerExit::CoordinatorGone {
                error: "refused".into(),
                was_connected: false,
            })]
        );
    }
}
