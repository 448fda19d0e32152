//! The gateway's routes: etcd's HTTP paths (`/v3/kv/range`, served under
//! `/v3beta/` too, as etcd 3.4 serves them), the gRPC method each one
//! calls, and the JSON mapping of its request and response messages
//! (proto3's, with the protos' field names, as etcd's grpc-gateway
//! writes them: `flotilla_proto`'s generated serde impls).
//!
//! etcd 3.4 also routes the lease methods under `/v3/kv/lease/`; so does
//! this table. `HashKV` is served at `/v3/maintenance/hashkv`, as etcd
//! 3.5 does, and `AuthStatus` at `/v3/auth/status`. A call carries the
//! HTTP `Authorization` header's token to the gRPC method (etcd's
//! gateway passes it as metadata `authorization`).

use bytes::Bytes;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::{v3electionpb as epb, v3lockpb as lpb};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How a method streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStream,
    /// A stream each way.
    Bidi,
}

/// One route.
#[derive(Clone, Copy)]
pub struct Route {
    /// The path after `/v3` (`/kv/range`).
    pub path: &'static str,
    /// The gRPC method's path.
    pub grpc: &'static str,
    /// How it streams.
    pub shape: Shape,
    /// The request messages a JSON body holds (zero or more JSON values),
    /// encoded; an error names what was wrong.
    pub requests: fn(&[u8]) -> Result<Vec<Bytes>, String>,
    /// One encoded response message as JSON.
    pub response: fn(&[u8]) -> Result<String, String>,
}

