//! The [`Model`] trait: the sequential specification a history is checked
//! against.
//!
//! A model is a deterministic state machine. The checker only ever asks it
//! three things: the initial state, whether an operation with a given output
//! is legal in a state (and the state after it), and which partition an
//! operation belongs to. Invariants a model must keep:
//! - `step` is a pure function of its arguments (the checker memoizes it);
//! - with `output == None` (an operation whose outcome is unknown), `step`
//!   returns the state the operation leads to *when it takes effect*; the
//!   checker itself covers the case where it never took effect;
//! - operations in different partitions never affect each other
//!   (P-compositionality), so each partition can be checked on its own.

use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification: a deterministic state machine whose
/// operations have an input and an output.
pub trait Model {
    /// What the client asked for (e.g. `put("k", "v")`).
    type Input: Clone + Debug;
    /// What the client was told (e.g. the value a `get` returned).
    type Output: Clone + Debug;
    /// The model's state. The checker hashes and compares states to memoize
    /// its search, so a compact state makes it faster.
    type State: Clone + Eq + Hash + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies one operation to `state`. Returns the next state if the
    /// operation, with this output, is legal in `state`, or `None` if it is
    /// not (e.g. a read whose output is not the current value). An output of
    /// the wrong kind for the input (a read answered "swapped") is never
    /// legal.
    ///
    /// `output` is `None` when the outcome is unknown (a timeout): the model
    /// then returns the state after the operation took effect, whatever it
    /// would have answered.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// Names the partition an operation belongs to (for a key/value store,
    /// its key). Operations in different partitions must be independent:
    /// the history is linearizable if and only if each partition is. `None`
    /// (the default) puts every operation in one partition.
    fn partition(&self, input: &Self::Input) -> Option<String> {
        let _ = input;
        None
    }

    /// True if an operation with this input and output never changes the
    /// state (a read, or a compare-and-swap known to have failed); `output`
    /// is `None` for an unknown outcome, when it must hold whatever the
    /// outcome. The checker drops such operations when their outcome is
    /// unknown, since they constrain nothing, and may drop them outright when
    /// shrinking a counterexample. The default, `false`, is always safe.
    fn is_read_only(&self, input: &Self::Input, output: Option<&Self::Output>) -> bool {
        let _ = (input, output);
        false
    }

    /// True if `input` can only extend the state, never take anything back
    /// (an append, or a read). Once every operation still to be linearized
    /// does, the search asks [`Model::may_precede`] to cut dead branches.
    /// The default, `false`, never prunes.
    fn only_extends(&self, input: &Self::Input) -> bool {
        let _ = input;
        false
    }

    /// Asked only when every operation still to come only extends the
    /// state: false if a read answered `output` can never be legal after
    /// `state`, whatever comes between (for appends: the value read does not
    /// start with the current value). Returning false wrongly would make the
    /// checker report a violation that is not there; the default, `true`,
    /// never prunes.
    fn may_precede(&self, state: &Self::State, input: &Self::Input, output: &Self::Output) -> bool {
        let _ = (state, input, output);
        true
    }

    /// A short human-readable form of an input, e.g. `append("k1", "x")`.
    fn describe_input(&self, input: &Self::Input) -> String {
        format!("{input:?}")
    }

    /// A short human-readable form of an output, e.g. `"xy"` or `ok`.
    fn describe_output(&self, output: &Self::Output) -> String {
        format!("{output:?}")
    }

    /// A short human-readable form of a state, e.g. `"xy" (version 2)`.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }
}
