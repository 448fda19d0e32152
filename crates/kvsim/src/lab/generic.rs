//! The course's shared Lab 3 scenarios (spec §3.2, §3.3) on the
//! production host: `GenericTest` (rounds of concurrent clients under the
//! chosen faults, each round's appends checked, the log size checked, the
//! whole history checked for linearizability) and `GenericTestSpeed`
//! (1000 sequential appends within the per-operation limit), on virtual
//! time.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use flotilla_kv::{Op, ReadConsistency};
use flotilla_sim::{Actor, Failure, MS, Tester};

use super::{CheckStats, Ck, KvCluster, KvHosted};
use crate::client::{Next, OpResult, Workload};

/// Parameters of `GenericTest` (spec §3.2).
#[derive(Clone, Copy, Debug)]
pub struct Generic {
    /// Concurrent clients per round.
    pub nclients: usize,
    /// Servers.
    pub nservers: u64,
    /// Unreliable network.
    pub unreliable: bool,
    /// Shut down and restart every server after each round.
    pub crash: bool,
    /// Run the partitioner during each round.
    pub partitions: bool,
    /// The course's maxraftstate (`None`: -1).
    pub maxraftstate: Option<u64>,
    /// Clients use random keys among `0..nclients`.
    pub random_keys: bool,
}

/// Figures of one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    /// Client operations completed.
    pub ops: u64,
    /// Virtual time simulated.
    pub virtual_ns: u64,
    /// Wall time of the simulation (without the check).
    pub sim_wall: Duration,
    /// The history check.
    pub check: CheckStats,
}

/// The course's `checkClntAppends`: each of `client`'s `count` appended
/// pieces occurs exactly once in `value`, in order.
pub fn check_clnt_appends<C: Tester>(
    c: &C,
    client: usize,
    value: &str,
    count: u64,
) -> Result<(), Failure> {
    let mut last = None;
    for j in 0..count {
        let wanted = format!("x {client} {j} y");
        let Some(off) = value.find(&wanted) else {
            return Err(c.fail(format!(
                "{client} missing element {wanted:?} in Append result"
            )));
        };
        if value.rfind(&wanted) != Some(off) {
            return Err(c.fail(format!("duplicate element {wanted:?} in Append result")));
        }
        if last.is_some_and(|l| off <= l) {
            return Err(c.fail(format!(
                "wrong order for element {wanted:?} in Append result"
            )));
        }
        last = Some(off);
    }
    Ok(())
}

/// One client of a `GenericTest` round.
struct GenericClient {
    me: usize,
    nclients: usize,
    random_keys: bool,
    j: u64,
    last: String,
    started: bool,
    stop: Rc<Cell<bool>>,
    counts: Rc<RefCell<Vec<Option<u64>>>>,
}

impl<C: Tester> Workload<C> for GenericClient {
    fn next(&mut self, c: &mut C) -> Next {
        let key = if self.random_keys {
            c.test_rng().range(0, self.nclients as u64).to_string()
        } else {
            self.me.to_string()
        };
        if !self.started && !self.random_keys {
            self.started = true;
            return Next::Op(Op::put(key, ""), ReadConsistency::Linearizable);
        }
        if self.stop.get() {
            self.counts.borrow_mut()[self.me] = Some(self.j);
            return Next::Stop;
        }
        let nv = format!("x {} {} y", self.me, self.j);
        let op = if c.test_rng().range(0, 1000) < 500 {
            Op::append(key, nv)
        } else if self.random_keys && c.test_rng().range(0, 1000) < 100 {
            Op::put(key, nv)
        } else {
            Op::get(key)
        };
        Next::Op(op, ReadConsistency::Linearizable)
    }

