//! [`check`]: splits a history into its model's partitions, searches each
//! for a linearization, and turns the first failure into a
//! [`Counterexample`].
//!
//! Determinism: partitions are searched round-robin, a fixed number of
//! search steps each in the order of their first operation, and the
//! reported failure is the first one found that way, which depends on
//! step counts only. The only wall-clock input is the optional time
//! limit, which can turn a verdict into [`Verdict::Unknown`] but never into
//! a different definite answer; shrinking a counterexample is bounded by a
//! step count, so the printed counterexample is the same on every machine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::history::{History, OpId, Operation};
use crate::model::Model;
use crate::search::{Outcome, PartOp, Search};
use crate::shrink::shrink;
use crate::verdict::{Counterexample, Unresolved, Verdict};

/// How much the checker may spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget for the search; past it the verdict is
    /// [`Verdict::Unknown`]. `None`: no limit.
    pub timeout: Option<Duration>,
    /// Search steps that shrinking a counterexample may use (it does not
    /// count against `timeout`); when they run out, the counterexample says
    /// it may not be the smallest.
    pub shrink_steps: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: None,
            shrink_steps: 5_000_000,
        }
    }
}

impl Limits {
    /// No time limit.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// A wall-clock time limit.
    pub fn timeout(timeout: Duration) -> Self {
        Self {
            timeout: Some(timeout),
            ..Self::default()
        }
    }
}

/// How one partition went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionOutcome {
    /// It has a linearization.
    Linearizable,
    /// It has none.
    NotLinearizable,
    /// The time limit ran out before it was decided.
    Unknown,
    /// Left undecided because another partition failed first.
    Skipped,
}

/// Figures about one partition, for benchmarks and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReport {
    /// The partition's name (the key), or `None` for a model without keys.
    pub name: Option<String>,
    /// Operations searched (pending read-only ones are dropped).
    pub ops: usize,
    /// The result.
    pub outcome: PartitionOutcome,
    /// Search steps taken.
    pub steps: u64,
    /// (linearized set, state) pairs memoized.
    pub memo_entries: usize,
    /// Distinct model states met.
    pub states: usize,
}

impl PartitionReport {
    fn new(part: &Partition) -> Self {
        Self {
            name: part.name.clone(),
            ops: part.ops.len(),
            outcome: PartitionOutcome::Unknown,
            steps: 0,
            memo_entries: 0,
            states: 0,
        }
    }
}

/// The verdict and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The answer.
    pub verdict: Verdict,
    /// One entry per partition, in history order.
    pub partitions: Vec<PartitionReport>,
}

/// Checks whether `history` is linearizable with respect to `model`.
pub fn check<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    limits: &Limits,
) -> Verdict {
    check_report(model, history, limits).verdict
}

/// A partition's name and its operations (positions in the history).
pub(crate) struct Partition {
    pub(crate) name: Option<String>,
    pub(crate) ops: Vec<PartOp>,
}

/// Splits the history by the model's partition, in order of first use, and
/// drops operations that are read-only and have an unknown outcome.
pub(crate) fn partitions<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
) -> Vec<Partition> {
    let mut index: FxHashMap<Option<String>, usize> = FxHashMap::default();
    let mut parts: Vec<Partition> = Vec::new();
    for (id, op) in ops.iter().enumerate() {
        if op.is_pending() && model.is_read_only(&op.input, None) {
            continue;
        }
        let name = model.partition(&op.input);
        let p = *index.entry(name.clone()).or_insert_with(|| {
            parts.push(Partition {
                name,
                ops: Vec::new(),
            });
            parts.len() - 1
        });
        parts[p].ops.push(PartOp {
            id,
            relaxed: op.is_pending(),
        });
    }
    parts
}

/// Search steps each unfinished partition gets per round. Partitions are
/// searched round-robin so that a quick failure in one is found even when
/// another has a huge search space.
const SLICE_STEPS: u64 = 50_000;

