//! 6.824 Lab 2B (log replication), on virtual time over many seeds, plus
//! the later staff's follower- and leader-failure tests. Scenarios and
//! limits follow `spec/lab-tests.md` §2.4 and §9.
//!
//! Every leader appends a no-op at the start of its term, so where the
//! course expects absolute indexes (1, 2, 3), these tests expect the index
//! right after what they observed.

use flotilla_raft::LogIndex;
use flotilla_sim::{ELECTION_TIMEOUT_NS, HostedCluster, MS, Tester, Waited, cmd, run_seeds};

const SEEDS: u64 = 20;

/// TestBasicAgree2B: commands land at consecutive indexes right after the
/// first leader's no-op, and nothing is committed there before `Start`.
#[test]
fn basic_agree_2b() {
    run_seeds("basic_agree_2b", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        c.check_one_leader()?;
        let mut expected = LogIndex(2);
        for k in 1..=3u64 {
            let (nd, _) = c.n_committed(expected);
            if nd > 0 {
                return Err(c.fail("some have committed before Start()"));
            }
            let index = c.one(cmd(k * 100), 3, false)?;
            if index != expected {
                return Err(c.fail(format!("got index {index} but expected {expected}")));
            }
            expected = expected.next();
        }
        Ok(())
    });
}

/// TestRPCBytes2B: each command crosses the wire about once per follower.
#[test]
fn rpc_bytes_2b() {
    run_seeds("rpc_bytes_2b", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        let first = c.one(cmd(99), 3, false)?;
        let bytes0 = c.bytes_total();
        let mut sent = 0;
        for k in 1..=10 {
            let command = c.rand_string(5000);
            sent += command.len() as u64;
            let index = c.one(command, 3, false)?;
            if index != first.plus(k) {
                return Err(c.fail(format!("got index {index} but expected {}", first.plus(k))));
            }
        }
        let got = c.bytes_total() - bytes0;
        let expected = 3 * sent;
        if got > expected + 50_000 {
            return Err(c.fail(format!(
                "too many RPC bytes; got {got}, expected {expected}"
            )));
        }
        Ok(())
    });
}

/// The later staff's "test progressive failure of followers".
#[test]
fn follower_failure_2b() {
    run_seeds("follower_failure_2b", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        c.one(cmd(101), 3, false)?;
        let leader1 = c.check_one_leader()?;
        c.disconnect((leader1 + 1) % 3);
        c.one(cmd(102), 2, false)?;
        c.run_for(ELECTION_TIMEOUT_NS)?;
        let last = c.one(cmd(103), 2, false)?;
        let leader2 = c.check_one_leader()?;
        c.disconnect((leader2 + 1) % 3);
        c.disconnect((leader2 + 2) % 3);
        let Some((index, _)) = c.start(leader2, cmd(104)) else {
            return Err(c.fail("leader rejected Start()"));
        };
        if index != last.next() {
            return Err(c.fail(format!("expected index {}, got {index}", last.next())));
        }
        c.run_for(2 * ELECTION_TIMEOUT_NS)?;
        let (n, _) = c.n_committed(index);
        if n > 0 {
            return Err(c.fail(format!("{n} committed but no majority")));
        }
        Ok(())
    });
}

/// The later staff's "test failure of leaders".
#[test]
fn leader_failure_2b() {
    run_seeds("leader_failure_2b", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        c.one(cmd(101), 3, false)?;
        let leader1 = c.check_one_leader()?;
        c.disconnect(leader1);
        c.one(cmd(102), 2, false)?;
        c.run_for(ELECTION_TIMEOUT_NS)?;
        let last = c.one(cmd(103), 2, false)?;
        let leader2 = c.check_one_leader()?;
        c.disconnect(leader2);
        for i in 0..3 {
            c.start(i, cmd(104));
        }
        c.run_for(2 * ELECTION_TIMEOUT_NS)?;
        let (n, _) = c.n_committed(last.next());
        if n > 0 {
            return Err(c.fail(format!("{n} committed but no majority")));
        }
        Ok(())
    });
}