    fn done(&mut self, c: &mut C, op: &Op, result: &OpResult) -> Result<(), Failure> {
        let resp = match result {
            Ok((_, r)) => r,
            Err(e) => return Err(c.fail(format!("client {}: {e}", self.me))),
        };
        match op {
            Op::Append { value, .. } => {
                self.last.push_str(&String::from_utf8_lossy(value));
                self.j += 1;
            }
            Op::Put { value, .. } if !value.is_empty() => self.j += 1,
            Op::Get { key } if !self.random_keys => {
                let got = resp
                    .value()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                if got != self.last {
                    return Err(c.fail(format!(
                        "get wrong value, key {key:?}, wanted:\n{:?}\n, got\n{got:?}",
                        self.last
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Puts each server on a random side every 1 s + 0–199 ms until stopped.
struct Partitioner {
    stop: Rc<Cell<bool>>,
    done: Rc<Cell<bool>>,
}

impl Actor<KvHosted> for Partitioner {
    fn wake(&mut self, c: &mut KvHosted) -> Result<Option<u64>, Failure> {
        if self.stop.get() {
            self.done.set(true);
            return Ok(None);
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..c.n() {
            if c.test_rng().range(0, 2) == 0 {
                a.push(i);
            } else {
                b.push(i);
            }
        }
        super::server_partition(c, &a, &b);
        let ms = 1000 + c.test_rng().range(0, 200);
        Ok(Some(c.now() + ms * MS))
    }
}

fn round(t: &mut KvCluster, g: &Generic, ck: &Ck) -> Result<(), Failure> {
    let stop = Rc::new(Cell::new(false));
    let counts = Rc::new(RefCell::new(vec![None; g.nclients]));
    let mut ids = Vec::new();
    for me in 0..g.nclients {
        ids.push(t.spawn(Box::new(GenericClient {
            me,
            nclients: g.nclients,
            random_keys: g.random_keys,
            j: 0,
            last: String::new(),
            started: false,
            stop: stop.clone(),
            counts: counts.clone(),
        })));
    }
    let parted = Rc::new(Cell::new(!g.partitions));
    if g.partitions {
        t.c.run_for(1000 * MS)?;
        let p = Partitioner {
            stop: stop.clone(),
            done: parted.clone(),
        };
        t.c.spawn(Box::new(p));
        t.c.run_for(4000 * MS)?;
    } else {
        t.c.run_for(5000 * MS)?;
    }
    stop.set(true);
    if g.partitions {
        t.c.run_until_cond(5000 * MS, "partitioner did not stop", |_| parted.get())?;
        t.connect_all();
        t.c.run_for(super::ELECTION_TIMEOUT_NS)?;
    }
    if g.crash {
        for i in 0..t.c.n() {
            t.shutdown_server(i);
        }
        t.c.run_for(super::ELECTION_TIMEOUT_NS)?;
        for i in 0..t.c.n() {
            t.start_server(i);
        }
        t.connect_all();
    }
    t.c.run_until_cond(120_000 * MS, "clients did not finish", |_| {
        counts.borrow().iter().all(Option::is_some)
    })?;
    for (i, j) in counts.borrow().iter().enumerate() {
        if g.random_keys {
            continue;
        }
        let v = t.get(ck, &i.to_string())?;
        check_clnt_appends(&t.c, i, &v, j.unwrap_or(0))?;
    }
    t.check_sizes()
}

/// The course's `GenericTest` for one seed.
pub fn generic_test(seed: u64, g: &Generic) -> Result<RunStats, Failure> {
    let began = Instant::now();
    let mut t = KvCluster::new(g.nservers, seed, g.unreliable, g.maxraftstate);
    let all: Vec<usize> = (0..t.c.n()).collect();
    let ck = t.make_client(&all);
    for _ in 0..3 {
        round(&mut t, g, &ck)?;
    }
    finish(&t, began)
}

/// Checks the history and collects the figures of a run.
pub fn finish(t: &KvCluster, began: Instant) -> Result<RunStats, Failure> {
    let sim_wall = began.elapsed();
    stats(t, sim_wall, t.check_history()?)
}

/// The course's limit on every test (spec §0.5), in virtual time.
pub const TEST_LIMIT_NS: u64 = 120_000 * MS;

/// The figures of a run whose history was checked (`check`); fails if the
/// run took longer than the course's 120 s.
pub fn stats(t: &KvCluster, sim_wall: Duration, check: CheckStats) -> Result<RunStats, Failure> {
    if t.c.now() > TEST_LIMIT_NS {
        return Err(t.c.fail("test took longer than 120 seconds"));
    }
    Ok(RunStats {
        ops: t.shared.stats.borrow().ops,
        virtual_ns: t.c.now(),
        sim_wall,
        check,
    })
}

/// The course's `GenericTestSpeed`: 1000 sequential appends must average
/// at most a third of a heartbeat interval (33.3 ms) of virtual time.
pub fn speed_test(seed: u64, maxraftstate: Option<u64>) -> Result<RunStats, Failure> {
    let began = Instant::now();
    let mut t = KvCluster::new(3, seed, false, maxraftstate);
    let all: Vec<usize> = (0..3).collect();
    let ck = t.make_client(&all);
    t.get(&ck, "x")?;
    let start = t.c.now();
    const NUM_OPS: u64 = 1000;
    for i in 0..NUM_OPS {
        t.append(&ck, "x", &format!("x 0 {i} y"))?;
    }
    let dur = t.c.now() - start;
    let v = t.get(&ck, "x")?;
    check_clnt_appends(&t.c, 0, &v, NUM_OPS)?;
    let limit = NUM_OPS * 100 * MS / 3;
    if dur > limit {
        return Err(t.c.fail(format!(
            "operations completed too slowly {:.1}ms/op > {:.1}ms/op",
            dur as f64 / NUM_OPS as f64 / 1e6,
            limit as f64 / NUM_OPS as f64 / 1e6
        )));
    }
    t.check_sizes()?;
    finish(&t, began)
}
