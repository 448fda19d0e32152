//! Unit tests of the coordinator: each asserts the exact action vector, and
//! names the course check or paper rule it stands in for.

use super::*;
use crate::task::{ExitReason, MapOutput, MapTask, ReduceTask};

const A: fn(u64) -> AttemptId = AttemptId;
const W: fn(u64) -> WorkerId = WorkerId;

fn split(i: u32) -> Split {
    Split {
        file: format!("in-{i}.txt"),
        start: 0,
        end: 100,
    }
}

fn coordinator(maps: u32, n_reduce: u32) -> Coordinator {
    let config = Config {
        n_reduce,
        ..Config::default()
    };
    Coordinator::new(config, (0..maps).map(split).collect()).unwrap()
}

fn register(c: &mut Coordinator, host: &str) -> WorkerId {
    match c.handle(Event::Register {
        host: host.into(),
        now: Millis(0),
    })[..]
    {
        [Action::Registered { worker }] => worker,
        ref other => panic!("{other:?}"),
    }
}

fn request(c: &mut Coordinator, worker: WorkerId, now: u64) -> Vec<Action> {
    c.handle(Event::RequestTask {
        worker,
        now: Millis(now),
    })
}

fn map_ref(index: u32, attempt: u64) -> TaskRef {
    TaskRef {
        kind: TaskKind::Map,
        index,
        attempt: A(attempt),
    }
}

fn reduce_ref(index: u32, attempt: u64) -> TaskRef {
    TaskRef {
        kind: TaskKind::Reduce,
        index,
        attempt: A(attempt),
    }
}

fn map_reply(worker: WorkerId, index: u32, attempt: u64) -> Action {
    Action::Reply {
        worker,
        reply: Reply::Map(MapTask {
            index,
            attempt: A(attempt),
            split: split(index),
        }),
    }
}

fn started(task: TaskRef, worker: WorkerId, speculative: bool) -> Action {
    Action::Started {
        task,
        worker,
        speculative,
    }
}

fn done(c: &mut Coordinator, worker: WorkerId, task: TaskRef, now: u64) -> Vec<Action> {
    let n = c.config().n_reduce as usize;
    let report = DoneReport {
        partition_bytes: if task.kind == TaskKind::Map {
            vec![7; n]
        } else {
            vec![]
        },
        bytes_in: 100,
        bytes_out: 7 * n as u64,
    };
    c.handle(Event::Done {
        worker,
        task,
        report,
        now: Millis(now),
    })
}

fn input(map_index: u32, attempt: u64, host: &str) -> MapOutput {
    MapOutput {
        map_index,
        map_attempt: A(attempt),
        host: host.into(),
        bytes: 7,
    }
}

// 6.824 wc/indexer: maps first, reduces only once every map is done, then
// everyone is told the job is done.
#[test]
fn hands_out_maps_then_reduces_then_exit() {
    let mut c = coordinator(2, 1);
    let (w1, w2) = (register(&mut c, ""), register(&mut c, ""));
    assert_eq!(
        request(&mut c, w1, 0),
        [map_reply(w1, 0, 1), started(map_ref(0, 1), w1, false)]
    );
    assert_eq!(
        request(&mut c, w2, 0),
        [map_reply(w2, 1, 2), started(map_ref(1, 2), w2, false)]
    );
    assert_eq!(
        done(&mut c, w1, map_ref(0, 1), 5),
        [Action::Finished {
            task: map_ref(0, 1),
            worker: w1
        }]
    );
    // Map 1 still runs: no reduce yet, and no backup before speculate_after.
    assert_eq!(
        request(&mut c, w1, 6),
        [Action::Reply {
            worker: w1,
            reply: Reply::Wait(Millis(200))
        }]
    );
    assert_eq!(
        done(&mut c, w2, map_ref(1, 2), 7),
        [
            Action::Finished {
                task: map_ref(1, 2),
                worker: w2
            },
            Action::MapPhaseDone
        ]
    );
    let reduce = Reply::Reduce(ReduceTask {
        index: 0,
        attempt: A(3),
        inputs: vec![input(0, 1, ""), input(1, 2, "")],
    });
    assert_eq!(
        request(&mut c, w1, 8),
        [
            Action::Reply {
                worker: w1,
                reply: reduce
            },
            started(reduce_ref(0, 3), w1, false)
        ]
    );
    assert_eq!(
        done(&mut c, w1, reduce_ref(0, 3), 9),
        [
            Action::Finished {
                task: reduce_ref(0, 3),
                worker: w1
            },
            Action::JobDone
        ]
    );
    assert_eq!(*c.outcome(), Outcome::Done);
    assert_eq!(
        request(&mut c, w2, 10),
        [Action::Reply {
            worker: w2,
            reply: Reply::Exit(ExitReason::JobDone)
        }]
    );
}

