//! The search for a linearization of one partition: Wing & Gong's
//! depth-first search with Lowe's memoization, as Porcupine implements it.
//!
//! Call and return events are sorted by time (a call before a return at the
//! same time, so operations that touch overlap) into a doubly linked list.
//! Walking the list, the search tries to linearize each operation whose call
//! it meets: if the model accepts it and the pair (set of linearized
//! operations, new state) is new, the operation is *lifted* out of the list
//! (call and return) and the walk restarts from the head. Meeting a return
//! means that operation should already be linearized: the search backtracks,
//! *unlifting* the last operation and trying the next candidate after it.
//!
//! Operations with an unknown outcome have no return event (it is at
//! infinity): they may be linearized any time after their call. The search
//! succeeds as soon as every completed operation is linearized; the pending
//! ones left over simply never took effect. A read-only operation that is
//! legal when the walk starts at a node is linearized there without trying
//! alternatives (moving it to the front of any linearization from that node
//! keeps it legal), which removes most branching on reads. The states are
//! interned and each (state, op) transition computed once. Partitions are
//! searched resumably, a slice of steps at a time. Invariants: the memo only grows;
//! the walk never reaches the end of the list while a completed operation is
//! left, since its return event is still in the list.

use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::history::Operation;
use crate::memo::Memo;
use crate::model::Model;

/// One operation as the search sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PartOp {
    /// Index in the history.
    pub(crate) id: usize,
    /// Treat as an unknown outcome (no return, no output) even if known.
    pub(crate) relaxed: bool,
}

/// When to give up.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Budget {
    pub(crate) deadline: Option<Instant>,
    pub(crate) steps: Option<u64>,
}

/// What the search found; operations are positions in the `part` slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A linearization of all completed operations, in order.
    Linearizable(Vec<usize>),
    /// None exists. `longest` is the longest linearization of a prefix the
    /// search found; `blocked` the operation whose return stopped it.
    Illegal {
        longest: Vec<usize>,
        blocked: Option<usize>,
    },
    /// The budget ran out first.
    Unknown,
}

/// Figures about one search, for benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) steps: u64,
    pub(crate) memo_entries: usize,
    pub(crate) states: usize,
}

const NIL: u32 = u32::MAX;

/// The event list: entry `i < m` is an event, entry `m` the head.
struct Events {
    /// (op, is_call) of each event.
    kind: Vec<(u32, bool)>,
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Each op's call entry and return entry (NIL if pending).
    call_of: Vec<u32>,
    ret_of: Vec<u32>,
}

impl Events {
    fn new(times: &[(u64, Option<u64>)]) -> Self {
        let mut ev: Vec<(u64, bool, u32)> = Vec::with_capacity(times.len() * 2);
        for (op, &(call, ret)) in times.iter().enumerate() {
            ev.push((call, false, op as u32));
            if let Some(ret) = ret {
                ev.push((ret, true, op as u32));
            }
        }
        // `false < true`: calls sort before returns at equal times.
        ev.sort_unstable();
        let m = ev.len();
        let mut call_of = vec![NIL; times.len()];
        let mut ret_of = vec![NIL; times.len()];
        for (i, &(_, is_ret, op)) in ev.iter().enumerate() {
            let slot = if is_ret { &mut ret_of } else { &mut call_of };
            slot[op as usize] = i as u32;
        }
        let kind = ev.iter().map(|&(_, is_ret, op)| (op, !is_ret)).collect();
        // Entry `m` is the head; the list starts in time order.
        let mut next: Vec<u32> = (1..=m as u32).collect();
        next.push(if m == 0 { NIL } else { 0 });
        if m > 0 {
            next[m - 1] = NIL;
        }
        let mut prev: Vec<u32> = (0..m as u32)
            .map(|i| if i == 0 { m as u32 } else { i - 1 })
            .collect();
        prev.push(NIL);
        Self {
            kind,
            next,
            prev,
            call_of,
            ret_of,
        }
    }

    fn head(&self) -> u32 {
        (self.kind.len()) as u32
    }

