//! What production Raft adds to the course (issue 6), each on the
//! simulator with the safety invariants on: pre-vote, check-quorum,
//! ReadIndex and lease reads, leadership transfer, learners, membership
//! changes by joint consensus, and flow control.

use flotilla_raft::{
    ConfChange, ConfChangeOp, NodeId, ProposeError, ReadMode, Role, TransferError,
};
use flotilla_sim::{
    Cluster, ClusterConfig, ELECTION_TIMEOUT_NS, Failure, MS, Tester, cmd, run_seeds,
};

const SEEDS: u64 = 20;

fn cluster(n: u64, seed: u64, tune: impl FnOnce(&mut ClusterConfig)) -> Cluster {
    let mut cfg = ClusterConfig::new(n, seed);
    cfg.trace = std::env::var_os("FLOTILLA_TRACE").is_some();
    tune(&mut cfg);
    Cluster::new(cfg)
}

fn term_of(c: &Cluster, i: usize) -> u64 {
    c.get_state(i).map_or(0, |(t, _)| t.get())
}

/// A follower partitioned away for many election timeouts comes back
/// without raising the term or deposing the leader: pre-vote.
#[test]
fn pre_vote_keeps_the_leader_when_a_partitioned_node_returns() {
    run_seeds(
        "pre_vote_keeps_the_leader_when_a_partitioned_node_returns",
        SEEDS,
        |seed| {
            let mut c = cluster(5, seed, |_| {});
            let leader = c.check_one_leader()?;
            c.one(cmd(1), 5, true)?;
            let term = term_of(&c, leader);
            let follower = (leader + 1) % 5;
            c.disconnect(follower);
            c.run_for(20 * ELECTION_TIMEOUT_NS)?;
            c.connect(follower);
            c.run_for(5 * ELECTION_TIMEOUT_NS)?;
            c.one(cmd(2), 5, true)?;
            if c.leader() != Some(leader) || term_of(&c, leader) != term {
                return Err(c.fail(format!("leader {leader} in term {term} was disturbed")));
            }
            if term_of(&c, follower) != term {
                return Err(c.fail("the returning follower did not rejoin the leader's term"));
            }
            Ok(())
        },
    );
}

/// The same scenario without pre-vote and check-quorum raises the term:
/// the feature above is what prevents it.
#[test]
fn without_pre_vote_a_returning_node_raises_the_term() {
    let mut c = cluster(5, 3, |cfg| {
        cfg.raft.pre_vote = false;
        cfg.raft.check_quorum = false;
    });
    let leader = c.check_one_leader().unwrap();
    let term = term_of(&c, leader);
    let follower = (leader + 1) % 5;
    c.disconnect(follower);
    c.run_for(20 * ELECTION_TIMEOUT_NS).unwrap();
    c.connect(follower);
    c.run_for(5 * ELECTION_TIMEOUT_NS).unwrap();
    assert!(
        term_of(&c, leader) > term,
        "the term should have been raised"
    );
}

/// An isolated leader steps down within two election timeouts.
#[test]
fn check_quorum_deposes_an_isolated_leader() {
    run_seeds("check_quorum_deposes_an_isolated_leader", SEEDS, |seed| {
        let mut c = cluster(3, seed, |_| {});
        let leader = c.check_one_leader()?;
        c.disconnect(leader);
        c.run_until_cond(
            2 * ELECTION_TIMEOUT_NS + 20 * MS,
            "isolated leader kept leading",
            |c| c.role(leader) != Some(Role::Leader),
        )?;
        c.check_one_leader()?;
        Ok(())
    });
}

