//! Messages between Raft nodes. Every message carries its sender's term;
//! the body says what it is. `Display` gives the one-line form used in
//! simulator traces: `1->2 App t3 prev=2/7 [3/8 3/9] commit=7`.
//!
//! Request messages (those a course RPC would carry as its arguments) are
//! told apart from responses by [`MessageBody::is_request`]; the simulator
//! counts requests as "RPCs", as labrpc does.

use std::fmt;

use bytes::Bytes;

use crate::types::{Entry, LogIndex, NodeId, SnapshotMeta, Term};

/// One message from `from` to `to`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term (for a pre-vote request: the term it would campaign in).
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MessageBody {
    /// AppendEntries (§5.3): entries after `prev`, and the leader's commit.
    Append(Append),
    /// The answer to [`MessageBody::Append`].
    AppendResp(AppendResp),
    /// A leader's heartbeat (an empty AppendEntries that carries no log
    /// position, so followers never reject it). `read_seq` numbers the
    /// leadership confirmation round for ReadIndex reads.
    Heartbeat {
        /// The leader's commit index, capped at what the follower matches.
        commit: LogIndex,
        /// The ReadIndex round this heartbeat belongs to (0: none).
        read_seq: u64,
    },
    /// The answer to a heartbeat, echoing its round.
    HeartbeatResp {
        /// The ReadIndex round being acknowledged.
        read_seq: u64,
    },
    /// RequestVote (§5.2), or a pre-vote (§9.6 of the thesis) when `pre`.
    Vote(VoteRequest),
    /// The answer to a vote or pre-vote request.
    VoteResp {
        /// Whether it answers a pre-vote.
        pre: bool,
        /// Whether the vote was granted.
        granted: bool,
    },
    /// One chunk of an InstallSnapshot transfer (§7).
    Snapshot(SnapshotChunk),
    /// Acknowledges snapshot chunks: the follower wants `next_offset` next.
    SnapshotResp {
        /// The index of the snapshot being transferred.
        index: LogIndex,
        /// The offset the follower expects next (0 to restart the transfer).
        next_offset: u64,
    },
    /// Leadership transfer: the receiver should campaign at once (§3.10).
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of `ctx`.
    ReadIndex {
        /// The follower's request id, echoed in the answer.
        ctx: u64,
    },
    /// The leader's answer: the index to wait for, or `None` if it could not
    /// confirm its leadership (the follower should retry).
    ReadIndexResp {
        /// The follower's request id.
        ctx: u64,
        /// The commit index at the time of the request, once confirmed.
        index: Option<LogIndex>,
    },
    /// A follower hands its clients' commands to the leader (etcd's
    /// `MsgProp`), under its own id for the batch.
    Propose {
        /// The follower's id for the batch, echoed in the answer.
        ctx: u64,
        /// The commands, in order.
        commands: Vec<Bytes>,
    },
    /// The leader's answer: the index it appended the first command at,
    /// in the message's term, or `None` if it did not (retry).
    ProposeResp {
        /// The follower's id for the batch.
        ctx: u64,
        /// Where the first command went.
        first: Option<LogIndex>,
    },
}

/// AppendEntries arguments.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Append {
    /// The index of the entry just before `entries`.
    pub prev_index: LogIndex,
    /// The term of the entry at `prev_index`.
    pub prev_term: Term,
    /// The entries to store, consecutive from `prev_index + 1`.
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub commit: LogIndex,
}

/// AppendEntries result.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppendResp {
    /// On success, the last index the follower now matches. On a rejection,
    /// the `prev_index` that was rejected.
    pub index: LogIndex,
    /// Present on a rejection: where the leader should probe next.
    pub reject: Option<RejectHint>,
}

/// Fast log backtracking (the course's XTerm/XIndex, in etcd's form): the
/// follower names the last entry at or before the rejected index whose term
/// is at most the leader's `prev_term`, so the leader skips whole terms.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RejectHint {
    /// A candidate match index (at most the follower's last index).
    pub index: LogIndex,
    /// The follower's term at `index`.
    pub term: Term,
}

/// RequestVote arguments.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VoteRequest {
    /// A pre-vote: asks whether the voter *would* grant, changing nothing.
    pub pre: bool,
    /// The candidate's last log index (§5.4.1).
    pub last_index: LogIndex,
    /// The candidate's last log term.
    pub last_term: Term,
    /// Set by a leadership transfer: voters ignore their leader lease.
    pub transfer: bool,
}

