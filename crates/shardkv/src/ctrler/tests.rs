//! The controller machine's rules, one request at a time.

use super::*;
use flotilla_raft::Term;

fn groups(gids: &[Gid]) -> BTreeMap<Gid, Vec<String>> {
    gids.iter()
        .map(|&g| (g, vec![format!("s{g}a"), format!("s{g}b")]))
        .collect()
}

fn cmd(client: u64, seq: u64, op: CtrlOp) -> CtrlCommand {
    CtrlCommand { client, seq, op }
}

fn entry(index: u64, data: Bytes) -> Entry {
    Entry {
        term: Term(1),
        index: LogIndex(index),
        kind: EntryKind::Command,
        data,
    }
}

#[test]
fn joins_leaves_and_moves_make_numbered_configurations() {
    let mut c = Ctrler::new(10);
    assert_eq!(c.query(None), &Config::initial(10));
    assert_eq!(
        c.execute(&cmd(1, 1, CtrlOp::Join(groups(&[1])))),
        CtrlReply::Done
    );
    assert_eq!(c.query(None).shards, vec![1; 10]);
    assert_eq!(c.query(None).groups, groups(&[1]));
    c.execute(&cmd(1, 2, CtrlOp::Join(groups(&[2]))));
    let two = c.query(None).clone();
    assert_eq!(
        (two.num, two.loads()),
        (2, BTreeMap::from([(1, 5), (2, 5)]))
    );
    let moved = c.execute(&cmd(1, 3, CtrlOp::Move { shard: 0, gid: 2 }));
    assert_eq!(moved, CtrlReply::Done);
    assert_eq!((c.query(None).num, c.query(None).shards[0]), (3, 2));
    // A move to the group that has it makes no configuration.
    c.execute(&cmd(1, 4, CtrlOp::Move { shard: 0, gid: 2 }));
    assert_eq!(c.query(None).num, 3);
    c.execute(&cmd(1, 5, CtrlOp::Leave(vec![1])));
    assert_eq!(c.query(None).shards, vec![2; 10]);
    assert_eq!(c.query(Some(2)), &two, "old configurations stay");
    assert_eq!(c.query(Some(99)).num, 4, "past the latest is the latest");
    assert_eq!(c.query(Some(u64::MAX)).num, 4);
    let q = c.execute(&cmd(9, 0, CtrlOp::Query(Some(0))));
    assert_eq!(q, CtrlReply::Config(Config::initial(10)));
}

#[test]
fn a_request_is_applied_once_per_number() {
    let mut c = Ctrler::new(10);
    let join = cmd(1, 1, CtrlOp::Join(groups(&[1])));
    assert_eq!(c.execute(&join), CtrlReply::Done);
    assert_eq!(c.execute(&join), CtrlReply::Done, "the same answer again");
    assert_eq!(c.query(None).num, 1, "and no second configuration");
    // A refusal is remembered too.
    let again = cmd(1, 2, CtrlOp::Join(groups(&[1])));
    let refused = CtrlReply::Refused(CtrlError::GroupExists(1));
    assert_eq!(c.execute(&again), refused);
    c.execute(&cmd(1, 3, CtrlOp::Join(groups(&[2]))));
    assert_eq!(c.query(None).num, 2);
    let stale = c.execute(&cmd(1, 2, CtrlOp::Leave(vec![2])));
    let want = CtrlError::Stale {
        client: 1,
        seq: 2,
        last: 3,
    };
    assert_eq!(stale, CtrlReply::Refused(want));
    assert_eq!(c.query(None).num, 2, "a stale request changes nothing");
    // Without a number, each arrival applies.
    c.execute(&cmd(2, 0, CtrlOp::Join(groups(&[3]))));
    let twice = c.execute(&cmd(2, 0, CtrlOp::Join(groups(&[3]))));
    assert_eq!(twice, CtrlReply::Refused(CtrlError::GroupExists(3)));
    // A request without a number skips the session, even the session
    // of a client that has one (its queries, say).
    let query = c.execute(&cmd(1, 0, CtrlOp::Query(Some(1))));
    assert!(
        matches!(query, CtrlReply::Config(ref q) if q.num == 1),
        "{query:?}"
    );
    // Nor does a change without a number replace it.
    c.execute(&cmd(1, 0, CtrlOp::Join(groups(&[4]))));
    // A query does not replace the session's last answer.
    c.execute(&cmd(1, 4, CtrlOp::Query(None)));
    let repeat = c.execute(&cmd(1, 3, CtrlOp::Join(groups(&[2]))));
    assert_eq!(repeat, CtrlReply::Done);
}

