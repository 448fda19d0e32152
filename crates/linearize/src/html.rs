//! Writes a history and its verdict as one self-contained HTML page (inline
//! CSS and SVG, one line of script that scrolls to the failure, nothing
//! fetched): a timeline per partition with
//! one row per client, every operation a bar from its call to its return.
//!
//! Time is drawn by rank (the order of distinct call and return times), not
//! to scale, so that short operations stay visible next to long ones. In a
//! failing partition the counterexample's core is red, the blocked operation
//! outlined, the context writes orange and the longest linearizable prefix
//! green with its order. Pages stay a reasonable size: partitions other
//! than the failing one are drawn only while the page has fewer than
//! [`OPS_DRAWN_MAX`] operations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::check::{describe, partitions};
use crate::history::{History, OpId, Operation};
use crate::model::Model;
use crate::verdict::{Counterexample, Verdict};

/// The most operations drawn in one page (the failing partition is always
/// drawn whole).
pub const OPS_DRAWN_MAX: usize = 5_000;

const STEP_PX: usize = 16;
const ROW_PX: usize = 26;
const LABEL_PX: usize = 110;
const MARGIN_PX: usize = 8;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How an operation is drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Plain,
    Prefix(usize),
    Context,
    Core,
}

impl Role {
    fn class(self) -> &'static str {
        match self {
            Role::Plain => "plain",
            Role::Prefix(_) => "prefix",
            Role::Context => "context",
            Role::Core => "core",
        }
    }
}

fn roles(c: Option<&Counterexample>) -> BTreeMap<OpId, Role> {
    let mut roles = BTreeMap::new();
    let Some(c) = c else { return roles };
    for (n, (id, _)) in c.prefix.iter().enumerate() {
        roles.insert(*id, Role::Prefix(n + 1));
    }
    for id in &c.context {
        roles.insert(*id, Role::Context);
    }
    for id in &c.core {
        roles.insert(*id, Role::Core);
    }
    roles
}

/// Assigns each op a row: clients in id order, with extra lanes when one
/// client has overlapping operations.
fn rows<M: Model>(
    history: &History<M::Input, M::Output>,
    ids: &[usize],
    end: u64,
) -> (Vec<usize>, Vec<String>) {
    let mut by_client: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for &id in ids {
        by_client
            .entry(history.ops()[id].client)
            .or_default()
            .push(id);
    }
    let mut row_of = vec![0; history.len()];
    let mut labels = Vec::new();
    for (client, mut ops) in by_client {
        ops.sort_by_key(|&id| (history.ops()[id].call, id));
        // The end time of each lane of this client.
        let mut lanes: Vec<u64> = Vec::new();
        let first = labels.len();
        for id in ops {
            let op = &history.ops()[id];
            let lane = lanes
                .iter()
                .position(|&busy| busy < op.call)
                .unwrap_or_else(|| {
                    lanes.push(0);
                    lanes.len() - 1
                });
            lanes[lane] = op.ret.unwrap_or(end);
            row_of[id] = first + lane;
        }
        for lane in 0..lanes.len() {
            let suffix = if lane == 0 {
                String::new()
            } else {
                format!(" ({})", lane + 1)
            };
            labels.push(format!("client {client}{suffix}"));
        }
    }
    (row_of, labels)
}

/// Draws one operation's bar from `x0` to `x1` at height `y`.
fn bar<M: Model>(
    out: &mut String,
    model: &M,
    (id, op): (usize, &Operation<M::Input, M::Output>),
    role: Role,
    blocked: bool,
    (x0, x1, y): (usize, usize, usize),
) {
    let mut class = role.class().to_string();
    if op.is_pending() {
        class.push_str(" pending");
    }
    if blocked {
        class.push_str(" blocked");
    }
    let out_text = op
        .output
        .as_ref()
        .map_or_else(|| "?".to_string(), |o| model.describe_output(o));
    let mut text = format!("{} → {out_text}", model.describe_input(&op.input));
    if let Role::Prefix(n) = role {
        text = format!("{n}. {text}");
    }
    let (w, h) = (x1 - x0, ROW_PX - 6);
    let _ = writeln!(
        out,
        "<g class=\"op {class}\"><title>{}</title><rect x=\"{x0}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"3\"/><svg x=\"{x0}\" y=\"{y}\" width=\"{w}\" height=\"{h}\"><text x=\"3\" y=\"14\">{}</text></svg></g>",
        escape(&describe(model, id, op)),
        escape(&text)
    );
}