/// Decodes every JSON value of `body` as a `T` and encodes it.
fn requests<T: DeserializeOwned + prost::Message>(body: &[u8]) -> Result<Vec<Bytes>, String> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .map(|m| {
            m.map(|m| Bytes::from(m.encode_to_vec()))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Decodes an encoded `T` and renders it as JSON.
fn response<T: Default + Serialize + prost::Message>(message: &[u8]) -> Result<String, String> {
    let m = T::decode(message).map_err(|e| format!("gateway: {e}"))?;
    serde_json::to_string(&m).map_err(|e| format!("gateway: {e}"))
}

macro_rules! route {
    ($path:literal, $grpc:literal, $shape:ident, $req:ty, $resp:ty) => {
        Route {
            path: $path,
            grpc: $grpc,
            shape: Shape::$shape,
            requests: requests::<$req>,
            response: response::<$resp>,
        }
    };
}

/// Every route.
pub const ROUTES: &[Route] = &[
    route!(
        "/kv/range",
        "/etcdserverpb.KV/Range",
        Unary,
        pb::RangeRequest,
        pb::RangeResponse
    ),
    route!(
        "/kv/put",
        "/etcdserverpb.KV/Put",
        Unary,
        pb::PutRequest,
        pb::PutResponse
    ),
    route!(
        "/kv/deleterange",
        "/etcdserverpb.KV/DeleteRange",
        Unary,
        pb::DeleteRangeRequest,
        pb::DeleteRangeResponse
    ),
    route!(
        "/kv/txn",
        "/etcdserverpb.KV/Txn",
        Unary,
        pb::TxnRequest,
        pb::TxnResponse
    ),
    route!(
        "/kv/compaction",
        "/etcdserverpb.KV/Compact",
        Unary,
        pb::CompactionRequest,
        pb::CompactionResponse
    ),
    route!(
        "/watch",
        "/etcdserverpb.Watch/Watch",
        Bidi,
        pb::WatchRequest,
        pb::WatchResponse
    ),
    route!(
        "/lease/grant",
        "/etcdserverpb.Lease/LeaseGrant",
        Unary,
        pb::LeaseGrantRequest,
        pb::LeaseGrantResponse
    ),
    route!(
        "/lease/revoke",
        "/etcdserverpb.Lease/LeaseRevoke",
        Unary,
        pb::LeaseRevokeRequest,
        pb::LeaseRevokeResponse
    ),
    route!(
        "/kv/lease/revoke",
        "/etcdserverpb.Lease/LeaseRevoke",
        Unary,
        pb::LeaseRevokeRequest,
        pb::LeaseRevokeResponse
    ),
    route!(
        "/lease/keepalive",
        "/etcdserverpb.Lease/LeaseKeepAlive",
        Bidi,
        pb::LeaseKeepAliveRequest,
        pb::LeaseKeepAliveResponse
    ),
    route!(
        "/lease/timetolive",
        "/etcdserverpb.Lease/LeaseTimeToLive",
        Unary,
        pb::LeaseTimeToLiveRequest,
        pb::LeaseTimeToLiveResponse
    ),
    route!(
        "/kv/lease/timetolive",
        "/etcdserverpb.Lease/LeaseTimeToLive",
        Unary,
        pb::LeaseTimeToLiveRequest,
        pb::LeaseTimeToLiveResponse
    ),
    route!(
        "/lease/leases",
        "/etcdserverpb.Lease/LeaseLeases",
        Unary,
        pb::LeaseLeasesRequest,
        pb::LeaseLeasesResponse
    ),
    route!(
        "/kv/lease/leases",
        "/etcdserverpb.Lease/LeaseLeases",
        Unary,
        pb::LeaseLeasesRequest,
        pb::LeaseLeasesResponse
    ),
    route!(
        "/cluster/member/add",
        "/etcdserverpb.Cluster/MemberAdd",
        Unary,
        pb::MemberAddRequest,
        pb::MemberAddResponse
    ),
    route!(
        "/cluster/member/remove",
        "/etcdserverpb.Cluster/MemberRemove",
        Unary,
        pb::MemberRemoveRequest,
        pb::MemberRemoveResponse
    ),
    route!(
        "/cluster/member/update",
        "/etcdserverpb.Cluster/MemberUpdate",
        Unary,
        pb::MemberUpdateRequest,
        pb::MemberUpdateResponse
    ),
    route!(
        "/cluster/member/list",
        "/etcdserverpb.Cluster/MemberList",
        Unary,
        pb::MemberListRequest,
        pb::MemberListResponse
    ),
    route!(
        "/cluster/member/promote",
        "/etcdserverpb.Cluster/MemberPromote",
        Unary,
        pb::MemberPromoteRequest,
        pb::MemberPromoteResponse
    ),
    route!(
        "/maintenance/alarm",
        "/etcdserverpb.Maintenance/Alarm",
        Unary,
        pb::AlarmRequest,
        pb::AlarmResponse
    ),
    route!(
        "/maintenance/status",
        "/etcdserverpb.Maintenance/Status",
        Unary,
        pb::StatusRequest,
        pb::StatusResponse
    ),
    route!(
        "/maintenance/defragment",
        "/etcdserverpb.Maintenance/Defragment",
        Unary,
        pb::DefragmentRequest,
        pb::DefragmentResponse
    ),
    route!(
        "/maintenance/hashkv",
        "/etcdserverpb.Maintenance/HashKV",
        Unary,
        pb::HashKvRequest,
        pb::HashKvResponse
    ),
    route!(
        "/maintenance/snapshot",
        "/etcdserverpb.Maintenance/Snapshot",
        ServerStream,
        pb::SnapshotRequest,
        pb::SnapshotResponse
    ),
    route!(
        "/maintenance/transfer-leadership",
        "/etcdserverpb.Maintenance/MoveLeader",
        Unary,
        pb::MoveLeaderRequest,
        pb::MoveLeaderResponse
    ),
    route!(
        "/lock/lock",
        "/v3lockpb.Lock/Lock",
        Unary,
        lpb::LockRequest,
        lpb::LockResponse
    ),
    route!(
        "/lock/unlock",
        "/v3lockpb.Lock/Unlock",
        Unary,
        lpb::UnlockRequest,
        lpb::UnlockResponse
    ),
    route!(
        "/election/campaign",
        "/v3electionpb.Election/Campaign",
        Unary,
        epb::CampaignRequest,
        epb::CampaignResponse
    ),
    route!(
        "/election/proclaim",
        "/v3electionpb.Election/Proclaim",
        Unary,
        epb::ProclaimRequest,
        epb::ProclaimResponse
    ),
    route!(
        "/election/leader",
        "/v3electionpb.Election/Leader",
        Unary,
        epb::LeaderRequest,
        epb::LeaderResponse
    ),
    route!(
        "/election/observe",
        "/v3electionpb.Election/Observe",
        ServerStream,
        epb::LeaderRequest,
        epb::LeaderResponse
    ),
    route!(
        "/election/resign",
        "/v3electionpb.Election/Resign",
        Unary,
        epb::ResignRequest,
        epb::ResignResponse
    ),
    route!(
        "/auth/enable",
        "/etcdserverpb.Auth/AuthEnable",
        Unary,
        pb::AuthEnableRequest,
        pb::AuthEnableResponse
    ),
    route!(
        "/auth/disable",
        "/etcdserverpb.Auth/AuthDisable",
        Unary,
        pb::AuthDisableRequest,
        pb::AuthDisableResponse
    ),
    route!(
        "/auth/status",
        "/etcdserverpb.Auth/AuthStatus",
        Unary,
        pb::AuthStatusRequest,
        pb::AuthStatusResponse
    ),
    route!(
        "/auth/authenticate",
        "/etcdserverpb.Auth/Authenticate",
        Unary,
        pb::AuthenticateRequest,
        pb::AuthenticateResponse
    ),
    route!(
        "/auth/user/add",
        "/etcdserverpb.Auth/UserAdd",
        Unary,
        pb::AuthUserAddRequest,
        pb::AuthUserAddResponse
    ),
    route!(
        "/auth/user/get",
        "/etcdserverpb.Auth/UserGet",
        Unary,
        pb::AuthUserGetRequest,
        pb::AuthUserGetResponse
    ),
    route!(
        "/auth/user/list",
        "/etcdserverpb.Auth/UserList",
        Unary,
        pb::AuthUserListRequest,
        pb::AuthUserListResponse
    ),
    route!(
        "/auth/user/delete",
        "/etcdserverpb.Auth/UserDelete",
        Unary,
        pb::AuthUserDeleteRequest,
        pb::AuthUserDeleteResponse
    ),
    route!(
        "/auth/user/changepw",
        "/etcdserverpb.Auth/UserChangePassword",
        Unary,
        pb::AuthUserChangePasswordRequest,
        pb::AuthUserChangePasswordResponse
    ),
    route!(
        "/auth/user/grant",
        "/etcdserverpb.Auth/UserGrantRole",
        Unary,
        pb::AuthUserGrantRoleRequest,
        pb::AuthUserGrantRoleResponse
    ),
    route!(
        "/auth/user/revoke",
        "/etcdserverpb.Auth/UserRevokeRole",
        Unary,
        pb::AuthUserRevokeRoleRequest,
        pb::AuthUserRevokeRoleResponse
    ),
    route!(
        "/auth/role/add",
        "/etcdserverpb.Auth/RoleAdd",
        Unary,
        pb::AuthRoleAddRequest,
        pb::AuthRoleAddResponse
    ),
    route!(
        "/auth/role/get",
        "/etcdserverpb.Auth/RoleGet",
        Unary,
        pb::AuthRoleGetRequest,
        pb::AuthRoleGetResponse
    ),
    route!(
        "/auth/role/list",
        "/etcdserverpb.Auth/RoleList",
        Unary,
        pb::AuthRoleListRequest,
        pb::AuthRoleListResponse
    ),
    route!(
        "/auth/role/delete",
        "/etcdserverpb.Auth/RoleDelete",
        Unary,
        pb::AuthRoleDeleteRequest,
        pb::AuthRoleDeleteResponse
    ),
    route!(
        "/auth/role/grant",
        "/etcdserverpb.Auth/RoleGrantPermission",
        Unary,
        pb::AuthRoleGrantPermissionRequest,
        pb::AuthRoleGrantPermissionResponse
    ),
    route!(
        "/auth/role/revoke",
        "/etcdserverpb.Auth/RoleRevokePermission",
        Unary,
        pb::AuthRoleRevokePermissionRequest,
        pb::AuthRoleRevokePermissionResponse
    ),
];

/// The route of an HTTP path (`/v3/kv/range` or `/v3beta/kv/range`).
pub fn find(path: &str) -> Option<&'static Route> {
    let rest = path
        .strip_prefix("/v3beta")
        .or_else(|| path.strip_prefix("/v3"))?;
    ROUTES.iter().find(|r| r.path == rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_found_under_both_prefixes() {
        let r = find("/v3/kv/range").unwrap();
        assert_eq!(r.grpc, "/etcdserverpb.KV/Range");
        assert_eq!(find("/v3beta/kv/range").unwrap().grpc, r.grpc);
        assert_eq!(
            find("/v3/kv/lease/revoke").unwrap().grpc,
            "/etcdserverpb.Lease/LeaseRevoke"
        );
        assert!(find("/v3alpha/kv/range").is_none());
        assert!(find("/v3/kv/nope").is_none());
        assert!(find("/v3").is_none());
    }

    #[test]
    fn json_requests_decode_with_either_field_name_and_ignore_unknown_fields() {
        let r = find("/v3/kv/range").unwrap();
        let snake = (r.requests)(br#"{"key":"Zm9v","range_end":"Zm9w","limit":"5","x":1}"#);
        let camel = (r.requests)(br#"{"key":"Zm9v","rangeEnd":"Zm9w","limit":5}"#);
        assert_eq!(snake, camel);
        let [m] = &snake.unwrap()[..] else {
            panic!("one message")
        };
        let m = <pb::RangeRequest as prost::Message>::decode(m.clone()).unwrap();
        assert_eq!(
            (&m.key[..], &m.range_end[..], m.limit),
            (&b"foo"[..], &b"fop"[..], 5)
        );
        assert_eq!((r.requests)(b"").unwrap(), Vec::<Bytes>::new());
        assert!((r.requests)(b"not json").is_err());
        assert!((r.requests)(br#"{"key":"!!"}"#).is_err(), "bad base64");
    }

    #[test]
    fn responses_render_as_etcd_s_gateway_renders_them() {
        let r = find("/v3/kv/range").unwrap();
        let m = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4,
            }),
            kvs: vec![flotilla_proto::mvccpb::KeyValue {
                key: Bytes::from_static(b"foo"),
                value: Bytes::from_static(b"bar"),
                create_revision: 2,
                mod_revision: 3,
                version: 1,
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let json = (r.response)(&prost::Message::encode_to_vec(&m)).unwrap();
        assert_eq!(
            json,
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"4"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"1","value":"YmFy"}],"count":"1"}"#
        );
    }
}
