//! The native JSON-lines history format: one JSON object per line, one line
//! per operation.
//!
//! Fields: `client` (integer), `call` (integer time), `return` (integer
//! time, or `null` for an unknown outcome), `op`, the operation's arguments,
//! and `output` (`null` or absent when there is nothing to report or the
//! outcome is unknown). Key/value ops: `get` (output: the value, `""` for a
//! missing key; optional `output_version`), `put` / `append` (`value`),
//! `delete`, `cas` (`expected`, `value`; output `true` if it swapped),
//! `cas_version` (`version`, `value`; output as `cas`); each has a string
//! `key`. Register ops, without a key: `read` (output: an integer or
//! `null` for an empty register), `write` (`value`), `cas` (`expected`,
//! `value`; output as above). Unknown fields are errors, to catch typos.

use serde_json::{Map, Value, json};

use super::{ParseError, Parsed, numbered};
use crate::history::{History, Operation};
use crate::kv::{KvInput, KvOp, KvOutput};
use crate::register::{RegisterInput, RegisterOutput};

const FIELDS: [&str; 11] = [
    "client",
    "call",
    "return",
    "op",
    "key",
    "value",
    "expected",
    "version",
    "output",
    "output_version",
    // Free text a tool may attach; ignored.
    "note",
];

/// One line's object, with helpers that name the field in errors.
struct Line<'a> {
    n: usize,
    obj: &'a Map<String, Value>,
}

impl Line<'_> {
    fn err(&self, what: impl Into<String>) -> ParseError {
        ParseError::new(self.n, what)
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn u64(&self, field: &str) -> Result<u64, ParseError> {
        match self.get(field) {
            None => Err(self.err(format!("missing field `{field}`"))),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| self.err(format!("`{field}` must be an unsigned integer, not {v}"))),
        }
    }

    fn i64(&self, field: &str) -> Result<i64, ParseError> {
        match self.get(field) {
            None => Err(self.err(format!("missing field `{field}`"))),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| self.err(format!("`{field}` must be an integer, not {v}"))),
        }
    }

    fn string(&self, field: &str) -> Result<String, ParseError> {
        match self.get(field) {
            None => Err(self.err(format!("missing field `{field}`"))),
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.err(format!("`{field}` must be a string, not {v}"))),
        }
    }

    fn absent(&self, fields: &[&str], op: &str) -> Result<(), ParseError> {
        match fields.iter().find(|f| self.get(f).is_some()) {
            Some(f) => Err(self.err(format!("`{op}` takes no field `{f}`"))),
            None => Ok(()),
        }
    }
}

/// The common fields of a line.
struct Header {
    obj: Map<String, Value>,
    client: u64,
    call: u64,
    ret: Option<u64>,
    op: String,
}

/// Parses a line's object and its common fields: client, call, return, op.
fn header(n: usize, text: &str) -> Result<Header, ParseError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ParseError::new(n, format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ParseError::new(n, "expected a JSON object, one per line"));
    };
    if let Some(f) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ParseError::new(n, format!("unknown field `{f}`")));
    }
    let line = Line { n, obj: &obj };
    let client = line.u64("client")?;
    let call = line.u64("call")?;
    let ret = match line.get("return") {
        None => None,
        Some(_) => Some(line.u64("return")?),
    };
    if ret.is_some_and(|r| r < call) {
        return Err(line.err("`return` is before `call`"));
    }
    if ret.is_none() && line.get("output").is_some() {
        return Err(
            line.err("an operation with `\"return\": null` (unknown outcome) has no `output`")
        );
    }
    let op = line.string("op")?;
    Ok(Header {
        obj,
        client,
        call,
        ret,
        op,
    })
}