/// One piece of a snapshot in transfer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SnapshotChunk {
    /// What the whole snapshot covers.
    pub meta: SnapshotMeta,
    /// Where `data` starts within the snapshot's bytes.
    pub offset: u64,
    /// The snapshot's total length in bytes.
    pub total_len: u64,
    /// The bytes `offset..offset+data.len()`.
    pub data: Bytes,
}

impl SnapshotChunk {
    /// Whether this chunk ends the snapshot.
    pub fn is_last(&self) -> bool {
        self.offset + self.data.len() as u64 >= self.total_len
    }
}

impl MessageBody {
    /// Whether this message starts an exchange (an RPC's arguments) rather
    /// than answering one.
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            MessageBody::Append(_)
                | MessageBody::Heartbeat { .. }
                | MessageBody::Vote(_)
                | MessageBody::Snapshot(_)
                | MessageBody::TimeoutNow
                | MessageBody::ReadIndex { .. }
                | MessageBody::Propose { .. }
        )
    }

    /// A short name of the kind, for traces and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::Append(_) => "App",
            MessageBody::AppendResp(_) => "AppResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResp { .. } => "HeartbeatResp",
            MessageBody::Vote(v) if v.pre => "PreVote",
            MessageBody::Vote(_) => "Vote",
            MessageBody::VoteResp { pre: true, .. } => "PreVoteResp",
            MessageBody::VoteResp { .. } => "VoteResp",
            MessageBody::Snapshot(_) => "Snap",
            MessageBody::SnapshotResp { .. } => "SnapResp",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResp { .. } => "ReadIndexResp",
            MessageBody::Propose { .. } => "Prop",
            MessageBody::ProposeResp { .. } => "PropResp",
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}->{} {} t{}",
            self.from,
            self.to,
            self.body.name(),
            self.term
        )?;
        match &self.body {
            MessageBody::Append(a) => {
                write!(f, " prev={}/{} [", a.prev_term, a.prev_index)?;
                for (i, e) in a.entries.iter().enumerate() {
                    if i == 3 && a.entries.len() > 4 {
                        write!(f, " ..{} more..", a.entries.len() - 4)?;
                        continue;
                    }
                    if i > 3 && i + 1 < a.entries.len() {
                        continue;
                    }
                    write!(f, "{}{:?}", if i == 0 { "" } else { " " }, e)?;
                }
                write!(f, "] commit={}", a.commit)
            }
            MessageBody::AppendResp(r) => match r.reject {
                None => write!(f, " ok index={}", r.index),
                Some(h) => write!(f, " reject index={} hint={}/{}", r.index, h.term, h.index),
            },
            MessageBody::Heartbeat { commit, read_seq } => {
                write!(f, " commit={commit} read_seq={read_seq}")
            }
            MessageBody::HeartbeatResp { read_seq } => write!(f, " read_seq={read_seq}"),
            MessageBody::Vote(v) => {
                write!(f, " last={}/{}", v.last_term, v.last_index)?;
                if v.transfer {
                    write!(f, " transfer")
                } else {
                    Ok(())
                }
            }
            MessageBody::VoteResp { granted, .. } => {
                f.write_str(if *granted { " granted" } else { " rejected" })
            }
            MessageBody::Snapshot(c) => write!(
                f,
                " snap={}/{} bytes {}..{} of {}",
                c.meta.term,
                c.meta.index,
                c.offset,
                c.offset + c.data.len() as u64,
                c.total_len
            ),
            MessageBody::SnapshotResp { index, next_offset } => {
                write!(f, " snap_index={index} next_offset={next_offset}")
            }
            MessageBody::TimeoutNow => Ok(()),
            MessageBody::ReadIndex { ctx } => write!(f, " ctx={ctx}"),
            MessageBody::ReadIndexResp { ctx, index } => write!(f, " ctx={ctx} index={index:?}"),
            MessageBody::Propose { ctx, commands } => {
                write!(f, " ctx={ctx} commands={}", commands.len())
            }
            MessageBody::ProposeResp { ctx, first } => write!(f, " ctx={ctx} first={first:?}"),
        }
    }
}
