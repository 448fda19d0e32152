//! Property tests of the core's pure pieces: the in-memory log (log
//! matching, truncation, snapshot boundaries) and quorum arithmetic.

use bytes::Bytes;
use proptest::prelude::*;

use crate::log::{AppendOutcome, RaftLog};
use crate::quorum::majority_value;
use crate::storage::InitialState;
use crate::types::{ConfState, Entry, EntryKind, LogIndex, NodeId, Term};

/// A log with non-decreasing terms, described by its term increments.
fn log_strategy(max_len: usize) -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(0u64..3, 0..max_len).prop_map(|steps| {
        let mut term = 1;
        steps
            .iter()
            .enumerate()
            .map(|(i, &step)| {
                term += step;
                let data = Bytes::from(format!("{term}.{i}"));
                Entry {
                    term: Term(term),
                    index: LogIndex(i as u64 + 1),
                    kind: EntryKind::Command,
                    data,
                }
            })
            .collect()
    })
}

/// A follower log: a prefix of the leader's plus a diverging tail (as a
/// deposed leader's would be). Tail terms never decrease and stay below the
/// leader's term at the same index (or its last term, past its end), since
/// a leader's log holds the newest entry of every index it has.
fn follower_of(leader: &[Entry], shared: usize, tail: usize) -> Vec<Entry> {
    let shared = shared.min(leader.len());
    let mut out: Vec<Entry> = leader[..shared].to_vec();
    let mut term = out.last().map_or(1, |e| e.term.get());
    let leader_last = leader.last().map_or(0, |e| e.term.get());
    for k in 0..tail {
        let at = shared + k;
        let limit = leader.get(at).map_or(leader_last, |e| e.term.get());
        if term >= limit {
            break;
        }
        let data = Bytes::from(format!("stale.{k}"));
        out.push(Entry {
            term: Term(term),
            index: LogIndex(at as u64 + 1),
            kind: EntryKind::Command,
            data,
        });
        term = term.max(1);
    }
    out
}

proptest! {
    /// Raft §5.3: after an accepted append, the follower matches the leader
    /// up to the last entry sent, and entries that matched before still do.
    #[test]
    fn appends_converge_and_never_drop_matching_entries(
        leader in log_strategy(40),
        shared in 0usize..40,
        tail in 0usize..10,
        sends in prop::collection::vec((0usize..41, 0usize..8), 1..20),
    ) {
        let mut f = RaftLog::new(&InitialState { entries: follower_of(&leader, shared, tail), ..Default::default() });
        for (prev, count) in sends {
            let prev = prev.min(leader.len());
            let end = (prev + count).min(leader.len());
            let prev_term = if prev == 0 { Term(0) } else { leader[prev - 1].term };
            let matched_before: Vec<usize> = (0..leader.len())
                .filter(|&i| f.entry(LogIndex(i as u64 + 1)).is_some_and(|e| *e == leader[i]))
                .filter(|&i| (0..=i).all(|j| f.entry(LogIndex(j as u64 + 1)) == Some(&leader[j])))
                .collect();
            match f.maybe_append(LogIndex(prev as u64), prev_term, &leader[prev..end]) {
                AppendOutcome::Appended(last) => {
                    prop_assert_eq!(last, LogIndex(end as u64));
                    for e in &leader[..end] {
                        prop_assert_eq!(f.entry(e.index), Some(e));
                    }
                    for i in matched_before {
                        prop_assert_eq!(f.entry(LogIndex(i as u64 + 1)), Some(&leader[i]));
                    }
                }
                AppendOutcome::Mismatch => {
                    prop_assert!(f.term(LogIndex(prev as u64)) != Some(prev_term));
                }
                AppendOutcome::CommittedConflict(_) => prop_assert!(false, "nothing was committed"),
            }
            f.check();
        }
    }

    /// Snapshot boundaries: after compaction at `at`, terms below it are
    /// gone, the boundary term stays, entries above are intact, and the
    /// conflict search never goes below the boundary.
    #[test]
    fn compaction_boundaries_hold(entries in log_strategy(30), at in 1usize..30, probe in 0u64..40) {
        prop_assume!(at <= entries.len());
        let mut log = RaftLog::new(&InitialState { entries: entries.clone(), ..Default::default() });
        let last = LogIndex(entries.len() as u64);
        log.commit_to(last);
        log.applied_to(last);
        let at_index = LogIndex(at as u64);
        log.compact(at_index, ConfState::default(), Bytes::new());
        log.check();
        prop_assert_eq!(log.first_index(), at_index.next());
        prop_assert_eq!(log.term(at_index), Some(entries[at - 1].term));
        for e in &entries[..at - 1] {
            prop_assert_eq!(log.term(e.index), None);
        }
        for e in &entries[at..] {
            prop_assert_eq!(log.entry(e.index), Some(e));
        }
        let (j, _) = log.find_conflict_by_term(LogIndex(probe), Term(probe / 4));
        prop_assert!(j >= at_index || j.get() == 0 && at_index.get() == 0);
        // An append whose previous index is inside the snapshot is accepted
        // (the snapshot holds only committed entries) and keeps the log.
        let outcome = log.maybe_append(LogIndex(0), Term(0), &entries);
        prop_assert_eq!(outcome, AppendOutcome::Appended(last));
        prop_assert_eq!(log.last_index(), last);
    }

    /// The quorum value is the largest value a majority has reached.
    #[test]
    fn majority_value_matches_its_definition(values in prop::collection::vec(0u64..20, 1..8)) {
        let ids: Vec<NodeId> = (1..=values.len() as u64).map(NodeId).collect();
        let got = majority_value(&ids, |id| values[id.get() as usize - 1]);
        let majority = values.len() / 2 + 1;
        let best = (0..=20u64).filter(|&v| values.iter().filter(|&&x| x >= v).count() >= majority).max();
        prop_assert_eq!(Some(got), best);
    }
}
