//! The settings `Config::validate` refuses, each at its boundary: the last
//! valid value is taken, one step past it is refused with the error that
//! names it, and `RawNode::new` refuses to start with it. A check that
//! stopped firing (or fired on a valid setting) would let a node start
//! with settings that cannot work, or refuse ones that can.

use flotilla_raft::{Config, ConfigError, InitialState, NodeId, RawNode, ReadMode};

/// Node 1 of voters 1, 2, 3 with the defaults, changed by `edit`, checked.
fn check(edit: impl FnOnce(&mut Config)) -> Result<(), ConfigError> {
    let mut cfg = Config::new(NodeId(1), (1..=3).map(NodeId).collect());
    edit(&mut cfg);
    let checked = cfg.validate();
    let started = RawNode::new(cfg, InitialState::default()).map(|_| ());
    assert_eq!(checked, started, "RawNode::new checks what validate checks");
    checked
}

#[test]
fn the_defaults_are_valid() {
    assert_eq!(check(|_| {}), Ok(()));
}

#[test]
fn ids_start_at_one() {
    assert_eq!(check(|c| c.id = NodeId(0)), Err(ConfigError::ZeroId));
    let zero_voter = check(|c| c.voters.push(NodeId(0)));
    assert_eq!(zero_voter, Err(ConfigError::ZeroMember(NodeId(0))));
    let zero_learner = check(|c| c.learners.push(NodeId(0)));
    assert_eq!(zero_learner, Err(ConfigError::ZeroMember(NodeId(0))));
}

#[test]
fn heartbeats_need_a_tick_and_elections_must_be_longer() {
    assert_eq!(
        check(|c| c.heartbeat_ticks = 0),
        Err(ConfigError::ZeroHeartbeat)
    );
    let tight = |c: &mut Config| {
        c.heartbeat_ticks = 1;
        c.election_ticks = 2;
    };
    assert_eq!(check(tight), Ok(()));
    let equal = check(|c| {
        c.heartbeat_ticks = 2;
        c.election_ticks = 2;
    });
    let want = ConfigError::ElectionNotAboveHeartbeat {
        election_ticks: 2,
        heartbeat_ticks: 2,
    };
    assert_eq!(equal, Err(want));
}

#[test]
fn flow_control_needs_room_for_one_message_and_one_chunk_byte() {
    assert_eq!(
        check(|c| c.max_inflight_msgs = 0),
        Err(ConfigError::ZeroInflight)
    );
    assert_eq!(check(|c| c.max_inflight_msgs = 1), Ok(()));
    assert_eq!(
        check(|c| c.snapshot_chunk_bytes = 0),
        Err(ConfigError::ZeroChunk)
    );
    assert_eq!(check(|c| c.snapshot_chunk_bytes = 1), Ok(()));
}

#[test]
fn lease_reads_need_check_quorum_and_a_lease_left_after_drift() {
    let lease = |c: &mut Config| c.read_mode = ReadMode::Lease;
    assert_eq!(check(lease), Ok(()));
    let without_cq = check(|c| {
        lease(c);
        c.check_quorum = false;
    });
    assert_eq!(without_cq, Err(ConfigError::LeaseWithoutCheckQuorum));
    // ReadIndex reads need neither.
    assert_eq!(check(|c| c.check_quorum = false), Ok(()));
    let drift = |ticks: u32| {
        check(move |c| {
            lease(c);
            c.lease_drift_ticks = ticks;
        })
    };
    assert_eq!(drift(99), Ok(()), "one tick of lease is left");
    let want = ConfigError::DriftTooLarge {
        lease_drift_ticks: 100,
        election_ticks: 100,
    };
    assert_eq!(drift(100), Err(want));
    assert_eq!(check(|c| c.lease_drift_ticks = 100), Ok(()));
}

#[test]
fn a_node_is_a_voter_or_a_learner_not_both() {
    assert_eq!(check(|c| c.learners.push(NodeId(4))), Ok(()));
    assert_eq!(
        check(|c| c.learners.push(NodeId(2))),
        Err(ConfigError::VoterAndLearner(NodeId(2)))
    );
}
