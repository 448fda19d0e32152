//! Histories: the operations clients ran, with when they were called and
//! when (if ever) they returned.
//!
//! Invariants of a [`History`], checked by [`History::push`]:
//! - an operation has a return time if and only if it has an output; both
//!   absent means the outcome is unknown (the client timed out or crashed):
//!   it may have taken effect at any time after its call, or not at all;
//! - a return time is not before its call time.
//!
//! Times are `u64` in any unit that is monotonic across clients (the
//! simulator's virtual nanoseconds, a logical counter, line numbers). Only
//! their order matters: an operation precedes another if it returned
//! strictly before the other was called; equal times overlap.

use thiserror::Error;

/// The index of an operation in its [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The client that ran it. A client runs one operation at a time.
    pub client: u64,
    /// When the client called it.
    pub call: u64,
    /// When it returned, or `None` if its outcome is unknown.
    pub ret: Option<u64>,
    /// What was asked.
    pub input: I,
    /// What was answered, or `None` if the outcome is unknown.
    pub output: Option<O>,
}

impl<I, O> Operation<I, O> {
    /// A completed operation.
    pub fn completed(client: u64, call: u64, ret: u64, input: I, output: O) -> Self {
        Self {
            client,
            call,
            ret: Some(ret),
            input,
            output: Some(output),
        }
    }

    /// An operation whose outcome is unknown.
    pub fn pending(client: u64, call: u64, input: I) -> Self {
        Self {
            client,
            call,
            ret: None,
            input,
            output: None,
        }
    }

    /// True if the outcome is unknown.
    pub fn is_pending(&self) -> bool {
        self.ret.is_none()
    }
}

/// A malformed operation, refused by [`History::push`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HistoryError {
    /// A return time without an output, or an output without a return time.
    #[error(
        "operation of client {client} called at {call}: a return time needs an output and an output needs a return time (leave both out for an unknown outcome)"
    )]
    HalfKnownOutcome {
        /// The operation's client.
        client: u64,
        /// Its call time.
        call: u64,
    },
    /// The operation returned before it was called.
    #[error("operation of client {client} returned at {ret}, before its call at {call}")]
    ReturnBeforeCall {
        /// The operation's client.
        client: u64,
        /// Its call time.
        call: u64,
        /// Its return time.
        ret: u64,
    },
}

/// A list of operations, in the order they were added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History<I, O> {
    ops: Vec<Operation<I, O>>,
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        Self { ops: Vec::new() }
    }
}

impl<I, O> History<I, O> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an operation after checking the invariants in the module docs.
    pub fn push(&mut self, op: Operation<I, O>) -> Result<OpId, HistoryError> {
        let (client, call) = (op.client, op.call);
        match (op.ret, &op.output) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(HistoryError::HalfKnownOutcome { client, call });
            }
            (Some(ret), Some(_)) if ret < call => {
                return Err(HistoryError::ReturnBeforeCall { client, call, ret });
            }
            _ => {}
        }
        self.ops.push(op);
        Ok(OpId(self.ops.len() - 1))
    }

    /// The operations, indexed by [`OpId`].
    pub fn ops(&self) -> &[Operation<I, O>] {
        &self.ops
    }

    /// The operation `id`.
    pub fn get(&self, id: OpId) -> Option<&Operation<I, O>> {
        self.ops.get(id.0)
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if there is no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl<I, O> TryFrom<Vec<Operation<I, O>>> for History<I, O> {
    type Error = HistoryError;

    fn try_from(ops: Vec<Operation<I, O>>) -> Result<Self, HistoryError> {
        let mut history = History::new();
        for op in ops {
            history.push(op)?;
        }
        Ok(history)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_refuses_malformed_operations() {
        let mut h: History<&str, &str> = History::new();
        assert_eq!(
            h.push(Operation::completed(1, 5, 7, "w", "ok")),
            Ok(OpId(0))
        );
        assert_eq!(h.push(Operation::pending(2, 6, "w")), Ok(OpId(1)));
        let early = Operation::completed(1, 5, 4, "w", "ok");
        assert!(matches!(
            h.push(early),
            Err(HistoryError::ReturnBeforeCall { ret: 4, .. })
        ));
        let half = Operation {
            client: 3,
            call: 1,
            ret: Some(2),
            input: "r",
            output: None,
        };
        assert!(matches!(
            h.push(half),
            Err(HistoryError::HalfKnownOutcome { client: 3, .. })
        ));
        assert_eq!(h.len(), 2);
    }
}
