//! The rules of [`super::judge`] and [`super::judge_initial`], one at a
//! time, each with the case just inside it.

use super::{HashAt, Mismatch, PeerHash, judge, judge_initial};
use flotilla_raft::NodeId;

fn at(hash: u32, revision: u64, compacted: u64) -> HashAt {
    HashAt {
        hash,
        revision,
        compacted,
    }
}

fn peer(member: u64, hash: u32, revision: u64, compacted: u64) -> PeerHash {
    PeerHash {
        member: NodeId(member),
        at: at(hash, revision, compacted),
    }
}

#[test]
fn members_that_agree_or_lag_break_no_rule() {
    let leader = at(7, 100, 10);
    let peers = [
        peer(2, 7, 100, 10),
        // Behind the leader's revision, with an older compaction: its
        // hash at 100 cannot be compared.
        peer(3, 9, 90, 5),
    ];
    assert_eq!(judge(leader, leader, &peers), None);
    // The leader moved on meanwhile: its second reading is later.
    assert_eq!(judge(leader, at(8, 120, 10), &peers), None);
    assert_eq!(judge(leader, leader, &[]), None);
}

#[test]
fn a_leader_whose_own_hash_changes_at_the_same_revision_is_unstable() {
    let found = judge(at(7, 100, 10), at(8, 100, 10), &[]);
    assert_eq!(
        found,
        Some(Mismatch::Unstable {
            before: 7,
            after: 8,
            revision: 100
        })
    );
    // Another revision or compaction explains another hash.
    assert_eq!(judge(at(7, 100, 10), at(8, 101, 10), &[]), None);
    assert_eq!(judge(at(7, 100, 10), at(8, 100, 11), &[]), None);
}

#[test]
fn a_member_past_the_leader_or_compacted_past_it_breaks_a_rule() {
    let leader = at(7, 100, 10);
    assert_eq!(
        judge(leader, leader, &[peer(2, 7, 101, 10)]),
        Some(Mismatch::AheadOfLeader {
            member: NodeId(2),
            revision: 101,
            leader: 100
        })
    );
    assert_eq!(
        judge(leader, leader, &[peer(3, 7, 100, 11)]),
        Some(Mismatch::CompactedPastLeader {
            member: NodeId(3),
            compacted: 11,
            leader: 10
        })
    );
    // Judged against the leader's second reading, which may be later.
    assert_eq!(judge(leader, at(7, 101, 11), &[peer(2, 7, 101, 11)]), None);
}

#[test]
fn a_member_with_the_same_compaction_and_another_hash_differs() {
    let leader = at(7, 100, 10);
    let peers = [peer(2, 7, 100, 10), peer(3, 9, 100, 10)];
    let found = judge(leader, leader, &peers);
    assert_eq!(
        found,
        Some(Mismatch::HashDiffers {
            member: NodeId(3),
            hash: 9,
            expected: 7,
            revision: 100
        })
    );
    assert_eq!(
        found.map(|m| m.to_string()).as_deref(),
        Some("member 3 hashed revision 100 to 0x00000009, this member to 0x00000007")
    );
    // Compared with the leader's first reading, the one taken at the
    // revision the member was asked for.
    assert_eq!(judge(leader, at(9, 120, 10), &peers[1..]), found);
}

#[test]
fn at_start_every_member_with_the_same_compaction_and_another_hash_is_named() {
    let mine = at(7, 100, 10);
    let peers = [
        peer(2, 8, 100, 10),
        peer(3, 9, 100, 4),
        peer(4, 7, 100, 10),
        peer(5, 6, 100, 10),
    ];
    let members: Vec<NodeId> = judge_initial(mine, &peers)
        .into_iter()
        .map(|m| match m {
            Mismatch::HashDiffers {
                member,
                expected,
                revision,
                ..
            } => {
                assert_eq!((expected, revision), (7, 100));
                member
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(members, vec![NodeId(2), NodeId(5)]);
    assert!(judge_initial(mine, &peers[2..3]).is_empty());
}
