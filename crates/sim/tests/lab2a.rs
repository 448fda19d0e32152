//! 6.824 Lab 2A (leader election), on virtual time over many seeds.
//! Scenarios and limits follow `spec/lab-tests.md` §2.3.

use flotilla_raft::Term;
use flotilla_sim::{ELECTION_TIMEOUT_NS, HostedCluster, MS, Tester, run_seeds};

const SEEDS: u64 = 20;

/// TestInitialElection2A. The course only warns when the term changes
/// without failures (a blind spot, spec §7); here it fails.
#[test]
fn initial_election_2a() {
    run_seeds("initial_election_2a", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        c.check_one_leader()?;
        c.run_for(50 * MS)?;
        let term1 = c.check_terms()?;
        if term1 < Term(1) {
            return Err(c.fail(format!("term is {term1}, but should be at least 1")));
        }
        c.run_for(2 * ELECTION_TIMEOUT_NS)?;
        let term2 = c.check_terms()?;
        if term1 != term2 {
            return Err(c.fail(format!(
                "term changed from {term1} to {term2} without failures"
            )));
        }
        c.check_one_leader()?;
        Ok(())
    });
}

/// TestReElection2A.
#[test]
fn re_election_2a() {
    run_seeds("re_election_2a", SEEDS, |seed| {
        let mut c = HostedCluster::lab(3, seed, true, false);
        let leader1 = c.check_one_leader()?;
        // A leader disconnects: a new one is elected.
        c.disconnect(leader1);
        c.check_one_leader()?;
        // The old leader rejoins: still one leader per term.
        c.connect(leader1);
        let leader2 = c.check_one_leader()?;
        // No quorum: no leader may be elected.
        c.disconnect(leader2);
        c.disconnect((leader2 + 1) % 3);
        c.run_for(2 * ELECTION_TIMEOUT_NS)?;
        c.check_no_leader()?;
        // A quorum returns: a leader is elected.
        c.connect((leader2 + 1) % 3);
        c.check_one_leader()?;
        // The last node rejoins: still a leader.
        c.connect(leader2);
        c.check_one_leader()?;
        Ok(())
    });
}

/// TestManyElections2A.
#[test]
fn many_elections_2a() {
    run_seeds("many_elections_2a", SEEDS, |seed| {
        let mut c = HostedCluster::lab(7, seed, true, false);
        c.check_one_leader()?;
        for _ in 0..10 {
            let picks: Vec<usize> = (0..3).map(|_| c.rng.range(0, 7) as usize).collect();
            for &i in &picks {
                c.disconnect(i);
            }
            // Either the current leader is still alive, or the remaining
            // four elect a new one.
            c.check_one_leader()?;
            for &i in &picks {
                c.connect(i);
            }
        }
        c.check_one_leader()?;
        Ok(())
    });
}
