//! History files: the native JSON-lines format and two Jepsen formats,
//! parsed into a [`History`] with the line of each operation.
//!
//! Every parser reads the whole text and fails on the first malformed line
//! with its 1-based number and what was wrong; blank lines are skipped.
//! Times of the Jepsen formats, which have none, are event numbers: the
//! order of lines is the real-time order of events.
//!
//! The JSON-lines format, one operation per line (see the README):
//! `{"client":3,"call":1200,"return":1450,"op":"append","key":"k1","value":"x","output":null}`.

mod jepsen;
mod jsonl;

use thiserror::Error;

use crate::history::History;

pub use jepsen::{parse_jepsen_etcd, parse_jepsen_kv};
pub use jsonl::{kv_to_jsonl, parse_jsonl_kv, parse_jsonl_register, register_to_jsonl};

/// A malformed line of a history file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {what}")]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub what: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, what: impl Into<String>) -> Self {
        Self {
            line,
            what: what.into(),
        }
    }
}

/// A parsed history file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<I, O> {
    /// The operations, in the order they were called.
    pub history: History<I, O>,
    /// The 1-based line where each operation (by [`crate::OpId`]) starts.
    pub lines: Vec<usize>,
}

/// The history file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Flotilla's JSON lines, one operation per line.
    Jsonl,
    /// Jepsen's etcd register log (`INFO  jepsen.util - 3 :invoke :cas [1 4]`).
    JepsenEtcd,
    /// Jepsen-style EDN maps of key/value events
    /// (`{:process 0, :type :invoke, :f :append, :key "4", :value "x"}`).
    JepsenKv,
}

impl Format {
    /// Guesses the format from the first non-blank line.
    pub fn detect(text: &str) -> Option<Format> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        if line.starts_with("{\"") {
            Some(Format::Jsonl)
        } else if line.starts_with("{:") {
            Some(Format::JepsenKv)
        } else if line.contains("jepsen.util") {
            Some(Format::JepsenEtcd)
        } else {
            None
        }
    }
}

/// The non-blank lines of `text`, with their 1-based numbers.
pub(crate) fn numbered(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
}
