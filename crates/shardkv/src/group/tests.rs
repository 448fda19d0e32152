//! A group machine's rules, with two groups handing shards over by hand
//! (what the movers do through the groups' logs).

use super::*;
use crate::balance::rebalance;
use proptest::prelude::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Configuration `num` with groups `gids`, rebalanced from `from`.
fn config(num: u64, from: &Config, gids: &[Gid]) -> Config {
    let groups: BTreeMap<Gid, Vec<String>> =
        gids.iter().map(|&g| (g, vec![format!("s{g}")])).collect();
    let shards = rebalance(&from.shards, &groups.keys().copied().collect());
    Config {
        num,
        shards,
        groups,
    }
}

fn op(kv: &mut ShardKv, client: u64, seq: u64, op: KvOp) -> KvReply {
    match kv.execute(GroupCommand::Op { client, seq, op }) {
        GroupApplied::Op { reply, .. } => reply,
        other => panic!("{other:?}"),
    }
}

fn step(kv: &mut ShardKv, command: GroupCommand) -> bool {
    match kv.execute(command) {
        GroupApplied::Step { applied, .. } => applied,
        other => panic!("{other:?}"),
    }
}

/// Group 1 alone at configuration 1 with a key on every shard; the
/// configurations 0, 1 and 2 (group 2 joins).
fn started() -> (ShardKv, Vec<Config>) {
    let c0 = Config::initial(10);
    let c1 = config(1, &c0, &[1]);
    let c2 = config(2, &c1, &[1, 2]);
    let mut g1 = ShardKv::new(1, 10);
    assert!(step(&mut g1, GroupCommand::Config(c1.clone())));
    assert!(g1.settled(), "shards from no group serve at once");
    for k in 0..10 {
        let key = b(&k.to_string());
        assert_eq!(op(&mut g1, 7, k + 1, KvOp::Put(key, b("v"))), KvReply::Done);
    }
    (g1, vec![c0, c1, c2])
}

/// Groups 1 and 2 at configuration 2 (2 joined): the shards moving to
/// 2, and "9", a key on one of them (shard 7).
fn handing_over() -> (ShardKv, ShardKv, Vec<Config>, Vec<usize>, Bytes) {
    let (mut g1, c) = started();
    let mut g2 = ShardKv::new(2, 10);
    assert!(step(&mut g2, GroupCommand::Config(c[1].clone())));
    assert!(step(&mut g1, GroupCommand::Config(c[2].clone())));
    assert!(step(&mut g2, GroupCommand::Config(c[2].clone())));
    let moving = c[2].shards_of(2);
    let key = b("9");
    assert!(moving.contains(&key2shard(&key, 10)));
    (g1, g2, c, moving, key)
}

fn get(kv: &mut ShardKv, key: &Bytes) -> KvReply {
    op(kv, 8, 0, KvOp::Get(key.clone()))
}

fn insert(num: u64, shards: BTreeMap<usize, ShardData>) -> GroupCommand {
    GroupCommand::Insert { num, shards }
}

#[test]
fn untouched_shards_serve_while_moving_ones_wait() {
    let (mut g1, mut g2, c, moving, key) = handing_over();
    assert_eq!(g2.to_pull(), BTreeMap::from([(1, moving.clone())]));
    // "2" is on shard 0, which stays: group 1 keeps serving it.
    assert_eq!(get(&mut g1, &b("2")), KvReply::Value(b("v")));
    assert_eq!(get(&mut g1, &key), KvReply::WrongGroup);
    assert_eq!(get(&mut g2, &key), KvReply::WrongGroup, "still pulling");
    let next = GroupCommand::Config(config(3, &c[2], &[1]));
    assert!(
        !g1.settled() && !step(&mut g1, next),
        "one change at a time"
    );
    assert_eq!(
        g1.export(1, &moving),
        None,
        "not for an older configuration"
    );
    assert_eq!(g1.states()[&moving[0]], ShardState::Leaving);
    assert_eq!(g2.states()[&moving[0]], ShardState::Pulling);
}

#[test]
fn a_shard_moves_with_its_data_and_exactly_once_table() {
    let (g1, mut g2, _, moving, key) = handing_over();
    let data = g1.export(2, &moving).unwrap();
    assert!(step(&mut g2, insert(2, data.clone())));
    assert!(!step(&mut g2, insert(2, data.clone())), "once");
    assert!(
        !step(&mut g2, insert(1, data)),
        "for this configuration only"
    );
    assert_eq!(get(&mut g2, &key), KvReply::Value(b("v")));
    // Client 7's put of "9" was its 10th request: a repeat is not
    // applied again, the next one is.
    let append = || KvOp::Append(key.clone(), b("x"));
    assert_eq!(op(&mut g2, 7, 10, append()), KvReply::Done);
    assert_eq!(get(&mut g2, &key), KvReply::Value(b("v")));
    assert_eq!(op(&mut g2, 7, 11, append()), KvReply::Done);
    assert_eq!(op(&mut g2, 7, 11, append()), KvReply::Done);
    assert_eq!(get(&mut g2, &key), KvReply::Value(b("vx")));
    assert_eq!(g2.states()[&moving[0]], ShardState::Arrived);
}