/// The leader counts a member as active while it has heard from it within
/// an election timeout: all three at first, two once one is cut off, all
/// three again once it is back; a follower answers `None`.
#[test]
fn the_leader_knows_which_members_are_active() {
    run_seeds("the_leader_knows_which_members_are_active", SEEDS, |seed| {
        let mut c = cluster(3, seed, |_| {});
        let leader = c.check_one_leader()?;
        let all: Vec<NodeId> = (1..=3).map(NodeId).collect();
        c.run_for(ELECTION_TIMEOUT_NS)?;
        if c.recently_active(leader) != Some(all.clone()) {
            return Err(c.fail(format!("active {:?}", c.recently_active(leader))));
        }
        let follower = (leader + 1) % 3;
        if c.recently_active(follower).is_some() {
            return Err(c.fail("a follower reported active members"));
        }
        c.disconnect(follower);
        c.run_for(2 * ELECTION_TIMEOUT_NS)?;
        let mut rest = all.clone();
        rest.retain(|&id| id != NodeId(follower as u64 + 1));
        if c.role(leader) == Some(Role::Leader) && c.recently_active(leader) != Some(rest) {
            return Err(c.fail(format!("active {:?}", c.recently_active(leader))));
        }
        c.connect(follower);
        let leader = c.check_one_leader()?;
        c.run_until_cond(2 * ELECTION_TIMEOUT_NS, "the member came back", |c| {
            c.recently_active(leader) == Some(all.clone())
        })?;
        Ok(())
    });
}

/// Readers and writers under partitions, crashes and leader changes: no
/// read index is below what was committed before the read was issued.
fn reads_under_faults(seed: u64, mode: ReadMode) -> Result<(), Failure> {
    let mut c = cluster(5, seed, |cfg| cfg.raft.read_mode = mode);
    c.check_one_leader()?;
    let mut ctx = 0;
    for round in 0..40 {
        let fault = c.rng.range(0, 4);
        let victim = c.rng.range(0, 5) as usize;
        match fault {
            0 => c.disconnect(victim),
            1 => c.crash1(victim),
            _ => {}
        }
        for _ in 0..5 {
            for i in 0..5 {
                let x = c.rng.next_u64();
                c.start(i, cmd(x));
                ctx += 1;
                let reader = c.rng.range(0, 5) as usize;
                c.read(reader, ctx);
            }
            let pause = c.rng.range(5, 150);
            c.run_for(pause * MS)?;
        }
        if !c.nodes[victim].alive() {
            c.restart(victim);
        }
        c.connect(victim);
        if round % 10 == 9 {
            c.one(cmd(round), 5, true)?;
        }
    }
    if c.reads_checked < 100 {
        return Err(c.fail(format!("only {} reads completed", c.reads_checked)));
    }
    Ok(())
}

#[test]
fn read_index_reads_are_linearizable_under_faults() {
    run_seeds(
        "read_index_reads_are_linearizable_under_faults",
        SEEDS,
        |seed| reads_under_faults(seed, ReadMode::Safe),
    );
}

#[test]
fn lease_reads_are_linearizable_under_faults() {
    run_seeds("lease_reads_are_linearizable_under_faults", SEEDS, |seed| {
        reads_under_faults(seed, ReadMode::Lease)
    });
}

/// A burst of reads shares one heartbeat round: far fewer than one message
/// per read, and no log entry.
#[test]
fn a_burst_of_reads_costs_one_heartbeat_round() {
    let mut c = cluster(3, 11, |_| {});
    let leader = c.check_one_leader().unwrap();
    c.one(cmd(1), 3, true).unwrap();
    let (msgs0, last0) = (
        c.net.counters.requests,
        c.nodes[leader].raft.as_ref().unwrap().status().last_index,
    );
    let raft = c.nodes[leader].raft.as_mut().unwrap();
    for ctx in 0..100 {
        raft.read_index(ctx);
    }
    c.run_for(5 * MS).unwrap();
    let reads = c.nodes[leader].reads.len();
    let requests = c.net.counters.requests - msgs0;
    assert_eq!(reads, 100, "every read confirmed");
    assert_eq!(requests, 2, "one heartbeat to each of the two followers");
    let last = c.nodes[leader].raft.as_ref().unwrap().status().last_index;
    assert_eq!(last, last0, "reads wrote nothing to the log");
}

