//! The cluster an interaction script drives: Raft nodes in memory, a
//! message queue per receiver, links that can be cut, and one method per
//! script command, each returning the text the script expects. Nothing is
//! random and nothing reads a clock: every node's timer jitter comes from
//! its seed (its id unless the script says otherwise), so a script's
//! output is the same on every run.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;
use flotilla_raft::{
    ConfChange, ConfChangeOp, Config, Decode, Entry, EntryKind, InitialState, LogIndex, MemStorage,
    Message, NodeId, RawNode, ReadMode, Ready, Role, persist,
};

use crate::script::Command;

/// One node and what it has persisted.
struct Node {
    raw: RawNode,
    storage: MemStorage,
    cfg: Config,
}

/// The nodes, the messages in flight and the cut links.
#[derive(Default)]
pub struct Cluster {
    nodes: BTreeMap<u64, Node>,
    /// Messages waiting for their receiver, in the order sent.
    queues: BTreeMap<u64, VecDeque<Message>>,
    /// Cut links, each as (lower id, higher id); both directions drop.
    cut: BTreeSet<(u64, u64)>,
}

/// How many rounds `stabilize` runs before it declares the cluster
/// livelocked (a real run settles in a handful).
const MAX_ROUNDS: usize = 100;

impl Cluster {
    /// Runs one command; returns its output (`ok` when it prints nothing).
    pub fn run(&mut self, line: &str) -> String {
        let cmd = Command::parse(line);
        let mut out = String::new();
        if let Err(e) = self.dispatch(&cmd, &mut out) {
            let _ = writeln!(out, "error: {e}");
        }
        let out = out.trim_end().to_string();
        // A blank line would end the block in the script.
        assert!(!out.contains("\n\n"), "output of `{line}` has a blank line");
        if out.is_empty() {
            "ok".to_string()
        } else {
            out
        }
    }

    fn dispatch(&mut self, cmd: &Command, out: &mut String) -> Result<(), String> {
        match cmd.name.as_str() {
            "add-nodes" => self.add_nodes(cmd),
            "campaign" => self.with_node(cmd, |n| n.raw.campaign()),
            "tick-heartbeat" => self.tick_heartbeat(cmd),
            "tick-election" => self.tick_election(cmd, out),
            "tick" => self.tick(cmd),
            "process-ready" => {
                let quiet = cmd.flag("quiet", false)?;
                for id in cmd.all_ids()? {
                    let mut text = String::new();
                    self.process_ready(id, &mut text)?;
                    if quiet {
                        quieten(&text, out);
                    } else {
                        out.push_str(&text);
                    }
                }
                Ok(())
            }
            "deliver-msgs" => self.deliver_msgs(cmd, out),
            "stabilize" => self.stabilize(cmd, out),
            "propose" => self.propose(cmd, out),
            "propose-conf-change" => self.propose_conf_change(cmd, out),
            "isolate" => self.isolate(cmd),
            "cut" => {
                let (a, b) = (cmd.id(0)?, cmd.id(1)?);
                self.cut.insert(link(a, b));
                Ok(())
            }
            "heal" => {
                self.cut.clear();
                Ok(())
            }
            "status" => self.status(cmd, out),
            "raft-state" => {
                self.raft_state(out);
                Ok(())
            }
            "raft-log" => self.raft_log(cmd, out),
            "read-index" => {
                let ctx = cmd.id(1)?;
                self.node(cmd.id(0)?)?.raw.read_index(ctx);
                Ok(())
            }
            "transfer-leader" => {
                let to = NodeId(cmd.id(1)?);
                if let Err(e) = self.node(cmd.id(0)?)?.raw.transfer_leader(to) {
                    let _ = writeln!(out, "refused: {e}");
                }
                Ok(())
            }
            "compact" => self.compact(cmd, out),
            "recently-active" => {
                let active = self.node(cmd.id(0)?)?.raw.recently_active();
                let _ = writeln!(out, "{active:?}");
                Ok(())
            }
            "restart" => self.restart(cmd),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn node(&mut self, id: u64) -> Result<&mut Node, String> {
        self.nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))
    }

