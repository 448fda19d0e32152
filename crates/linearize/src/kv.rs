//! The [`Kv`] model: a key/value store of strings with get, put, append,
//! delete and compare-and-swap on a value or on a version, checked key by
//! key (each key is its own partition).
//!
//! As in the course's KV (6.824 Lab 3), a `get` of a missing key returns
//! `""`. The state of one key is its value and its **version**: the number of
//! changes since the key was last created, as etcd's per-key `version`.
//! - version 0 means the key is absent (never written, or deleted); its value
//!   is then `""`;
//! - `put`, `append` and a successful cas each add 1 (the first put of a key
//!   makes version 1); `append` to a missing key creates it;
//! - `delete` makes the key absent again (version 0); deleting a missing key
//!   changes nothing;
//! - `cas` on a value compares with the value a `get` would return, so
//!   expecting `""` matches a missing key; `cas_version` with version 0
//!   succeeds only if the key is absent (create-if-absent).
//!
//! A version is per key, so a version-cas keeps keys independent; etcd's
//! store-wide revision would not, and is not modelled.

use crate::model::Model;

/// What a client asked of the store: an operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvInput {
    /// The key operated on; it is also the partition.
    pub key: String,
    /// The operation.
    pub op: KvOp,
}

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOp {
    /// Read the value (`""` if the key is missing).
    Get,
    /// Set the value.
    Put(String),
    /// Append to the value.
    Append(String),
    /// Remove the key.
    Delete,
    /// Set the value to `new` if it is `expected`.
    Cas {
        /// The value the key must hold (`""` matches a missing key).
        expected: String,
        /// The value after a successful swap.
        new: String,
    },
    /// Set the value to `new` if the key's version is `expected`.
    CasVersion {
        /// The version the key must have (0: the key must be absent).
        expected: u64,
        /// The value after a successful swap.
        new: String,
    },
}

impl KvInput {
    fn on(key: impl Into<String>, op: KvOp) -> Self {
        Self {
            key: key.into(),
            op,
        }
    }
    /// `get(key)`.
    pub fn get(key: impl Into<String>) -> Self {
        Self::on(key, KvOp::Get)
    }
    /// `put(key, value)`.
    pub fn put(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::on(key, KvOp::Put(value.into()))
    }
    /// `append(key, value)`.
    pub fn append(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::on(key, KvOp::Append(value.into()))
    }
    /// `delete(key)`.
    pub fn delete(key: impl Into<String>) -> Self {
        Self::on(key, KvOp::Delete)
    }
    /// `cas(key, expected, new)` on the value.
    pub fn cas(
        key: impl Into<String>,
        expected: impl Into<String>,
        new: impl Into<String>,
    ) -> Self {
        let (expected, new) = (expected.into(), new.into());
        Self::on(key, KvOp::Cas { expected, new })
    }
    /// `cas_version(key, expected, new)` on the version.
    pub fn cas_version(key: impl Into<String>, expected: u64, new: impl Into<String>) -> Self {
        let new = new.into();
        Self::on(key, KvOp::CasVersion { expected, new })
    }
}

/// What the store answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A get's value.
    Value(String),
    /// A get's value together with the key's version.
    Versioned {
        /// The value read.
        value: String,
        /// The key's version (0: absent).
        version: u64,
    },
    /// A put, append or delete's acknowledgement.
    Ok,
    /// A cas's result: `true` if it swapped.
    Cas(bool),
}

/// The state of one key: its value and its version (0: absent, value `""`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvState {
    /// The value a get returns.
    pub value: String,
    /// Changes since the key was last created; 0 if it is absent.
    pub version: u64,
}

/// The key/value model; see the module docs for its exact semantics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Kv;

fn set(value: String, version: u64) -> KvState {
    KvState {
        value,
        version: version + 1,
    }
}

/// The state after `op` takes effect, whatever it answers.
fn apply(state: &KvState, op: &KvOp) -> KvState {
    match op {
        KvOp::Get => state.clone(),
        KvOp::Put(v) => set(v.clone(), state.version),
        KvOp::Append(v) => set(format!("{}{v}", state.value), state.version),
        KvOp::Delete => KvState::default(),
        KvOp::Cas { expected, new } if state.value == *expected => set(new.clone(), state.version),
        KvOp::CasVersion { expected, new } if state.version == *expected => {
            set(new.clone(), state.version)
        }
        KvOp::Cas { .. } | KvOp::CasVersion { .. } => state.clone(),
    }
}

fn cas_matches(state: &KvState, op: &KvOp) -> Option<bool> {
    match op {
        KvOp::Cas { expected, .. } => Some(state.value == *expected),
        KvOp::CasVersion { expected, .. } => Some(state.version == *expected),
        _ => None,
    }
}

impl Model for Kv {
    type Input = KvInput;
    type Output = KvOutput;
    type State = KvState;

    fn init(&self) -> KvState {
        KvState::default()
    }

    fn step(&self, state: &KvState, input: &KvInput, output: Option<&KvOutput>) -> Option<KvState> {
        let op = &input.op;
        match (op, output) {
            (_, None) => Some(apply(state, op)),
            (KvOp::Get, Some(KvOutput::Value(v))) => (*v == state.value).then(|| state.clone()),
            (KvOp::Get, Some(KvOutput::Versioned { value, version })) => {
                (*value == state.value && *version == state.version).then(|| state.clone())
            }
            (KvOp::Put(_) | KvOp::Append(_) | KvOp::Delete, Some(KvOutput::Ok)) => {
                Some(apply(state, op))
            }
            (KvOp::Cas { .. } | KvOp::CasVersion { .. }, Some(KvOutput::Cas(swapped))) => {
                (cas_matches(state, op) == Some(*swapped)).then(|| apply(state, op))
            }
            // An answer of the wrong kind is never legal.
            (_, Some(_)) => None,
        }
    }