#[test]
fn an_unknown_worker_is_told_to_exit() {
    let mut c = coordinator(1, 1);
    assert_eq!(
        request(&mut c, W(9), 0),
        [Action::Reply {
            worker: W(9),
            reply: Reply::Exit(ExitReason::UnknownWorker)
        }]
    );
}

// 6.824 crash test: a worker that dies mid-task is not heard from; after the
// timeout its task goes to another worker.
#[test]
fn a_silent_attempt_times_out_and_its_task_is_reassigned() {
    let mut c = coordinator(1, 1);
    let (w1, w2) = (register(&mut c, ""), register(&mut c, ""));
    request(&mut c, w1, 0);
    assert_eq!(c.handle(Event::Tick { now: Millis(9_999) }), []);
    assert_eq!(
        c.handle(Event::Tick {
            now: Millis(10_000)
        }),
        [Action::TimedOut {
            task: map_ref(0, 1),
            worker: w1
        }]
    );
    assert_eq!(
        request(&mut c, w2, 10_001),
        [map_reply(w2, 0, 2), started(map_ref(0, 2), w2, false)]
    );
    assert_eq!(c.stats().reexecuted, 1);
    assert_eq!(c.stats().timeouts, 1);
}

// Heartbeats keep a long task alive: the timeout counts from the last report.
#[test]
fn progress_reports_keep_an_attempt_alive() {
    let mut c = coordinator(1, 1);
    let w1 = register(&mut c, "");
    request(&mut c, w1, 0);
    let progress = |now| Event::Progress {
        worker: w1,
        task: map_ref(0, 1),
        bytes_done: 50,
        now: Millis(now),
    };
    assert_eq!(
        c.handle(progress(8_000)),
        [Action::KeepGoing {
            worker: w1,
            task: map_ref(0, 1),
            keep_going: true
        }]
    );
    assert_eq!(
        c.handle(Event::Tick {
            now: Millis(17_999)
        }),
        []
    );
    assert_eq!(c.progress().map_bytes_done, 50);
    assert_eq!(
        c.handle(Event::Tick {
            now: Millis(18_000)
        }),
        [Action::TimedOut {
            task: map_ref(0, 1),
            worker: w1
        }]
    );
}

// 6.824 crash test: the late finisher of a reassigned task is tolerated; the
// first result wins and the other is a duplicate that changes nothing.
#[test]
fn the_first_result_wins_and_late_reports_are_duplicates() {
    let mut c = coordinator(1, 1);
    let (w1, w2) = (register(&mut c, "h1"), register(&mut c, "h2"));
    request(&mut c, w1, 0);
    c.handle(Event::Tick {
        now: Millis(10_000),
    });
    request(&mut c, w2, 10_000);
    // The timed-out attempt finishes first after all: accepted.
    assert_eq!(
        done(&mut c, w1, map_ref(0, 1), 11_000),
        [
            Action::Finished {
                task: map_ref(0, 1),
                worker: w1
            },
            Action::MapPhaseDone
        ]
    );
    assert_eq!(
        c.handle(Event::Progress {
            worker: w2,
            task: map_ref(0, 2),
            bytes_done: 9,
            now: Millis(11_001)
        }),
        [Action::KeepGoing {
            worker: w2,
            task: map_ref(0, 2),
            keep_going: false
        }]
    );
    assert_eq!(
        done(&mut c, w2, map_ref(0, 2), 12_000),
        [Action::Duplicate {
            task: map_ref(0, 2),
            worker: w2
        }]
    );
    assert_eq!(
        done(&mut c, w1, map_ref(0, 1), 12_001),
        [Action::Duplicate {
            task: map_ref(0, 1),
            worker: w1
        }]
    );
    // The reduce reads the accepted attempt's output, on its host.
    let reduce = Reply::Reduce(ReduceTask {
        index: 0,
        attempt: A(3),
        inputs: vec![input(0, 1, "h1")],
    });
    assert_eq!(
        request(&mut c, w2, 12_002)[0],
        Action::Reply {
            worker: w2,
            reply: reduce
        }
    );
}

