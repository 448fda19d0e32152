//! Property test against the in-memory model (`MemStorage` per group):
//! random sequences of appends (with truncation), hard states, snapshots
//! (compaction and diverging), group removals, syncs, clean reopens,
//! crash-reopens after a sync, and reads; after every reopen and at the
//! end, the WAL must hold exactly what the model holds.

mod common;

use bytes::Bytes;
use flotilla_raft::{
    ConfState, Entry, EntryKind, HardState, LogIndex, NodeId, Snapshot, SnapshotMeta, Term,
};
use flotilla_wal::{GroupHandle, GroupId, MemFs, Wal};
use proptest::prelude::*;

use common::workload::{Call, GROUPS, apply_model, apply_wal};
use common::{Model, model_states, recovered_states, tiny_segments};

#[derive(Debug, Clone)]
enum Op {
    Append {
        g: u8,
        back: u8,
        n: u8,
        bump: bool,
        len: u8,
    },
    HardState {
        g: u8,
        vote: u8,
    },
    Snapshot {
        g: u8,
        at: u8,
        keep: bool,
    },
    Remove {
        g: u8,
    },
    Sync,
    Reopen,
    CrashAfterSync {
        seed: u64,
    },
    Read {
        g: u8,
        from: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), 0..4u8, 1..5u8, any::<bool>(), 0..60u8)
            .prop_map(|(g, back, n, bump, len)| Op::Append { g, back, n, bump, len }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(g, vote)| Op::HardState { g, vote }),
        2 => (any::<u8>(), any::<u8>(), any::<bool>())
            .prop_map(|(g, at, keep)| Op::Snapshot { g, at, keep }),
        1 => any::<u8>().prop_map(|g| Op::Remove { g }),
        2 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => any::<u64>().prop_map(|seed| Op::CrashAfterSync { seed }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(g, from)| Op::Read { g, from }),
    ]
}

fn bounds(model: &Model, g: GroupId) -> (u64, u64) {
    model.get(&g).map_or((1, 0), |m| {
        let s = m.state();
        let snap = s.snapshot.as_ref().map_or(0, |s| s.meta.index.0);
        (snap + 1, snap + s.entries.len() as u64)
    })
}

/// Turns an op into a call the model accepts.
fn call(op: &Op, model: &Model, term: &mut u64) -> Option<Call> {
    let group = |g: &u8| GROUPS[*g as usize % GROUPS.len()];
    Some(match op {
        Op::Append {
            g,
            back,
            n,
            bump,
            len,
        } => {
            let g = group(g);
            let (first, last) = bounds(model, g);
            *term += u64::from(*bump);
            let start = (last + 1).saturating_sub(u64::from(*back)).max(first);
            let entries = (start..start + u64::from(*n))
                .map(|i| Entry {
                    term: Term(*term),
                    index: LogIndex(i),
                    kind: EntryKind::Command,
                    data: Bytes::from(vec![i as u8 | 1; *len as usize]),
                })
                .collect();
            Call::Append(g, entries)
        }
        Op::HardState { g, vote } => Call::HardState(
            group(g),
            HardState {
                term: Term(*term),
                vote: (*vote > 0).then_some(NodeId(u64::from(*vote))),
                commit: LogIndex(u64::from(*vote) / 4),
            },
        ),
        Op::Snapshot { g, at, keep } => {
            let g = group(g);
            let (first, last) = bounds(model, g);
            let index = first.saturating_sub(1) + u64::from(*at) % (last + 3 - first + 1);
            let logged = model.get(&g).and_then(|m| {
                m.state()
                    .entries
                    .iter()
                    .find(|e| e.index.0 == index)
                    .map(|e| e.term.0)
            });
            let t = match logged {
                Some(t) if *keep => t,
                _ => *term + 1,
            };
            let meta = SnapshotMeta {
                index: LogIndex(index),
                term: Term(t),
                conf_state: ConfState::with_voters([NodeId(1)]),
            };
            Call::Snapshot(
                g,
                Snapshot {
                    meta,
                    data: Bytes::from(format!("{g:?}@{index}")),
                },
            )
        }
        Op::Remove { g } => Call::Remove(group(g)),
        Op::Sync => Call::Sync,
        _ => return None,
    })
}

struct Subject {
    fs: MemFs,
    wal: Wal,
    handles: Vec<GroupHandle>,
}

impl Subject {
    fn reopen(&mut self, crash_seed: Option<u64>) {
        self.wal.sync().expect("sync before reopen");
        self.handles.clear();
        let image = self.fs.image();
        self.fs = match crash_seed {
            Some(seed) => image.crash(seed),
            None => image.intact(),
        };
        self.wal = common::open_mem(&self.fs, tiny_segments());
    }
}

fn check_read(s: &mut Subject, model: &Model, g: GroupId, from: u8) {
    let (first, last) = bounds(model, g);
    if first > last {
        return;
    }
    let lo = first + u64::from(from) % (last - first + 1);
    let k = match s.handles.iter().position(|h| h.id() == g) {
        Some(k) => k,
        None => {
            s.handles.push(s.wal.group(g).expect("handle"));
            s.handles.len() - 1
        }
    };
    let got = s.handles[k]
        .entries(LogIndex(lo), LogIndex(last + 1))
        .expect("read");
    let want: Vec<Entry> = model[&g]
        .state()
        .entries
        .iter()
        .filter(|e| e.index.0 >= lo)
        .cloned()
        .collect();
    assert_eq!(got, want);
}

fn run(ops: &[Op]) {
    let fs = MemFs::new();
    let wal = common::open_mem(&fs, tiny_segments());
    let mut s = Subject {
        fs,
        wal,
        handles: Vec::new(),
    };
    let mut model = Model::new();
    let mut term = 1;
    for op in ops {
        if let Some(c) = call(op, &model, &mut term) {
            apply_wal(&s.wal, &mut s.handles, &c);
            apply_model(&mut model, &c);
            continue;
        }
        match op {
            Op::Reopen => s.reopen(None),
            Op::CrashAfterSync { seed } => s.reopen(Some(*seed)),
            Op::Read { g, from } => {
                check_read(&mut s, &model, GROUPS[*g as usize % GROUPS.len()], *from);
                continue;
            }
            _ => unreachable!("every other op is a call"),
        }
        s.handles.clear();
        assert_eq!(
            recovered_states(&s.wal, &GROUPS),
            model_states(&model, &GROUPS)
        );
    }
    s.reopen(None);
    assert_eq!(
        recovered_states(&s.wal, &GROUPS),
        model_states(&model, &GROUPS)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn wal_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(&ops);
    }
}
