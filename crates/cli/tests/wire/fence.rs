//! Keeps the fuzzer off what the rest of its test relies on:
//!
//! - the keys of the linearizability workload running beside it (every key
//!   that starts with `e` or `u`, as `cluster_common::workload` names
//!   them): a generated write to one of them moves below them (`_` is put
//!   in front), and a delete of a range that reaches them is cut short at
//!   their edge, so the workload's history is its own and checkable, while
//!   deletes of everything below still reach the server;
//! - the members: a membership change naming a real member's id, or
//!   adding a member at a URL that could be one, is turned away;
//! - the cluster: a command proposed on the peer service that decodes as
//!   a valid command, or a peer batch carrying the cluster's own id, is
//!   turned away (random bytes almost never do either).
//!
//! Raw bodies that decode into a request the fence would change are
//! turned away too. A request turned away is replaced by another draw.

use bytes::Bytes;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::kv::v1 as kvpb;
use flotilla_proto::raft::v1 as raftpb;
use pb::request_op::Request as R;
use prost::Message;

use super::{Fuzz, STREAMS, UNARY};

/// The key spaces of the workload, as half-open ranges.
const SPACES: [(&[u8], &[u8]); 2] = [(b"e", b"f"), (b"u", b"v")];

/// What the fuzzer must not disturb.
pub struct Fence {
    /// The ids of the cluster's members.
    pub members: Vec<u64>,
    /// The cluster's id.
    pub cluster_id: u64,
}

fn in_space(key: &[u8]) -> bool {
    SPACES.iter().any(|(lo, hi)| key >= *lo && key < *hi)
}

fn move_key(key: &mut Bytes) {
    if in_space(key) {
        let mut moved = b"_".to_vec();
        moved.extend_from_slice(key);
        *key = Bytes::from(moved);
    }
}

/// Cuts the range `[key, end)` (etcd's: an empty `end` is `key` alone,
/// `"\0"` is every key from `key` on) short of the workload's spaces.
fn clip(key: &mut Bytes, end: &mut Bytes) {
    if end.is_empty() {
        move_key(key);
        return;
    }
    for (lo, hi) in SPACES {
        if key.as_ref() >= lo && key.as_ref() < hi {
            *key = Bytes::from_static(hi);
        }
    }
    let open = end.as_ref() == b"\0";
    if let Some((lo, _)) = SPACES.iter().find(|(lo, _)| key.as_ref() < *lo)
        && (open || end.as_ref() > *lo)
    {
        *end = Bytes::from_static(lo);
    }
}

fn fence_txn(t: &mut pb::TxnRequest) {
    for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
        match &mut op.request {
            Some(R::RequestPut(p)) => move_key(&mut p.key),
            Some(R::RequestDeleteRange(d)) => clip(&mut d.key, &mut d.range_end),
            Some(R::RequestTxn(inner)) => fence_txn(inner),
            Some(R::RequestRange(_)) | None => {}
        }
    }
}

fn fence_session(w: &mut kvpb::SessionWrite) {
    use kvpb::session_write::Op;
    match &mut w.op {
        Some(Op::Put(p)) => move_key(&mut p.key),
        Some(Op::DeleteRange(d)) => clip(&mut d.key, &mut d.range_end),
        Some(Op::Txn(t)) => fence_txn(t),
        Some(Op::Append(a)) => move_key(&mut a.key),
        None => {}
    }
}

/// A URL a member could really be reached at: `http(s)://host:port` with
/// a port from 1 to 65535 and nothing after it.
fn could_be_a_member(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return false;
    };
    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
}

impl Fence {
    fn not_a_member(&self, id: u64) -> bool {
        !self.members.contains(&id)
    }

    /// Moves `f` off the workload's keys; false if `f` must be drawn again.
    pub fn admit(&self, f: &mut Fuzz) -> bool {
        match f {
            Fuzz::Put(p) => move_key(&mut p.key),
            Fuzz::Delete(d) => clip(&mut d.key, &mut d.range_end),
            Fuzz::Txn(t) => fence_txn(t),
            Fuzz::Session(w) => fence_session(w),
            Fuzz::MemberAdd(a) => {
                return !a.peer_ur_ls.iter().any(|u| could_be_a_member(u));
            }
            Fuzz::MemberRemove(id) | Fuzz::MemberPromote(id) | Fuzz::MemberUpdate(id, _) => {
                return self.not_a_member(*id);
            }
            Fuzz::Propose(command) => {
                return flotilla_kv::command::Command::decode(command).is_err();
            }
            Fuzz::Raw(m, body) => return self.admit_raw(UNARY[*m], body),
            Fuzz::RawStream(m, messages) => {
                return STREAMS[*m] != "/flotilla.raft.v1.RaftTransport/Send"
                    || messages.iter().all(|b| self.foreign_batch(b));
            }
            Fuzz::Range(_) | Fuzz::Compact(_) | Fuzz::Watch(_) => {}
            Fuzz::Status | Fuzz::MemberList => {}
        }
        true
    }

