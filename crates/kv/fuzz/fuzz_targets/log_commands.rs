//! Fuzzes what reaches the KV replica from outside: log entries as a
//! client's request becomes one (any bytes a leader may have put in its
//! log, by this build or an older one), client messages, replies and
//! snapshots. The input is a sequence of length-prefixed frames; each is
//! applied as the next committed entry to two replicas, which must stay
//! equal (apply is deterministic, and refuses what it cannot interpret
//! instead of stopping), and decoded as a client message, a reply and a
//! snapshot. Every few frames a snapshot of the replica is restored into a
//! third, which must equal it. Nothing may panic.

#![no_main]

use bytes::Bytes;
use flotilla_kv::{ClientMsg, Command, Replica, Reply, SessionLimits};
use flotilla_raft::{Entry, EntryKind, Term};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = SessionLimits::default();
    let mut a = Replica::new(limits);
    let mut b = Replica::new(limits);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (frame, tail) = tail.split_at(len);
        rest = tail;
        let bytes = Bytes::copy_from_slice(frame);
        let _ = ClientMsg::decode(&bytes);
        let _ = Reply::decode(&bytes);
        let mut c = Replica::new(limits);
        let _ = c.restore(&bytes);
        if let Ok(cmd) = Command::decode(&bytes) {
            assert_eq!(Command::decode(&cmd.encode()).as_ref(), Ok(&cmd));
        }
        let e = Entry {
            term: Term(1),
            index: a.applied().next(),
            kind: EntryKind::Command,
            data: bytes,
        };
        let ra = a.apply(&e);
        let rb = b.apply(&e);
        assert_eq!(ra, rb);
        assert_eq!(a, b);
        if len % 4 == 0 {
            let mut restored = Replica::new(limits);
            restored.restore(&a.snapshot()).expect("a replica's own snapshot restores");
            assert_eq!(restored, a);
        }
    }
});
