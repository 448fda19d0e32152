//! Damage to a closed WAL: random truncations and bit flips of its files.
//! Recovery either restores a state the model passed through (a prefix of
//! the calls, every entry exactly as written) or reports the corruption
//! with the file and offset; it never panics and never returns a wrong
//! entry. Damage outside the last segment's tail is always reported.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_raft::storage::InitialState;
use flotilla_wal::{GroupId, MemFs, Options, Wal, WalError};

use common::workload::{Call, GROUPS, apply_model, apply_wal, next_call};
use common::{Model, Rng, model_states, recovered_states};

type States = BTreeMap<GroupId, InitialState>;

fn options() -> Options {
    Options {
        segment_bytes: 600,
        cache_bytes_per_group: 64,
        buffer_bytes_max: 1 << 20,
    }
}

/// A closed WAL after `calls` synced calls, and the model after each call.
fn written(seed: u64, calls: usize) -> (MemFs, Vec<States>) {
    let fs = MemFs::new();
    let wal = common::open_mem(&fs, options());
    let mut handles = Vec::new();
    let mut model = Model::new();
    let (mut rng, mut term) = (Rng(seed), 1);
    let mut states = vec![model_states(&model, &GROUPS)];
    for _ in 0..calls {
        let call = next_call(&mut rng, &model, &mut term);
        apply_wal(&wal, &mut handles, &call);
        apply_model(&mut model, &call);
        wal.sync().expect("sync");
        states.push(model_states(&model, &GROUPS));
    }
    (fs.image().intact(), states)
}

enum Outcome {
    Prefix,
    Reported,
}

fn recover(fs: &MemFs, states: &[States], what: &str) -> Outcome {
    match Wal::open_with_fs("/wal", options(), Arc::new(fs.clone())) {
        Ok(wal) => {
            let got = recovered_states(&wal, &GROUPS);
            assert!(
                states.contains(&got),
                "{what}: recovered a state the model never had"
            );
            Outcome::Prefix
        }
        Err(e @ WalError::Corrupt { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("at byte"),
                "{what}: message lacks an offset: {msg}"
            );
            Outcome::Reported
        }
        // A flip in a version field names the version it now reads.
        Err(WalError::Version { .. }) => Outcome::Reported,
        Err(e) => panic!("{what}: unexpected error kind: {e}"),
    }
}

fn segments(fs: &MemFs) -> Vec<String> {
    fs.file_names()
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect()
}

#[test]
fn bit_flips_are_reported_or_leave_a_prefix() {
    let (mut prefixes, mut reported) = (0, 0);
    for seed in 0..6 {
        let (fs, states) = written(seed, 50);
        let names = fs.file_names();
        let mut rng = Rng(seed + 100);
        for _ in 0..60 {
            let name = &names[rng.range(0, names.len() as u64 - 1) as usize];
            if name == "LOCK" {
                continue;
            }
            let mut bytes = fs.file(name).expect("file");
            let at = rng.range(0, bytes.len() as u64 - 1) as usize;
            bytes[at] ^= 1 << rng.range(0, 7);
            let damaged = fs.image().intact();
            damaged.set_file(name, bytes);
            let last_segment = segments(&fs).last() == Some(name);
            match recover(&damaged, &states, &format!("flip {name}@{at}")) {
                Outcome::Prefix => {
                    assert!(last_segment, "flip in {name}@{at} was not reported");
                    prefixes += 1;
                }
                Outcome::Reported => reported += 1,
            }
        }
    }
    assert!(
        reported > 100,
        "only {reported} flips reported ({prefixes} prefixes)"
    );
}

#[test]
fn truncations_are_reported_or_leave_a_prefix() {
    let mut prefixes = 0;
    for seed in 0..6 {
        let (fs, states) = written(seed, 50);
        let segs = segments(&fs);
        let mut rng = Rng(seed + 200);
        for _ in 0..40 {
            let name = &segs[rng.range(0, segs.len() as u64 - 1) as usize];
            let bytes = fs.file(name).expect("file");
            let cut = rng.range(0, bytes.len() as u64 - 1) as usize;
            let damaged = fs.image().intact();
            damaged.set_file(name, bytes[..cut].to_vec());
            let what = format!("cut {name} at {cut}");
            match recover(&damaged, &states, &what) {
                Outcome::Prefix => {
                    assert_eq!(segs.last(), Some(name), "{what} was not reported");
                    prefixes += 1;
                }
                Outcome::Reported => {}
            }
        }
    }
    assert!(
        prefixes > 10,
        "only {prefixes} truncations of the last segment"
    );
}