    fn unlink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    fn relink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        self.next[p as usize] = e;
        if n != NIL {
            self.prev[n as usize] = e;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        if self.ret_of[op] != NIL {
            self.unlink(self.ret_of[op]);
        }
    }

    /// Undoes [`Events::lift`]; lifts and unlifts nest like a stack.
    fn unlift(&mut self, op: usize) {
        if self.ret_of[op] != NIL {
            self.relink(self.ret_of[op]);
        }
        self.relink(self.call_of[op]);
    }
}

/// Interned states and a cache of transitions (state, op) -> state.
struct States<'m, M: Model> {
    model: &'m M,
    list: Vec<M::State>,
    ids: FxHashMap<M::State, u32>,
    next: FxHashMap<(u32, u32), u32>,
}

impl<'m, M: Model> States<'m, M> {
    fn new(model: &'m M) -> Self {
        let mut states = Self {
            model,
            list: Vec::new(),
            ids: FxHashMap::default(),
            next: FxHashMap::default(),
        };
        states.intern(model.init());
        states
    }

    fn intern(&mut self, state: M::State) -> u32 {
        if let Some(&id) = self.ids.get(&state) {
            return id;
        }
        let id = u32::try_from(self.list.len()).expect("fewer than 2^32 distinct states");
        self.list.push(state.clone());
        self.ids.insert(state, id);
        id
    }

    /// The state after op `op` (with `input`/`output`) from state `from`.
    fn step(&mut self, from: u32, op: u32, input: &M::Input, output: Option<&M::Output>) -> u32 {
        if let Some(&to) = self.next.get(&(from, op)) {
            return to;
        }
        let to = match self.model.step(&self.list[from as usize], input, output) {
            Some(state) => self.intern(state),
            None => NIL,
        };
        self.next.insert((from, op), to);
        to
    }
}