    fn with_node(&mut self, cmd: &Command, f: impl Fn(&mut Node)) -> Result<(), String> {
        for id in cmd.all_ids()? {
            f(self.node(id)?);
        }
        Ok(())
    }

    /// `add-nodes N [voters=(..)] [learners=(..)] [pre-vote=] [check-quorum=]
    /// [election=10] [heartbeat=1] [seed=id]`: N new nodes with the next
    /// ids, all booting from the same membership. A node that joins later
    /// boots from the group's first membership too (the one its log's
    /// conf changes start from), as a real member's bootstrap config does.
    fn add_nodes(&mut self, cmd: &Command) -> Result<(), String> {
        let n = cmd.id(0)?;
        let first = self.nodes.keys().last().map_or(1, |id| id + 1);
        let new: Vec<u64> = (first..first + n).collect();
        let voters = cmd.ids("voters")?.unwrap_or_else(|| new.clone());
        let learners = cmd.ids("learners")?.unwrap_or_default();
        for id in new {
            let mut cfg = Config::new(NodeId(id), voters.iter().copied().map(NodeId).collect());
            cfg.learners = learners.iter().copied().map(NodeId).collect();
            cfg.pre_vote = cmd.flag("pre-vote", false)?;
            cfg.check_quorum = cmd.flag("check-quorum", false)?;
            cfg.election_ticks = cmd.number("election", 10)? as u32;
            cfg.heartbeat_ticks = cmd.number("heartbeat", 1)? as u32;
            cfg.seed = cmd.number("seed", id)?;
            cfg.snapshot_chunk_bytes = cmd.number("chunk", cfg.snapshot_chunk_bytes)?;
            cfg.max_inflight_msgs = cmd.number("max-inflight", 256)? as usize;
            cfg.max_msg_bytes = cmd.number("max-msg-bytes", cfg.max_msg_bytes)?;
            cfg.max_inflight_bytes = cmd.number("max-inflight-bytes", cfg.max_inflight_bytes)?;
            cfg.read_mode = match cmd.option("read-mode") {
                None | Some("safe") => ReadMode::Safe,
                Some("lease") => ReadMode::Lease,
                Some(v) => return Err(format!("read-mode={v}: want safe or lease")),
            };
            cfg.lease_drift_ticks = cmd.number("drift", 1)? as u32;
            let raw = RawNode::new(cfg.clone(), InitialState::default())
                .map_err(|e| format!("node {id}: {e}"))?;
            let storage = MemStorage::new();
            self.nodes.insert(id, Node { raw, storage, cfg });
        }
        Ok(())
    }

    fn tick(&mut self, cmd: &Command) -> Result<(), String> {
        let times = cmd
            .args
            .get(1)
            .ok_or("`tick` needs a node id and a count")?
            .parse::<u32>()
            .map_err(|e| e.to_string())?;
        let node = self.node(cmd.id(0)?)?;
        for _ in 0..times {
            node.raw.tick();
        }
        Ok(())
    }

    /// Ticks each node one heartbeat interval.
    fn tick_heartbeat(&mut self, cmd: &Command) -> Result<(), String> {
        self.with_node(cmd, |n| {
            for _ in 0..n.cfg.heartbeat_ticks {
                n.raw.tick();
            }
        })
    }

    /// A leader: ticks one election timeout (its check-quorum round). Any
    /// other node: ticks until its role or term changes (its randomized
    /// timeout fired), at most twice the base timeout less one, within
    /// which the timeout fires exactly once. Prints the ticks it took.
    fn tick_election(&mut self, cmd: &Command, out: &mut String) -> Result<(), String> {
        for id in cmd.all_ids()? {
            let node = self.node(id)?;
            let before = node.raw.status();
            let base = node.cfg.election_ticks;
            let max = if before.role == Role::Leader {
                base
            } else {
                2 * base - 1
            };
            let mut ticks = 0;
            while ticks < max {
                node.raw.tick();
                ticks += 1;
                let now = node.raw.status();
                if (now.role, now.term) != (before.role, before.term) {
                    break;
                }
            }
            let now = node.raw.status();
            let _ = writeln!(
                out,
                "{id}: {ticks} ticks: {} term={} -> {} term={}",
                before.role, before.term, now.role, now.term
            );
        }
        Ok(())
    }