#[test]
fn the_old_owner_deletes_and_the_new_owner_settles() {
    let (mut g1, mut g2, _, moving, _) = handing_over();
    let data = g1.export(2, &moving).unwrap();
    assert!(step(&mut g2, insert(2, data)));
    assert_eq!(g2.to_settle(), BTreeMap::from([(1, moving.clone())]));
    let before = g1.data_bytes();
    let delete = |num| GroupCommand::Delete {
        num,
        shards: moving.clone(),
    };
    assert!(!step(&mut g1, delete(1)), "wrong number");
    assert!(step(&mut g1, delete(2)));
    // Ten one-byte keys with one-byte values, one key per shard: the
    // five shards that left took theirs.
    assert_eq!((before, g1.data_bytes()), (20, 10), "dropped");
    assert!(g1.settled());
    assert_eq!(g1.export(2, &moving), None);
    let settle = |num| GroupCommand::Settle {
        num,
        shards: moving.clone(),
    };
    assert!(!step(&mut g2, settle(1)), "wrong number");
    assert!(step(&mut g2, settle(2)));
    assert!(g2.settled() && g2.to_settle().is_empty());
}

#[test]
fn configurations_apply_in_order_and_only_valid_ones() {
    let (mut g1, c) = started();
    let skip = config(3, &c[2], &[1, 2]);
    assert!(!step(&mut g1, GroupCommand::Config(skip)));
    assert!(!step(&mut g1, GroupCommand::Config(c[1].clone())), "again");
    let mut short = c[2].clone();
    short.shards.pop();
    assert!(!step(&mut g1, GroupCommand::Config(short)));
    let mut stray = c[2].clone();
    stray.shards[0] = 9;
    assert!(!step(&mut g1, GroupCommand::Config(stray)));
    assert_eq!(g1.config(), &c[1]);
    assert_eq!(g1.prev(), &c[0]);
    assert_eq!(g1.gid(), 1);
}

#[test]
fn shards_stay_with_the_last_group_until_another_joins() {
    let (mut g1, c) = started();
    // Every group leaves: the shards stay on group 1, which serves none
    // of them but keeps their data, settled, so it can move on.
    let none = config(2, &c[1], &[]);
    assert_eq!(none.shards, c[1].shards);
    assert!(step(&mut g1, GroupCommand::Config(none.clone())));
    assert!(g1.settled() && g1.data_bytes() > 0);
    assert_eq!(get(&mut g1, &b("9")), KvReply::WrongGroup);
    // Group 2 joins: it pulls every shard from group 1, which has them.
    let two = config(3, &none, &[2]);
    let mut g2 = ShardKv::new(2, 10);
    for next in [&c[1], &none, &two] {
        assert!(step(&mut g2, GroupCommand::Config(next.clone())));
    }
    assert!(step(&mut g1, GroupCommand::Config(two.clone())));
    let all: Vec<usize> = (0..10).collect();
    assert_eq!(g2.to_pull(), BTreeMap::from([(1, all.clone())]));
    let data = g1.export(3, &all).unwrap();
    assert!(step(&mut g2, insert(3, data)));
    assert_eq!(get(&mut g2, &b("9")), KvReply::Value(b("v")));
    // Or group 1 itself comes back: it serves its data again.
    let (mut g1, c) = started();
    let none = config(2, &c[1], &[]);
    let back = config(3, &none, &[1]);
    assert!(step(&mut g1, GroupCommand::Config(none)));
    assert!(step(&mut g1, GroupCommand::Config(back)));
    assert!(g1.settled() && g1.to_pull().is_empty());
    assert_eq!(get(&mut g1, &b("9")), KvReply::Value(b("v")));
}

#[test]
fn the_machine_answers_commands_and_skips_other_entries() {
    let (mut g1, _) = started();
    let entry = |index, kind, data| Entry {
        term: flotilla_raft::Term(1),
        index: LogIndex(index),
        kind,
        data,
    };
    assert_eq!(
        g1.apply(&entry(5, EntryKind::Noop, Bytes::new())).unwrap(),
        None
    );
    let get = GroupCommand::Op {
        client: 3,
        seq: 0,
        op: KvOp::Get(b("1")),
    };
    let out = g1
        .apply(&entry(6, EntryKind::Command, get.encode()))
        .unwrap();
    let want = GroupApplied::Op {
        client: 3,
        seq: 0,
        reply: KvReply::Value(b("v")),
    };
    assert_eq!(out, Some(want));
    let junk = g1
        .apply(&entry(7, EntryKind::Command, b("\x01\x09")))
        .unwrap();
    assert!(matches!(junk, Some(GroupApplied::Malformed(w)) if w.contains("group command tag 9")));
    assert_eq!(g1.applied, LogIndex(7));
    // "none" is on shard 0 ('n' is 110), which group 1 serves.
    assert_eq!(op(&mut g1, 3, 0, KvOp::Get(b("none"))), KvReply::NoKey);
}