// MapReduce paper §3.6: near the end of a phase, idle workers get backup
// copies of long-running tasks; never of their own.
#[test]
fn idle_workers_get_backup_copies_of_stragglers() {
    let mut c = coordinator(2, 1);
    let (w1, w2) = (register(&mut c, ""), register(&mut c, ""));
    request(&mut c, w1, 0);
    request(&mut c, w2, 1_000);
    done(&mut c, w2, map_ref(1, 2), 2_000);
    let wait = |w| {
        [Action::Reply {
            worker: w,
            reply: Reply::Wait(Millis(200)),
        }]
    };
    assert_eq!(request(&mut c, w2, 9_999), wait(w2));
    assert_eq!(
        request(&mut c, w2, 10_000),
        [map_reply(w2, 0, 3), started(map_ref(0, 3), w2, true)]
    );
    // At most one backup per task.
    let w3 = register(&mut c, "");
    assert_eq!(request(&mut c, w3, 10_001), wait(w3));
    assert_eq!(
        done(&mut c, w1, map_ref(0, 1), 10_500),
        [
            Action::Finished {
                task: map_ref(0, 1),
                worker: w1
            },
            Action::MapPhaseDone
        ]
    );
    assert_eq!(
        done(&mut c, w2, map_ref(0, 3), 10_600),
        [Action::Duplicate {
            task: map_ref(0, 3),
            worker: w2
        }]
    );
    assert_eq!(c.stats().speculative, 1);
}

#[test]
fn the_worker_running_a_task_never_gets_its_backup() {
    let mut c = coordinator(1, 1);
    let w1 = register(&mut c, "");
    request(&mut c, w1, 0);
    // w1 asking again means it abandoned its attempt: the task is idle again
    // and handed back as a plain (not speculative) attempt.
    assert_eq!(
        request(&mut c, w1, 20_000),
        [map_reply(w1, 0, 2), started(map_ref(0, 2), w1, false)]
    );
}

#[test]
fn speculation_can_be_disabled() {
    let config = Config {
        speculate_after: None,
        n_reduce: 1,
        ..Config::default()
    };
    let mut c = Coordinator::new(config, vec![split(0)]).unwrap();
    let (w1, w2) = (register(&mut c, ""), register(&mut c, ""));
    request(&mut c, w1, 0);
    assert_eq!(
        request(&mut c, w2, 60_000),
        [Action::Reply {
            worker: w2,
            reply: Reply::Wait(Millis(200))
        }]
    );
}

// MapReduce paper §3.3: completed map tasks on a failed machine are re-run,
// because their output lived on its local disk.
#[test]
fn a_reducer_that_cannot_fetch_makes_the_maps_on_that_host_run_again() {
    let mut c = coordinator(3, 1);
    let (w1, w2) = (register(&mut c, "h1:1"), register(&mut c, "h2:1"));
    request(&mut c, w1, 0);
    done(&mut c, w1, map_ref(0, 1), 1);
    request(&mut c, w1, 2);
    done(&mut c, w1, map_ref(1, 2), 3);
    request(&mut c, w2, 4);
    done(&mut c, w2, map_ref(2, 3), 5);
    request(&mut c, w2, 6); // reduce 0, attempt 4
    let lost = c.handle(Event::FetchFailed {
        worker: w2,
        task: reduce_ref(0, 4),
        map_index: 0,
        map_attempt: A(1),
        error: "connection refused".into(),
        now: Millis(7),
    });
    let map_lost = |i| Action::MapLost {
        map_index: i,
        host: "h1:1".into(),
        error: "connection refused".into(),
    };
    assert_eq!(lost, [map_lost(0), map_lost(1)]);
    assert_eq!(
        request(&mut c, w2, 8),
        [map_reply(w2, 0, 5), started(map_ref(0, 5), w2, false)]
    );
    done(&mut c, w2, map_ref(0, 5), 9);
    request(&mut c, w2, 10);
    assert_eq!(
        done(&mut c, w2, map_ref(1, 6), 11),
        [
            Action::Finished {
                task: map_ref(1, 6),
                worker: w2
            },
            Action::MapPhaseDone
        ]
    );
    let reduce = Reply::Reduce(ReduceTask {
        index: 0,
        attempt: A(7),
        inputs: vec![
            input(0, 5, "h2:1"),
            input(1, 6, "h2:1"),
            input(2, 3, "h2:1"),
        ],
    });
    assert_eq!(
        request(&mut c, w2, 12)[0],
        Action::Reply {
            worker: w2,
            reply: reduce
        }
    );
    assert_eq!(c.stats().maps_lost, 2);
}