fn timeline<M: Model>(
    out: &mut String,
    model: &M,
    history: &History<M::Input, M::Output>,
    ids: &[usize],
    roles: &BTreeMap<OpId, Role>,
    blocked: Option<OpId>,
) {
    let ops = history.ops();
    let times: BTreeSet<u64> = ids
        .iter()
        .flat_map(|&id| [Some(ops[id].call), ops[id].ret])
        .flatten()
        .collect();
    let rank: BTreeMap<u64, usize> = times.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    let end_rank = times.len() + 1;
    let end_time = times.iter().next_back().map_or(0, |t| t + 1);
    let (row_of, labels) = rows::<M>(history, ids, end_time);
    let width = MARGIN_PX + (end_rank + 1) * STEP_PX;
    let height = labels.len() * ROW_PX + 10;
    // Client labels in their own column, so they stay put while the time
    // line scrolls.
    let _ = write!(
        out,
        "<div class=\"tl\"><svg width=\"{LABEL_PX}\" height=\"{height}\">"
    );
    for (row, label) in labels.iter().enumerate() {
        let y = row * ROW_PX;
        let _ = write!(
            out,
            "<rect class=\"lane\" x=\"0\" y=\"{y}\" width=\"{LABEL_PX}\" height=\"{ROW_PX}\"/><text class=\"label\" x=\"4\" y=\"{}\">{}</text>",
            y + 17,
            escape(label)
        );
    }
    let _ = writeln!(
        out,
        "</svg><div class=\"scroll\"><svg width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for row in 0..labels.len() {
        let y = row * ROW_PX;
        let _ = write!(
            out,
            "<rect class=\"lane\" x=\"0\" y=\"{y}\" width=\"{width}\" height=\"{ROW_PX}\"/>"
        );
    }
    for &id in ids {
        let op = &ops[id];
        let x0 = MARGIN_PX + rank[&op.call] * STEP_PX;
        let x1 = MARGIN_PX + op.ret.map_or(end_rank, |r| rank[&r]) * STEP_PX + STEP_PX / 2;
        let y = row_of[id] * ROW_PX + 3;
        let role = roles.get(&OpId(id)).copied().unwrap_or(Role::Plain);
        bar(
            out,
            model,
            (id, op),
            role,
            blocked == Some(OpId(id)),
            (x0, x1, y),
        );
    }
    let _ = writeln!(out, "</svg></div></div>");
}

const STYLE: &str = "body{font-family:sans-serif;margin:16px;color:#222}\
pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:360px}\
.tl{display:flex;border:1px solid #ccc;margin-bottom:18px}.scroll{overflow-x:auto;flex:1}\
.lane{fill:#fff;stroke:#eee}.label{font-size:12px;fill:#444}\
.op rect{fill:#c9d7ea;stroke:#6b87ad}.op text{font-size:11px;fill:#111}\
.op.prefix rect{fill:#bfe3c0;stroke:#3c8d40}.op.context rect{fill:#ffd59a;stroke:#d08a1c}\
.op.core rect{fill:#f4a6a6;stroke:#c01818;stroke-width:2}.op.blocked rect{stroke:#000;stroke-width:3}\
.op.pending rect{stroke-dasharray:4 3;fill-opacity:.55}\
.legend span{display:inline-block;padding:2px 8px;margin-right:8px;border:1px solid #888;font-size:12px}";

/// Renders the page for `history` checked against `model` with `verdict`.
pub fn render<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    verdict: &Verdict,
    title: &str,
) -> String {
    let failing = verdict.counterexample();
    let roles = roles(failing);
    let mut parts = partitions(model, history.ops());
    // The failing partition first, then the others in history order.
    if let Some(c) = failing {
        parts.sort_by_key(|p| p.name != c.partition);
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{0}</title><style>{STYLE}</style></head><body><h1>{0}</h1>",
        escape(title)
    );
    let _ = write!(out, "<pre>{}</pre>", escape(&verdict.to_string()));
    let _ = write!(
        out,
        "<p class=\"legend\"><span style=\"background:#f4a6a6\">cannot be ordered</span><span style=\"background:#ffd59a\">other writes (context)</span><span style=\"background:#bfe3c0\">longest linearizable prefix (n. = its order)</span><span style=\"border:3px solid #000\">could not go next</span><span style=\"border-style:dashed\">unknown outcome</span><span style=\"background:#c9d7ea\">other</span></p>"
    );
    let mut drawn = 0;
    let mut skipped = 0;
    for part in &parts {
        let is_failing = failing.is_some_and(|c| c.partition == part.name);
        if !is_failing && drawn + part.ops.len() > OPS_DRAWN_MAX {
            skipped += 1;
            continue;
        }
        drawn += part.ops.len();
        let name = part
            .name
            .as_deref()
            .map_or_else(|| "history".to_string(), |k| format!("key {k:?}"));
        let what = if is_failing {
            " — not linearizable"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<h2>{}{what} ({} operations)</h2>",
            escape(&name),
            part.ops.len()
        );
        let ids: Vec<usize> = part.ops.iter().map(|p| p.id).collect();
        timeline(
            &mut out,
            model,
            history,
            &ids,
            &roles,
            failing.and_then(|c| c.blocked),
        );
    }
    if skipped > 0 {
        let _ = write!(
            out,
            "<p>{skipped} more partitions not drawn (over {OPS_DRAWN_MAX} operations in the page).</p>"
        );
    }
    // Scroll each timeline so the operation that could not go next is in view.
    out.push_str(
        "<script>document.querySelectorAll('.blocked').forEach(function(e){\
         var s=e.closest('.scroll');if(s){s.scrollLeft=e.getBBox().x-s.clientWidth/2;}});</script>",
    );
    out.push_str("</body></html>\n");
    out
}
