//! 6.824 Lab 2C (persistence), on virtual time over many seeds. Scenarios
//! and limits follow `spec/lab-tests.md` §2.5. Crashes lose whatever a node
//! had not synced; the durability contract must make that harmless.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use flotilla_raft::LogIndex;
use flotilla_sim::{
    Actor, ELECTION_TIMEOUT_NS, Failure, HostedCluster, MS, OneActor, OneCall, Tester, Waited, cmd,
    run_seeds,
};

const SEEDS: u64 = 20;

/// The course's `start1` followed by `connect`.
fn restart_connect(c: &mut HostedCluster, i: usize) {
    c.restart(i);
    c.connect(i);
}

/// TestPersist12C: basic persistence.
#[test]
fn persist1_2c() {
    run_seeds("persist1_2c", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        c.one(cmd(11), 3, true)?;
        for i in 0..3 {
            c.restart(i);
        }
        for i in 0..3 {
            c.disconnect(i);
            c.connect(i);
        }
        c.one(cmd(12), 3, true)?;
        let leader1 = c.check_one_leader()?;
        c.disconnect(leader1);
        restart_connect(&mut c, leader1);
        c.one(cmd(13), 3, true)?;
        let leader2 = c.check_one_leader()?;
        c.disconnect(leader2);
        let index = c.one(cmd(14), 2, true)?;
        restart_connect(&mut c, leader2);
        c.wait(index, 3, None)?;
        let i3 = (c.check_one_leader()? + 1) % 3;
        c.disconnect(i3);
        c.one(cmd(15), 2, true)?;
        restart_connect(&mut c, i3);
        c.one(cmd(16), 3, true)?;
        Ok(())
    });
}

/// TestPersist22C: more persistence.
#[test]
fn persist2_2c() {
    run_seeds("persist2_2c", SEEDS, |seed| {
        let mut c = HostedCluster::lab(5, seed, true, false);
        let mut x = 1;
        for _ in 0..5 {
            c.one(cmd(10 + x), 5, true)?;
            x += 1;
            let l = c.check_one_leader()?;
            c.disconnect((l + 1) % 5);
            c.disconnect((l + 2) % 5);
            c.one(cmd(10 + x), 3, true)?;
            x += 1;
            for k in [0, 3, 4] {
                c.disconnect((l + k) % 5);
            }
            restart_connect(&mut c, (l + 1) % 5);
            restart_connect(&mut c, (l + 2) % 5);
            c.run_for(ELECTION_TIMEOUT_NS)?;
            restart_connect(&mut c, (l + 3) % 5);
            c.one(cmd(10 + x), 3, true)?;
            x += 1;
            c.connect((l + 4) % 5);
            c.connect(l);
        }
        c.one(cmd(1000), 5, true)?;
        Ok(())
    });
}

/// TestPersist32C: partitioned leader and one follower crash, leader restarts.
#[test]
fn persist3_2c() {
    run_seeds("persist3_2c", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        c.one(cmd(101), 3, false)?;
        let l = c.check_one_leader()?;
        c.disconnect((l + 2) % 3);
        c.one(cmd(102), 2, false)?;
        c.crash1(l);
        c.crash1((l + 1) % 3);
        c.connect((l + 2) % 3);
        restart_connect(&mut c, l);
        c.one(cmd(103), 2, true)?;
        restart_connect(&mut c, (l + 1) % 3);
        c.one(cmd(104), 3, true)?;
        Ok(())
    });
}

/// The sleep of the Figure 8 tests: usually short, sometimes up to half an
/// election timeout.
fn figure8_sleep(c: &mut HostedCluster) -> Result<(), Failure> {
    let ms = if c.rng.range(0, 1000) < 100 {
        c.rng.range(0, 500)
    } else {
        c.rng.range(0, 13)
    };
    c.run_for(ms * MS)
}

