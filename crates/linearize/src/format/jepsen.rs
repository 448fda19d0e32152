//! Jepsen's history logs: the etcd register log and EDN maps of key/value
//! events.
//!
//! Both are event streams: `:invoke` opens an operation of a process, and
//! the process's next `:ok`, `:fail` or `:info` closes it. `:ok` completes
//! it; `:fail` means it did not happen (dropped), except a failed etcd
//! `cas`, which is a completed cas that did not swap; `:info`, or no
//! completion by the end of the file, leaves its outcome unknown. A
//! process runs one operation at a time, so an `:invoke` while one is open
//! is an error, as is a completion with nothing open or of another `:f`.
//! Times are event numbers (the order of lines).

use rustc_hash::FxHashMap;

use super::{ParseError, Parsed, numbered};
use crate::history::{History, Operation};
use crate::kv::{KvInput, KvOp, KvOutput};
use crate::register::{RegisterInput, RegisterOutput};

/// How an event closes an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

fn kind(word: &str) -> Option<Kind> {
    match word {
        ":invoke" => Some(Kind::Invoke),
        ":ok" => Some(Kind::Ok),
        ":fail" => Some(Kind::Fail),
        ":info" => Some(Kind::Info),
        _ => None,
    }
}

/// An operation being assembled: (process, call time, f, input, line).
struct Open<I> {
    call: u64,
    f: String,
    input: I,
    line: usize,
}

/// Pairs events into operations. `close` turns (input, completion kind, the
/// completion's value) into the output, or `None` to drop the operation.
struct Pairing<I, O> {
    open: FxHashMap<u64, Open<I>>,
    done: Vec<(usize, Operation<I, O>)>,
}

impl<I, O> Pairing<I, O> {
    fn new() -> Self {
        Self {
            open: FxHashMap::default(),
            done: Vec::new(),
        }
    }

    fn invoke(
        &mut self,
        line: usize,
        process: u64,
        time: u64,
        f: &str,
        input: I,
    ) -> Result<(), ParseError> {
        if let Some(prev) = self.open.get(&process) {
            return Err(ParseError::new(
                line,
                format!(
                    "process {process} invokes while its operation from line {} is still open",
                    prev.line
                ),
            ));
        }
        let open = Open {
            call: time,
            f: f.to_string(),
            input,
            line,
        };
        self.open.insert(process, open);
        Ok(())
    }

    /// Closes the open operation of `process`: `outcome` is `None` to drop
    /// it, `Some(None)` for an unknown outcome, `Some(Some(o))` for output `o`.
    fn close(
        &mut self,
        line: usize,
        process: u64,
        time: u64,
        f: &str,
        outcome: impl FnOnce(&I) -> Result<Option<Option<O>>, String>,
    ) -> Result<(), ParseError> {
        let Some(open) = self.open.remove(&process) else {
            return Err(ParseError::new(
                line,
                format!("process {process} completes an operation it never invoked"),
            ));
        };
        if open.f != f {
            return Err(ParseError::new(
                line,
                format!(
                    "process {process} completes {f} but invoked {} on line {}",
                    open.f, open.line
                ),
            ));
        }
        let Some(output) = outcome(&open.input).map_err(|e| ParseError::new(line, e))? else {
            return Ok(());
        };
        let ret = output.is_some().then_some(time);
        let op = Operation {
            client: process,
            call: open.call,
            ret,
            input: open.input,
            output,
        };
        self.done.push((open.line, op));
        Ok(())
    }

    fn finish(mut self) -> Parsed<I, O> {
        for (process, open) in self.open {
            let op = Operation::pending(process, open.call, open.input);
            self.done.push((open.line, op));
        }
        // Operations in the order they were invoked.
        self.done.sort_by_key(|(line, _)| *line);
        let mut history = History::new();
        let mut lines = Vec::with_capacity(self.done.len());
        for (line, op) in self.done {
            history
                .push(op)
                .expect("event numbers increase, so a return is never before its call");
            lines.push(line);
        }
        Parsed { history, lines }
    }
}

