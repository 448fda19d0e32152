//! What a snapshot of the KV replica costs, by store size: a clone of the
//! replica (what the node's Raft task does before handing the snapshot to
//! a blocking thread), the encoding (done on that thread) and a restore.
//! Run: `cargo bench -p flotilla-kv --bench snapshot [-- KEYS...]`
//! (default 100000 and 1000000 keys of 8 bytes with 256-byte values, and
//! one session per write as plain etcd requests make).

// A benchmark measures wall time; the replica it measures reads none.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::Instant;

use bytes::Bytes;
use flotilla_kv::{Command, Op, ReadConsistency, Replica, Request, SessionLimits};
use flotilla_raft::{Entry, EntryKind, LogIndex, Term};

fn filled(keys: u64) -> Replica {
    let mut r = Replica::new(SessionLimits::default());
    let value = Bytes::from(vec![b'v'; 256]);
    // A multiplicative hash spreads the keys as random 8-byte keys would.
    for i in 1..=keys {
        let key = Bytes::copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        let data = Command {
            stamp_ms: i,
            request: Request {
                client: i,
                seq: 1,
                read: ReadConsistency::Linearizable,
                resumed: false,
                op: Op::put(key, value.clone()),
            },
        }
        .encode();
        let e = Entry {
            term: Term(1),
            index: LogIndex(i),
            kind: EntryKind::Command,
            data,
        };
        if let Err(err) = r.apply(&e) {
            panic!("applying entry {i}: {err}");
        }
    }
    r
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100_000, 1_000_000]
    } else {
        sizes
    };
    println!("keys       clone_ms  encode_ms  restore_ms  snapshot_MiB");
    for keys in sizes {
        let r = filled(keys);
        let t = Instant::now();
        let copy = r.clone();
        let clone_ms = ms(t);
        let t = Instant::now();
        let snap = copy.snapshot();
        let encode_ms = ms(t);
        let t = Instant::now();
        let mut back = Replica::new(SessionLimits::default());
        if let Err(err) = back.restore(&snap) {
            panic!("restoring the snapshot of {keys} keys: {err}");
        }
        let restore_ms = ms(t);
        assert_eq!(back.store().revision(), r.store().revision());
        println!(
            "{keys:<10} {clone_ms:>8.1} {encode_ms:>10.1} {restore_ms:>11.1} {:>13.1}",
            snap.len() as f64 / (1 << 20) as f64
        );
    }
}