#[test]
fn snapshots_round_trip_and_damage_is_refused() {
    let (mut g1, c) = started();
    step(&mut g1, GroupCommand::Config(c[2].clone()));
    let snap = g1.snapshot();
    let mut back = ShardKv::new(1, 10);
    back.restore(&snap).unwrap();
    assert_eq!(back, g1);
    let mut other_group = ShardKv::new(2, 10);
    let e = other_group.restore(&snap).unwrap_err();
    assert!(format!("{:?}", e.0).contains("restored in group 2"));
    let mut wider = ShardKv::new(1, 12);
    assert!(wider.restore(&snap).is_err());
    let mut fresh = ShardKv::new(1, 10);
    for len in 0..snap.len() {
        assert!(fresh.restore(&snap.slice(..len)).is_err(), "{len} bytes");
    }
    for i in 0..snap.len() {
        let mut bad = snap.to_vec();
        bad[i] ^= 0x10;
        assert!(fresh.restore(&Bytes::from(bad)).is_err(), "byte {i}");
    }
    assert_eq!(fresh, ShardKv::new(1, 10));
}

fn command() -> impl Strategy<Value = GroupCommand> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from);
    let op = prop_oneof![
        bytes().prop_map(KvOp::Get),
        (bytes(), bytes()).prop_map(|(k, v)| KvOp::Put(k, v)),
        (bytes(), bytes()).prop_map(|(k, v)| KvOp::Append(k, v)),
    ];
    let data = (
        prop::collection::btree_map(bytes(), bytes(), 0..3),
        prop::collection::btree_map(any::<u64>(), any::<u64>(), 0..3),
    )
        .prop_map(|(data, dedup)| ShardData { data, dedup });
    let list = prop::collection::vec(0..300usize, 0..4);
    prop_oneof![
        (any::<u64>(), any::<u64>(), op).prop_map(|(client, seq, op)| GroupCommand::Op {
            client,
            seq,
            op
        }),
        (
            any::<u64>(),
            prop::collection::btree_map(0..300usize, data.clone(), 0..3)
        )
            .prop_map(|(num, shards)| GroupCommand::Insert { num, shards }),
        (any::<u64>(), 0..300usize, data).prop_map(|(num, shard, part)| GroupCommand::Part {
            num,
            shard,
            part
        }),
        (any::<u64>(), list.clone()).prop_map(|(num, shards)| GroupCommand::Delete { num, shards }),
        (any::<u64>(), list).prop_map(|(num, shards)| GroupCommand::Settle { num, shards }),
        Just(GroupCommand::Config(Config::initial(3))),
    ]
}

proptest! {
    #[test]
    fn commands_round_trip_and_truncations_are_refused(c in command()) {
        let data = c.encode();
        prop_assert_eq!(GroupCommand::decode(&data), Ok(c));
        for len in 0..data.len() {
            prop_assert!(GroupCommand::decode(&data.slice(..len)).is_err());
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic(data in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = GroupCommand::decode(&Bytes::from(data));
    }
}

#[test]
fn a_shard_too_large_for_one_entry_arrives_in_parts() {
    let (g1, mut g2, _c, moving, key) = handing_over();
    let shard = key2shard(&key, 10);
    let mut data = g1.export(2, &[shard]).unwrap().remove(&shard).unwrap();
    data.data.insert(b("9b"), b("second"));
    let dedup = std::mem::take(&mut data.dedup);
    let (first, rest): (BTreeMap<_, _>, BTreeMap<_, _>) =
        data.data.into_iter().partition(|(k, _)| *k == key);
    let part = |num, data| GroupCommand::Part {
        num,
        shard,
        part: ShardData {
            data,
            dedup: BTreeMap::new(),
        },
    };
    assert!(
        !step(&mut g2, part(3, first.clone())),
        "another configuration's"
    );
    assert!(step(&mut g2, part(2, first.clone())));
    assert!(
        step(&mut g2, part(2, first)),
        "a repeat merges the same pairs"
    );
    assert_eq!(get(&mut g2, &key), KvReply::WrongGroup, "it still pulls");
    assert_eq!(g2.to_pull(), BTreeMap::from([(1, moving)]));
    let last = ShardData { data: rest, dedup };
    assert!(step(&mut g2, insert(2, BTreeMap::from([(shard, last)]))));
    assert_eq!(get(&mut g2, &key), KvReply::Value(b("v")));
    assert_eq!(get(&mut g2, &b("9b")), KvReply::Value(b("second")));
    // The exactly-once table came with the last piece: client 7's put of
    // "9" (its 10th write) is not applied again.
    let again = KvOp::Put(key.clone(), b("again"));
    assert_eq!(op(&mut g2, 7, 10, again), KvReply::Done);
    assert_eq!(get(&mut g2, &key), KvReply::Value(b("v")));
    assert!(
        !step(&mut g2, part(2, BTreeMap::new())),
        "it no longer pulls"
    );
}
