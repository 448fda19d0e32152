//! The job's web console: the coordinator serves one HTML page ([`PAGE`],
//! embedded, inline CSS and JavaScript, no network) and `GET /api/job`,
//! the job as JSON, over HTTP/1.1 on its own port. The page polls the JSON
//! twice a second and draws the job's progress, throughput, counters and
//! every task with its attempts.
//!
//! [`Recorder`] is an [`Observer`] that keeps each task's attempts (which
//! worker, backup copy or not, when started and ended, how it ended) from
//! the coordinator's actions, since the I/O-free coordinator keeps only
//! what scheduling needs. Times are the coordinator's clock (milliseconds
//! since the job started).
//!
//! Invariant: every figure in `/api/job` comes from the coordinator's
//! state or from an action it emitted; a task no action named yet is
//! `idle`, never guessed at.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use flotilla_mapreduce::coordinator::{Action, Outcome, Progress, Stats};
use flotilla_mapreduce::task::{TaskKind, TaskRef};
use flotilla_tls::pages::Pages;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::coordinator::Observer;

/// The console page.
pub const PAGE: &str = include_str!("console.html");

/// How an attempt ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Running,
    /// Its result was accepted.
    Done,
    /// Another attempt's result was accepted first (and this one has not
    /// reported since).
    Superseded,
    /// Superseded, and its result came later and was dropped.
    Duplicate,
    TimedOut,
    Failed,
}