/// A fixed, well-mixed random value per operation, for Zobrist hashing.
fn zobrist(op: usize) -> u64 {
    // splitmix64 of the op index: deterministic across runs and machines.
    let mut z = (op as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn state_hash(state: u32) -> u64 {
    zobrist(usize::MAX - state as usize)
}

/// The longest stack seen, copied lazily: `best[..agree]` always equals
/// the current stack's first `agree` entries.
#[derive(Default)]
struct Longest {
    best: Vec<usize>,
    agree: usize,
    blocked: Option<usize>,
}

impl Longest {
    fn pushed(&mut self, stack: &[Frame]) {
        if stack.len() > self.best.len() {
            self.best.truncate(self.agree);
            self.best
                .extend(stack[self.agree..].iter().map(|f| f.op as usize));
            self.agree = stack.len();
            self.blocked = None;
        }
    }

    /// The walk met the return of `op` with `depth` operations linearized.
    fn hit_return(&mut self, depth: usize, op: usize) {
        if depth == self.best.len() && self.agree == depth && self.blocked.is_none() {
            self.blocked = Some(op);
        }
    }

    fn popped(&mut self, depth: usize) {
        self.agree = self.agree.min(depth);
    }
}

/// One linearized operation on the search stack.
#[derive(Clone, Copy)]
struct Frame {
    op: u32,
    /// The state before it.
    from: u32,
    /// A read-only op linearized without trying alternatives (see `forced`).
    forced: bool,
}

/// A resumable search of one partition.
pub(crate) struct Search<'a, M: Model> {
    ops: &'a [Operation<M::Input, M::Output>],
    part: &'a [PartOp],
    completed: Vec<bool>,
    /// Read-only given its (known) output.
    pure: Vec<bool>,
    completed_left: usize,
    /// Ops that may take something back (see [`Model::only_extends`]).
    non_extending: Vec<bool>,
    /// How many of those are not linearized yet; while none is left, new
    /// states are checked against the reads still to come.
    non_extending_left: usize,
    /// The reads with a known output, earliest return first, checked by
    /// [`Model::may_precede`] against each new state once only extending
    /// ops are left.
    lookahead: Vec<u32>,
    events: Events,
    states: States<'a, M>,
    memo: Memo,
    bits: Vec<u64>,
    hash: u64,
    state: u32,
    stack: Vec<Frame>,
    longest: Longest,
    cur: u32,
    /// At a node not visited before: look for a forced op first.
    fresh: bool,
    stats: Stats,
}

impl<'a, M: Model> Search<'a, M> {
    pub(crate) fn new(
        model: &'a M,
        ops: &'a [Operation<M::Input, M::Output>],
        part: &'a [PartOp],
    ) -> Self {
        let times: Vec<(u64, Option<u64>)> = part
            .iter()
            .map(|p| (ops[p.id].call, if p.relaxed { None } else { ops[p.id].ret }))
            .collect();
        let completed: Vec<bool> = times.iter().map(|t| t.1.is_some()).collect();
        let pure: Vec<bool> = part
            .iter()
            .map(|p| !p.relaxed && model.is_read_only(&ops[p.id].input, ops[p.id].output.as_ref()))
            .collect();
        let lookahead = lookahead_reads(ops, part, &pure);
        let non_extending: Vec<bool> = part
            .iter()
            .map(|p| !model.only_extends(&ops[p.id].input))
            .collect();
        let events = Events::new(&times);
        let words = part.len().div_ceil(64);
        let cur = events.next[events.head() as usize];
        Self {
            ops,
            part,
            completed_left: completed.iter().filter(|c| **c).count(),
            completed,
            pure,
            non_extending_left: non_extending.iter().filter(|n| **n).count(),
            non_extending,
            lookahead,
            events,
            states: States::new(model),
            memo: Memo::new(words),
            bits: vec![0; words],
            hash: 0,
            state: 0,
            stack: Vec::new(),
            longest: Longest::default(),
            cur,
            fresh: true,
            stats: Stats::default(),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            memo_entries: self.memo.len(),
            states: self.states.list.len(),
            ..self.stats
        }
    }

    /// Searches for at most `steps` more steps and until `deadline`; returns
    /// the outcome once there is one (then the search must not run again).
    pub(crate) fn run(&mut self, steps: u64, deadline: Option<Instant>) -> Option<Outcome> {
        if self.completed_left == 0 {
            return Some(Outcome::Linearizable(Vec::new()));
        }
        for n in 0..steps {
            if n % 1024 == 1023 && deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            self.stats.steps += 1;
            if let Some(outcome) = self.step() {
                return Some(outcome);
            }
        }
        None
    }

    fn step(&mut self) -> Option<Outcome> {
        if std::mem::take(&mut self.fresh)
            && let Some(op) = self.forced()
        {
            // Linearizing a legal read-only op now loses nothing: any
            // linearization from here can move it to the front. So this
            // node succeeds iff that child does, and needs no other child.
            return if self.push(op, true) {
                self.pushed()
            } else {
                self.backtrack(None)
            };
        }
        if self.cur == NIL {
            debug_assert!(false, "walked off the list with completed ops left");
            return self.backtrack(None);
        }
        let (op, is_call) = self.events.kind[self.cur as usize];
        if !is_call {
            return self.backtrack(Some(op as usize));
        }
        if self.push(op, false) {
            return self.pushed();
        }
        self.cur = self.events.next[self.cur as usize];
        None
    }

    /// A read-only op, callable now, that is legal in the current state.
    fn forced(&mut self) -> Option<u32> {
        let mut e = self.events.next[self.events.head() as usize];
        while e != NIL {
            let (op, is_call) = self.events.kind[e as usize];
            if !is_call {
                return None;
            }
            if self.pure[op as usize] && self.next_state(op) != NIL {
                return Some(op);
            }
            e = self.events.next[e as usize];
        }
        None
    }

    fn next_state(&mut self, op: u32) -> u32 {
        let p = &self.part[op as usize];
        let o = &self.ops[p.id];
        let output = if p.relaxed { None } else { o.output.as_ref() };
        self.states.step(self.state, op, &o.input, output)
    }

    fn toggle(&mut self, op: usize) {
        self.bits[op / 64] ^= 1 << (op % 64);
        self.hash ^= zobrist(op);
    }

    /// Whether state `to`, reached by linearizing `op` when only extending
    /// ops are left, can still precede the next few reads that must come
    /// later (see `lookahead`). Checking
    /// a few suffices to cut most dead branches and keeps each push cheap.
    fn viable(&self, to: u32, op: u32) -> bool {
        const CHECKED: usize = 8;
        let state = &self.states.list[to as usize];
        self.lookahead
            .iter()
            .filter(|&&r| r != op && self.bits[r as usize / 64] & (1 << (r % 64)) == 0)
            .take(CHECKED)
            .all(|&r| {
                let o = &self.ops[self.part[r as usize].id];
                o.output
                    .as_ref()
                    .is_none_or(|out| self.states.model.may_precede(state, &o.input, out))
            })
    }

    /// Linearizes `op` next if it is legal and leads somewhere new.
    fn push(&mut self, op: u32, forced: bool) -> bool {
        let to = self.next_state(op);
        if to == NIL {
            return false;
        }
        let o = op as usize;
        let non_extending_left = self.non_extending_left - usize::from(self.non_extending[o]);
        if non_extending_left == 0 && !self.viable(to, op) {
            return false;
        }
        self.toggle(o);
        if !self.memo.insert(self.hash ^ state_hash(to), &self.bits, to) {
            self.toggle(o);
            return false;
        }
        self.stack.push(Frame {
            op,
            from: self.state,
            forced,
        });
        self.longest.pushed(&self.stack);
        self.state = to;
        self.events.lift(o);
        if self.completed[o] {
            self.completed_left -= 1;
        }
        self.non_extending_left = non_extending_left;
        true
    }

    fn pushed(&mut self) -> Option<Outcome> {
        if self.completed_left == 0 {
            return Some(Outcome::Linearizable(
                self.stack.iter().map(|f| f.op as usize).collect(),
            ));
        }
        self.fresh = true;
        self.cur = self.events.next[self.events.head() as usize];
        None
    }

    /// Undoes the last choice; forced choices are undone too, since their
    /// node has no other child. `blocked` is the op whose return was met.
    fn backtrack(&mut self, blocked: Option<usize>) -> Option<Outcome> {
        if let Some(op) = blocked {
            self.longest.hit_return(self.stack.len(), op);
        }
        loop {
            let Some(frame) = self.stack.pop() else {
                let longest = std::mem::take(&mut self.longest);
                return Some(Outcome::Illegal {
                    longest: longest.best,
                    blocked: longest.blocked,
                });
            };
            self.longest.popped(self.stack.len());
            let o = frame.op as usize;
            self.toggle(o);
            self.state = frame.from;
            self.events.unlift(o);
            if self.completed[o] {
                self.completed_left += 1;
            }
            self.non_extending_left += usize::from(self.non_extending[o]);
            if !frame.forced {
                self.cur = self.events.next[self.events.call_of[o] as usize];
                return None;
            }
        }
    }
}

/// The reads to look ahead to (see `Search::lookahead`).
fn lookahead_reads<I, O>(ops: &[Operation<I, O>], part: &[PartOp], pure: &[bool]) -> Vec<u32> {
    let mut reads: Vec<u32> = (0..part.len())
        .filter(|&i| pure[i] && ops[part[i].id].ret.is_some())
        .map(|i| i as u32)
        .collect();
    reads.sort_by_key(|&i| ops[part[i as usize].id].ret);
    reads
}

/// Searches `part` (positions into `ops`) to the end or the budget.
pub(crate) fn search<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    part: &[PartOp],
    budget: Budget,
) -> (Outcome, Stats) {
    let mut search = Search::new(model, ops, part);
    let outcome = search.run(budget.steps.unwrap_or(u64::MAX), budget.deadline);
    (outcome.unwrap_or(Outcome::Unknown), search.stats())
}
