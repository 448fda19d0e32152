//! The text of `flotilla kv txn`, in etcdctl's syntax: compares, then the
//! success requests, then the failure requests, each section ended by a
//! blank line (or the end of the input).
//!
//! ```text
//! value("k") = "v"
//! mod("n") < "5"
//!
//! put k v2
//! get n
//!
//! put k v1
//! del n
//! ```
//!
//! A compare is `TARGET("KEY") OP "VALUE"`: TARGET is `ver`/`version`,
//! `c`/`create`, `m`/`mod` (integers) or `val`/`value` (bytes); OP is `=`,
//! `!=`, `<` or `>`; KEY and VALUE are Go-style quoted strings (`"..."`
//! with backslash escapes, or `` `...` `` raw). A request is `put KEY
//! VALUE [--prev-kv]`, `get KEY [END] [--prefix] [--limit N] [--keys-only]
//! [--count-only]` or `del KEY [END] [--prefix] [--prev-kv]`, split into
//! words like a shell line (double or single quotes group words).
//!
//! Invariant: every error names the line (1-based) and says what was
//! expected there.

use bytes::Bytes;
use flotilla_proto::etcdserverpb as pb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};

/// A syntax error, with its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}: {text:?}")]
pub struct TxnSyntaxError {
    /// The line (1-based).
    pub line: usize,
    /// The line's text.
    pub text: String,
    /// What was wrong.
    pub message: String,
}

/// The section a line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Conditions.
    Compares,
    /// Requests applied if every compare holds.
    Success,
    /// Requests applied otherwise.
    Failure,
    /// Past the failure section: the transaction is complete.
    Done,
}

impl Section {
    /// etcdctl's prompt for the section (for `--interactive`).
    pub fn prompt(self) -> &'static str {
        match self {
            Section::Compares => "compares:",
            Section::Success => "success requests (get, put, del):",
            Section::Failure => "failure requests (get, put, del):",
            Section::Done => "",
        }
    }
}

/// Reads a transaction line by line.
#[derive(Debug)]
pub struct TxnReader {
    section: Section,
    line: usize,
    txn: pb::TxnRequest,
}

impl Default for TxnReader {
    fn default() -> TxnReader {
        TxnReader {
            section: Section::Compares,
            line: 0,
            txn: pb::TxnRequest::default(),
        }
    }
}

impl TxnReader {
    /// The section the next line goes to.
    pub fn section(&self) -> Section {
        self.section
    }

    /// Takes the next line (without its newline). A blank line ends the
    /// current section; a bad line is refused and changes nothing.
    pub fn feed(&mut self, text: &str) -> Result<Section, TxnSyntaxError> {
        self.line += 1;
        let text = text.trim_end_matches(['\r', '\n']);
        let err = |message: String| TxnSyntaxError {
            line: self.line,
            text: text.to_string(),
            message,
        };
        if text.trim().is_empty() {
            self.section = match self.section {
                Section::Compares => Section::Success,
                Section::Success => Section::Failure,
                Section::Failure | Section::Done => Section::Done,
            };
            return Ok(self.section);
        }
        match self.section {
            Section::Compares => self.txn.compare.push(parse_compare(text).map_err(err)?),
            Section::Success => self.txn.success.push(parse_request(text).map_err(err)?),
            Section::Failure => self.txn.failure.push(parse_request(text).map_err(err)?),
            Section::Done => return Err(err("text after the failure requests".into())),
        }
        Ok(self.section)
    }

    /// The transaction read so far.
    pub fn finish(self) -> pb::TxnRequest {
        self.txn
    }
}

/// Parses a whole transaction text. Text after the failure section is
/// an error rather than ignored.
pub fn parse(input: &str) -> Result<pb::TxnRequest, TxnSyntaxError> {
    let mut r = TxnReader::default();
    for line in input.lines() {
        r.feed(line)?;
    }
    Ok(r.finish())
}

/// `TARGET("KEY") OP "VALUE"`.
fn parse_compare(line: &str) -> Result<pb::Compare, String> {
    const SHAPE: &str = "expected TARGET(\"KEY\") OP \"VALUE\"";
    let (target, rest) = line
        .trim()
        .split_once('(')
        .ok_or_else(|| format!("malformed comparison, {SHAPE}"))?;
    let (key, rest) = quoted(rest).map_err(|e| format!("{e} in the key, {SHAPE}"))?;
    let rest = rest
        .strip_prefix(')')
        .ok_or_else(|| format!("missing ')' after the key, {SHAPE}"))?;
    let rest = rest.trim_start();
    let op_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (op, rest) = rest.split_at(op_len);
    let (value, rest) = quoted(rest.trim_start()).map_err(|e| format!("{e} in the value"))?;
    if !rest.trim().is_empty() {
        return Err(format!("unexpected text after the value, {SHAPE}"));
    }
    let result = match op {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => return Err(format!("unknown operator {op:?}: expected =, !=, < or >")),
    };
    let number = || {
        std::str::from_utf8(&value)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| format!("{target} compares with an integer, not {value:?}"))
    };
    let (target, union) = match target.trim() {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(number()?)),
        "c" | "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(number()?),
        ),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(number()?)),
        "val" | "value" => (CompareTarget::Value, TargetUnion::Value(Bytes::from(value))),
        "lease" => return Err("lease compares are not supported (Flotilla has no leases)".into()),
        t => {
            return Err(format!(
                "unknown target {t:?}: expected version, create, mod or value"
            ));
        }
    };
    Ok(pb::Compare {
        result: result as i32,
        target: target as i32,
        key: Bytes::from(key),
        target_union: Some(union),
        range_end: Bytes::new(),
    })
}