    fn foreign_batch(&self, bytes: &Bytes) -> bool {
        raftpb::MessageBatch::decode(bytes.as_ref())
            .map_or(true, |b| b.cluster_id != self.cluster_id)
    }

    /// Whether `body` on `method` is harmless as it is: it does not decode,
    /// or decodes into a request the fence leaves unchanged.
    fn admit_raw(&self, method: &str, body: &Bytes) -> bool {
        let typed = match method {
            "/etcdserverpb.KV/Put" => pb::PutRequest::decode(body.as_ref()).map(Fuzz::Put),
            "/etcdserverpb.KV/DeleteRange" => {
                pb::DeleteRangeRequest::decode(body.as_ref()).map(Fuzz::Delete)
            }
            "/etcdserverpb.KV/Txn" => pb::TxnRequest::decode(body.as_ref()).map(Fuzz::Txn),
            "/flotilla.kv.v1.Kv/Write" => {
                kvpb::SessionWrite::decode(body.as_ref()).map(Fuzz::Session)
            }
            "/etcdserverpb.Cluster/MemberAdd" => {
                pb::MemberAddRequest::decode(body.as_ref()).map(Fuzz::MemberAdd)
            }
            "/etcdserverpb.Cluster/MemberRemove" => {
                pb::MemberRemoveRequest::decode(body.as_ref()).map(|r| Fuzz::MemberRemove(r.id))
            }
            "/etcdserverpb.Cluster/MemberPromote" => {
                pb::MemberPromoteRequest::decode(body.as_ref()).map(|r| Fuzz::MemberPromote(r.id))
            }
            "/etcdserverpb.Cluster/MemberUpdate" => pb::MemberUpdateRequest::decode(body.as_ref())
                .map(|r| Fuzz::MemberUpdate(r.id, r.peer_ur_ls)),
            "/flotilla.raft.v1.Proposals/Propose" => {
                return raftpb::ProposeRequest::decode(body.as_ref()).map_or(true, |p| {
                    p.cluster_id != self.cluster_id
                        || flotilla_kv::command::Command::decode(&p.command).is_err()
                });
            }
            _ => return true,
        };
        let Ok(typed) = typed else {
            return true;
        };
        let before = format!("{typed:?}");
        let mut fenced = typed;
        self.admit(&mut fenced) && format!("{fenced:?}") == before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clipped(key: &str, end: &str) -> (String, String) {
        let (mut k, mut e) = (Bytes::from(key.to_string()), Bytes::from(end.to_string()));
        clip(&mut k, &mut e);
        let s = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
        (s(k), s(e))
    }

    #[test]
    fn ranges_stop_short_of_the_workload() {
        assert_eq!(clipped("\0", "\0"), ("\0".into(), "e".into()));
        assert_eq!(clipped("a", "z"), ("a".into(), "e".into()));
        assert_eq!(clipped("a", "c"), ("a".into(), "c".into()));
        assert_eq!(clipped("e1", "\0"), ("f".into(), "u".into()));
        assert_eq!(clipped("g", "\0"), ("g".into(), "u".into()));
        assert_eq!(clipped("u-1", "\0"), ("v".into(), "\0".into()));
        assert_eq!(clipped("e0k1", ""), ("_e0k1".into(), "".into()));
        assert_eq!(clipped("x", "\0"), ("x".into(), "\0".into()));
    }

    #[test]
    fn members_are_left_alone() {
        let fence = Fence {
            members: vec![7],
            cluster_id: 9,
        };
        assert!(!fence.admit(&mut Fuzz::MemberRemove(7)));
        assert!(fence.admit(&mut Fuzz::MemberRemove(8)));
        assert!(could_be_a_member("http://127.0.0.1:2380"));
        assert!(!could_be_a_member("http://127.0.0.1:99999"));
        assert!(!could_be_a_member("http://127.0.0.1:1/path"));
        let remove_7 = pb::MemberRemoveRequest { id: 7 }.encode_to_vec();
        assert!(!fence.admit_raw("/etcdserverpb.Cluster/MemberRemove", &remove_7.into()));
    }
}
