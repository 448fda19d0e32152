//! The wire fuzzer's requests: proptest strategies over every field of
//! every client RPC, valid and invalid (empty and odd keys, out-of-range
//! enums, negative numbers, nested transactions, compares of every kind,
//! oversized values, watch creations, session writes, membership changes
//! that must be refused), commands proposed on the peer service, and
//! random bytes as the body of every client and peer method, unary and
//! streaming.
//!
//! Generated membership changes are invalid by construction (peer URLs
//! that are no URL, a second URL, a member's own URL again, ids that are
//! no member's): a valid one could legitimately change or stop the
//! cluster. [`fence`] rejects what slips through.

pub mod fence;
pub mod raw;

use bytes::Bytes;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::kv::v1 as kvpb;
use pb::compare::TargetUnion;
use pb::request_op::Request as R;
use proptest::collection::vec;
use proptest::prelude::*;

/// The unary methods fuzzed with random bytes.
pub const UNARY: [&str; 15] = [
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Cluster/MemberList",
    "/etcdserverpb.Cluster/MemberAdd",
    "/etcdserverpb.Cluster/MemberRemove",
    "/etcdserverpb.Cluster/MemberUpdate",
    "/etcdserverpb.Cluster/MemberPromote",
    "/flotilla.kv.v1.Kv/Write",
    "/flotilla.raft.v1.Proposals/Propose",
    "/flotilla.raft.v1.Proposals/Join",
    "/etcdserverpb.Maintenance/Defragment",
];

/// The streaming methods fuzzed with messages of random bytes.
pub const STREAMS: [&str; 2] = [
    "/etcdserverpb.Watch/Watch",
    "/flotilla.raft.v1.RaftTransport/Send",
];

pub fn key() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => prop::sample::select(vec!["", "a", "b", "ab", "\0", "\u{ff}"]).prop_map(Bytes::from),
        1 => vec(any::<u8>(), 0..8).prop_map(Bytes::from),
    ]
}

/// Mostly 0, sometimes small or negative, rarely anything.
pub fn num() -> impl Strategy<Value = i64> {
    prop_oneof![4 => Just(0i64), 2 => -2i64..6, 1 => any::<i64>()]
}

/// An enum value, known or not.
pub fn enum_value() -> impl Strategy<Value = i32> {
    prop_oneof![4 => 0i32..5, 1 => any::<i32>()]
}

pub fn range_req() -> impl Strategy<Value = pb::RangeRequest> {
    let shape = (num(), num(), enum_value(), enum_value(), any::<[bool; 3]>());
    let filters = (num(), num(), num(), num());
    (key(), key(), shape, filters).prop_map(|(key, range_end, shape, filters)| {
        let (limit, revision, sort_order, sort_target, [serializable, keys_only, count_only]) =
            shape;
        pb::RangeRequest {
            key,
            range_end,
            limit,
            revision,
            sort_order,
            sort_target,
            serializable,
            keys_only,
            count_only,
            min_mod_revision: filters.0,
            max_mod_revision: filters.1,
            min_create_revision: filters.2,
            max_create_revision: filters.3,
        }
    })
}

pub fn put_req() -> impl Strategy<Value = pb::PutRequest> {
    // Rarely over the request limit (1.5 MiB).
    let value = prop_oneof![
        200 => vec(any::<u8>(), 0..16).prop_map(Bytes::from),
        1 => Just(Bytes::from(vec![7u8; 1_600_000])),
    ];
    (key(), value, num(), any::<[bool; 3]>()).prop_map(|(key, value, lease, flags)| {
        let [prev_kv, ignore_value, ignore_lease] = flags;
        pb::PutRequest {
            key,
            value,
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        }
    })
}

pub fn delete_req() -> impl Strategy<Value = pb::DeleteRangeRequest> {
    (key(), key(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| pb::DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

pub fn compare() -> impl Strategy<Value = pb::Compare> {
    let value = prop_oneof![
        Just(None),
        num().prop_map(|v| Some(TargetUnion::Version(v))),
        num().prop_map(|v| Some(TargetUnion::CreateRevision(v))),
        num().prop_map(|v| Some(TargetUnion::ModRevision(v))),
        key().prop_map(|v| Some(TargetUnion::Value(v))),
        num().prop_map(|v| Some(TargetUnion::Lease(v))),
    ];
    (enum_value(), enum_value(), key(), value, key()).prop_map(
        |(result, target, key, target_union, range_end)| pb::Compare {
            result,
            target,
            key,
            target_union,
            range_end,
        },
    )
}

pub fn ops(
    inner: impl Strategy<Value = Option<R>> + Clone,
) -> impl Strategy<Value = pb::TxnRequest> {
    let op = inner.prop_map(|request| pb::RequestOp { request });
    (vec(compare(), 0..3), vec(op.clone(), 0..4), vec(op, 0..3)).prop_map(
        |(compare, success, failure)| pb::TxnRequest {
            compare,
            success,
            failure,
        },
    )
}

pub fn txn_req() -> impl Strategy<Value = pb::TxnRequest> {
    let leaf = prop_oneof![
        range_req().prop_map(|r| Some(R::RequestRange(r))),
        put_req().prop_map(|r| Some(R::RequestPut(r))),
        delete_req().prop_map(|r| Some(R::RequestDeleteRange(r))),
        Just(None),
    ];
    let op = leaf.prop_recursive(3, 24, 4, |inner| {
        ops(inner).prop_map(|t| Some(R::RequestTxn(t)))
    });
    // Rarely more ops than etcd's 128 per list.
    let many = vec(put_req(), 129..140).prop_map(|puts| pb::TxnRequest {
        success: puts
            .into_iter()
            .map(|p| pb::RequestOp {
                request: Some(R::RequestPut(p)),
            })
            .collect(),
        ..Default::default()
    });
    prop_oneof![50 => ops(op), 1 => many]
}

pub fn watch_req() -> impl Strategy<Value = pb::WatchRequest> {
    let flags = any::<[bool; 3]>();
    (key(), key(), num(), vec(enum_value(), 0..3), flags, num()).prop_map(
        |(key, range_end, start_revision, filters, [prev_kv, progress_notify, fragment], id)| {
            pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                    pb::WatchCreateRequest {
                        key,
                        range_end,
                        start_revision,
                        progress_notify,
                        filters,
                        prev_kv,
                        watch_id: id,
                        fragment,
                    },
                )),
            }
        },
    )
}