    /// Drains one Ready of `id` if it has one: prints it, persists its
    /// writes, applies nothing (the core applies conf changes itself),
    /// advances, and queues its messages. Returns whether there was one.
    fn process_ready(&mut self, id: u64, out: &mut String) -> Result<bool, String> {
        let node = self.node(id)?;
        if !node.raw.has_ready() {
            return Ok(false);
        }
        let rd = node.raw.ready();
        persist(&mut node.storage, rd.writes()).map_err(|e| e.to_string())?;
        node.raw.advance(&rd);
        node.raw.check_invariants();
        let _ = writeln!(out, "> {id} handling Ready");
        let cut = &self.cut;
        let is_cut = |m: &Message| cut.contains(&link(m.from.get(), m.to.get()));
        print_ready(&rd, &is_cut, out);
        // A message over a cut link is lost as it leaves.
        for m in rd.messages.into_iter().chain(rd.persisted_messages) {
            if !is_cut(&m) {
                self.queues.entry(m.to.get()).or_default().push_back(m);
            }
        }
        Ok(true)
    }

    /// `deliver-msgs ID.. [from=N] [count=N] [drop=true]`: steps each
    /// node's queued messages into it (only those from N, only the first
    /// `count`, if given), or drops them.
    fn deliver_msgs(&mut self, cmd: &Command, out: &mut String) -> Result<(), String> {
        let from = cmd.option("from").map(str::parse::<u64>).transpose();
        let from = from.map_err(|e| e.to_string())?;
        let drop = cmd.flag("drop", false)?;
        let count = cmd.number("count", u64::MAX)?;
        for id in cmd.all_ids()? {
            // Held back beyond `count`, in order, for a later delivery.
            let queue = self.queues.entry(id).or_default();
            let keep = count.min(queue.len() as u64) as usize;
            let later = queue.split_off(keep);
            self.deliver(id, from, drop, out)?;
            self.queues.entry(id).or_default().extend(later);
        }
        Ok(())
    }

    fn deliver(
        &mut self,
        id: u64,
        from: Option<u64>,
        drop: bool,
        out: &mut String,
    ) -> Result<bool, String> {
        let queue = self.queues.entry(id).or_default();
        let (take, keep): (VecDeque<Message>, VecDeque<Message>) = std::mem::take(queue)
            .into_iter()
            .partition(|m| from.is_none_or(|f| m.from.get() == f));
        *queue = keep;
        if take.is_empty() {
            return Ok(false);
        }
        let _ = writeln!(out, "> {id} receiving messages");
        for m in take {
            // Queued before the link was cut, or dropped on purpose.
            if drop || self.cut.contains(&link(m.from.get(), id)) {
                let _ = writeln!(out, "  {m} (dropped)");
                continue;
            }
            let _ = writeln!(out, "  {m}");
            let node = self.node(id)?;
            if let Err(e) = node.raw.step(m) {
                let _ = writeln!(out, "    refused: {e}");
            }
            node.raw.check_invariants();
        }
        Ok(true)
    }

    /// `stabilize [ID..]`: handles Readys and delivers messages (among the
    /// given nodes, or all) until none is left.
    fn stabilize(&mut self, cmd: &Command, out: &mut String) -> Result<(), String> {
        let mut ids = cmd.all_ids()?;
        if ids.is_empty() {
            ids = self.nodes.keys().copied().collect();
        }
        for _ in 0..MAX_ROUNDS {
            let mut busy = false;
            for &id in &ids {
                busy |= self.process_ready(id, out)?;
            }
            for &id in &ids {
                busy |= self.deliver(id, None, false, out)?;
            }
            if !busy {
                return Ok(());
            }
        }
        Err(format!("not stable after {MAX_ROUNDS} rounds"))
    }

