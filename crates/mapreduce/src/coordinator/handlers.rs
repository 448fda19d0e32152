//! The coordinator's event handlers, one per [`Event`] variant; the rules they
//! follow are listed in the module docs of [`super`].

use super::table::{Accepted, Attempt, Task, first_idle, speculation_candidate};
use super::{Action, Coordinator, Outcome};
use crate::task::{
    AttemptId, DoneReport, ExitReason, MapOutput, MapTask, ReduceTask, Reply, TaskKind, TaskRef,
    WorkerId,
};
use crate::time::Millis;

impl Coordinator {
    pub(super) fn on_register(&mut self, host: String, out: &mut Vec<Action>) {
        let worker = WorkerId(self.next_worker);
        self.next_worker += 1;
        self.workers.insert(worker, host);
        out.push(Action::Registered { worker });
    }

    pub(super) fn on_request(&mut self, worker: WorkerId, now: Millis, out: &mut Vec<Action>) {
        let reply = |reply| Action::Reply { worker, reply };
        if !self.workers.contains_key(&worker) {
            out.push(reply(Reply::Exit(ExitReason::UnknownWorker)));
            return;
        }
        match &self.outcome {
            Outcome::Done => return out.push(reply(Reply::Exit(ExitReason::JobDone))),
            Outcome::Failed(msg) => {
                return out.push(reply(Reply::Exit(ExitReason::JobFailed(msg.clone()))));
            }
            Outcome::Running => {}
        }
        // A worker that asks runs nothing: whatever it held is abandoned.
        for task in self.maps.iter_mut().chain(self.reduces.iter_mut()) {
            task.live.retain(|a| a.worker != worker);
        }
        let maps_done = self.maps.iter().all(Task::is_done);
        let (kind, tasks) = if maps_done {
            (TaskKind::Reduce, &self.reduces)
        } else {
            (TaskKind::Map, &self.maps)
        };
        let pick = match first_idle(tasks) {
            Some(i) => Some((i, false)),
            None => self
                .config
                .speculate_after
                .and_then(|after| speculation_candidate(tasks, worker, now, after))
                .map(|i| (i, true)),
        };
        match pick {
            Some((index, speculative)) => self.assign(worker, kind, index, speculative, now, out),
            None => out.push(reply(Reply::Wait(self.config.wait_hint))),
        }
    }

    fn assign(
        &mut self,
        worker: WorkerId,
        kind: TaskKind,
        index: usize,
        speculative: bool,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        let task_ref = TaskRef {
            kind,
            index: index as u32,
            attempt,
        };
        let reply = match kind {
            TaskKind::Map => Reply::Map(MapTask {
                index: index as u32,
                attempt,
                split: self.splits[index].clone(),
            }),
            TaskKind::Reduce => Reply::Reduce(ReduceTask {
                index: index as u32,
                attempt,
                inputs: self.map_outputs(index),
            }),
        };
        let task = match kind {
            TaskKind::Map => &mut self.maps[index],
            TaskKind::Reduce => &mut self.reduces[index],
        };
        task.live.push(Attempt {
            id: attempt,
            worker,
            started: now,
            heard: now,
            bytes_done: 0,
        });
        let started = self.started.entry((kind, index as u32)).or_insert(0);
        if *started > 0 {
            self.stats.reexecuted += 1;
        }
        *started += 1;
        self.stats.attempts += 1;
        if speculative {
            self.stats.speculative += 1;
        }
        out.push(Action::Reply { worker, reply });
        out.push(Action::Started {
            task: task_ref,
            worker,
            speculative,
        });
    }

    /// Where partition `partition` of every map output is; every map is done.
    fn map_outputs(&self, partition: usize) -> Vec<MapOutput> {
        let mut inputs = Vec::with_capacity(self.maps.len());
        for (i, task) in self.maps.iter().enumerate() {
            if let Some(acc) = &task.accepted {
                inputs.push(MapOutput {
                    map_index: i as u32,
                    map_attempt: acc.attempt,
                    host: acc.host.clone(),
                    bytes: acc
                        .report
                        .partition_bytes
                        .get(partition)
                        .copied()
                        .unwrap_or(0),
                });
            }
        }
        inputs
    }

    fn task_mut(&mut self, kind: TaskKind, index: u32) -> Option<&mut Task> {
        match kind {
            TaskKind::Map => self.maps.get_mut(index as usize),
            TaskKind::Reduce => self.reduces.get_mut(index as usize),
        }
    }

    pub(super) fn on_progress(
        &mut self,
        worker: WorkerId,
        task: TaskRef,
        bytes_done: u64,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let running = self.outcome == Outcome::Running;
        let Some(t) = self.task_mut(task.kind, task.index) else {
            out.push(Action::Rejected {
                worker,
                why: format!("progress for unknown {task}"),
            });
            return;
        };
        if let Some(a) = t.live_mut(task.attempt) {
            a.heard = now;
            a.bytes_done = a.bytes_done.max(bytes_done);
        }
        let keep_going = running && !t.is_done();
        out.push(Action::KeepGoing {
            worker,
            task,
            keep_going,
        });
    }

