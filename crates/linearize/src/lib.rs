//! A linearizability checker: given a history of concurrent client
//! operations and a sequential [`Model`], decide whether some total order of
//! the operations respects real time (an operation that returned before
//! another was called comes first) and the model's rules.
//!
//! The search is Wing & Gong's with Lowe's memoization of (set of
//! linearized operations, model state), as in Porcupine, over each partition
//! of the history (each key of a key/value store) separately. Operations
//! whose outcome is unknown may take effect at any time after their call, or
//! never. Past an optional time limit the verdict is [`Verdict::Unknown`],
//! never a guess. A failure comes with a [`Counterexample`]: the key, a
//! smallest set of operations that cannot be ordered, and the longest
//! linearizable prefix.
//!
//! ```
//! use flotilla_linearize::{check, Kv, KvInput, KvOutput, Limits, Recorder};
//!
//! let rec = Recorder::new();
//! let put = rec.invoke(1, KvInput::put("x", "1"));
//! let get = rec.invoke(2, KvInput::get("x"));
//! rec.ok(put, KvOutput::Ok);
//! rec.ok(get, KvOutput::Value("1".into()));
//! // Client 2 started reading before the put returned: it may see it.
//! assert!(check(&Kv, &rec.history(), &Limits::unlimited()).is_linearizable());
//!
//! // A later read that misses the put is stale.
//! let stale = rec.invoke(3, KvInput::get("x"));
//! rec.ok(stale, KvOutput::Value("".into()));
//! let verdict = check(&Kv, &rec.history(), &Limits::unlimited());
//! let why = verdict.counterexample().expect("stale read");
//! assert_eq!(why.partition.as_deref(), Some("x"));
//! println!("{why}");
//! ```
//!
//! Modules: [`model`] (the trait), [`register`] and [`kv`] (the models),
//! [`history`] and [`recorder`] (inputs), [`check`](mod@check) (the
//! driver), [`verdict`] (outputs), [`format`] (history files) and [`html`]
//! (a timeline page).

pub mod check;
pub mod format;
pub mod history;
pub mod html;
pub mod kv;
mod memo;
pub mod model;
pub mod recorder;
pub mod register;
mod search;
mod shrink;
pub mod verdict;

pub use check::{Limits, PartitionOutcome, PartitionReport, Report, check, check_report};
pub use history::{History, HistoryError, OpId, Operation};
pub use kv::{Kv, KvInput, KvOp, KvOutput, KvState};
pub use model::Model;
pub use recorder::Recorder;
pub use register::{Register, RegisterInput, RegisterOutput};
pub use verdict::{Counterexample, Unresolved, Verdict};
