//! Flotilla's wire protocols: the `.proto` files in `proto/` and the Rust code
//! that `build.rs` generates from them (prost messages, tonic clients and
//! servers).
//!
//! Modules follow the protobuf packages: package `flotilla.mapreduce.v1` is
//! [`mapreduce::v1`], `flotilla.raft.v1` (the peer transport) is
//! [`raft::v1`], `flotilla.kv.v1` (exactly-once sessions, Append) is
//! [`kv::v1`], `flotilla.signal.v1` (typed signals in gRPC errors) is
//! [`signal::v1`]. gRPC's health protocol is [`health::v1`]. etcd's v3 API keeps etcd's own packages, [`etcdserverpb`]
//! and [`mvccpb`], its auth records [`authpb`], and its lock and election services [`v3lockpb`] and
//! [`v3electionpb`], because the package is part of every gRPC method path
//! (`/etcdserverpb.KV/Put`) that etcd's clients call. The `.proto` files are the contract: any language with a
//! protobuf compiler can speak to Flotilla from them.

#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    rustdoc::all
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/_includes.rs"));
}

pub use generated::authpb;
pub use generated::etcdserverpb;
pub use generated::flotilla::kv;
pub use generated::flotilla::mapreduce;
pub use generated::flotilla::raft;
pub use generated::flotilla::shard;
pub use generated::grpc::health;
pub use generated::mvccpb;
pub use generated::v3electionpb;
pub use generated::v3lockpb;

pub mod signal;