impl End {
    fn name(self) -> &'static str {
        match self {
            End::Running => "running",
            End::Done => "done",
            End::Superseded => "superseded",
            End::Duplicate => "duplicate",
            End::TimedOut => "timed out",
            End::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
struct AttemptLog {
    attempt: u64,
    worker: u64,
    backup: bool,
    started_ms: u64,
    ended_ms: Option<u64>,
    end: End,
}

#[derive(Debug, Clone, Default)]
struct TaskLog {
    attempts: Vec<AttemptLog>,
    done: bool,
    /// Times its (map) output was lost and it had to run again.
    lost: u32,
}

impl TaskLog {
    fn attempt(&mut self, task: &TaskRef) -> Option<&mut AttemptLog> {
        self.attempts
            .iter_mut()
            .find(|a| a.attempt == task.attempt.0)
    }

    /// Ends attempt `task` as `end` at `now`, if it is still running.
    fn end(&mut self, task: &TaskRef, end: End, now: u64) {
        if let Some(a) = self.attempt(task).filter(|a| a.end == End::Running) {
            a.end = end;
            a.ended_ms = Some(now);
        }
    }
}

/// Every task's attempts, as the actions told them.
#[derive(Debug)]
pub struct History {
    start: Instant,
    tasks: BTreeMap<(u8, u32), TaskLog>,
}

fn key(kind: TaskKind, index: u32) -> (u8, u32) {
    (matches!(kind, TaskKind::Reduce) as u8, index)
}

impl History {
    /// An empty history whose clock starts now (with the coordinator's).
    pub fn new(start: Instant) -> History {
        History {
            start,
            tasks: BTreeMap::new(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Notes what `actions` say about tasks.
    pub fn note(&mut self, actions: &[Action]) {
        let now = self.now();
        for action in actions {
            match action {
                Action::Started {
                    task,
                    worker,
                    speculative,
                } => self.log(task).attempts.push(AttemptLog {
                    attempt: task.attempt.0,
                    worker: worker.0,
                    backup: *speculative,
                    started_ms: now,
                    ended_ms: None,
                    end: End::Running,
                }),
                Action::Finished { task, .. } => {
                    let log = self.log(task);
                    log.end(task, End::Done, now);
                    log.done = true;
                    for a in log.attempts.iter_mut().filter(|a| a.end == End::Running) {
                        a.end = End::Superseded;
                        a.ended_ms = Some(now);
                    }
                }
                // A superseded copy that finished anyway: its result came
                // too late and was dropped.
                Action::Duplicate { task, .. } => {
                    let log = self.log(task);
                    if let Some(a) = log.attempt(task).filter(|a| a.end == End::Superseded) {
                        a.end = End::Duplicate;
                    }
                    log.end(task, End::Duplicate, now);
                }
                Action::TimedOut { task, .. } => self.log(task).end(task, End::TimedOut, now),
                Action::Retry { task, .. } => self.log(task).end(task, End::Failed, now),
                Action::MapLost { map_index, .. } => {
                    let log = self
                        .tasks
                        .entry(key(TaskKind::Map, *map_index))
                        .or_default();
                    log.done = false;
                    log.lost += 1;
                }
                _ => {}
            }
        }
    }

    fn log(&mut self, task: &TaskRef) -> &mut TaskLog {
        self.tasks.entry(key(task.kind, task.index)).or_default()
    }

    /// The tasks as JSON: `maps` map tasks and `reduces` reduce tasks, in
    /// order, each with its state, attempts and whether its running
    /// attempt is a straggler (running more than twice the median time of
    /// its phase's finished attempts).
    fn tasks_json(&self, maps: u32, reduces: u32) -> Vec<Value> {
        let now = self.now();
        let median = |kind: u8| {
            let mut done: Vec<u64> = self
                .tasks
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .flat_map(|(_, t)| t.attempts.iter())
                .filter(|a| a.end == End::Done)
                .filter_map(|a| Some(a.ended_ms? - a.started_ms))
                .collect();
            done.sort_unstable();
            done.get(done.len() / 2).copied()
        };
        let medians = [median(0), median(1)];
        let all = (0..maps)
            .map(|i| (0u8, i))
            .chain((0..reduces).map(|i| (1u8, i)));
        all.map(|(kind, index)| {
            let empty = TaskLog::default();
            let log = self.tasks.get(&(kind, index)).unwrap_or(&empty);
            let running = log.attempts.iter().filter(|a| a.end == End::Running);
            let longest = running.clone().map(|a| now - a.started_ms).max();
            let state = match (log.done, longest) {
                (true, _) => "done",
                (false, Some(_)) => "running",
                (false, None) => "idle",
            };
            let straggler = matches!((longest, medians[kind as usize]),
                (Some(run), Some(m)) if run > 2 * m.max(1));
            let attempts: Vec<Value> = log
                .attempts
                .iter()
                .map(|a| {
                    json!({
                        "attempt": a.attempt, "worker": a.worker, "backup": a.backup,
                        "started_ms": a.started_ms, "ended_ms": a.ended_ms,
                        "duration_ms": a.ended_ms.unwrap_or(now) - a.started_ms,
                        "end": a.end.name(),
                    })
                })
                .collect();
            json!({
                "kind": if kind == 0 { "map" } else { "reduce" }, "index": index,
                "state": state, "straggler": straggler, "lost": log.lost,
                "attempts": attempts,
            })
        })
        .collect()
    }
}

/// The job as `GET /api/job` answers it.
pub fn job_json(history: &History, outcome: &Outcome, progress: &Progress, stats: &Stats) -> Value {
    let (state, error) = match outcome {
        Outcome::Running => ("running", None),
        Outcome::Done => ("done", None),
        Outcome::Failed(why) => ("failed", Some(why.as_str())),
    };
    json!({
        "state": state,
        "error": error,
        "elapsed_ms": history.now(),
        "workers": progress.workers,
        "progress": {
            "maps_done": progress.maps_done, "maps_total": progress.maps_total,
            "reduces_done": progress.reduces_done, "reduces_total": progress.reduces_total,
            "map_bytes_done": progress.map_bytes_done, "map_bytes_total": progress.map_bytes_total,
            "reduce_bytes_done": progress.reduce_bytes_done,
            "reduce_bytes_total": progress.reduce_bytes_total,
            "output_bytes": progress.output_bytes,
        },
        "stats": {
            "attempts": stats.attempts, "reexecuted": stats.reexecuted,
            "backups": stats.speculative, "timeouts": stats.timeouts,
            "failures": stats.failures, "maps_lost": stats.maps_lost,
            "duplicates": stats.duplicates,
        },
        "tasks": history.tasks_json(progress.maps_total, progress.reduces_total),
    })
}

/// An [`Observer`] that keeps the [`History`] and passes every action on.
pub struct Recorder {
    /// What it keeps.
    pub history: Arc<Mutex<History>>,
    /// The observer it passes actions to.
    pub inner: Arc<dyn Observer>,
}

impl Observer for Recorder {
    fn on_actions(&self, actions: &[Action], progress: &Progress) {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(actions);
        self.inner.on_actions(actions, progress);
    }
}

/// What `/api/job` answers: made fresh for each request.
pub type Snapshot = Arc<dyn Fn() -> Value + Send + Sync>;

/// The console's paths: the page, and the job as JSON.
pub fn pages(snapshot: Snapshot) -> Pages {
    Arc::new(move |path| match path {
        "/" => Some(("text/html; charset=utf-8", PAGE.to_string())),
        "/api/job" => Some(("application/json", snapshot().to_string())),
        _ => None,
    })
}

/// Serves the console on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, snapshot: Snapshot) {
    flotilla_tls::pages::serve(listener, pages(snapshot)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_mapreduce::task::{AttemptId, WorkerId};
    use http::{Method, Request, StatusCode};
    use std::time::Duration;

    fn task(kind: TaskKind, index: u32, attempt: u64) -> TaskRef {
        TaskRef {
            kind,
            index,
            attempt: AttemptId(attempt),
        }
    }

    fn started(t: TaskRef, worker: u64, speculative: bool) -> Action {
        Action::Started {
            task: t,
            worker: WorkerId(worker),
            speculative,
        }
    }

    #[test]
    fn attempts_are_told_as_the_actions_tell_them() {
        let mut h = History::new(Instant::now());
        let (m0a, m0b) = (task(TaskKind::Map, 0, 1), task(TaskKind::Map, 0, 2));
        let m1 = task(TaskKind::Map, 1, 3);
        let r0 = task(TaskKind::Reduce, 0, 4);
        h.note(&[started(m0a, 1, false), started(m1, 2, false)]);
        h.note(&[started(m0b, 2, true)]);
        h.note(&[Action::Finished {
            task: m0b,
            worker: WorkerId(2),
        }]);
        h.note(&[Action::Duplicate {
            task: m0a,
            worker: WorkerId(1),
        }]);
        h.note(&[Action::TimedOut {
            task: m1,
            worker: WorkerId(2),
        }]);
        h.note(&[started(r0, 1, false)]);
        h.note(&[Action::Retry {
            task: r0,
            failures: 1,
            error: "boom".into(),
        }]);
        let tasks = h.tasks_json(3, 1);
        assert_eq!(tasks.len(), 4);
        let ends = |i: usize| -> Vec<String> {
            tasks[i]["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["end"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(tasks[0]["state"], "done");
        // The first copy was superseded by the backup, then its late
        // result came in: a duplicate.
        assert_eq!(ends(0), ["duplicate", "done"]);
        assert_eq!(tasks[0]["attempts"][1]["backup"], true);
        assert_eq!(
            (tasks[1]["state"].as_str(), ends(1)),
            (Some("idle"), vec!["timed out".to_string()])
        );
        assert_eq!(tasks[2]["state"], "idle");
        assert_eq!(tasks[2]["attempts"].as_array().unwrap().len(), 0);
        assert_eq!(
            (tasks[3]["kind"].as_str(), ends(3)),
            (Some("reduce"), vec!["failed".to_string()])
        );

        h.note(&[Action::MapLost {
            map_index: 0,
            host: "w".into(),
            error: "gone".into(),
        }]);
        let tasks = h.tasks_json(3, 1);
        assert_eq!(
            (tasks[0]["state"].as_str(), tasks[0]["lost"].as_u64()),
            (Some("idle"), Some(1))
        );
    }

    #[test]
    fn a_running_attempt_far_past_its_phase_s_median_is_a_straggler() {
        let start = Instant::now() - Duration::from_secs(10);
        let mut h = History::new(start);
        let log = |started_ms, ended_ms, end| AttemptLog {
            attempt: 1,
            worker: 1,
            backup: false,
            started_ms,
            ended_ms,
            end,
        };
        // A map that took 100 ms (from 9.0 s to 9.1 s), done.
        let done = h.tasks.entry((0, 0)).or_default();
        done.attempts.push(log(9_000, Some(9_100), End::Done));
        done.done = true;
        // Two still running, about 400 ms and 50 ms in (the job's clock
        // reads about 10,000): past twice the median, and not.
        for (index, started) in [(1, 9_600), (2, 9_950)] {
            let task = h.tasks.entry((0, index)).or_default();
            task.attempts.push(log(started, None, End::Running));
        }
        let tasks = h.tasks_json(3, 0);
        assert_eq!(tasks[0]["attempts"][0]["duration_ms"], 100);
        assert_eq!(tasks[0]["straggler"], false);
        assert_eq!(
            (tasks[1]["state"].as_str(), tasks[1]["straggler"].as_bool()),
            (Some("running"), Some(true))
        );
        assert_eq!(tasks[2]["straggler"], false);
    }

    #[test]
    fn only_get_of_the_console_s_paths_is_answered() {
        let snapshot: Snapshot = Arc::new(|| json!({"state": "running"}));
        let get = |method: Method, path: &str| {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap();
            flotilla_tls::pages::answer(&pages(Arc::clone(&snapshot)), &req).status()
        };
        assert_eq!(get(Method::GET, "/"), StatusCode::OK);
        assert_eq!(get(Method::GET, "/api/job"), StatusCode::OK);
        assert_eq!(
            get(Method::POST, "/api/job"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(get(Method::GET, "/etc/passwd"), StatusCode::NOT_FOUND);
        assert!(PAGE.contains("/api/job"));
    }
}