/// Followers serve reads by asking the leader for the index.
#[test]
fn follower_reads_get_their_index_from_the_leader() {
    let mut c = cluster(3, 5, |_| {});
    let leader = c.check_one_leader().unwrap();
    let follower = (leader + 1) % 3;
    let index = c.one(cmd(7), 3, true).unwrap();
    assert!(c.read(follower, 42));
    c.run_for(10 * MS).unwrap();
    let got = c.nodes[follower]
        .reads
        .iter()
        .find(|r| r.ctx == 42)
        .copied();
    assert!(
        got.is_some_and(|r| r.index >= index),
        "follower read {got:?}, committed {index}"
    );
}

/// Leadership moves to the named node; proposals are refused meanwhile.
#[test]
fn leadership_transfer_to_a_named_node() {
    run_seeds("leadership_transfer_to_a_named_node", SEEDS, |seed| {
        let mut c = cluster(5, seed, |_| {});
        let leader = c.check_one_leader()?;
        let target = (leader + 2) % 5;
        // Make the target lag, so the transfer must first catch it up.
        c.disconnect(target);
        for x in 0..20 {
            c.one(cmd(x), 4, true)?;
        }
        c.connect(target);
        c.transfer_leader(leader, target)
            .map_err(|e| c.fail(e.to_string()))?;
        let refused = c.nodes[leader].raft.as_mut().map(|r| r.propose(cmd(99)));
        if let Some(Ok(_)) = refused {
            return Err(c.fail("a proposal was accepted during the transfer"));
        }
        c.run_until_cond(ELECTION_TIMEOUT_NS, "transfer did not complete", |c| {
            c.leader() == Some(target)
        })?;
        c.one(cmd(100), 5, true)?;
        Ok(())
    });
}

/// A transfer to an unreachable node is abandoned after an election
/// timeout, and the leader takes proposals again.
#[test]
fn transfer_to_an_unreachable_node_is_abandoned() {
    let mut c = cluster(3, 9, |_| {});
    let leader = c.check_one_leader().unwrap();
    let target = (leader + 1) % 3;
    c.disconnect(target);
    c.transfer_leader(leader, target).unwrap();
    let r = c.nodes[leader].raft.as_mut().unwrap().propose(cmd(1));
    assert!(
        matches!(r, Err(ProposeError::TransferInProgress { .. })),
        "{r:?}"
    );
    c.run_for(ELECTION_TIMEOUT_NS + 20 * MS).unwrap();
    assert_eq!(c.leader(), Some(leader));
    assert!(
        c.nodes[leader]
            .raft
            .as_mut()
            .unwrap()
            .propose(cmd(2))
            .is_ok()
    );
    let stranger = c.nodes[leader]
        .raft
        .as_mut()
        .unwrap()
        .transfer_leader(NodeId(9));
    assert_eq!(stranger, Err(TransferError::NotVoter(NodeId(9))));
    assert!(matches!(
        c.nodes[target]
            .raft
            .as_mut()
            .unwrap()
            .transfer_leader(NodeId(1)),
        Err(TransferError::NotLeader { .. })
    ));
}

/// Waits until every live member applied a fresh command.
fn commit_everywhere(c: &mut Cluster, members: usize) -> Result<(), Failure> {
    let x = c.rng.next_u64();
    c.one(cmd(x), members, true).map(|_| ())
}

