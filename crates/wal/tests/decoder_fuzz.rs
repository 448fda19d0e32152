//! A proptest-based fuzzer of the decoders that face the disk: record
//! frames, record bodies, segment and snapshot files, and recovery of a
//! whole directory of mangled segments. None may panic; recovery of a
//! mangled log either fails with an error or returns entries that are
//! exactly as written.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use flotilla_raft::Storage;
use flotilla_raft::storage::conformance::entry;
use flotilla_wal::format::{SegmentHeader, check_frame, looks_torn};
use flotilla_wal::record::Record;
use flotilla_wal::{GroupId, MemFs, Options, Wal, segment_name, snapfile};
use proptest::prelude::*;

fn options() -> Options {
    Options {
        segment_bytes: 700,
        cache_bytes_per_group: 16,
        buffer_bytes_max: 1 << 20,
    }
}

/// A closed WAL: groups 1 and 2, entries whose data names term and index.
fn sample_log() -> (MemFs, BTreeMap<(u64, u64), u64>) {
    let fs = MemFs::new();
    let wal = common::open_mem(&fs, options());
    let mut terms = BTreeMap::new();
    for g in [1u64, 2] {
        let mut h = wal.group(GroupId(g)).expect("group handle");
        for i in 1..=40 {
            let term = 1 + i / 15;
            Storage::append(&mut h, &[entry(term, i)]).expect("test setup");
            terms.insert((g, i), term);
        }
    }
    wal.sync().expect("sync");
    (fs.image().intact(), terms)
}

#[derive(Debug, Clone)]
enum Mangle {
    Flip {
        file: usize,
        at: usize,
        bit: u8,
    },
    Set {
        file: usize,
        at: usize,
        byte: u8,
    },
    Cut {
        file: usize,
        at: usize,
    },
    Splice {
        file: usize,
        at: usize,
        junk: Vec<u8>,
    },
}

fn mangle() -> impl Strategy<Value = Mangle> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), 0..8u8).prop_map(|(file, at, bit)| Mangle::Flip {
            file,
            at,
            bit
        }),
        (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(file, at, byte)| Mangle::Set {
            file,
            at,
            byte
        }),
        (any::<usize>(), any::<usize>()).prop_map(|(file, at)| Mangle::Cut { file, at }),
        (
            any::<usize>(),
            any::<usize>(),
            prop::collection::vec(any::<u8>(), 1..40)
        )
            .prop_map(|(file, at, junk)| Mangle::Splice { file, at, junk }),
    ]
}

fn apply(fs: &MemFs, names: &[String], m: &Mangle) {
    let (file, at) = match m {
        Mangle::Flip { file, at, .. }
        | Mangle::Set { file, at, .. }
        | Mangle::Cut { file, at }
        | Mangle::Splice { file, at, .. } => (*file, *at),
    };
    let name = &names[file % names.len()];
    let mut bytes = fs.file(name).expect("file");
    let at = at % (bytes.len() + 1);
    match m {
        Mangle::Flip { bit, .. } if at < bytes.len() => bytes[at] ^= 1 << bit,
        Mangle::Set { byte, .. } if at < bytes.len() => bytes[at] = *byte,
        Mangle::Cut { .. } => bytes.truncate(at),
        Mangle::Splice { junk, .. } => {
            bytes.splice(at..at, junk.iter().copied());
        }
        _ => {}
    }
    fs.set_file(name, bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn frame_and_record_decoders_never_panic(buf in prop::collection::vec(any::<u8>(), 0..200), at in 0..220usize) {
        let at = at.min(buf.len());
        if let Err(c) = check_frame(&buf, at) {
            let _ = looks_torn(&buf, at, &c);
        }
        let _ = Record::decode(Bytes::from(buf.clone()));
        let _ = SegmentHeader::decode(&buf);
        let _ = snapfile::decode(&Bytes::from(buf));
    }

    #[test]
    fn recovery_of_a_mangled_log_errs_or_returns_true_entries(mangles in prop::collection::vec(mangle(), 1..4)) {
        let (fs, terms) = sample_log();
        let names: Vec<String> = fs.file_names().into_iter().filter(|n| n.ends_with(".log")).collect();
        for m in &mangles {
            apply(&fs, &names, m);
        }
        if let Ok(wal) = Wal::open_with_fs("/wal", options(), Arc::new(fs)) {
            for g in [1u64, 2] {
                let state = wal.group(GroupId(g)).unwrap().initial_state().unwrap();
                for (k, e) in state.entries.iter().enumerate() {
                    prop_assert_eq!(e.index.0, k as u64 + 1);
                    prop_assert_eq!(Some(&e.term.0), terms.get(&(g, e.index.0)));
                    prop_assert_eq!(e, &entry(e.term.0, e.index.0));
                }
            }
        }
    }

    #[test]
    fn recovery_of_random_segment_files_never_panics(
        files in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..4),
        valid_header in any::<bool>(),
    ) {
        let fs = MemFs::new();
        for (k, mut bytes) in files.into_iter().enumerate() {
            let seq = k as u64 + 1;
            if valid_header {
                let header = SegmentHeader { seq, base: flotilla_wal::Lsn(0) }.encode();
                bytes.splice(0..0, header);
            }
            let mut f = flotilla_wal::Fs::create(&fs, std::path::Path::new(&segment_name(seq))).unwrap();
            f.write_all(&bytes).unwrap();
        }
        let _ = Wal::open_with_fs("/wal", options(), Arc::new(fs));
    }
}