fn parse_lines<I, O>(
    text: &str,
    mut op: impl FnMut(&Line<'_>, &str, bool) -> Result<(I, Option<O>), ParseError>,
) -> Result<Parsed<I, O>, ParseError> {
    let mut history = History::new();
    let mut lines = Vec::new();
    for (n, l) in numbered(text) {
        let Header {
            obj,
            client,
            call,
            ret,
            op: name,
        } = header(n, l)?;
        let line = Line { n, obj: &obj };
        let (input, output) = op(&line, &name, ret.is_some())?;
        let output = if ret.is_some() { output } else { None };
        let operation = Operation {
            client,
            call,
            ret,
            input,
            output,
        };
        history
            .push(operation)
            .map_err(|e| line.err(e.to_string()))?;
        lines.push(n);
    }
    Ok(Parsed { history, lines })
}

/// The output of an op that reports nothing: `null` or absent.
fn no_output<O>(line: &Line<'_>, op: &str, done: O) -> Result<Option<O>, ParseError> {
    match line.get("output") {
        None => Ok(Some(done)),
        Some(v) => Err(line.err(format!("`{op}` has no output, but `output` is {v}"))),
    }
}

fn cas_output<O>(
    line: &Line<'_>,
    completed: bool,
    make: fn(bool) -> O,
) -> Result<Option<O>, ParseError> {
    match (line.get("output"), completed) {
        (_, false) => Ok(None),
        (Some(Value::Bool(b)), true) => Ok(Some(make(*b))),
        (other, true) => Err(line.err(format!(
            "a completed `cas` needs `output` true (swapped) or false, not {}",
            other.map_or_else(|| "nothing".to_string(), Value::to_string)
        ))),
    }
}

fn kv_op(
    line: &Line<'_>,
    op: &str,
    completed: bool,
) -> Result<(KvInput, Option<KvOutput>), ParseError> {
    let key = line.string("key")?;
    let (op, output) = match op {
        "get" => {
            line.absent(&["value", "expected", "version"], op)?;
            let output = match (line.get("output"), completed) {
                (_, false) => None,
                (None, true) => {
                    return Err(line.err("a completed `get` needs `output`: the value read"));
                }
                (Some(_), true) => {
                    let value = line.string("output")?;
                    Some(match line.get("output_version") {
                        None => KvOutput::Value(value),
                        Some(_) => KvOutput::Versioned {
                            value,
                            version: line.u64("output_version")?,
                        },
                    })
                }
            };
            (KvOp::Get, output)
        }
        "put" | "append" => {
            line.absent(&["expected", "version"], op)?;
            let value = line.string("value")?;
            let kv = if op == "put" {
                KvOp::Put(value)
            } else {
                KvOp::Append(value)
            };
            (kv, no_output(line, op, KvOutput::Ok)?)
        }
        "delete" => {
            line.absent(&["value", "expected", "version"], op)?;
            (KvOp::Delete, no_output(line, op, KvOutput::Ok)?)
        }
        "cas" => {
            line.absent(&["version"], op)?;
            let (expected, new) = (line.string("expected")?, line.string("value")?);
            (
                KvOp::Cas { expected, new },
                cas_output(line, completed, KvOutput::Cas)?,
            )
        }
        "cas_version" => {
            line.absent(&["expected"], op)?;
            let (expected, new) = (line.u64("version")?, line.string("value")?);
            (
                KvOp::CasVersion { expected, new },
                cas_output(line, completed, KvOutput::Cas)?,
            )
        }
        other => {
            return Err(line.err(format!(
                "unknown key/value op `{other}` (expected get, put, append, delete, cas or cas_version)"
            )));
        }
    };
    Ok((KvInput { key, op }, output))
}

fn register_op(
    line: &Line<'_>,
    op: &str,
    completed: bool,
) -> Result<(RegisterInput, Option<RegisterOutput>), ParseError> {
    line.absent(&["key", "version", "output_version"], op)?;
    match op {
        "read" => {
            line.absent(&["value", "expected"], op)?;
            let value = match line.get("output") {
                None => None,
                Some(_) => Some(line.i64("output")?),
            };
            Ok((
                RegisterInput::Read,
                completed.then_some(RegisterOutput::Value(value)),
            ))
        }
        "write" => {
            line.absent(&["expected"], op)?;
            let v = line.i64("value")?;
            Ok((
                RegisterInput::Write(v),
                no_output(line, op, RegisterOutput::Written)?,
            ))
        }
        "cas" => {
            let (from, to) = (line.i64("expected")?, line.i64("value")?);
            let output = cas_output(line, completed, RegisterOutput::Cas)?;
            Ok((RegisterInput::Cas { from, to }, output))
        }
        other => Err(line.err(format!(
            "unknown register op `{other}` (expected read, write or cas)"
        ))),
    }
}

/// Parses a key/value history in JSON lines.
pub fn parse_jsonl_kv(text: &str) -> Result<Parsed<KvInput, KvOutput>, ParseError> {
    parse_lines(text, kv_op)
}

/// Parses a register history in JSON lines.
pub fn parse_jsonl_register(
    text: &str,
) -> Result<Parsed<RegisterInput, RegisterOutput>, ParseError> {
    parse_lines(text, register_op)
}

fn common<I, O>(op: &Operation<I, O>, name: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("client".into(), json!(op.client));
    m.insert("call".into(), json!(op.call));
    m.insert("return".into(), json!(op.ret));
    m.insert("op".into(), json!(name));
    m
}

/// Writes a key/value history as JSON lines that [`parse_jsonl_kv`] reads
/// back.
pub fn kv_to_jsonl(history: &History<KvInput, KvOutput>) -> String {
    let mut out = String::new();
    for op in history.ops() {
        let (name, fields) = match &op.input.op {
            KvOp::Get => ("get", json!({})),
            KvOp::Put(v) => ("put", json!({ "value": v })),
            KvOp::Append(v) => ("append", json!({ "value": v })),
            KvOp::Delete => ("delete", json!({})),
            KvOp::Cas { expected, new } => ("cas", json!({ "expected": expected, "value": new })),
            KvOp::CasVersion { expected, new } => {
                ("cas_version", json!({ "version": expected, "value": new }))
            }
        };
        let mut m = common(op, name);
        m.insert("key".into(), json!(op.input.key));
        if let Value::Object(f) = fields {
            m.extend(f);
        }
        match &op.output {
            Some(KvOutput::Value(v)) => drop(m.insert("output".into(), json!(v))),
            Some(KvOutput::Versioned { value, version }) => {
                m.insert("output".into(), json!(value));
                m.insert("output_version".into(), json!(version));
            }
            Some(KvOutput::Cas(b)) => drop(m.insert("output".into(), json!(b))),
            Some(KvOutput::Ok) | None => drop(m.insert("output".into(), Value::Null)),
        }
        out.push_str(&Value::Object(m).to_string());
        out.push('\n');
    }
    out
}

/// Writes a register history as JSON lines that [`parse_jsonl_register`]
/// reads back.
pub fn register_to_jsonl(history: &History<RegisterInput, RegisterOutput>) -> String {
    let mut out = String::new();
    for op in history.ops() {
        let mut m = match op.input {
            RegisterInput::Read => common(op, "read"),
            RegisterInput::Write(v) => {
                let mut m = common(op, "write");
                m.insert("value".into(), json!(v));
                m
            }
            RegisterInput::Cas { from, to } => {
                let mut m = common(op, "cas");
                m.insert("expected".into(), json!(from));
                m.insert("value".into(), json!(to));
                m
            }
        };
        let output = match &op.output {
            Some(RegisterOutput::Value(v)) => json!(v),
            Some(RegisterOutput::Cas(b)) => json!(b),
            Some(RegisterOutput::Written) | None => Value::Null,
        };
        m.insert("output".into(), output);
        out.push_str(&Value::Object(m).to_string());
        out.push('\n');
    }
    out
}