/// A learner receives the log but does not count towards quorums.
#[test]
fn learners_receive_the_log_but_do_not_vote() {
    let mut c = cluster(4, 2, |cfg| {
        cfg.initial_voters = Some(vec![NodeId(1), NodeId(2), NodeId(3)])
    });
    let leader = c.check_one_leader().unwrap();
    let add = ConfChange::new(vec![ConfChangeOp::AddLearner(NodeId(4))]);
    c.propose_conf_change(leader, &add).unwrap();
    commit_everywhere(&mut c, 4).unwrap();
    assert!(
        c.nodes[3].app.last_applied > flotilla_raft::LogIndex(2),
        "the learner applies the log"
    );
    // Two voters gone: the leader and the learner are no quorum.
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &others {
        c.disconnect(i);
    }
    let before = c.committed.len();
    c.start(leader, cmd(5));
    c.run_for(3 * ELECTION_TIMEOUT_NS).unwrap();
    assert_eq!(
        c.committed.len(),
        before,
        "a learner must not make a quorum"
    );
    assert_ne!(c.role(3), Some(Role::Leader));
    for &i in &others {
        c.connect(i);
    }
    commit_everywhere(&mut c, 4).unwrap();
}

/// Joint consensus replaces the whole voter set in one change.
#[test]
fn joint_consensus_replaces_every_voter() {
    run_seeds("joint_consensus_replaces_every_voter", SEEDS, |seed| {
        let ids = |v: &[u64]| v.iter().map(|&i| NodeId(i)).collect::<Vec<_>>();
        let mut c = cluster(6, seed, |cfg| cfg.initial_voters = Some(ids(&[1, 2, 3])));
        let leader = c.check_one_leader()?;
        commit_everywhere(&mut c, 3)?;
        let ops = vec![
            ConfChangeOp::AddVoter(NodeId(4)),
            ConfChangeOp::AddVoter(NodeId(5)),
            ConfChangeOp::AddVoter(NodeId(6)),
            ConfChangeOp::Remove(NodeId(1)),
            ConfChangeOp::Remove(NodeId(2)),
            ConfChangeOp::Remove(NodeId(3)),
        ];
        c.propose_conf_change(leader, &ConfChange::new(ops))
            .map_err(|e| c.fail(e.to_string()))?;
        c.run_until_cond(
            10 * ELECTION_TIMEOUT_NS,
            "new configuration not reached",
            |c| {
                (3..6).all(|i| {
                    c.nodes[i].raft.as_ref().is_some_and(|r| {
                        r.status().conf_state.voters == ids(&[4, 5, 6])
                            && !r.status().conf_state.is_joint()
                    })
                })
            },
        )?;
        for i in 0..3 {
            c.crash1(i);
        }
        commit_everywhere(&mut c, 3)?;
        Ok(())
    });
}

/// Membership changes again and again while nodes crash, partitions come
/// and go and the network loses messages; the invariants hold throughout
/// and the group makes progress once the faults stop.
#[test]
fn membership_changes_under_faults() {
    run_seeds("membership_changes_under_faults", SEEDS, |seed| {
        let mut c = cluster(5, seed, |cfg| {
            cfg.initial_voters = Some(vec![NodeId(1), NodeId(2), NodeId(3)]);
            cfg.net.reliable = false;
        });
        c.check_one_leader()?;
        for _ in 0..60 {
            random_membership_change(&mut c);
            let victim = c.rng.range(0, 5) as usize;
            match c.rng.range(0, 5) {
                0 => c.crash1(victim),
                1 => c.disconnect(victim),
                _ => {}
            }
            for i in 0..5 {
                let x = c.rng.next_u64();
                c.start(i, cmd(x));
            }
            let pause = c.rng.range(50, 500);
            c.run_for(pause * MS)?;
            if !c.nodes[victim].alive() {
                c.restart(victim);
            }
            c.connect(victim);
        }
        c.set_reliable(true);
        converge(&mut c)?;
        Ok(())
    });
}