/// TestFigure82C: leaders crash at random moments; Figure 8's unsafe
/// commit of an old-term entry must never happen.
#[test]
fn figure8_2c() {
    run_seeds("figure8_2c", SEEDS, |seed| {
        let mut c = HostedCluster::lab(5, seed, true, false);
        let x = c.rng.next_u64();
        c.one(cmd(x), 1, true)?;
        let mut nup = 5;
        for _ in 0..1000 {
            let mut leader = None;
            for i in 0..5 {
                let x = c.rng.next_u64();
                if c.alive(i) && c.start(i, cmd(x)).is_some() {
                    leader = Some(i);
                }
            }
            figure8_sleep(&mut c)?;
            if let Some(l) = leader {
                c.crash1(l);
                nup -= 1;
            }
            if nup < 3 {
                let s = c.rng.range(0, 5) as usize;
                if !c.alive(s) {
                    restart_connect(&mut c, s);
                    nup += 1;
                }
            }
        }
        for i in 0..5 {
            if !c.alive(i) {
                c.restart(i);
            }
            c.connect(i);
        }
        let x = c.rng.next_u64();
        c.one(cmd(x), 5, true)?;
        Ok(())
    });
}

/// TestUnreliableAgree2C: concurrent agreements on a lossy network.
#[test]
fn unreliable_agree_2c() {
    run_seeds("unreliable_agree_2c", SEEDS, |seed| {
        let mut c = HostedCluster::lab(5, seed, false, false);
        let done = Rc::new(RefCell::new(Vec::new()));
        for iters in 1..50u64 {
            for j in 0..4 {
                let call = OneCall::new(&c, cmd(100 * iters + j), 1, true);
                c.spawn(Box::new(OneActor::new(call, done.clone())));
            }
            c.one(cmd(iters), 1, true)?;
        }
        c.set_reliable(true);
        c.run_until_cond(
            60_000 * MS,
            "concurrent one() calls did not finish",
            HostedCluster::actors_done,
        )?;
        if done.borrow().len() != 49 * 4 {
            return Err(c.fail(format!(
                "{} of {} concurrent one() calls ended",
                done.borrow().len(),
                49 * 4
            )));
        }
        c.one(cmd(100), 5, true)?;
        Ok(())
    });
}

/// TestFigure8Unreliable2C: Figure 8 on a lossy network with long
/// reordering from iteration 200 on; the network stays that bad to the end.
#[test]
fn figure8_unreliable_2c() {
    run_seeds("figure8_unreliable_2c", SEEDS, figure8_unreliable);
}

/// Regression: with 300–600 ms elections, seed 139 never kept a leader
/// long enough for the final `one()`: answers delayed up to 2.2 s made
/// candidates give up before their votes arrived and check-quorum depose
/// leaders whose acknowledgements were late. Fixed by etcd's 1–2 s
/// elections.
#[test]
fn figure8_unreliable_2c_seed_139() {
    flotilla_sim::runner::run_seed("figure8_unreliable_2c_seed_139", 139, figure8_unreliable);
}

fn figure8_unreliable(seed: u64) -> Result<(), Failure> {
    let mut c = HostedCluster::lab(5, seed, false, false);
    let x = c.rng.range(0, 10_000);
    c.one(cmd(x), 1, true)?;
    let mut nup = 5;
    for iters in 0..1000 {
        if iters == 200 {
            c.set_long_reordering(true);
        }
        let mut leader = None;
        for i in 0..5 {
            let x = c.rng.range(0, 10_000);
            if c.start(i, cmd(x)).is_some() && c.connected(i) {
                leader = Some(i);
            }
        }
        figure8_sleep(&mut c)?;
        if let Some(l) = leader
            && c.rng.range(0, 1000) < 500
        {
            c.disconnect(l);
            nup -= 1;
        }
        if nup < 3 {
            let s = c.rng.range(0, 5) as usize;
            if !c.connected(s) {
                c.connect(s);
                nup += 1;
            }
        }
    }
    for i in 0..5 {
        c.connect(i);
    }
    let x = c.rng.range(0, 10_000);
    c.one(cmd(x), 5, true)?;
    Ok(())
}