/// A Go-style quoted string at the start of `s`: its bytes and the rest.
fn quoted(s: &str) -> Result<(Vec<u8>, &str), String> {
    if let Some(raw) = s.strip_prefix('`') {
        let end = raw.find('`').ok_or("unterminated `raw` string")?;
        return Ok((raw.as_bytes()[..end].to_vec(), &raw[end + 1..]));
    }
    let body = s.strip_prefix('"').ok_or("expected a \"quoted\" string")?;
    let mut out = Vec::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated escape")?;
                match e {
                    'n' => out.push(b'\n'),
                    't' => out.push(b'\t'),
                    'r' => out.push(b'\r'),
                    '0' => out.push(0),
                    '\\' | '"' | '\'' => out.push(e as u8),
                    'x' => {
                        let hex: String = chars.by_ref().take(2).map(|(_, h)| h).collect();
                        let b = u8::from_str_radix(&hex, 16)
                            .map_err(|_| format!("bad escape \\x{hex}"))?;
                        out.push(b);
                    }
                    other => return Err(format!("unknown escape \\{other}")),
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Err("unterminated \"quoted\" string".into())
}

/// Splits a request line into words, as a shell would: whitespace
/// separates, double quotes (with backslash escapes) and single quotes
/// group.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => out.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated 'quote'".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.push(chars.next().ok_or("unterminated escape")?),
                        Some(c) => w.push(c),
                        None => return Err("unterminated \"quote\"".into()),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    Ok(out)
}

/// The flags and positional words of a request.
#[derive(Default)]
struct Flags {
    positional: Vec<String>,
    prefix: bool,
    prev_kv: bool,
    keys_only: bool,
    count_only: bool,
    limit: i64,
}

fn flags(cmd: &str, args: &[String], allowed: &[&str]) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if a.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        if !name.starts_with("--") {
            f.positional.push(a.clone());
            continue;
        }
        if !allowed.contains(&name) {
            return Err(format!("{cmd} takes no {name} (it takes {allowed:?})"));
        }
        match name {
            "--prefix" => f.prefix = true,
            "--prev-kv" => f.prev_kv = true,
            "--keys-only" => f.keys_only = true,
            "--count-only" => f.count_only = true,
            _ => {
                let v = inline.or_else(|| it.next().cloned()).unwrap_or_default();
                f.limit = v
                    .parse()
                    .map_err(|_| format!("--limit needs a number, not {v:?}"))?;
            }
        }
    }
    Ok(f)
}

/// `KEY [END]`, or `KEY --prefix`: the key and etcd's `range_end`.
fn key_range(cmd: &str, f: &Flags) -> Result<(Bytes, Bytes), String> {
    let (key, end) = match f.positional.as_slice() {
        [key] => (key.clone(), None),
        [key, end] => (key.clone(), Some(end.clone())),
        _ => return Err(format!("{cmd} takes KEY [END]")),
    };
    if f.prefix && end.is_some() {
        return Err(format!("{cmd}: END and --prefix exclude each other"));
    }
    let key = Bytes::from(key);
    let end = match end {
        Some(e) => Bytes::from(e),
        None if f.prefix => super::kv::prefix_range_end(&key),
        None => Bytes::new(),
    };
    Ok((super::kv::prefix_key(key, f.prefix), end))
}

