//! The [`Register`] model: one register holding an integer or nothing, with
//! read, write and compare-and-swap (the model of Jepsen's etcd tests).
//!
//! The register starts empty (`nil`). A read returns the current value; a
//! write replaces it; `cas(from, to)` replaces it with `to` if it equals
//! `from` and reports whether it did. A failed cas changes nothing.

use crate::model::Model;

/// What a client asked of the register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterInput {
    /// Read the value.
    Read,
    /// Set the value.
    Write(i64),
    /// Set the value to `to` if it is `from`.
    Cas {
        /// The value the register must hold for the swap to happen.
        from: i64,
        /// The value it holds after a successful swap.
        to: i64,
    },
}

/// What the register answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    /// A read's result: the value, or `None` if nothing was written yet.
    Value(Option<i64>),
    /// A write's acknowledgement.
    Written,
    /// A cas's result: `true` if it swapped.
    Cas(bool),
}

/// The register model: its state is the current value, `None` until the
/// first write.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

fn show(value: Option<i64>) -> String {
    value.map_or_else(|| "nil".to_string(), |v| v.to_string())
}

impl Model for Register {
    type Input = RegisterInput;
    type Output = RegisterOutput;
    type State = Option<i64>;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(
        &self,
        state: &Option<i64>,
        input: &RegisterInput,
        output: Option<&RegisterOutput>,
    ) -> Option<Option<i64>> {
        use RegisterInput as I;
        use RegisterOutput as O;
        match (input, output) {
            (I::Read, None) => Some(*state),
            (I::Read, Some(O::Value(v))) => (v == state).then_some(*state),
            (I::Write(v), None | Some(O::Written)) => Some(Some(*v)),
            (I::Cas { from, to }, None) => Some(if *state == Some(*from) {
                Some(*to)
            } else {
                *state
            }),
            (I::Cas { from, to }, Some(O::Cas(true))) => {
                (*state == Some(*from)).then_some(Some(*to))
            }
            (I::Cas { from, .. }, Some(O::Cas(false))) => (*state != Some(*from)).then_some(*state),
            // An answer of the wrong kind is never legal.
            (_, Some(_)) => None,
        }
    }

    fn is_read_only(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> bool {
        matches!(
            (input, output),
            (RegisterInput::Read, _)
                | (RegisterInput::Cas { .. }, Some(RegisterOutput::Cas(false)))
        )
    }

    fn describe_input(&self, input: &RegisterInput) -> String {
        match input {
            RegisterInput::Read => "read".to_string(),
            RegisterInput::Write(v) => format!("write({v})"),
            RegisterInput::Cas { from, to } => format!("cas({from}, {to})"),
        }
    }

    fn describe_output(&self, output: &RegisterOutput) -> String {
        match output {
            RegisterOutput::Value(v) => show(*v),
            RegisterOutput::Written => "ok".to_string(),
            RegisterOutput::Cas(true) => "swapped".to_string(),
            RegisterOutput::Cas(false) => "failed".to_string(),
        }
    }

    fn describe_state(&self, state: &Option<i64>) -> String {
        show(*state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RegisterInput as I;
    use RegisterOutput as O;

    #[test]
    fn read_must_return_the_current_value() {
        let r = Register;
        assert_eq!(r.step(&None, &I::Read, Some(&O::Value(None))), Some(None));
        assert_eq!(r.step(&None, &I::Read, Some(&O::Value(Some(1)))), None);
        assert_eq!(r.step(&Some(1), &I::Read, None), Some(Some(1)));
    }

    #[test]
    fn cas_swaps_only_on_a_match_and_a_failed_cas_changes_nothing() {
        let r = Register;
        let cas = I::Cas { from: 1, to: 2 };
        assert_eq!(r.step(&Some(1), &cas, Some(&O::Cas(true))), Some(Some(2)));
        assert_eq!(r.step(&Some(3), &cas, Some(&O::Cas(true))), None);
        assert_eq!(r.step(&Some(3), &cas, Some(&O::Cas(false))), Some(Some(3)));
        assert_eq!(r.step(&Some(1), &cas, Some(&O::Cas(false))), None);
        // Unknown outcome: the state decides.
        assert_eq!(r.step(&Some(1), &cas, None), Some(Some(2)));
        assert_eq!(r.step(&None, &cas, None), Some(None));
    }

    #[test]
    fn an_answer_of_the_wrong_kind_is_illegal() {
        assert_eq!(Register.step(&None, &I::Read, Some(&O::Written)), None);
        assert_eq!(
            Register.step(&None, &I::Write(1), Some(&O::Cas(true))),
            None
        );
    }
}