fn etcd_value(word: &str) -> Result<Option<i64>, String> {
    match word {
        "nil" => Ok(None),
        w => w
            .parse()
            .map(Some)
            .map_err(|_| format!("expected an integer or nil, not `{w}`")),
    }
}

fn etcd_pair(text: &str) -> Result<(i64, i64), String> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("expected [FROM TO], not `{text}`"))?;
    let mut it = inner.split_whitespace().map(str::parse::<i64>);
    match (it.next(), it.next(), it.next()) {
        (Some(Ok(a)), Some(Ok(b)), None) => Ok((a, b)),
        _ => Err(format!(
            "expected [FROM TO] with two integers, not `{text}`"
        )),
    }
}

fn etcd_input(f: &str, value: &str) -> Result<RegisterInput, String> {
    match f {
        ":read" => Ok(RegisterInput::Read),
        ":write" => match etcd_value(value)? {
            Some(v) => Ok(RegisterInput::Write(v)),
            None => Err("a write needs a value".to_string()),
        },
        ":cas" => etcd_pair(value).map(|(from, to)| RegisterInput::Cas { from, to }),
        other => Err(format!(
            "unknown operation `{other}` (expected :read, :write or :cas)"
        )),
    }
}

type EtcdOutcome = Result<Option<Option<RegisterOutput>>, String>;

fn etcd_outcome(kind: Kind, input: &RegisterInput, value: &str) -> EtcdOutcome {
    match (kind, input) {
        (Kind::Info, _) => Ok(Some(None)),
        (Kind::Ok, RegisterInput::Read) => {
            Ok(Some(Some(RegisterOutput::Value(etcd_value(value)?))))
        }
        (Kind::Ok, RegisterInput::Write(_)) => Ok(Some(Some(RegisterOutput::Written))),
        (Kind::Ok, RegisterInput::Cas { .. }) => Ok(Some(Some(RegisterOutput::Cas(true)))),
        (Kind::Fail, RegisterInput::Cas { .. }) => Ok(Some(Some(RegisterOutput::Cas(false)))),
        (Kind::Fail, _) => Ok(None),
        (Kind::Invoke, _) => Err("an invoke cannot close an operation".to_string()),
    }
}

/// Parses a Jepsen etcd log: `INFO  jepsen.util - PROCESS TYPE F VALUE`,
/// fields separated by tabs or spaces.
pub fn parse_jepsen_etcd(text: &str) -> Result<Parsed<RegisterInput, RegisterOutput>, ParseError> {
    let mut pairing = Pairing::new();
    for (time, (n, line)) in numbered(text).enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let bad = |what: &str| ParseError::new(n, format!("{what} in `{line}`"));
        if words.len() < 6 || words[..3] != ["INFO", "jepsen.util", "-"] {
            return Err(bad("expected `INFO  jepsen.util - PROCESS TYPE F VALUE`"));
        }
        let process: u64 = words[3]
            .parse()
            .map_err(|_| bad("the process is not an integer"))?;
        let kind =
            kind(words[4]).ok_or_else(|| bad("the type is not :invoke, :ok, :fail or :info"))?;
        let (f, value) = (words[5], words[6..].join(" "));
        let time = time as u64;
        if kind == Kind::Invoke {
            let input = etcd_input(f, &value).map_err(|e| ParseError::new(n, e))?;
            pairing.invoke(n, process, time, f, input)?;
        } else {
            pairing.close(n, process, time, f, |input| {
                etcd_outcome(kind, input, &value)
            })?;
        }
    }
    Ok(pairing.finish())
}

/// An EDN value as the key/value logs use them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Edn {
    Nil,
    Keyword(String),
    Str(String),
    Int(i64),
}