#[test]
fn a_stale_fetch_failure_does_not_rerun_a_map_again() {
    let mut c = coordinator(1, 2);
    let w1 = register(&mut c, "");
    request(&mut c, w1, 0);
    done(&mut c, w1, map_ref(0, 1), 1);
    request(&mut c, w1, 2); // reduce 0, attempt 2
    let ev = Event::FetchFailed {
        worker: w1,
        task: reduce_ref(0, 2),
        map_index: 0,
        map_attempt: A(99),
        error: "gone".into(),
        now: Millis(3),
    };
    assert_eq!(c.handle(ev), []);
    // The reduce attempt was dropped: reduce 0 is idle again.
    assert_eq!(
        request(&mut c, w1, 4)[1],
        started(reduce_ref(0, 3), w1, false)
    );
}

// Streaming apps: a task that keeps failing stops the job with a message that
// names the task, its input and the last error.
#[test]
fn four_failures_of_one_task_stop_the_job() {
    let mut c = coordinator(1, 1);
    let w1 = register(&mut c, "");
    for attempt in 1..=3 {
        request(&mut c, w1, attempt);
        let failed = c.handle(Event::Failed {
            worker: w1,
            task: map_ref(0, attempt),
            error: "exit status 3".into(),
            now: Millis(attempt),
        });
        let retry = Action::Retry {
            task: map_ref(0, attempt),
            failures: attempt as u32,
            error: "exit status 3".into(),
        };
        assert_eq!(failed, [retry]);
    }
    request(&mut c, w1, 4);
    let message =
        "map task 0 (input in-0.txt bytes 0..100) failed 4 times; last error: exit status 3"
            .to_string();
    assert_eq!(
        c.handle(Event::Failed {
            worker: w1,
            task: map_ref(0, 4),
            error: "exit status 3".into(),
            now: Millis(4)
        }),
        [Action::JobFailed {
            message: message.clone()
        }]
    );
    assert_eq!(
        request(&mut c, w1, 5),
        [Action::Reply {
            worker: w1,
            reply: Reply::Exit(ExitReason::JobFailed(message))
        }]
    );
}

#[test]
fn nonsense_reports_are_rejected_and_change_nothing() {
    let mut c = coordinator(1, 2);
    let w1 = register(&mut c, "");
    request(&mut c, w1, 0);
    let bad = c.handle(Event::Done {
        worker: w1,
        task: map_ref(0, 1),
        report: DoneReport {
            partition_bytes: vec![1],
            bytes_in: 0,
            bytes_out: 0,
        },
        now: Millis(1),
    });
    assert_eq!(
        bad,
        [Action::Rejected {
            worker: w1,
            why: "map task 0 (attempt 1) reported 1 partitions, the job has 2".into()
        }]
    );
    let unknown = done(&mut c, w1, map_ref(5, 1), 2);
    assert_eq!(
        unknown,
        [Action::Rejected {
            worker: w1,
            why: "done report for unknown map task 5 (attempt 1)".into()
        }]
    );
    assert_eq!(c.progress().maps_done, 0);
}

#[test]
fn bad_configurations_are_refused() {
    let bad = |config| Coordinator::new(config, vec![]).err();
    assert_eq!(
        bad(Config {
            n_reduce: 0,
            ..Config::default()
        }),
        Some(ConfigError::NoReduces)
    );
    assert_eq!(
        bad(Config {
            task_timeout: Millis(0),
            ..Config::default()
        }),
        Some(ConfigError::ZeroTimeout)
    );
    assert_eq!(
        bad(Config {
            max_task_failures: 0,
            ..Config::default()
        }),
        Some(ConfigError::NoFailuresAllowed)
    );
}