/// A closed WAL of one group's appends only (nothing compacts it away).
fn appended(entries: u64) -> MemFs {
    let fs = MemFs::new();
    let wal = common::open_mem(&fs, options());
    let mut h = wal.group(GroupId(1)).expect("handle");
    for i in 1..=entries {
        h.append(&[flotilla_raft::storage::conformance::entry(1, i)])
            .expect("append");
    }
    wal.sync().expect("sync");
    fs.image().intact()
}

#[test]
fn a_corrupt_middle_record_names_file_and_offset() {
    let fs = appended(100);
    let segs = segments(&fs);
    assert!(segs.len() >= 2, "want several segments: {segs:?}");
    let name = &segs[0];
    let mut bytes = fs.file(name).expect("file");
    let at = bytes.len() - 3;
    bytes[at] ^= 0x55;
    fs.set_file(name, bytes);
    let err = Wal::open_with_fs("/wal", options(), Arc::new(fs)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(name.as_str()), "{msg}");
    assert!(msg.contains("checksum"), "{msg}");
    match err {
        WalError::Corrupt { offset, .. } => assert!(offset < at as u64, "{offset}"),
        other => panic!("{other}"),
    }
}

#[test]
fn a_missing_middle_segment_is_reported() {
    let fs = appended(100);
    let segs = segments(&fs);
    assert!(segs.len() >= 3, "want three segments: {segs:?}");
    let damaged = fs.image().intact();
    fs::remove(&damaged, &segs[1]);
    let err = Wal::open_with_fs("/wal", options(), Arc::new(damaged)).unwrap_err();
    assert!(err.to_string().contains("is missing"), "{err}");
}

mod fs {
    use std::path::Path;

    use flotilla_wal::{Fs, MemFs};

    pub fn remove(fs: &MemFs, name: &str) {
        fs.remove(Path::new(name)).expect("remove");
    }
}

#[test]
fn the_workload_makes_every_kind_of_record() {
    let mut rng = Rng(9);
    let (mut model, mut term) = (Model::new(), 1);
    let mut kinds = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let call = next_call(&mut rng, &model, &mut term);
        kinds.insert(match call {
            Call::Append(..) => "append",
            Call::HardState(..) => "hard state",
            Call::Snapshot(..) => "snapshot",
            Call::Remove(..) => "remove",
            Call::Sync => "sync",
        });
        apply_model(&mut model, &call);
    }
    assert_eq!(kinds.len(), 5, "{kinds:?}");
}

#[test]
fn large_segments_are_read_ahead_and_a_bad_one_still_stops_recovery() {
    let options = Options {
        segment_bytes: 1 << 20,
        ..Options::default()
    };
    let fs = MemFs::new();
    let entries: Vec<flotilla_raft::Entry> = (1..=1200)
        .map(|i| flotilla_raft::Entry {
            data: bytes::Bytes::from(vec![i as u8 | 1; 4000]),
            ..flotilla_raft::storage::conformance::entry(1, i)
        })
        .collect();
    {
        let wal = Wal::open_with_fs("/wal", options.clone(), Arc::new(fs.clone())).expect("open");
        let mut h = wal.group(GroupId(1)).expect("group handle");
        for chunk in entries.chunks(50) {
            h.append(chunk).expect("append");
        }
        wal.sync().expect("sync");
    }
    let segs = segments(&fs);
    assert!(segs.len() >= 4, "{segs:?}");
    let intact = fs.image().intact();
    let wal = Wal::open_with_fs("/wal", options.clone(), Arc::new(intact)).expect("recover");
    let mut h = wal.group(GroupId(1)).expect("group handle");
    let state = flotilla_raft::Storage::initial_state(&mut h).expect("initial state");
    assert_eq!(state.entries, entries);
    let damaged = fs.image().intact();
    let mut bytes = damaged.file(&segs[2]).expect("segment");
    bytes[5000] ^= 4;
    damaged.set_file(&segs[2], bytes);
    let err = Wal::open_with_fs("/wal", options, Arc::new(damaged)).unwrap_err();
    assert!(err.to_string().contains(&segs[2]), "{err}");
}