/// A follower that does not answer gets at most one probe per heartbeat,
/// however much the leader appends: the leader neither floods it nor
/// buffers without bound.
#[test]
fn flow_control_bounds_traffic_to_a_silent_follower() {
    let mut c = cluster(3, 4, |_| {});
    let leader = c.check_one_leader().unwrap();
    let silent = (leader + 1) % 3;
    c.one(cmd(0), 3, true).unwrap();
    // Block only the answers: the follower receives but the leader never hears back.
    c.net
        .set_link(c.nodes[silent].id.get(), c.nodes[leader].id.get(), false);
    let sent0 = c
        .net
        .counters
        .sent_to
        .get(&c.nodes[silent].id.get())
        .copied()
        .unwrap_or(0);
    for x in 0..2000 {
        c.start(leader, cmd(x));
        if x % 100 == 0 {
            c.run_for(10 * MS).unwrap();
        }
    }
    c.run_for(1000 * MS).unwrap();
    let sent = c
        .net
        .counters
        .sent_to
        .get(&c.nodes[silent].id.get())
        .copied()
        .unwrap_or(0)
        - sent0;
    // 1.2 s of heartbeats (~12) plus at most the in-flight window.
    assert!(
        sent < 12 + 256 + 20,
        "sent {sent} messages to a silent follower"
    );
}

/// A lone voter is its own majority, so nothing but its own sync may commit
/// an entry: the durable-commit invariant (checked before every Ready's
/// writes) fails if the core counts the leader's unsynced log, which the
/// production driver's apply-while-syncing relies on it not doing.
#[test]
fn a_single_voter_commits_only_what_it_has_synced() {
    run_seeds(
        "a_single_voter_commits_only_what_it_has_synced",
        SEEDS,
        |seed| {
            let mut c = cluster(1, seed, |_| {});
            c.check_one_leader()?;
            for i in 0..20 {
                c.one(cmd(i), 1, false)?;
            }
            Ok(())
        },
    );
}

/// Asynchronous writes (the production driver's): a node goes on while its
/// sync runs, so followers' acks reach a leader before its own log is
/// durable. Under crashes that lose unsynced writes, partitions and
/// snapshots, the leader must still commit only what a majority has
/// synced (checked before every Ready's writes), and nothing committed may
/// be lost or reordered (checked at every apply).
#[test]
fn asynchronous_writes_commit_only_what_a_majority_synced() {
    run_seeds(
        "asynchronous_writes_commit_only_what_a_majority_synced",
        SEEDS,
        |seed| {
            let mut c = cluster(3, seed, |cfg| {
                cfg.async_sync_ns = Some((MS, 8 * MS));
                cfg.snapshot_every = Some(25);
            });
            c.check_one_leader()?;
            for round in 0..30u64 {
                for i in 0..3 {
                    c.start(i, cmd(round * 10 + i as u64));
                }
                let victim = c.rng.range(0, 3) as usize;
                match c.rng.range(0, 4) {
                    0 => c.crash1(victim),
                    1 => c.disconnect(victim),
                    _ => {}
                }
                let pause = c.rng.range(5, 200);
                c.run_for(pause * MS)?;
                if !c.nodes[victim].alive() {
                    c.restart(victim);
                }
                c.connect(victim);
            }
            c.one(cmd(1_000), 3, true)?;
            Ok(())
        },
    );
}

/// A lone voter becomes leader without asking anyone, so its new term is
/// not durable when its first appends leave for its learners. A crash then
/// could bring it back in the old term, win the same term again and send
/// different entries under the same index and term. The core holds a
/// leader's appends until its term is durable: the learners' logs must
/// match (checked at every Ready), and no term they saw may be lost.
#[test]
fn a_lone_voter_sends_nothing_in_a_term_it_has_not_synced() {
    run_seeds(
        "a_lone_voter_sends_nothing_in_a_term_it_has_not_synced",
        SEEDS,
        |seed| {
            let mut c = cluster(2, seed, |cfg| {
                cfg.async_sync_ns = Some((MS, 20 * MS));
                cfg.initial_voters = Some(vec![NodeId(1)]);
                cfg.raft.learners = vec![NodeId(2)];
            });
            for round in 0..50u64 {
                // Crash it right after it takes the lead, its term and
                // first appends still syncing.
                while c.get_state(0).is_none_or(|(_, leader)| !leader) {
                    c.run_for(MS)?;
                }
                c.start(0, cmd(round));
                let pause = c.rng.range(0, 3);
                c.run_for(pause * MS)?;
                c.restart(0);
            }
            c.one(cmd(1_000_000), 2, true)?;
            Ok(())
        },
    );
}

