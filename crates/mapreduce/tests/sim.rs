//! Simulated-time tests of the coordinator: many seeds, each a whole job on a
//! virtual clock with workers that run tasks for random times, crash (their
//! shuffle host dies with them), stall, and are restarted, as in the course's
//! crash test. Checks, for every seed: the job finishes; every reduce result
//! is accepted exactly once; no reduce is handed out while a map lacks a
//! result; and without faults every map runs exactly once (the job-count
//! check). Replay one seed with `SIM_SEED=<n> cargo test -p
//! flotilla-mapreduce --test sim`.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_mapreduce::coordinator::{Action, Config, Coordinator, Event, Outcome};
use flotilla_mapreduce::task::{DoneReport, Reply, Split, TaskKind, TaskRef, WorkerId};
use flotilla_mapreduce::time::Millis;

/// splitmix64: a tiny seedable PRNG, enough for a test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Ask(WorkerId),
    Heartbeat(WorkerId, TaskRef),
    Finish(WorkerId, TaskRef),
    Restart,
    Tick,
}

struct Sim {
    rng: Rng,
    coord: Coordinator,
    now: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    alive: BTreeSet<WorkerId>,
    /// Hosts of dead workers: their map outputs are gone.
    dead_hosts: BTreeSet<String>,
    faults: bool,
    n_reduce: u32,
    reduce_inputs: BTreeMap<TaskRef, Vec<(u32, flotilla_mapreduce::task::AttemptId, String)>>,
    maps_done: BTreeSet<u32>,
    n_maps: u32,
    finished_reduces: BTreeMap<u32, u32>,
    map_starts: BTreeMap<u32, u32>,
}

impl Sim {
    fn at(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), ev);
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Registered { worker } => {
                    self.alive.insert(worker);
                    self.at(0, Ev::Ask(worker));
                }
                Action::Reply { worker, reply } => self.on_reply(worker, reply),
                Action::Finished { task, .. } => match task.kind {
                    TaskKind::Map => {
                        self.maps_done.insert(task.index);
                    }
                    TaskKind::Reduce => *self.finished_reduces.entry(task.index).or_default() += 1,
                },
                Action::MapLost { map_index, .. } => {
                    self.maps_done.remove(&map_index);
                }
                Action::Started { task, .. } if task.kind == TaskKind::Map => {
                    *self.map_starts.entry(task.index).or_default() += 1;
                }
                _ => {}
            }
        }
    }

    fn on_reply(&mut self, worker: WorkerId, reply: Reply) {
        let task = match reply {
            Reply::Map(t) => TaskRef {
                kind: TaskKind::Map,
                index: t.index,
                attempt: t.attempt,
            },
            Reply::Reduce(t) => {
                assert_eq!(
                    self.maps_done.len() as u32,
                    self.n_maps,
                    "reduce handed out early"
                );
                let r = TaskRef {
                    kind: TaskKind::Reduce,
                    index: t.index,
                    attempt: t.attempt,
                };
                let inputs = t
                    .inputs
                    .into_iter()
                    .map(|i| (i.map_index, i.map_attempt, i.host))
                    .collect();
                self.reduce_inputs.insert(r, inputs);
                r
            }
            Reply::Wait(d) => return self.at(d.0, Ev::Ask(worker)),
            Reply::Exit(_) => {
                self.alive.remove(&worker);
                return;
            }
        };
        // 10% crash at a random point, 10% stall for up to 20 s, else 0.1-3 s.
        let roll = if self.faults { self.rng.below(100) } else { 99 };
        let run = if roll < 10 {
            let when = self.rng.below(3_000);
            self.alive.remove(&worker);
            self.dead_hosts.insert(format!("h{}", worker.0));
            self.at(when + 500, Ev::Restart);
            return;
        } else if roll < 20 {
            self.rng.below(20_000)
        } else {
            100 + self.rng.below(2_900)
        };
        for beat in (1_000..run).step_by(1_000) {
            self.at(beat, Ev::Heartbeat(worker, task));
        }
        self.at(run, Ev::Finish(worker, task));
    }

    fn finish(&mut self, worker: WorkerId, task: TaskRef) -> Vec<Action> {
        let now = Millis(self.now);
        if task.kind == TaskKind::Reduce {
            let inputs = self.reduce_inputs.get(&task).cloned().unwrap_or_default();
            if let Some((m, a, _)) = inputs.iter().find(|(_, _, h)| self.dead_hosts.contains(h)) {
                return self.coord.handle(Event::FetchFailed {
                    worker,
                    task,
                    map_index: *m,
                    map_attempt: *a,
                    error: "connection refused".into(),
                    now,
                });
            }
        }
        let report = DoneReport {
            partition_bytes: if task.kind == TaskKind::Map {
                vec![1; self.n_reduce as usize]
            } else {
                vec![]
            },
            bytes_in: 1,
            bytes_out: 1,
        };
        self.coord.handle(Event::Done {
            worker,
            task,
            report,
            now,
        })
    }

    /// Registers a worker whose host is named after the id it will get.
    fn register(&mut self) -> Vec<Action> {
        let host = format!("h{}", self.coord.progress().workers + 1);
        self.coord.handle(Event::Register {
            host,
            now: Millis(self.now),
        })
    }

    fn step(&mut self, ev: Ev) {
        let now = Millis(self.now);
        let actions = match ev {
            Ev::Ask(w) if self.alive.contains(&w) => {
                self.coord.handle(Event::RequestTask { worker: w, now })
            }
            Ev::Heartbeat(w, task) if self.alive.contains(&w) => {
                self.coord.handle(Event::Progress {
                    worker: w,
                    task,
                    bytes_done: 0,
                    now,
                })
            }
            Ev::Finish(w, task) if self.alive.contains(&w) => {
                let mut actions = self.finish(w, task);
                actions.extend(self.coord.handle(Event::RequestTask { worker: w, now }));
                actions
            }
            Ev::Restart => self.register(),
            Ev::Tick => {
                self.at(500, Ev::Tick);
                self.coord.handle(Event::Tick { now })
            }
            _ => vec![],
        };
        self.apply(actions);
    }
}

