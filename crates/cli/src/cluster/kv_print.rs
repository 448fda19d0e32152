//! Printing the answers of `flotilla kv` in each output format (see
//! [`super::output`]). The simple format is etcdctl's: `put` prints `OK`
//! (then the previous pair with `--prev-kv`), `get` the key and value
//! lines, `del` the count (then the removed pairs with `--prev-kv`), `txn`
//! `SUCCESS` or `FAILURE` then, for each request, a blank line and its
//! answer.

use std::io::Write;

use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::kv::v1::AppendResponse;
use serde_json::json;

use super::output::{
    Format, Table, delete_json, header_json, kvs_table, omit_empty, put_json, range_json, txn_json,
    write_pairs,
};

/// What a `flotilla kv` command got back.
pub enum Answer {
    /// `get`, `range`.
    Range(pb::RangeResponse),
    /// `put`.
    Put(pb::PutResponse),
    /// `del`.
    Delete(pb::DeleteRangeResponse),
    /// `txn`.
    Txn(pb::TxnResponse),
    /// `append`.
    Append(AppendResponse),
    /// `compact`, with the revision compacted at.
    Compact(pb::CompactionResponse, i64),
    /// `put --sequential`: the key it created, at the header's revision.
    Created(String, Option<pb::ResponseHeader>),
}

/// Prints `answer` in `format` to stdout (see [`crate::pipe`] for a
/// reader that left).
pub fn print(format: Format, answer: &Answer) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    crate::pipe::stdout_written(match format {
        Format::Simple => simple(&mut out, answer),
        Format::Json => writeln!(out, "{}", omit_empty(json_of(answer))),
        Format::Table => out.write_all(table_of(answer).render().as_bytes()),
    })
}

fn json_of(answer: &Answer) -> serde_json::Value {
    match answer {
        Answer::Range(r) => range_json(r),
        Answer::Put(p) => put_json(p),
        Answer::Delete(d) => delete_json(d),
        Answer::Txn(t) => txn_json(t),
        Answer::Append(a) => json!({ "header": header_json(a.header.as_ref()) }),
        Answer::Compact(c, _) => json!({ "header": header_json(c.header.as_ref()) }),
        Answer::Created(key, h) => json!({ "header": header_json(h.as_ref()), "key": key }),
    }
}

fn simple(out: &mut impl Write, answer: &Answer) -> std::io::Result<()> {
    match answer {
        Answer::Range(r) => write_pairs(out, &r.kvs),
        Answer::Put(p) => {
            writeln!(out, "OK")?;
            write_pairs(out, p.prev_kv.as_slice())
        }
        Answer::Delete(d) => {
            writeln!(out, "{}", d.deleted)?;
            write_pairs(out, &d.prev_kvs)
        }
        Answer::Append(_) => writeln!(out, "OK"),
        Answer::Compact(_, revision) => writeln!(out, "compacted revision {revision}"),
        Answer::Created(key, _) => writeln!(out, "{key}"),
        Answer::Txn(t) => {
            writeln!(out, "{}", if t.succeeded { "SUCCESS" } else { "FAILURE" })?;
            for r in &t.responses {
                writeln!(out)?;
                if let Some(a) = response_op(r) {
                    simple(out, &a)?;
                }
            }
            Ok(())
        }
    }
}

/// One answer of a transaction as an [`Answer`].
fn response_op(r: &pb::ResponseOp) -> Option<Answer> {
    use pb::response_op::Response as R;
    Some(match r.response.clone()? {
        R::ResponseRange(g) => Answer::Range(g),
        R::ResponsePut(p) => Answer::Put(p),
        R::ResponseDeleteRange(d) => Answer::Delete(d),
        R::ResponseTxn(t) => Answer::Txn(t),
    })
}

fn revision(h: Option<&pb::ResponseHeader>) -> String {
    h.map_or(0, |h| h.revision).to_string()
}

fn table_of(answer: &Answer) -> Table {
    match answer {
        Answer::Range(r) => kvs_table(&r.kvs),
        Answer::Put(p) => {
            let mut t = Table::new(&["RESULT", "REVISION", "PREV KEY", "PREV VALUE"]);
            let prev = p.prev_kv.as_ref();
            let text = |b: Option<&[u8]>| b.map(super::output::text).unwrap_or_default();
            t.row(vec![
                "OK".into(),
                revision(p.header.as_ref()),
                text(prev.map(|kv| &kv.key[..])),
                text(prev.map(|kv| &kv.value[..])),
            ]);
            t
        }
        Answer::Delete(d) => {
            let mut t = Table::new(&["DELETED", "REVISION"]);
            t.row(vec![d.deleted.to_string(), revision(d.header.as_ref())]);
            t
        }
        Answer::Append(a) => {
            let mut t = Table::new(&["RESULT", "REVISION"]);
            t.row(vec!["OK".into(), revision(a.header.as_ref())]);
            t
        }
        Answer::Compact(_, at) => {
            let mut t = Table::new(&["COMPACTED AT"]);
            t.row(vec![at.to_string()]);
            t
        }
        Answer::Created(key, h) => {
            let mut t = Table::new(&["KEY", "REVISION"]);
            t.row(vec![key.clone(), revision(h.as_ref())]);
            t
        }
        Answer::Txn(txn) => txn_table(txn),
    }
}

/// One row per request of the branch that ran: its kind and its answer.
fn txn_table(txn: &pb::TxnResponse) -> Table {
    let mut t = Table::new(&["BRANCH", "REQUEST", "RESULT"]);
    let branch = if txn.succeeded { "SUCCESS" } else { "FAILURE" };
    if txn.responses.is_empty() {
        t.row(vec![branch.into()]);
    }
    for r in &txn.responses {
        let (kind, result) = match response_op(r) {
            Some(Answer::Range(g)) => {
                let pairs: Vec<String> = g
                    .kvs
                    .iter()
                    .map(|kv| {
                        format!(
                            "{}={}",
                            super::output::text(&kv.key),
                            super::output::text(&kv.value)
                        )
                    })
                    .collect();
                ("get", pairs.join(" "))
            }
            Some(Answer::Put(_)) => ("put", "OK".to_string()),
            Some(Answer::Delete(d)) => ("del", d.deleted.to_string()),
            Some(
                Answer::Txn(_) | Answer::Append(_) | Answer::Compact(..) | Answer::Created(..),
            )
            | None => ("?", String::new()),
        };
        t.row(vec![branch.into(), kind.into(), result]);
    }
    t
}