    fn partition(&self, input: &KvInput) -> Option<String> {
        Some(input.key.clone())
    }

    fn only_extends(&self, input: &KvInput) -> bool {
        matches!(input.op, KvOp::Get | KvOp::Append(_))
    }

    fn may_precede(&self, state: &KvState, input: &KvInput, output: &KvOutput) -> bool {
        // Appends only lengthen the value and raise the version.
        match (&input.op, output) {
            (KvOp::Get, KvOutput::Value(v)) => v.starts_with(&state.value),
            (KvOp::Get, KvOutput::Versioned { value, version }) => {
                value.starts_with(&state.value) && *version >= state.version
            }
            _ => true,
        }
    }

    fn is_read_only(&self, input: &KvInput, output: Option<&KvOutput>) -> bool {
        matches!(
            (&input.op, output),
            (KvOp::Get, _)
                | (
                    KvOp::Cas { .. } | KvOp::CasVersion { .. },
                    Some(KvOutput::Cas(false))
                )
        )
    }

    fn describe_input(&self, input: &KvInput) -> String {
        let k = &input.key;
        match &input.op {
            KvOp::Get => format!("get({k:?})"),
            KvOp::Put(v) => format!("put({k:?}, {v:?})"),
            KvOp::Append(v) => format!("append({k:?}, {v:?})"),
            KvOp::Delete => format!("delete({k:?})"),
            KvOp::Cas { expected, new } => format!("cas({k:?}, {expected:?}, {new:?})"),
            KvOp::CasVersion { expected, new } => {
                format!("cas_version({k:?}, v{expected}, {new:?})")
            }
        }
    }

    fn describe_output(&self, output: &KvOutput) -> String {
        match output {
            KvOutput::Value(v) => format!("{v:?}"),
            KvOutput::Versioned { value, version } => format!("{value:?} v{version}"),
            KvOutput::Ok => "ok".to_string(),
            KvOutput::Cas(true) => "swapped".to_string(),
            KvOutput::Cas(false) => "failed".to_string(),
        }
    }

    fn describe_state(&self, state: &KvState) -> String {
        if state.version == 0 {
            "absent".to_string()
        } else {
            format!("{:?} v{}", state.value, state.version)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(value: &str, version: u64) -> KvState {
        KvState {
            value: value.to_string(),
            version,
        }
    }

    #[test]
    fn get_of_a_missing_key_returns_empty_as_in_the_course_kv() {
        let s = Kv.init();
        let got = Kv.step(
            &s,
            &KvInput::get("k"),
            Some(&KvOutput::Value(String::new())),
        );
        assert_eq!(got, Some(s));
    }

    #[test]
    fn put_append_delete_track_value_and_version() {
        let s = Kv.step(&Kv.init(), &KvInput::put("k", "a"), Some(&KvOutput::Ok));
        assert_eq!(s, Some(st("a", 1)));
        let s = Kv.step(&st("a", 1), &KvInput::append("k", "b"), Some(&KvOutput::Ok));
        assert_eq!(s, Some(st("ab", 2)));
        let s = Kv.step(&st("ab", 2), &KvInput::delete("k"), Some(&KvOutput::Ok));
        assert_eq!(s, Some(KvState::default()));
        let s = Kv.step(&KvState::default(), &KvInput::delete("k"), None);
        assert_eq!(s, Some(KvState::default()));
    }

    #[test]
    fn cas_on_value_and_on_version() {
        let cas = KvInput::cas("k", "a", "b");
        assert_eq!(
            Kv.step(&st("a", 1), &cas, Some(&KvOutput::Cas(true))),
            Some(st("b", 2))
        );
        assert_eq!(Kv.step(&st("x", 1), &cas, Some(&KvOutput::Cas(true))), None);
        assert_eq!(
            Kv.step(&st("x", 1), &cas, Some(&KvOutput::Cas(false))),
            Some(st("x", 1))
        );
        let create = KvInput::cas_version("k", 0, "new");
        assert_eq!(
            Kv.step(&KvState::default(), &create, None),
            Some(st("new", 1))
        );
        assert_eq!(
            Kv.step(&st("a", 1), &create, Some(&KvOutput::Cas(false))),
            Some(st("a", 1))
        );
        assert_eq!(
            Kv.step(&st("a", 1), &create, Some(&KvOutput::Cas(true))),
            None
        );
    }

    #[test]
    fn versioned_get_checks_the_version_too() {
        let get = KvInput::get("k");
        let out = KvOutput::Versioned {
            value: "a".into(),
            version: 2,
        };
        assert_eq!(Kv.step(&st("a", 2), &get, Some(&out)), Some(st("a", 2)));
        assert_eq!(Kv.step(&st("a", 1), &get, Some(&out)), None);
    }

    #[test]
    fn an_answer_of_the_wrong_kind_is_illegal() {
        assert_eq!(
            Kv.step(&Kv.init(), &KvInput::get("k"), Some(&KvOutput::Ok)),
            None
        );
        let put = KvInput::put("k", "v");
        assert_eq!(Kv.step(&Kv.init(), &put, Some(&KvOutput::Cas(true))), None);
    }
}