/// Asks the leader for a random, valid-looking membership change (it may
/// still be refused, e.g. while another change is pending).
fn random_membership_change(c: &mut Cluster) {
    let Some(leader) = c.leader() else { return };
    let Some(conf) = c.nodes[leader].raft.as_ref().map(|r| r.status().conf_state) else {
        return;
    };
    let all: Vec<NodeId> = c.nodes.iter().map(|n| n.id).collect();
    let outsiders: Vec<NodeId> = all
        .iter()
        .copied()
        .filter(|id| !conf.members().contains(id))
        .collect();
    let pick = |c: &mut Cluster, v: &[NodeId]| {
        v.get(c.rng.range(0, v.len().max(1) as u64) as usize)
            .copied()
    };
    let op = match c.rng.range(0, 5) {
        0 => pick(c, &outsiders).map(ConfChangeOp::AddLearner),
        1 => pick(c, &conf.learners).map(ConfChangeOp::AddVoter),
        2 => pick(c, &outsiders).map(ConfChangeOp::AddVoter),
        3 if conf.voters.len() > 2 => pick(c, &conf.voters).map(ConfChangeOp::Remove),
        4 => pick(c, &conf.learners).map(ConfChangeOp::Remove),
        _ => None,
    };
    if let Some(op) = op {
        let _ = c.propose_conf_change(leader, &ConfChange::new(vec![op]));
    }
}

/// Ends every fault, then requires a leader and a fresh command applied by
/// every member of its configuration, and all members to agree on the
/// configuration.
fn converge(c: &mut Cluster) -> Result<(), Failure> {
    c.net.heal();
    c.net.cfg.reliable = true;
    c.net.cfg.long_reordering = false;
    for i in 0..c.n() {
        if !c.nodes[i].alive() {
            c.restart(i);
        }
    }
    c.run_until_cond(30_000 * MS, "no leader after the faults stopped", |c| {
        c.leader().is_some_and(|l| {
            c.nodes[l]
                .raft
                .as_ref()
                .is_some_and(|r| !r.status().conf_state.is_joint())
        })
    })?;
    // A change proposed before the faults stopped may still commit (and a
    // joint configuration must be left): commit a fresh command anywhere,
    // which commits everything before it, until the leader's configuration
    // is final; then require every member to apply one more.
    let leader_conf = |c: &Cluster| {
        c.leader()
            .and_then(|l| c.nodes[l].raft.as_ref())
            .map(|r| r.status().conf_state)
    };
    let mut conf = leader_conf(c).unwrap_or_default();
    for attempt in 0.. {
        let x = c.rng.next_u64();
        c.one(cmd(x), 1, true)?;
        conf = leader_conf(c).unwrap_or_default();
        if !conf.is_joint() {
            break;
        }
        if attempt == 5 {
            return Err(c.fail(format!("still in a joint configuration: {conf:?}")));
        }
    }
    let x = c.rng.next_u64();
    c.one(cmd(x), conf.members().len(), true)?;
    let members = conf.members();
    for id in members {
        let idx = Cluster::idx(id);
        let theirs = c.nodes[idx].raft.as_ref().map(|r| r.status().conf_state);
        if theirs.as_ref() != Some(&conf) {
            return Err(c.fail(format!(
                "member {id} has configuration {theirs:?}, leader has {conf:?}"
            )));
        }
    }
    Ok(())
}