#[test]
fn bad_requests_are_refused_with_what_was_wrong() {
    let mut c = Ctrler::new(10);
    c.execute(&cmd(1, 1, CtrlOp::Join(groups(&[1]))));
    let cases = [
        (CtrlOp::Join(BTreeMap::new()), CtrlError::NoGroups),
        (CtrlOp::Join(groups(&[0])), CtrlError::ReservedGroup),
        (CtrlOp::Join(groups(&[1])), CtrlError::GroupExists(1)),
        (
            CtrlOp::Join(BTreeMap::from([(4, Vec::new())])),
            CtrlError::NoServers(4),
        ),
        (CtrlOp::Leave(Vec::new()), CtrlError::NoGroups),
        (CtrlOp::Leave(vec![7]), CtrlError::NoSuchGroup(7)),
        (CtrlOp::Leave(vec![1, 1]), CtrlError::Repeated(1)),
        (
            CtrlOp::Move { shard: 10, gid: 1 },
            CtrlError::NoSuchShard {
                shard: 10,
                nshards: 10,
            },
        ),
        (
            CtrlOp::Move {
                shard: u64::MAX,
                gid: 1,
            },
            CtrlError::NoSuchShard {
                shard: u64::MAX,
                nshards: 10,
            },
        ),
        (CtrlOp::Move { shard: 3, gid: 8 }, CtrlError::NoSuchGroup(8)),
    ];
    for (i, (op, error)) in cases.into_iter().enumerate() {
        let got = c.execute(&cmd(5, i as u64 + 1, op.clone()));
        assert_eq!(got, CtrlReply::Refused(error), "{op:?}");
    }
    assert_eq!(
        c.query(None).num,
        1,
        "no refused request made a configuration"
    );
    assert!(c.configs.iter().all(|c| c.violation().is_none()));
}

#[test]
fn the_machine_answers_commands_and_skips_other_entries() {
    let mut c = Ctrler::new(10);
    let join = cmd(3, 1, CtrlOp::Join(groups(&[1])));
    let out = c.apply(&entry(1, join.encode())).unwrap();
    let want = CtrlApplied {
        client: 3,
        seq: 1,
        reply: CtrlReply::Done,
    };
    assert_eq!(out, Some(want));
    let noop = Entry {
        kind: EntryKind::Noop,
        ..entry(2, Bytes::new())
    };
    assert_eq!(c.apply(&noop).unwrap(), None);
    assert_eq!(c.applied(), LogIndex(2));
    let garbage = c.apply(&entry(3, Bytes::from_static(b"\x07junk"))).unwrap();
    let Some(CtrlApplied {
        client: 0,
        reply: CtrlReply::Refused(CtrlError::Malformed(what)),
        ..
    }) = garbage
    else {
        panic!("{garbage:?}");
    };
    assert!(what.contains("command version"), "{what}");
    assert_eq!((c.applied(), c.query(None).num), (LogIndex(3), 1));
}

#[test]
fn snapshots_round_trip_and_damage_is_refused() {
    let mut c = Ctrler::new(10);
    c.apply(&entry(1, cmd(1, 1, CtrlOp::Join(groups(&[1, 2]))).encode()))
        .unwrap();
    c.apply(&entry(2, cmd(2, 4, CtrlOp::Query(None)).encode()))
        .unwrap();
    c.apply(&entry(3, cmd(2, 5, CtrlOp::Leave(vec![9])).encode()))
        .unwrap();
    let snap = c.snapshot();
    let mut back = Ctrler::new(10);
    back.restore(&snap).unwrap();
    assert_eq!(back.configs, c.configs);
    assert_eq!(back.applied(), LogIndex(3));
    // The refusal's text survives, so a retry gets the same words.
    let retry = back.execute(&cmd(2, 5, CtrlOp::Leave(vec![9])));
    let CtrlReply::Refused(e) = retry else {
        panic!("{retry:?}")
    };
    assert_eq!(e.to_string(), CtrlError::NoSuchGroup(9).to_string());
    assert_eq!(back.snapshot(), snap, "and re-encodes the same");

    let mut wrong = Ctrler::new(16);
    let e = wrong.restore(&snap).unwrap_err();
    assert!(format!("{:?}", e.0).contains("16"), "{e:?}");
    let mut other = Ctrler::new(10);
    for len in 0..snap.len() {
        assert!(other.restore(&snap.slice(..len)).is_err(), "{len} bytes");
    }
    for i in 0..snap.len() {
        let mut bad = snap.to_vec();
        bad[i] ^= 0x41;
        assert!(other.restore(&Bytes::from(bad)).is_err(), "byte {i}");
    }
    assert_eq!(other, Ctrler::new(10), "a refused snapshot changes nothing");
}

#[test]
fn a_snapshot_breaking_the_rules_is_refused() {
    let mut c = Ctrler::new(4);
    c.execute(&cmd(1, 1, CtrlOp::Join(groups(&[1]))));
    let mut broken = c.clone();
    broken.configs[1].shards[2] = 9;
    let e = Ctrler::decode(&broken.encode(), 4).unwrap_err();
    assert!(e.contains("shard 2 is on group 9"), "{e}");
    let mut skipped = c.clone();
    skipped.configs[1].num = 5;
    let e = Ctrler::decode(&skipped.encode(), 4).unwrap_err();
    assert!(e.contains("configuration 5 where 1 belongs"), "{e}");
    let mut short = c.clone();
    short.configs[1].shards.pop();
    let e = Ctrler::decode(&short.encode(), 4).unwrap_err();
    assert!(e.contains("has 3 shards"), "{e}");
    let mut none = c;
    none.configs.clear();
    let e = Ctrler::decode(&none.encode(), 4).unwrap_err();
    assert!(e.contains("without configuration 0"), "{e}");
}