/// Like [`check`], with figures about each partition.
pub fn check_report<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    limits: &Limits,
) -> Report {
    let ops = history.ops();
    let deadline = limits.timeout.map(|t| Instant::now() + t);
    let parts = partitions(model, ops);
    let mut reports: Vec<PartitionReport> = parts.iter().map(PartitionReport::new).collect();
    let mut searches: Vec<Option<Search<'_, M>>> = parts
        .iter()
        .map(|p| Some(Search::new(model, ops, &p.ops)))
        .collect();
    let mut failure = None;
    let out_of_time = || deadline.is_some_and(|d| Instant::now() >= d);
    while failure.is_none() && searches.iter().any(Option::is_some) && !out_of_time() {
        for (i, slot) in searches.iter_mut().enumerate() {
            let Some(search) = slot else { continue };
            let outcome = search.run(SLICE_STEPS, deadline);
            let stats = search.stats();
            let report = &mut reports[i];
            (report.steps, report.memo_entries, report.states) =
                (stats.steps, stats.memo_entries, stats.states);
            let Some(outcome) = outcome else {
                if out_of_time() {
                    break;
                }
                continue;
            };
            *slot = None;
            report.outcome = match outcome {
                Outcome::Linearizable(_) => PartitionOutcome::Linearizable,
                Outcome::Unknown => PartitionOutcome::Unknown,
                Outcome::Illegal { longest, blocked } => {
                    let part = &parts[i];
                    failure = Some(counterexample(
                        model,
                        ops,
                        part,
                        &longest,
                        blocked,
                        limits,
                        stats.steps,
                    ));
                    PartitionOutcome::NotLinearizable
                }
            };
            if failure.is_some() {
                break;
            }
        }
    }
    if failure.is_some() {
        let open = reports
            .iter_mut()
            .zip(&searches)
            .filter(|(_, s)| s.is_some());
        open.for_each(|(report, _)| report.outcome = PartitionOutcome::Skipped);
    }
    let verdict = match failure {
        Some(c) => Verdict::NotLinearizable(Box::new(c)),
        None => unresolved(&reports, limits),
    };
    Report {
        verdict,
        partitions: reports,
    }
}

fn unresolved(reports: &[PartitionReport], limits: &Limits) -> Verdict {
    let open: Vec<String> = reports
        .iter()
        .filter(|r| r.outcome != PartitionOutcome::Linearizable)
        .map(|r| r.name.clone().unwrap_or_else(|| "(all)".to_string()))
        .collect();
    if open.is_empty() {
        return Verdict::Linearizable;
    }
    Verdict::Unknown(Unresolved {
        timeout: limits.timeout,
        partitions: open,
        total: reports.len(),
    })
}

/// One line describing an operation, e.g.
/// `#17 client 2 [1200, 1450] put("k", "a") -> ok`.
pub(crate) fn describe<M: Model>(
    model: &M,
    id: usize,
    op: &Operation<M::Input, M::Output>,
) -> String {
    let ret = op.ret.map_or_else(|| "?".to_string(), |r| r.to_string());
    let out = op.output.as_ref().map_or_else(
        || "? (unknown outcome)".to_string(),
        |o| model.describe_output(o),
    );
    format!(
        "#{id} client {} [{}, {ret}] {} -> {out}",
        op.client,
        op.call,
        model.describe_input(&op.input)
    )
}

fn counterexample<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    part: &Partition,
    longest: &[usize],
    blocked: Option<usize>,
    limits: &Limits,
    search_steps: u64,
) -> Counterexample {
    let shrunk = shrink(model, ops, &part.ops, search_steps, limits.shrink_steps);
    let core: Vec<OpId> = shrunk.core.iter().map(|&i| OpId(part.ops[i].id)).collect();
    let last_return = core
        .iter()
        .filter_map(|id| ops[id.0].ret)
        .max()
        .unwrap_or(0);
    let context: Vec<OpId> = part
        .ops
        .iter()
        .map(|p| OpId(p.id))
        .filter(|id| !core.contains(id) && ops[id.0].call <= last_return)
        .filter(|id| {
            let op = &ops[id.0];
            !model.is_read_only(&op.input, None)
                && !model.is_read_only(&op.input, op.output.as_ref())
        })
        .collect();
    let mut state = model.init();
    let mut prefix = Vec::with_capacity(longest.len());
    for &i in longest {
        let id = part.ops[i].id;
        let op = &ops[id];
        let output = if part.ops[i].relaxed {
            None
        } else {
            op.output.as_ref()
        };
        state = model
            .step(&state, &op.input, output)
            .expect("the search only linearizes legal steps");
        prefix.push((OpId(id), model.describe_state(&state)));
    }
    let blocked = blocked.map(|i| OpId(part.ops[i].id));
    let named = core
        .iter()
        .chain(&context)
        .chain(prefix.iter().map(|(id, _)| id))
        .chain(&blocked);
    let lines: BTreeMap<OpId, String> = named
        .map(|&id| (id, describe(model, id.0, &ops[id.0])))
        .collect();
    Counterexample {
        partition: part.name.clone(),
        partition_len: part.ops.len(),
        core,
        context,
        minimal: shrunk.minimal,
        prefix,
        blocked,
        lines,
    }
}
