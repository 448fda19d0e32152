//! A seeded workload over several groups, applied to the WAL and to the
//! model together: appends (with truncations), hard states, snapshots that
//! keep or drop the log, group removals and syncs.

use flotilla_raft::storage::conformance::entry;
use flotilla_raft::{
    ConfState, Entry, HardState, LogIndex, MemStorage, NodeId, Snapshot, SnapshotMeta, Storage,
    Term,
};
use flotilla_wal::{GroupHandle, GroupId, Wal};

use super::{Model, Rng};

/// One call.
#[derive(Debug, Clone)]
pub enum Call {
    Append(GroupId, Vec<Entry>),
    HardState(GroupId, HardState),
    Snapshot(GroupId, Snapshot),
    Remove(GroupId),
    Sync,
}

pub const GROUPS: [GroupId; 3] = [GroupId(1), GroupId(2), GroupId(9)];

fn last_and_first(m: Option<&MemStorage>) -> (u64, u64) {
    let Some(m) = m else { return (0, 1) };
    let s = m.state();
    let snap = s.snapshot.as_ref().map_or(0, |s| s.meta.index.0);
    (snap + s.entries.len() as u64, snap + 1)
}

fn term_at(m: Option<&MemStorage>, index: u64) -> Option<u64> {
    let s = m?.state();
    s.entries
        .iter()
        .find(|e| e.index.0 == index)
        .map(|e| e.term.0)
}

/// A call that the model accepts in its current state.
pub fn next_call(rng: &mut Rng, model: &Model, term: &mut u64) -> Call {
    let g = GROUPS[rng.range(0, 2) as usize];
    let m = model.get(&g);
    let (last, first) = last_and_first(m);
    match rng.range(0, 99) {
        0..=44 => {
            if rng.chance(20) {
                *term += 1;
            }
            let start = if last >= first && rng.chance(25) {
                rng.range(first, last)
            } else {
                last + 1
            };
            let n = rng.range(1, 4);
            let entries = (start..start + n)
                .map(|i| {
                    // Some payloads are large enough to be written in place.
                    let len = if rng.chance(8) {
                        1500
                    } else {
                        rng.range(1, 40) as usize
                    };
                    Entry {
                        data: rng.bytes(len),
                        ..entry(*term, i)
                    }
                })
                .collect();
            Call::Append(g, entries)
        }
        45..=59 => Call::HardState(
            g,
            HardState {
                term: Term(*term),
                vote: rng.chance(50).then(|| NodeId(rng.range(1, 3))),
                commit: LogIndex(rng.range(0, last)),
            },
        ),
        60..=71 => {
            let index = rng.range(first.saturating_sub(1), last + 2);
            let keep = rng.chance(70);
            let t = match term_at(m, index) {
                Some(t) if keep => t,
                _ => *term + 1,
            };
            let meta = SnapshotMeta {
                index: LogIndex(index),
                term: Term(t),
                conf_state: ConfState::with_voters([NodeId(1), NodeId(rng.range(2, 5))]),
            };
            let len = rng.range(0, 300) as usize;
            Call::Snapshot(
                g,
                Snapshot {
                    meta,
                    data: rng.bytes(len),
                },
            )
        }
        72..=74 => Call::Remove(g),
        _ => Call::Sync,
    }
}

/// Applies `call` to the model.
pub fn apply_model(model: &mut Model, call: &Call) {
    let ok = match call {
        Call::Append(g, es) => model.entry(*g).or_default().append(es),
        Call::HardState(g, hs) => model.entry(*g).or_default().save_hard_state(hs),
        Call::Snapshot(g, s) => model.entry(*g).or_default().save_snapshot(s),
        Call::Remove(g) => {
            model.remove(g);
            Ok(())
        }
        Call::Sync => Ok(()),
    };
    ok.expect("MemStorage never fails");
}

/// Applies `call` to the WAL, through `handles` (one per group, dropped
/// and taken again around a removal).
pub fn apply_wal(wal: &Wal, handles: &mut Vec<GroupHandle>, call: &Call) {
    let handle = |handles: &mut Vec<GroupHandle>, g: GroupId| -> usize {
        match handles.iter().position(|h| h.id() == g) {
            Some(k) => k,
            None => {
                handles.push(wal.group(g).expect("group handle"));
                handles.len() - 1
            }
        }
    };
    match call {
        Call::Append(g, es) => {
            let k = handle(handles, *g);
            handles[k].append(es).expect("append");
        }
        Call::HardState(g, hs) => {
            let k = handle(handles, *g);
            handles[k].save_hard_state(hs).expect("hard state");
        }
        Call::Snapshot(g, s) => {
            let k = handle(handles, *g);
            handles[k].save_snapshot(s).expect("snapshot");
        }
        Call::Remove(g) => {
            handles.retain(|h| h.id() != *g);
            wal.remove_group(*g).expect("remove group");
        }
        Call::Sync => {
            wal.sync().expect("sync");
        }
    }
}

/// An entry to copy fields from.
pub fn sample_entry() -> Entry {
    entry(1, 1)
}