/// TestFailAgree2B: agreement after a follower reconnects.
#[test]
fn fail_agree_2b() {
    run_seeds("fail_agree_2b", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        c.one(cmd(101), 3, false)?;
        let leader = c.check_one_leader()?;
        c.disconnect((leader + 1) % 3);
        c.one(cmd(102), 2, false)?;
        c.one(cmd(103), 2, false)?;
        c.run_for(ELECTION_TIMEOUT_NS)?;
        c.one(cmd(104), 2, false)?;
        c.one(cmd(105), 2, false)?;
        c.connect((leader + 1) % 3);
        c.one(cmd(106), 3, true)?;
        c.run_for(ELECTION_TIMEOUT_NS)?;
        c.one(cmd(107), 3, true)?;
        Ok(())
    });
}

/// TestFailNoAgree2B: no agreement without a majority.
#[test]
fn fail_no_agree_2b() {
    run_seeds("fail_no_agree_2b", SEEDS, |seed| {
        let mut c = HostedCluster::lab(5, seed, true, false);
        let first = c.one(cmd(10), 5, false)?;
        let leader = c.check_one_leader()?;
        for k in 1..=3 {
            c.disconnect((leader + k) % 5);
        }
        let Some((index, _)) = c.start(leader, cmd(20)) else {
            return Err(c.fail("leader rejected Start()"));
        };
        if index != first.next() {
            return Err(c.fail(format!("expected index {}, got {index}", first.next())));
        }
        c.run_for(2 * ELECTION_TIMEOUT_NS)?;
        let (n, _) = c.n_committed(index);
        if n > 0 {
            return Err(c.fail(format!("{n} committed but no majority")));
        }
        for k in 1..=3 {
            c.connect((leader + k) % 5);
        }
        let leader2 = c.check_one_leader()?;
        let Some((index2, _)) = c.start(leader2, cmd(30)) else {
            return Err(c.fail("leader2 rejected Start()"));
        };
        // The uncommitted 20 may survive or not; a new leader adds its no-op.
        let (lo, hi) = (index.next(), index.plus(2));
        if index2 < lo || index2 > hi {
            return Err(c.fail(format!("unexpected index {index2}, wanted {lo}..={hi}")));
        }
        c.one(cmd(1000), 5, true)?;
        Ok(())
    });
}

/// TestConcurrentStarts2B.
#[test]
fn concurrent_starts_2b() {
    run_seeds("concurrent_starts_2b", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        for attempt in 0..5 {
            if attempt > 0 {
                c.run_for(3000 * MS)?;
            }
            let leader = c.check_one_leader()?;
            let Some((_, term)) = c.start(leader, cmd(1)) else {
                continue;
            };
            let starts: Vec<_> = (0..5)
                .filter_map(|i| c.start(leader, cmd(100 + i)))
                .collect();
            if starts.len() < 5 || starts.iter().any(|&(_, t)| t != term) {
                continue;
            }
            let mut values = Vec::new();
            let mut retry = false;
            for &(index, _) in &starts {
                match c.wait(index, 3, Some(term))? {
                    Waited::Applied(Some(v)) => values.push(v),
                    Waited::Applied(None) => return Err(c.fail(format!("no command at {index}"))),
                    Waited::TermMoved => retry = true,
                }
            }
            if retry || (0..3).any(|i| c.get_state(i).is_some_and(|(t, _)| t != term)) {
                continue;
            }
            for i in 0..5 {
                if !values.contains(&cmd(100 + i)) {
                    return Err(c.fail(format!("cmd {} missing in {values:?}", 100 + i)));
                }
            }
            return Ok(());
        }
        Err(c.fail("term changed too often"))
    });
}

/// TestRejoin2B: a partitioned leader's stale entries are discarded.
#[test]
fn rejoin_2b() {
    run_seeds("rejoin_2b", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        c.one(cmd(101), 3, true)?;
        let leader1 = c.check_one_leader()?;
        c.disconnect(leader1);
        for x in [102, 103, 104] {
            c.start(leader1, cmd(x));
        }
        c.one(cmd(103), 2, true)?;
        let leader2 = c.check_one_leader()?;
        c.disconnect(leader2);
        c.connect(leader1);
        c.one(cmd(104), 2, true)?;
        c.connect(leader2);
        c.one(cmd(105), 3, true)?;
        Ok(())
    });
}