fn run(seed: u64, faults: bool) -> Sim {
    let mut rng = Rng(seed);
    let n_maps = 1 + rng.below(12) as u32;
    let n_reduce = 1 + rng.below(5) as u32;
    let workers = 1 + rng.below(4);
    let splits = (0..n_maps)
        .map(|i| Split {
            file: format!("f{i}"),
            start: 0,
            end: 10,
        })
        .collect();
    let config = Config {
        n_reduce,
        ..Config::default()
    };
    let coord = Coordinator::new(config, splits).expect("valid config");
    let mut sim = Sim {
        rng,
        coord,
        now: 0,
        queue: BTreeMap::new(),
        seq: 0,
        alive: BTreeSet::new(),
        dead_hosts: BTreeSet::new(),
        faults,
        n_reduce,
        reduce_inputs: BTreeMap::new(),
        maps_done: BTreeSet::new(),
        n_maps,
        finished_reduces: BTreeMap::new(),
        map_starts: BTreeMap::new(),
    };
    for _ in 0..workers {
        let actions = sim.register();
        sim.apply(actions);
    }
    sim.at(500, Ev::Tick);
    while *sim.coord.outcome() == Outcome::Running {
        let Some(((t, _), ev)) = sim.queue.pop_first() else {
            break;
        };
        assert!(
            t < 3_600_000,
            "seed {seed}: job still running after an hour of virtual time"
        );
        sim.now = t;
        sim.step(ev);
    }
    assert_eq!(*sim.coord.outcome(), Outcome::Done, "seed {seed}");
    for r in 0..n_reduce {
        assert_eq!(
            sim.finished_reduces.get(&r),
            Some(&1),
            "seed {seed}: reduce {r}"
        );
    }
    sim
}

fn seeds() -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => (0..300).collect(),
    }
}

#[test]
fn jobs_finish_with_each_reduce_accepted_once_despite_crashes_and_stalls() {
    let (mut lost, mut timeouts, mut backups) = (0, 0, 0);
    for seed in seeds() {
        let stats = run(seed, true).coord.stats().clone();
        (lost, timeouts, backups) = (
            lost + stats.maps_lost,
            timeouts + stats.timeouts,
            backups + stats.speculative,
        );
    }
    if seeds().len() > 1 {
        // The seeds do reach the paths under test.
        assert!(
            lost > 0 && timeouts > 0 && backups > 0,
            "{lost} {timeouts} {backups}"
        );
    }
}

// 6.824 job count: with no failure and tasks shorter than the speculation
// threshold, each map task runs exactly once.
#[test]
fn without_faults_each_map_runs_exactly_once() {
    for seed in seeds() {
        let sim = run(seed, false);
        assert!(
            sim.map_starts.values().all(|&n| n == 1),
            "seed {seed}: {:?}",
            sim.map_starts
        );
        assert_eq!(sim.coord.stats().reexecuted, 0, "seed {seed}");
    }
}
