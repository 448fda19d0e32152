//! How client commands print what they got: `--output simple|json|table`
//! (`-w`, as etcdctl's `--write-out`).
//!
//! - `simple`: etcdctl's simple format (`OK`, key and value lines, a count);
//! - `json`: etcdctl's `-w json` shape: the response with its `header`
//!   (`cluster_id`, `member_id`, `revision`, `raft_term`), keys and values
//!   in base64, zero and empty fields left out ([`omit_empty`]), one JSON
//!   object per response;
//! - `table`: aligned columns in etcdctl's box style.
//!
//! Invariant: keys and values are printed as bytes in `simple` (they need
//! not be UTF-8), as base64 in `json`, and lossily as UTF-8 in `table`.

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::mvccpb::KeyValue;
use serde_json::{Value, json};

/// Drops, at every depth, the fields that are zero, false, empty or null,
/// as etcdctl's JSON does (Go's `omitempty`).
pub fn omit_empty(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, omit_empty(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(omit_empty).collect()),
        v => v,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    }
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// etcdctl's simple format.
    #[default]
    Simple,
    /// One JSON object per response, in etcdctl's shape.
    Json,
    /// Aligned columns.
    Table,
}

/// The `--output` flag of a client command.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct OutputArgs {
    /// Output format: simple, json or table.
    #[arg(long, short = 'w', value_enum, default_value_t = Format::Simple, global = true)]
    pub output: Format,
}

/// etcd's response header as JSON.
pub fn header_json(h: Option<&pb::ResponseHeader>) -> Value {
    let h = h.cloned().unwrap_or_default();
    json!({
        "cluster_id": h.cluster_id,
        "member_id": h.member_id,
        "revision": h.revision,
        "raft_term": h.raft_term,
    })
}

/// A pair as etcdctl prints it in JSON (key and value in base64).
pub fn kv_json(kv: &KeyValue) -> Value {
    json!({
        "key": STANDARD.encode(&kv.key),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "value": STANDARD.encode(&kv.value),
    })
}

fn kvs_json(kvs: &[KeyValue]) -> Value {
    Value::Array(kvs.iter().map(kv_json).collect())
}

/// A range answer as JSON.
pub fn range_json(r: &pb::RangeResponse) -> Value {
    json!({
        "header": header_json(r.header.as_ref()),
        "kvs": kvs_json(&r.kvs),
        "more": r.more,
        "count": r.count,
    })
}

/// A put answer as JSON.
pub fn put_json(r: &pb::PutResponse) -> Value {
    let mut v = json!({ "header": header_json(r.header.as_ref()) });
    if let Some(prev) = &r.prev_kv {
        v["prev_kv"] = kv_json(prev);
    }
    v
}

/// A delete answer as JSON.
pub fn delete_json(r: &pb::DeleteRangeResponse) -> Value {
    json!({
        "header": header_json(r.header.as_ref()),
        "deleted": r.deleted,
        "prev_kvs": kvs_json(&r.prev_kvs),
    })
}

/// A transaction answer as JSON: each response under its kind's name.
pub fn txn_json(r: &pb::TxnResponse) -> Value {
    use pb::response_op::Response as R;
    let responses: Vec<Value> = r
        .responses
        .iter()
        .map(|op| match &op.response {
            Some(R::ResponseRange(g)) => json!({ "response_range": range_json(g) }),
            Some(R::ResponsePut(p)) => json!({ "response_put": put_json(p) }),
            Some(R::ResponseDeleteRange(d)) => json!({ "response_delete_range": delete_json(d) }),
            Some(R::ResponseTxn(t)) => json!({ "response_txn": txn_json(t) }),
            None => Value::Null,
        })
        .collect();
    json!({
        "header": header_json(r.header.as_ref()),
        "succeeded": r.succeeded,
        "responses": responses,
    })
}

/// A table: a header row and rows of cells, printed in etcdctl's box
/// style with every column as wide as its widest cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells print empty, extra cells are dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let cell = |row: &[String], i: usize| row.get(i).cloned().unwrap_or_default();
        let widths: Vec<usize> = (0..n)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| cell(r, i).chars().count())
                    .chain([self.header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let rule: String = widths.iter().fold(String::from("+"), |mut s, w| {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
            s
        });
        let line = |row: &[String]| {
            let mut s = String::from("|");
            for (i, w) in widths.iter().enumerate() {
                s.push_str(&format!(" {:<w$} |", cell(row, i)));
            }
            s
        };
        let mut out = vec![rule.clone(), line(&self.header), rule.clone()];
        out.extend(self.rows.iter().map(|r| line(r)));
        out.push(rule);
        out.join("\n") + "\n"
    }
}

/// Lossy text of bytes, for tables.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Pairs as a table: key, value, revisions, version.
pub fn kvs_table(kvs: &[KeyValue]) -> Table {
    let mut t = Table::new(&["KEY", "VALUE", "CREATE REV", "MOD REV", "VERSION"]);
    for kv in kvs {
        t.row(vec![
            text(&kv.key),
            text(&kv.value),
            kv.create_revision.to_string(),
            kv.mod_revision.to_string(),
            kv.version.to_string(),
        ]);
    }
    t
}

/// Pairs in the simple format: key and value, each on its own line.
pub fn write_pairs(out: &mut impl Write, kvs: &[KeyValue]) -> std::io::Result<()> {
    for kv in kvs {
        out.write_all(&kv.key)?;
        out.write_all(b"\n")?;
        out.write_all(&kv.value)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn tables_align_every_column_to_its_widest_cell() {
        let mut t = Table::new(&["ID", "NAME"]);
        t.row(vec!["1".into(), "node-one".into()]);
        t.row(vec!["22".into()]);
        assert_eq!(
            t.render(),
            "+----+----------+\n\
             | ID | NAME     |\n\
             +----+----------+\n\
             | 1  | node-one |\n\
             | 22 |          |\n\
             +----+----------+\n"
        );
    }

    #[test]
    fn json_is_etcdctl_s_shape_with_base64_bytes() {
        let r = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4,
            }),
            kvs: vec![KeyValue {
                key: Bytes::from_static(b"foo"),
                value: Bytes::from_static(b"bar"),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let v = range_json(&r);
        assert_eq!(v["header"]["raft_term"], 4);
        assert_eq!(v["kvs"][0]["key"], "Zm9v");
        assert_eq!(v["kvs"][0]["value"], "YmFy");
        assert_eq!(v["count"], 1);
        let v = omit_empty(v);
        assert_eq!(v.get("more"), None, "false is left out, as etcdctl does");
        let empty = omit_empty(delete_json(&pb::DeleteRangeResponse::default()));
        assert_eq!(empty.to_string(), "{\"header\":{}}");
    }
}
