//! Crash consistency: the WAL runs a seeded multi-group workload on
//! `MemFs` with an image of the disk kept after every write, sync, create,
//! rename and delete. Each image is crashed several ways (unsynced data
//! lost, torn, or zero-filled by sector; unsynced directory changes lost)
//! and recovered: the state must be exactly the model's state after some
//! prefix of the calls, a prefix that includes every call before the last
//! completed sync. Then the recovered WAL must take new writes and keep
//! them across another crash.

mod common;

use std::collections::BTreeMap;

use flotilla_raft::storage::InitialState;
use flotilla_raft::{Entry, LogIndex, Storage, Term};
use flotilla_wal::{GroupId, Image, MemFs, Options};

use common::workload::{Call, GROUPS, apply_model, apply_wal, next_call};
use common::{Model, Rng, model_states, open_mem, recovered_states};

type States = BTreeMap<GroupId, InitialState>;

fn options() -> Options {
    Options {
        segment_bytes: 400,
        cache_bytes_per_group: 64,
        buffer_bytes_max: 1 << 20,
    }
}

/// Runs `calls` calls; returns the images and the model's state after each
/// prefix of the calls (`states[j]` is after `j` calls).
fn run(seed: u64, calls: usize) -> (Vec<Image>, Vec<States>) {
    let fs = MemFs::new();
    fs.record(true);
    let wal = open_mem(&fs, options());
    let mut handles = Vec::new();
    let mut model = Model::new();
    let mut rng = Rng(seed);
    let mut term = 1;
    let mut states = vec![model_states(&model, &GROUPS)];
    let mut synced = 0u64;
    for i in 0..calls as u64 {
        fs.set_label((i << 32) | synced);
        let call = next_call(&mut rng, &model, &mut term);
        apply_wal(&wal, &mut handles, &call);
        apply_model(&mut model, &call);
        states.push(model_states(&model, &GROUPS));
        if let Call::Sync = call {
            synced = i + 1;
        }
    }
    (fs.take_images(), states)
}

fn describe(s: &States) -> String {
    s.iter()
        .map(|(g, st)| {
            let snap = st
                .snapshot
                .as_ref()
                .map(|s| (s.meta.term.0, s.meta.index.0));
            format!(
                "{g:?}: hs {:?} snap {snap:?} log {:?}\n",
                st.hard_state, st.entries
            )
        })
        .collect()
}

/// An entry to append after the last one of `state`.
fn next_entry(state: &InitialState) -> Entry {
    let last = match (state.entries.last(), &state.snapshot) {
        (Some(e), _) => e.index.0,
        (None, Some(s)) => s.meta.index.0,
        (None, None) => 0,
    };
    Entry {
        term: Term(1000),
        index: LogIndex(last + 1),
        ..common::workload::sample_entry()
    }
}

/// Recovers `image` crashed with `seed`; checks it against the allowed
/// prefixes, and that the recovered WAL keeps a new write across a crash.
fn check_crash(image: &Image, seed: u64, states: &[States]) {
    let (calls_begun, synced) = (
        (image.label >> 32) as usize,
        (image.label & 0xffff_ffff) as usize,
    );
    let crashed = image.crash(seed);
    // Keep images of the recovery's own writes (cut tail, deleted files,
    // new segment) and of the write after it, to crash those too.
    crashed.record(true);
    let wal =
        flotilla_wal::Wal::open_with_fs("/wal", options(), std::sync::Arc::new(crashed.clone()))
            .unwrap_or_else(|e| panic!("op {} seed {seed}: recovery failed: {e}", image.op));
    let got = recovered_states(&wal, &GROUPS);
    let allowed = synced..=(calls_begun + 1).min(states.len() - 1);
    let Some(j) = allowed.clone().rev().find(|&j| states[j] == got) else {
        panic!(
            "op {} seed {seed}: recovered state is no prefix in {allowed:?}\ngot:\n{}expected at least:\n{}",
            image.op,
            describe(&got),
            describe(&states[synced])
        );
    };
    // The recovered log takes new writes, durable across another crash.
    let mut h = wal.group(GroupId(1)).expect("handle");
    let new = next_entry(&got[&GroupId(1)]);
    h.append(std::slice::from_ref(&new))
        .expect("append after recovery");
    h.sync().expect("sync after recovery");
    drop(h);
    let again = crashed.image().crash(seed + 1);
    let images = crashed.take_images();
    drop(wal);
    let mut with_new = states[j].clone();
    with_new
        .get_mut(&GroupId(1))
        .expect("group 1")
        .entries
        .push(new);
    let wal = common::open_mem(&again, options());
    assert_eq!(
        recovered_states(&wal, &GROUPS),
        with_new,
        "op {} seed {seed}",
        image.op
    );
    // A crash at any point of that recovery and write: the state of
    // before, or with the new entry.
    for (k, nested) in images.iter().enumerate() {
        let wal = common::open_mem(&nested.crash(seed ^ k as u64), options());
        let got = recovered_states(&wal, &GROUPS);
        assert!(
            got == states[j] || got == with_new,
            "op {} seed {seed}: crash {k} during recovery gave\n{}",
            image.op,
            describe(&got)
        );
    }
}

#[test]
fn recovery_after_a_crash_at_every_write_and_sync_is_a_synced_prefix() {
    let mut images_checked = 0;
    for seed in 0..10 {
        let (images, states) = run(seed, 90);
        for image in &images {
            for k in 0..4 {
                check_crash(image, seed * 1_000_003 + image.op * 7 + k, &states);
            }
        }
        images_checked += images.len();
    }
    assert!(images_checked > 1000, "only {images_checked} crash points");
}