/// `put`, `get` or `del`, as etcdctl's commands of the same names.
fn parse_request(line: &str) -> Result<pb::RequestOp, String> {
    use pb::request_op::Request;
    let w = words(line)?;
    let (cmd, args) = w.split_first().ok_or("empty request")?;
    let request = match cmd.as_str() {
        "put" => {
            let f = flags("put", args, &["--prev-kv"])?;
            let [key, value] = f.positional.as_slice() else {
                return Err("put takes KEY VALUE".into());
            };
            Request::RequestPut(pb::PutRequest {
                key: Bytes::from(key.clone()),
                value: Bytes::from(value.clone()),
                prev_kv: f.prev_kv,
                ..Default::default()
            })
        }
        "get" => {
            let allowed = ["--prefix", "--limit", "--keys-only", "--count-only"];
            let f = flags("get", args, &allowed)?;
            let (key, range_end) = key_range("get", &f)?;
            Request::RequestRange(pb::RangeRequest {
                key,
                range_end,
                limit: f.limit,
                keys_only: f.keys_only,
                count_only: f.count_only,
                ..Default::default()
            })
        }
        "del" => {
            let f = flags("del", args, &["--prefix", "--prev-kv"])?;
            let (key, range_end) = key_range("del", &f)?;
            Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key,
                range_end,
                prev_kv: f.prev_kv,
            })
        }
        other => {
            return Err(format!(
                "unknown request {other:?}: expected put, get or del"
            ));
        }
    };
    Ok(pb::RequestOp {
        request: Some(request),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::request_op::Request;

    #[test]
    fn etcdctl_s_example_parses() {
        let t = parse(
            "mod(\"key1\") > \"0\"\n\nput key1 \"overwrote-key1\"\n\n\
             put key1 \"created-key1\"\nput key2 \"some extra key\"\n\n",
        )
        .unwrap();
        assert_eq!(t.compare.len(), 1);
        let c = &t.compare[0];
        assert_eq!(c.result, CompareResult::Greater as i32);
        assert_eq!(c.target, CompareTarget::Mod as i32);
        assert_eq!(c.target_union, Some(TargetUnion::ModRevision(0)));
        assert_eq!((t.success.len(), t.failure.len()), (1, 2));
        let Some(Request::RequestPut(p)) = &t.failure[1].request else {
            panic!("not a put")
        };
        assert_eq!(
            (&p.key[..], &p.value[..]),
            (&b"key2"[..], &b"some extra key"[..])
        );
    }

    #[test]
    fn every_target_operator_and_quoting() {
        let c = parse_compare(r#"value("k") != "a\"b\x41""#).unwrap();
        assert_eq!(
            c.target_union,
            Some(TargetUnion::Value(Bytes::from("a\"bA")))
        );
        assert_eq!(c.result, CompareResult::NotEqual as i32);
        let c = parse_compare("ver(`raw\\key`) = \"0\"").unwrap();
        assert_eq!(&c.key[..], b"raw\\key");
        assert_eq!(c.target_union, Some(TargetUnion::Version(0)));
        let c = parse_compare("c(\"k\") < \"7\"").unwrap();
        assert_eq!(c.target_union, Some(TargetUnion::CreateRevision(7)));
        assert_eq!(c.result, CompareResult::Less as i32);
    }

    #[test]
    fn requests_take_etcdctl_s_flags() {
        let Some(Request::RequestRange(r)) =
            parse_request("get p --prefix --limit=2").unwrap().request
        else {
            panic!("not a get")
        };
        assert_eq!(
            (&r.key[..], &r.range_end[..], r.limit),
            (&b"p"[..], &b"q"[..], 2)
        );
        let Some(Request::RequestDeleteRange(d)) =
            parse_request("del a c --prev-kv").unwrap().request
        else {
            panic!("not a del")
        };
        assert_eq!((&d.range_end[..], d.prev_kv), (&b"c"[..], true));
        let Some(Request::RequestPut(p)) = parse_request("put k 'two words'").unwrap().request
        else {
            panic!("not a put")
        };
        assert_eq!(&p.value[..], b"two words");
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        let e = parse("value(\"k\") = \"v\"\nversion(k) > \"0\"\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(e.message.contains("quoted"), "{e}");
        let e = parse("\nput k\n").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "put takes KEY VALUE"));
        let e = parse("\n\nfrob k\n").unwrap_err();
        assert!(e.message.contains("expected put, get or del"), "{e}");
        let e = parse("mod(\"k\") > \"x\"\n").unwrap_err();
        assert!(e.message.contains("integer"), "{e}");
        let e = parse("mod(\"k\") >= \"1\"\n").unwrap_err();
        assert!(e.message.contains("unknown operator"), "{e}");
        let e = parse("\nget k --frob\n").unwrap_err();
        assert!(e.message.contains("--frob"), "{e}");
        let e = parse("\n\n\n\nput a b\n").unwrap_err();
        assert!(e.message.contains("after the failure"), "{e}");
    }

    #[test]
    fn the_reader_moves_through_the_sections() {
        let mut r = TxnReader::default();
        assert_eq!(r.section(), Section::Compares);
        assert!(r.feed("bogus").is_err(), "a bad line is refused");
        assert_eq!(r.feed("").unwrap(), Section::Success);
        assert_eq!(r.feed("put a 1").unwrap(), Section::Success);
        assert_eq!(r.feed("").unwrap(), Section::Failure);
        assert_eq!(r.feed("").unwrap(), Section::Done);
        let t = r.finish();
        assert!(t.compare.is_empty() && t.failure.is_empty());
        assert_eq!(t.success.len(), 1);
    }
}