pub fn session_write() -> impl Strategy<Value = kvpb::SessionWrite> {
    let op = prop_oneof![
        put_req().prop_map(kvpb::session_write::Op::Put),
        delete_req().prop_map(kvpb::session_write::Op::DeleteRange),
        txn_req().prop_map(kvpb::session_write::Op::Txn),
        (key(), key()).prop_map(|(key, value)| kvpb::session_write::Op::Append(
            kvpb::AppendRequest { key, value }
        )),
    ];
    let client = prop_oneof![Just(0u64), 1u64..4, any::<u64>()];
    (client, 0u64..4, any::<bool>(), prop::option::of(op)).prop_map(
        |(client_id, seq, resumed, op)| kvpb::SessionWrite {
            client_id,
            seq,
            resumed,
            op,
        },
    )
}

/// A peer URL that no member may be added or moved to: not a URL, no
/// port, a path, a scheme other than http(s), or a member's own URL.
pub fn bad_url(taken: Vec<String>) -> impl Strategy<Value = String> {
    let forms = vec![
        "",
        "x",
        "http://",
        "http://127.0.0.1",
        "ftp://127.0.0.1:1",
        "http://127.0.0.1:1/path",
        "127.0.0.1:1",
        "http://[::1",
        "http://127.0.0.1:99999",
        "http://127.0.0.1:-1",
    ];
    prop_oneof![
        4 => prop::sample::select(forms).prop_map(String::from),
        2 => prop::sample::select(taken),
        1 => "\\PC{0,12}",
    ]
}

/// A member id: mostly small, sometimes anything (the fence turns away
/// the ids of real members).
pub fn member_id() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..8, any::<u64>()]
}

fn member_add(taken: Vec<String>) -> impl Strategy<Value = pb::MemberAddRequest> {
    let urls = prop_oneof![
        1 => Just(Vec::new()),
        6 => vec(bad_url(taken.clone()), 1..2),
        1 => vec(bad_url(taken), 2..4),
    ];
    (urls, any::<bool>(), member_id()).prop_map(|(peer_ur_ls, is_learner, id)| {
        pb::MemberAddRequest {
            peer_ur_ls,
            is_learner,
            flotilla_member_id: id,
        }
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// One generated request.
#[derive(Clone, Debug)]
pub enum Fuzz {
    Range(pb::RangeRequest),
    Put(pb::PutRequest),
    Delete(pb::DeleteRangeRequest),
    Txn(pb::TxnRequest),
    Compact(i64),
    Watch(pb::WatchRequest),
    Session(kvpb::SessionWrite),
    Status,
    MemberList,
    MemberAdd(pb::MemberAddRequest),
    MemberRemove(u64),
    MemberPromote(u64),
    MemberUpdate(u64, Vec<String>),
    /// A command of random bytes proposed on the peer service, with the
    /// cluster's own id (so it is not refused for the id alone).
    Propose(Bytes),
    /// Random bytes as the body of [`UNARY`]`[m]`.
    Raw(usize, Bytes),
    /// Messages of random bytes on [`STREAMS`]`[m]`.
    RawStream(usize, Vec<Bytes>),
}

/// Every kind of request; `taken` are the members' peer URLs.
pub fn fuzz(taken: Vec<String>) -> impl Strategy<Value = Fuzz> {
    let update = (member_id(), vec(bad_url(taken.clone()), 0..3));
    prop_oneof![
        3 => range_req().prop_map(Fuzz::Range),
        3 => put_req().prop_map(Fuzz::Put),
        2 => delete_req().prop_map(Fuzz::Delete),
        4 => txn_req().prop_map(Fuzz::Txn),
        1 => num().prop_map(Fuzz::Compact),
        2 => watch_req().prop_map(Fuzz::Watch),
        2 => session_write().prop_map(Fuzz::Session),
        1 => Just(Fuzz::Status),
        1 => Just(Fuzz::MemberList),
        1 => member_add(taken).prop_map(Fuzz::MemberAdd),
        1 => member_id().prop_map(Fuzz::MemberRemove),
        1 => member_id().prop_map(Fuzz::MemberPromote),
        1 => update.prop_map(|(id, urls)| Fuzz::MemberUpdate(id, urls)),
        1 => bytes(48).prop_map(Fuzz::Propose),
        5 => (0..UNARY.len(), bytes(64)).prop_map(|(m, b)| Fuzz::Raw(m, b)),
        2 => (0..STREAMS.len(), vec(bytes(48), 1..4)).prop_map(|(m, b)| Fuzz::RawStream(m, b)),
    ]
}