    pub(super) fn on_done(
        &mut self,
        worker: WorkerId,
        task: TaskRef,
        report: DoneReport,
        out: &mut Vec<Action>,
    ) {
        let n_reduce = self.config.n_reduce as usize;
        if task.kind == TaskKind::Map && report.partition_bytes.len() != n_reduce {
            let why = format!(
                "{task} reported {} partitions, the job has {n_reduce}",
                report.partition_bytes.len()
            );
            out.push(Action::Rejected { worker, why });
            return;
        }
        let host = self.workers.get(&worker).cloned().unwrap_or_default();
        let running = self.outcome == Outcome::Running;
        let Some(t) = self.task_mut(task.kind, task.index) else {
            let why = format!("done report for unknown {task}");
            out.push(Action::Rejected { worker, why });
            return;
        };
        t.take_live(task.attempt);
        if t.is_done() || !running {
            self.stats.duplicates += 1;
            out.push(Action::Duplicate { task, worker });
            return;
        }
        // The first result wins: other attempts are obsolete.
        t.live.clear();
        t.accepted = Some(Accepted {
            attempt: task.attempt,
            host,
            report,
        });
        out.push(Action::Finished { task, worker });
        match task.kind {
            TaskKind::Map if self.maps.iter().all(Task::is_done) => {
                out.push(Action::MapPhaseDone);
            }
            TaskKind::Reduce if self.reduces.iter().all(Task::is_done) => {
                self.outcome = Outcome::Done;
                out.push(Action::JobDone);
            }
            _ => {}
        }
    }

    pub(super) fn on_failed(
        &mut self,
        worker: WorkerId,
        task: TaskRef,
        error: String,
        out: &mut Vec<Action>,
    ) {
        let running = self.outcome == Outcome::Running;
        let max = self.config.max_task_failures;
        let Some(t) = self.task_mut(task.kind, task.index) else {
            let why = format!("failure report for unknown {task}");
            out.push(Action::Rejected { worker, why });
            return;
        };
        t.take_live(task.attempt);
        if t.is_done() || !running {
            return;
        }
        t.failures += 1;
        let failures = t.failures;
        self.stats.failures += 1;
        if failures < max {
            out.push(Action::Retry {
                task,
                failures,
                error,
            });
            return;
        }
        let kind = match task.kind {
            TaskKind::Map => "map",
            TaskKind::Reduce => "reduce",
        };
        let message = format!(
            "{kind} task {} ({}) failed {failures} times; last error: {error}",
            task.index,
            self.describe_input(task.kind, task.index)
        );
        self.outcome = Outcome::Failed(message.clone());
        out.push(Action::JobFailed { message });
    }

    pub(super) fn on_fetch_failed(
        &mut self,
        worker: WorkerId,
        task: TaskRef,
        map_index: u32,
        map_attempt: AttemptId,
        error: String,
        out: &mut Vec<Action>,
    ) {
        if task.kind != TaskKind::Reduce || map_index as usize >= self.maps.len() {
            let why = format!("fetch failure of {task} for map task {map_index}");
            out.push(Action::Rejected { worker, why });
            return;
        }
        if let Some(t) = self.reduces.get_mut(task.index as usize) {
            t.take_live(task.attempt);
        }
        if self.outcome != Outcome::Running {
            return;
        }
        let lost_host = match &self.maps[map_index as usize].accepted {
            Some(acc) if acc.attempt == map_attempt => acc.host.clone(),
            // Already re-run since the reducer was told where to read.
            _ => return,
        };
        for (i, m) in self.maps.iter_mut().enumerate() {
            let same = match &m.accepted {
                Some(_) if i as u32 == map_index => true,
                // Every output on a lost host is lost; the shared directory
                // (empty host) loses only the file that was missing.
                Some(acc) => !lost_host.is_empty() && acc.host == lost_host,
                None => false,
            };
            if same {
                m.accepted = None;
                self.stats.maps_lost += 1;
                out.push(Action::MapLost {
                    map_index: i as u32,
                    host: lost_host.clone(),
                    error: error.clone(),
                });
            }
        }
    }

    pub(super) fn on_tick(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.outcome != Outcome::Running {
            return;
        }
        let timeout = self.config.task_timeout;
        let kinds = [
            (TaskKind::Map, &mut self.maps),
            (TaskKind::Reduce, &mut self.reduces),
        ];
        for (kind, tasks) in kinds {
            for (index, task) in tasks.iter_mut().enumerate() {
                task.live.retain(|a| {
                    let alive = now.since(a.heard) < timeout;
                    if !alive {
                        self.stats.timeouts += 1;
                        out.push(Action::TimedOut {
                            task: TaskRef {
                                kind,
                                index: index as u32,
                                attempt: a.id,
                            },
                            worker: a.worker,
                        });
                    }
                    alive
                });
            }
        }
    }
}
