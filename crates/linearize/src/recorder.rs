//! [`Recorder`]: fills in a [`History`] while a test runs, from any number
//! of client threads or tasks.
//!
//! A client calls [`Recorder::invoke`] just before it sends a request and
//! [`Recorder::ok`] as soon as it has the reply; an operation that never gets
//! `ok` (the client gave up, crashed, or the test ended) keeps an unknown
//! outcome. Without explicit times the recorder stamps each event with a
//! logical clock under its lock, which preserves real-time order: an
//! operation that returned before another was invoked gets the smaller time.
//! The `*_at` variants take the caller's own clock (e.g. the simulator's
//! virtual nanoseconds); the logical clock then continues after the largest
//! time seen, so both may be mixed.

use std::sync::{Mutex, PoisonError};

use crate::history::{History, OpId, Operation};

struct Inner<I, O> {
    ops: Vec<Operation<I, O>>,
    /// The largest time stamped so far.
    now: u64,
}

/// Records a history from concurrent clients; see the module docs.
pub struct Recorder<I, O> {
    inner: Mutex<Inner<I, O>>,
}

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                ops: Vec::new(),
                now: 0,
            }),
        }
    }
}

impl<I: Clone, O: Clone> Recorder<I, O> {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<I, O>> {
        // A panic elsewhere cannot leave the list half-updated: every
        // mutation below is a single push or field store.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `client` called `input`, at the next logical time.
    pub fn invoke(&self, client: u64, input: I) -> OpId {
        let mut inner = self.lock();
        let at = inner.now + 1;
        Self::push_call(&mut inner, client, input, at)
    }

    /// Records that `client` called `input` at time `at` of the caller's
    /// clock.
    pub fn invoke_at(&self, client: u64, input: I, at: u64) -> OpId {
        let mut inner = self.lock();
        Self::push_call(&mut inner, client, input, at)
    }

    fn push_call(inner: &mut Inner<I, O>, client: u64, input: I, at: u64) -> OpId {
        inner.now = inner.now.max(at);
        inner.ops.push(Operation::pending(client, at, input));
        OpId(inner.ops.len() - 1)
    }

    /// Records that operation `id` returned `output`, at the next logical
    /// time.
    ///
    /// # Panics
    /// If `id` was not returned by this recorder's `invoke`, or the
    /// operation already returned: both are bugs in the calling test.
    pub fn ok(&self, id: OpId, output: O) {
        let mut inner = self.lock();
        let at = inner.now + 1;
        Self::push_return(&mut inner, id, output, at);
    }

    /// Records that operation `id` returned `output` at time `at` of the
    /// caller's clock.
    ///
    /// # Panics
    /// As [`Recorder::ok`], and if `at` is before the operation's call time.
    pub fn ok_at(&self, id: OpId, output: O, at: u64) {
        let mut inner = self.lock();
        Self::push_return(&mut inner, id, output, at);
    }

    fn push_return(inner: &mut Inner<I, O>, id: OpId, output: O, at: u64) {
        inner.now = inner.now.max(at);
        let op = inner
            .ops
            .get_mut(id.0)
            .unwrap_or_else(|| panic!("Recorder::ok: {id:?} was not invoked on this recorder"));
        assert!(op.ret.is_none(), "Recorder::ok: {id:?} already returned");
        assert!(
            at >= op.call,
            "Recorder::ok: {id:?} returns at {at}, before its call at {}",
            op.call
        );
        op.ret = Some(at);
        op.output = Some(output);
    }

    /// The history so far; operations without `ok` have unknown outcomes.
    pub fn history(&self) -> History<I, O> {
        let ops = self.lock().ops.clone();
        History::try_from(ops).expect("the recorder keeps the history invariants")
    }

    /// The number of operations invoked so far.
    pub fn len(&self) -> usize {
        self.lock().ops.len()
    }

    /// True if nothing was invoked yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_times_keep_real_time_order_and_pending_ops_stay_unknown() {
        let r: Recorder<&str, &str> = Recorder::new();
        let a = r.invoke(1, "w1");
        let b = r.invoke(2, "w2");
        r.ok(a, "ok");
        let c = r.invoke(1, "r");
        r.ok(c, "1");
        let h = r.history();
        let ops = h.ops();
        assert!(ops[a.0].ret.expect("returned") < ops[c.0].call);
        assert!(ops[b.0].is_pending());
        assert_eq!(ops[c.0].output, Some("1"));
    }

    #[test]
    fn explicit_times_mix_with_the_logical_clock() {
        let r: Recorder<&str, &str> = Recorder::new();
        let a = r.invoke_at(1, "w", 100);
        r.ok_at(a, "ok", 250);
        let b = r.invoke(2, "r");
        assert_eq!(r.history().ops()[b.0].call, 251);
    }

    #[test]
    #[should_panic(expected = "already returned")]
    fn a_second_ok_is_a_bug() {
        let r: Recorder<&str, &str> = Recorder::new();
        let a = r.invoke(1, "w");
        r.ok(a, "ok");
        r.ok(a, "ok");
    }
}
