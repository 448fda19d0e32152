//! Copies what arrives from the wire out of the buffer it arrived in,
//! before anything keeps it.
//!
//! prost decodes `bytes` fields zero-copy (`proto/build.rs` asks for
//! `Bytes`): each field is a slice of the gRPC stream's receive buffer,
//! and a slice keeps that whole buffer alive. tonic gives every call its
//! own buffer of at least 8 KiB (`tonic::codec`'s default), and a peer
//! stream's buffer holds many batches. A write forwarded by a follower
//! (`flotilla.raft.v1.Proposals`) becomes a Raft entry, and the entry's
//! key and value become the store's (the KV codec slices them too), so a
//! 300-byte write kept its call's 8 KiB buffer for as long as the Raft
//! log (until compaction) or the store (until the key was overwritten or
//! deleted) held it: about 8 KiB per forwarded write on the leader (issue
//! 19). Entries from the leader kept a whole batch alive on followers
//! as long as any one of its keys lived.
//!
//! Invariant: bytes that outlive the request or message they came in (a
//! proposed command, an appended entry) are copied into an allocation of
//! their own size here, once, where they enter the node; everything
//! decoded from them later may slice them freely.

use bytes::Bytes;
use flotilla_raft::{Message, MessageBody};

/// `bytes` in an allocation of its own, exactly its size.
pub fn detach(bytes: &Bytes) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

/// `m` with each appended entry's data in an allocation of its own, so
/// that an entry kept (in the log, or sliced into the store) keeps only
/// itself alive, not the batch it arrived in. Other messages carry
/// nothing that is kept (a snapshot chunk is copied into the snapshot
/// being assembled).
pub fn detach_entries(mut m: Message) -> Message {
    if let MessageBody::Append(append) = &mut m.body {
        for e in &mut append.entries {
            e.data = detach(&e.data);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use flotilla_raft::{Append, Entry, EntryKind, LogIndex, NodeId, Term};

    use super::*;

    #[test]
    fn a_detached_slice_no_longer_shares_the_buffer_it_came_from() {
        let buffer = Bytes::from(vec![7u8; 8192]);
        let slice = buffer.slice(100..400);
        let owned = detach(&slice);
        assert_eq!(owned, slice);
        // A slice points into its buffer; the copy points elsewhere, so
        // dropping the buffer and the slice frees the 8 KiB.
        let inside = |b: &Bytes| buffer.as_ptr_range().contains(&b.as_ptr());
        assert!(inside(&slice));
        assert!(!inside(&owned));
    }

    #[test]
    fn appended_entries_are_detached_one_by_one() {
        let batch = Bytes::from(vec![1u8; 4096]);
        let entry = |i: u64| Entry {
            term: Term(1),
            index: LogIndex(i),
            kind: EntryKind::Command,
            data: batch.slice((i as usize * 10)..(i as usize * 10 + 10)),
        };
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::Append(Append {
                prev_index: LogIndex(0),
                prev_term: Term(0),
                entries: vec![entry(1), entry(2)],
                commit: LogIndex(0),
            }),
        };
        let MessageBody::Append(a) = detach_entries(m).body else {
            panic!("the body changed kind");
        };
        let inside = |b: &Bytes| batch.as_ptr_range().contains(&b.as_ptr());
        for e in &a.entries {
            assert_eq!(e.data.len(), 10);
            assert!(!inside(&e.data), "entry {} still in the batch", e.index);
        }
        assert_ne!(a.entries[0].data.as_ptr(), a.entries[1].data.as_ptr());
    }
}