    fn propose(&mut self, cmd: &Command, out: &mut String) -> Result<(), String> {
        let data = cmd.args.get(1).ok_or("`propose` needs an id and data")?;
        let data = Bytes::from(data.clone());
        match self.node(cmd.id(0)?)?.raw.propose(data) {
            Ok(index) => writeln!(out, "index {index}"),
            Err(e) => writeln!(out, "refused: {e}"),
        }
        .map_err(|e| e.to_string())
    }

    /// `propose-conf-change ID [vN|lN|rN]..`: voter, learner, removal;
    /// no operation at all proposes leaving a joint configuration.
    fn propose_conf_change(&mut self, cmd: &Command, out: &mut String) -> Result<(), String> {
        let mut ops = Vec::new();
        for arg in &cmd.args[1..] {
            let (kind, id) = arg.split_at(1);
            let id = NodeId(id.parse().map_err(|e| format!("{arg}: {e}"))?);
            ops.push(match kind {
                "v" => ConfChangeOp::AddVoter(id),
                "l" => ConfChangeOp::AddLearner(id),
                "r" => ConfChangeOp::Remove(id),
                _ => return Err(format!("{arg}: want v<id>, l<id> or r<id>")),
            });
        }
        let cc = ConfChange::new(ops);
        match self.node(cmd.id(0)?)?.raw.propose_conf_change(&cc) {
            Ok(index) => writeln!(out, "index {index}"),
            Err(e) => writeln!(out, "refused: {e}"),
        }
        .map_err(|e| e.to_string())
    }

    /// `compact ID INDEX [DATA]`: the application snapshots its state at
    /// INDEX (its bytes are DATA) and the node drops the log it covers.
    fn compact(&mut self, cmd: &Command, out: &mut String) -> Result<(), String> {
        let index = LogIndex(cmd.id(1)?);
        let data = Bytes::from(cmd.args.get(2).cloned().unwrap_or_default());
        if let Err(e) = self.node(cmd.id(0)?)?.raw.compact(index, data) {
            let _ = writeln!(out, "refused: {e}");
        }
        Ok(())
    }

