//! Shrinks a partition that cannot be linearized to a smallest set of
//! operations that still cannot be ordered: the counterexample's core.
//!
//! Soundness: the only change made to the history is to give an operation
//! an unknown outcome ("relax" it): a read-only operation is dropped, any
//! other keeps its call time but may take effect at any time after it, or
//! not at all. A linearization of the original history is also one of the
//! relaxed history, so if the relaxed history cannot be linearized, neither
//! can the original: the kept operations are a true witness.
//!
//! The shrinking is deterministic: every search it runs is bounded by a
//! step count, never by wall-clock time, and a search that runs out is
//! taken as "could be linearized" (the operation is kept).

use crate::history::Operation;
use crate::model::Model;
use crate::search::{Budget, Outcome, PartOp, search};

/// The result of shrinking: positions into the partition.
pub(crate) struct Shrunk {
    /// The kept operations (the core).
    pub(crate) core: Vec<usize>,
    /// True unless the step budget ran out.
    pub(crate) minimal: bool,
}

/// The fewest steps one trial search may take; it may also take twice what
/// the search of the whole partition took. A trial that runs out counts as
/// "could be linearized", which keeps the operation in the core: the core
/// stays a true witness, only maybe not a smallest one. Trials with many
/// unknown outcomes can explode; this keeps each one cheap.
const STEPS_PER_SEARCH: u64 = 200_000;

struct Shrinker<'a, M: Model> {
    model: &'a M,
    ops: &'a [Operation<M::Input, M::Output>],
    part: &'a [PartOp],
    steps_left: u64,
    /// Each search may use at most this many steps.
    steps_per_search: u64,
    /// Some trial ran out of steps.
    gave_up: bool,
}

impl<M: Model> Shrinker<'_, M> {
    /// True if the partition with only `kept` (positions) left as recorded
    /// provably cannot be linearized.
    fn fails(&mut self, kept: &[bool]) -> Option<bool> {
        if self.steps_left == 0 {
            return None;
        }
        // Ops with an unknown outcome called after every kept op returned
        // can be linearized after all of them, or not at all: they cannot
        // matter, and leaving them out keeps the search small.
        let horizon = self
            .part
            .iter()
            .zip(kept)
            .filter(|(p, keep)| **keep && !p.relaxed)
            .filter_map(|(p, _)| self.ops[p.id].ret)
            .max()
            .unwrap_or(0);
        let relaxed: Vec<PartOp> = self
            .part
            .iter()
            .zip(kept)
            .filter_map(|(p, &keep)| {
                let op = &self.ops[p.id];
                if keep && !p.relaxed {
                    return Some(*p);
                }
                let read_only = self.model.is_read_only(&op.input, None)
                    || (!p.relaxed && self.model.is_read_only(&op.input, op.output.as_ref()));
                (!read_only && op.call <= horizon).then_some(PartOp {
                    id: p.id,
                    relaxed: true,
                })
            })
            .collect();
        let budget = Budget {
            deadline: None,
            steps: Some(self.steps_per_search.min(self.steps_left)),
        };
        let (outcome, stats) = search(self.model, self.ops, &relaxed, budget);
        self.steps_left = self.steps_left.saturating_sub(stats.steps);
        match outcome {
            Outcome::Illegal { .. } => Some(true),
            Outcome::Linearizable(_) => Some(false),
            Outcome::Unknown => {
                self.gave_up = true;
                Some(false)
            }
        }
    }
}

/// Shrinks `part` (which cannot be linearized; its search took
/// `search_steps`) within `steps` search steps.
pub(crate) fn shrink<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    part: &[PartOp],
    search_steps: u64,
    steps: u64,
) -> Shrunk {
    let mut s = Shrinker {
        model,
        ops,
        part,
        steps_left: steps,
        steps_per_search: STEPS_PER_SEARCH
            .max(search_steps.saturating_mul(2))
            .min(steps)
            .max(1),
        gave_up: false,
    };
    // Candidates: operations with a known outcome, by call time.
    let mut order: Vec<usize> = (0..part.len()).filter(|&i| !part[i].relaxed).collect();
    order.sort_by_key(|&i| (ops[part[i].id].call, part[i].id));
    let (end, bisected) = s.shortest_failing_prefix(&order);
    let mut kept = vec![false; part.len()];
    for &i in &order[..end] {
        kept[i] = true;
    }
    let relaxed_all = s.relax_each(&order[..end], &mut kept);
    let core = order.into_iter().filter(|&i| kept[i]).collect();
    Shrunk {
        core,
        minimal: bisected && relaxed_all && !s.gave_up,
    }
}

impl<M: Model> Shrinker<'_, M> {
    /// Phase 1: the length of the shortest prefix of `order` that fails
    /// when everything after it is relaxed, and false if the budget ran out
    /// first. Relaxing more can only allow more orders, so failure is
    /// monotone in the prefix length and bisection is exact.
    fn shortest_failing_prefix(&mut self, order: &[usize]) -> (usize, bool) {
        let Some(last) = order.len().checked_sub(1) else {
            return (0, true);
        };
        // Invariant: the prefix `order[..=hi]` fails (at first, the whole).
        let (mut lo, mut hi) = (0, last);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let mut trial = vec![false; self.part.len()];
            for &i in &order[..=mid] {
                trial[i] = true;
            }
            match self.fails(&trial) {
                Some(true) => hi = mid,
                Some(false) => lo = mid + 1,
                None => return (hi + 1, false),
            }
        }
        (hi + 1, true)
    }

    /// Phase 2: relaxes each of `candidates` in turn, keeping the
    /// relaxation when the rest still fails: read-only ones first (dropping
    /// them makes every later search smaller), then the others; latest
    /// first in each. Returns false if the budget ran out first.
    fn relax_each(&mut self, candidates: &[usize], kept: &mut [bool]) -> bool {
        let (reads, writes): (Vec<usize>, Vec<usize>) = candidates.iter().rev().partition(|&&i| {
            let op = &self.ops[self.part[i].id];
            self.model.is_read_only(&op.input, op.output.as_ref())
        });
        for i in reads.into_iter().chain(writes) {
            kept[i] = false;
            match self.fails(kept) {
                Some(true) => {}
                Some(false) => kept[i] = true,
                None => {
                    kept[i] = true;
                    return false;
                }
            }
        }
        true
    }
}