/// Parses `{:k v, :k v}` with keyword keys and scalar values.
fn edn_map(line: &str) -> Result<Vec<(String, Edn)>, String> {
    let body = line
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .ok_or("expected an EDN map `{:key value, ...}`")?;
    let mut out = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(char::is_whitespace)
            .ok_or("a key without a value")?;
        let key = rest[..key_end]
            .strip_prefix(':')
            .ok_or("map keys must be keywords")?;
        rest = rest[key_end..].trim_start();
        let (value, after) = edn_value(rest)?;
        out.push((key.to_string(), value));
        rest = after.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

fn edn_value(text: &str) -> Result<(Edn, &str), String> {
    if let Some(s) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = s.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((Edn::Str(value), &s[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, c)) => value.push(c),
                    None => break,
                },
                c => value.push(c),
            }
        }
        return Err("an unterminated string".to_string());
    }
    let end = text.find([',', ' ', '\t']).unwrap_or(text.len());
    let (word, rest) = text.split_at(end);
    let value = match word {
        "nil" => Edn::Nil,
        w if w.starts_with(':') => Edn::Keyword(w[1..].to_string()),
        w => Edn::Int(w.parse().map_err(|_| format!("unexpected value `{w}`"))?),
    };
    Ok((value, rest))
}

fn edn_field<'a>(map: &'a [(String, Edn)], key: &str) -> Result<&'a Edn, String> {
    map.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("missing :{key}"))
}

fn edn_str(value: &Edn, what: &str) -> Result<String, String> {
    match value {
        Edn::Str(s) => Ok(s.clone()),
        other => Err(format!("{what} must be a string, not {other:?}")),
    }
}

fn kv_event(map: &[(String, Edn)]) -> Result<(u64, Kind, String, String, Edn), String> {
    let process = match edn_field(map, "process")? {
        Edn::Int(p) if *p >= 0 => *p as u64,
        other => {
            return Err(format!(
                ":process must be a non-negative integer, not {other:?}"
            ));
        }
    };
    let kind = match edn_field(map, "type")? {
        Edn::Keyword(k) => kind(&format!(":{k}")),
        _ => None,
    }
    .ok_or(":type must be :invoke, :ok, :fail or :info")?;
    let f = match edn_field(map, "f")? {
        Edn::Keyword(f) => f.clone(),
        other => return Err(format!(":f must be a keyword, not {other:?}")),
    };
    let key = edn_str(edn_field(map, "key")?, ":key")?;
    let value = edn_field(map, "value").cloned().unwrap_or(Edn::Nil);
    Ok((process, kind, f, key, value))
}

fn kv_input(f: &str, key: String, value: &Edn) -> Result<KvInput, String> {
    let op = match f {
        "get" => KvOp::Get,
        "put" => KvOp::Put(edn_str(value, "a put's :value")?),
        "append" => KvOp::Append(edn_str(value, "an append's :value")?),
        "delete" => KvOp::Delete,
        other => {
            return Err(format!(
                "unknown :f :{other} (expected :get, :put, :append or :delete)"
            ));
        }
    };
    Ok(KvInput { key, op })
}

fn kv_outcome(
    kind: Kind,
    input: &KvInput,
    value: &Edn,
) -> Result<Option<Option<KvOutput>>, String> {
    Ok(match (kind, &input.op) {
        (Kind::Info, _) => Some(None),
        (Kind::Fail, _) => None,
        (Kind::Ok, KvOp::Get) => Some(Some(KvOutput::Value(edn_str(value, "a get's :value")?))),
        (Kind::Ok, _) => Some(Some(KvOutput::Ok)),
        (Kind::Invoke, _) => return Err("an invoke cannot close an operation".to_string()),
    })
}

/// Parses EDN key/value events, one map per line:
/// `{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}`.
pub fn parse_jepsen_kv(text: &str) -> Result<Parsed<KvInput, KvOutput>, ParseError> {
    let mut pairing = Pairing::new();
    for (time, (n, line)) in numbered(text).enumerate() {
        let err = |e: String| ParseError::new(n, e);
        let (process, kind, f, key, value) =
            edn_map(line).and_then(|m| kv_event(&m)).map_err(err)?;
        let time = time as u64;
        if kind == Kind::Invoke {
            let input = kv_input(&f, key, &value).map_err(err)?;
            pairing.invoke(n, process, time, &f, input)?;
        } else {
            pairing.close(n, process, time, &f, |input| {
                if input.key != key {
                    return Err(format!(
                        "completes key {key:?} but invoked key {:?}",
                        input.key
                    ));
                }
                kv_outcome(kind, input, &value)
            })?;
        }
    }
    Ok(pairing.finish())
}