/// TestBackup2B: a leader backs up quickly over incorrect follower logs.
#[test]
fn backup_2b() {
    run_seeds("backup_2b", SEEDS, |seed| {
        let mut c = HostedCluster::lab(5, seed, true, false);
        let x = c.rng.next_u64();
        c.one(cmd(x), 5, true)?;
        // Leader and one follower in a minority, fed uncommittable entries.
        let leader1 = c.check_one_leader()?;
        for k in 2..5 {
            c.disconnect((leader1 + k) % 5);
        }
        for _ in 0..50 {
            let x = c.rng.next_u64();
            c.start(leader1, cmd(x));
        }
        c.run_for(ELECTION_TIMEOUT_NS / 2)?;
        c.disconnect(leader1);
        c.disconnect((leader1 + 1) % 5);
        for k in 2..5 {
            c.connect((leader1 + k) % 5);
        }
        for _ in 0..50 {
            let x = c.rng.next_u64();
            c.one(cmd(x), 3, true)?;
        }
        // Now another partitioned leader with one follower.
        let leader2 = c.check_one_leader()?;
        let mut other = (leader1 + 2) % 5;
        if other == leader2 {
            other = (leader2 + 1) % 5;
        }
        c.disconnect(other);
        for _ in 0..50 {
            let x = c.rng.next_u64();
            c.start(leader2, cmd(x));
        }
        c.run_for(ELECTION_TIMEOUT_NS / 2)?;
        for i in 0..5 {
            c.disconnect(i);
        }
        c.connect(leader1);
        c.connect((leader1 + 1) % 5);
        c.connect(other);
        for _ in 0..50 {
            let x = c.rng.next_u64();
            c.one(cmd(x), 3, true)?;
        }
        for i in 0..5 {
            c.connect(i);
        }
        let x = c.rng.next_u64();
        c.one(cmd(x), 5, true)?;
        Ok(())
    });
}

/// TestCount2B: no more RPCs than needed, idle or busy.
#[test]
fn count_2b() {
    run_seeds("count_2b", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        c.check_one_leader()?;
        let total1 = c.rpc_total();
        if !(1..=30).contains(&total1) {
            return Err(c.fail(format!(
                "too many or few RPCs ({total1}) to elect initial leader"
            )));
        }
        let mut total2 = None;
        'attempt: for attempt in 0..5 {
            if attempt > 0 {
                c.run_for(3000 * MS)?;
            }
            let leader = c.check_one_leader()?;
            let total1 = c.rpc_total();
            let Some((start, term)) = c.start(leader, cmd(1)) else {
                continue;
            };
            let mut cmds = Vec::new();
            for i in 1..=11u64 {
                let x = c.rng.next_u64();
                cmds.push(x);
                let Some((index, t)) = c.start(leader, cmd(x)) else {
                    continue 'attempt;
                };
                if t != term {
                    continue 'attempt;
                }
                if index != start.plus(i) {
                    return Err(c.fail("Start() failed"));
                }
            }
            for i in 1..=10u64 {
                match c.wait(start.plus(i), 3, Some(term))? {
                    Waited::TermMoved => continue 'attempt,
                    Waited::Applied(v) if v != Some(cmd(cmds[i as usize - 1])) => {
                        return Err(c.fail(format!(
                            "wrong value {v:?} committed for index {}",
                            start.plus(i)
                        )));
                    }
                    Waited::Applied(_) => {}
                }
            }
            if (0..3).any(|i| c.get_state(i).is_some_and(|(t, _)| t != term)) {
                continue;
            }
            let used = c.rpc_total() - total1;
            if used > (10 + 1 + 3) * 3 {
                return Err(c.fail(format!("too many RPCs ({used}) for 10 entries")));
            }
            total2 = Some(c.rpc_total());
            break;
        }
        let Some(total2) = total2 else {
            return Err(c.fail("term changed too often"));
        };
        c.run_for(ELECTION_TIMEOUT_NS)?;
        let idle = c.rpc_total() - total2;
        if idle > 3 * 20 {
            return Err(c.fail(format!("too many RPCs ({idle}) for 1 second of idleness")));
        }
        Ok(())
    });
}