    /// `restart ID`: the node crashes and starts again from what it
    /// persisted (with a new seed, as every start gets). Messages in flight
    /// to it stay queued, as in a network.
    fn restart(&mut self, cmd: &Command) -> Result<(), String> {
        let id = cmd.id(0)?;
        let node = self.node(id)?;
        node.cfg.seed = node.cfg.seed.wrapping_add(1000);
        let init = node.storage.state().clone();
        node.raw = RawNode::new(node.cfg.clone(), init).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Cuts every link of the given nodes.
    fn isolate(&mut self, cmd: &Command) -> Result<(), String> {
        let all: Vec<u64> = self.nodes.keys().copied().collect();
        for id in cmd.all_ids()? {
            for &other in all.iter().filter(|&&o| o != id) {
                self.cut.insert(link(id, other));
            }
        }
        Ok(())
    }

    fn status(&mut self, cmd: &Command, out: &mut String) -> Result<(), String> {
        for id in cmd.all_ids()? {
            let s = self.node(id)?.raw.status();
            let vote = s.vote.map_or("-".to_string(), |v| v.to_string());
            let leader = s.leader.map_or("-".to_string(), |v| v.to_string());
            let cs = &s.conf_state;
            let _ = write!(
                out,
                "{id}: {} term={} vote={vote} leader={leader} commit={} applied={} \
                 last={} voters={:?}",
                s.role, s.term, s.commit, s.applied, s.last_index, cs.voters
            );
            if cs.is_joint() {
                let _ = write!(out, " outgoing={:?}", cs.outgoing);
            }
            let _ = writeln!(out, " learners={:?}", cs.learners);
        }
        Ok(())
    }

    /// One line per node: role, term, leader, commit.
    fn raft_state(&self, out: &mut String) {
        for (id, node) in &self.nodes {
            let s = node.raw.status();
            let leader = s.leader.map_or("-".to_string(), |v| v.to_string());
            let _ = writeln!(
                out,
                "{id}: {} term={} leader={leader} commit={}",
                s.role, s.term, s.commit
            );
        }
    }

    /// The node's log, one entry a line, and its commit index.
    fn raft_log(&mut self, cmd: &Command, out: &mut String) -> Result<(), String> {
        let node = self.node(cmd.id(0)?)?;
        let s = node.raw.status();
        for i in s.first_index.get()..=s.last_index.get() {
            if let Some(e) = node.raw.entry(i.into()) {
                let _ = writeln!(out, "{}", describe(e));
            }
        }
        let _ = writeln!(out, "commit={} last={}", s.commit, s.last_index);
        Ok(())
    }
}

/// A Ready's text with its messages counted instead of listed: long runs
/// of heartbeats to cut-off nodes would drown the script.
fn quieten(text: &str, out: &mut String) {
    let mut sent = 0;
    for line in text.lines() {
        if line.contains("->") {
            sent += 1;
        } else if !line.trim_start().starts_with("Messages") {
            let _ = writeln!(out, "{line}");
        }
    }
    if sent > 0 {
        let _ = writeln!(out, "  ({sent} messages)");
    }
}

/// The link between two nodes, as the cut set keys it.
fn link(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

/// Prints the parts of a Ready that are there; messages over a cut link
/// are marked as dropped.
fn print_ready(rd: &Ready, is_cut: &dyn Fn(&Message) -> bool, out: &mut String) {
    if let Some(soft) = rd.soft_state {
        let leader = soft.leader.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(out, "  State:{} Lead:{leader}", soft.role);
    }
    if let Some(hs) = rd.hard_state {
        let vote = hs.vote.map_or("-".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "  HardState term={} vote={vote} commit={}",
            hs.term, hs.commit
        );
    }
    if let Some(snap) = &rd.snapshot {
        let _ = writeln!(out, "  Snapshot {snap:?} restore={}", rd.restore_snapshot);
    }
    print_entries("Entries", &rd.entries, out);
    print_entries("Committed", &rd.committed_entries, out);
    print_messages("Messages", &rd.messages, is_cut, out);
    print_messages(
        "Messages after persisting",
        &rd.persisted_messages,
        is_cut,
        out,
    );
    if !rd.read_states.is_empty() {
        let _ = writeln!(out, "  ReadStates: {:?}", rd.read_states);
    }
    if !rd.dropped_reads.is_empty() {
        let _ = writeln!(out, "  DroppedReads: {:?}", rd.dropped_reads);
    }
}

fn print_entries(title: &str, entries: &[Entry], out: &mut String) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}:");
    for e in entries {
        let _ = writeln!(out, "    {}", describe(e));
    }
}

fn print_messages(
    title: &str,
    msgs: &[Message],
    is_cut: &dyn Fn(&Message) -> bool,
    out: &mut String,
) {
    if msgs.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}:");
    for m in msgs {
        let note = if is_cut(m) {
            " (dropped: link cut)"
        } else {
            ""
        };
        let _ = writeln!(out, "    {m}{note}");
    }
}

/// An entry as `term/index kind payload`, conf changes decoded.
fn describe(e: &Entry) -> String {
    let what = match e.kind {
        EntryKind::Noop => "noop".to_string(),
        EntryKind::Command => format!("cmd {:?}", String::from_utf8_lossy(&e.data)),
        EntryKind::ConfChange => match ConfChange::from_bytes(&e.data) {
            Ok(cc) if cc.is_leave_joint() => "conf leave-joint".to_string(),
            Ok(cc) => {
                let ops: Vec<String> = cc.ops.iter().map(describe_op).collect();
                format!("conf {}", ops.join(" "))
            }
            Err(err) => format!("conf undecodable: {err}"),
        },
    };
    format!("{}/{} {what}", e.term, e.index)
}

fn describe_op(op: &ConfChangeOp) -> String {
    match op {
        ConfChangeOp::AddVoter(id) => format!("v{id}"),
        ConfChangeOp::AddLearner(id) => format!("l{id}"),
        ConfChangeOp::Remove(id) => format!("r{id}"),
    }
}