/// A churn client: proposes to every live node, then looks for its value
/// at the index a leader gave it.
struct ChurnClient {
    me: u64,
    stop: Rc<Cell<bool>>,
    values: Rc<RefCell<Vec<u64>>>,
    pending: Option<(u64, LogIndex, usize)>,
}

impl Actor<HostedCluster> for ChurnClient {
    fn wake(&mut self, c: &mut HostedCluster) -> Result<Option<u64>, Failure> {
        const CHECK_SLEEPS_MS: [u64; 5] = [10, 20, 50, 100, 200];
        if let Some((x, index, attempt)) = self.pending {
            let (nd, value) = c.n_committed(index);
            if nd > 0 {
                if value == Some(cmd(x)) {
                    self.values.borrow_mut().push(x);
                }
                self.pending = None;
                return Ok(Some(c.now()));
            }
            if attempt + 1 < CHECK_SLEEPS_MS.len() {
                self.pending = Some((x, index, attempt + 1));
            } else {
                self.pending = None;
            }
            return Ok(Some(c.now() + CHECK_SLEEPS_MS[attempt] * MS));
        }
        if self.stop.get() {
            return Ok(None);
        }
        let x = c.rng.next_u64();
        let mut accepted = None;
        for i in 0..c.n() {
            if let Some((index, _)) = c.start(i, cmd(x)) {
                accepted = Some(index);
            }
        }
        match accepted {
            Some(index) => {
                self.pending = Some((x, index, 0));
                Ok(Some(c.now()))
            }
            None => Ok(Some(c.now() + (79 + self.me * 17) * MS)),
        }
    }
}

fn churn(seed: u64, reliable: bool) -> Result<(), Failure> {
    let mut c = HostedCluster::lab(5, seed, reliable, false);
    let stop = Rc::new(Cell::new(false));
    let values = Rc::new(RefCell::new(Vec::new()));
    for me in 0..3 {
        let client = ChurnClient {
            me,
            stop: stop.clone(),
            values: values.clone(),
            pending: None,
        };
        c.spawn(Box::new(client));
    }
    for _ in 0..20 {
        if c.rng.range(0, 1000) < 200 {
            let i = c.rng.range(0, 5) as usize;
            c.disconnect(i);
        }
        if c.rng.range(0, 1000) < 500 {
            let i = c.rng.range(0, 5) as usize;
            if !c.alive(i) {
                c.restart(i);
            }
            c.connect(i);
        }
        if c.rng.range(0, 1000) < 200 {
            let i = c.rng.range(0, 5) as usize;
            if c.alive(i) {
                c.crash1(i);
            }
        }
        c.run_for(ELECTION_TIMEOUT_NS * 7 / 10)?;
    }
    c.run_for(ELECTION_TIMEOUT_NS)?;
    c.set_reliable(true);
    for i in 0..5 {
        if !c.alive(i) {
            c.restart(i);
        }
        c.connect(i);
    }
    stop.set(true);
    c.run_until_cond(
        10_000 * MS,
        "churn clients did not stop",
        HostedCluster::actors_done,
    )?;
    c.run_for(ELECTION_TIMEOUT_NS)?;
    let x = c.rng.next_u64();
    let last = c.one(cmd(x), 5, true)?;
    let mut really = Vec::new();
    for index in 1..=last.get() {
        match c.wait(LogIndex(index), 5, None)? {
            Waited::Applied(Some(v)) => really.push(v),
            Waited::Applied(None) => {}
            Waited::TermMoved => {
                return Err(c.fail("wait without a start term cannot see a term move"));
            }
        }
    }
    for v in values.borrow().iter() {
        if !really.contains(&cmd(*v)) {
            return Err(c.fail(format!(
                "didn't find a value {v} that a client saw committed"
            )));
        }
    }
    Ok(())
}

/// TestReliableChurn2C.
#[test]
fn reliable_churn_2c() {
    run_seeds("reliable_churn_2c", SEEDS, |seed| churn(seed, true));
}

/// TestUnreliableChurn2C.
#[test]
fn unreliable_churn_2c() {
    run_seeds("unreliable_churn_2c", SEEDS, |seed| churn(seed, false));
}
