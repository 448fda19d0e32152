//! What the store's integration tests share: a command as a log entry.

#![allow(dead_code)]

use flotilla_kv::{Command, Op, ReadConsistency, Request};
use flotilla_raft::{Entry, EntryKind, LogIndex, Term};

/// Request `seq` of client 1 carrying `op`, as the log entry at index
/// `seq` (term 1).
pub fn command(seq: u64, op: Op) -> Entry {
    let c = Command {
        stamp_ms: 1,
        request: Request {
            client: 1,
            seq,
            read: ReadConsistency::Linearizable,
            resumed: false,
            op,
        },
    };
    Entry {
        index: LogIndex(seq),
        term: Term(1),
        kind: EntryKind::Command,
        data: c.encode(),
    }
}
