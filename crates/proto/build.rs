//! Compiles every `.proto` file under `proto/` into Rust with prost and tonic.
//!
//! The protos are parsed by `protox`, a protobuf compiler written in Rust, so a
//! fresh machine needs no system `protoc`. Every package found becomes a module
//! in the tree that prost writes to `_includes.rs` (package `a.b.v1` becomes
//! `a::b::v1`), so adding a `.proto` file needs no change here.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new("proto");
    let mut protos = Vec::new();
    collect_protos(root, &mut protos)?;
    protos.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    let descriptors = protox::compile(&protos, [root])?;
    // etcd's JSON gateway speaks the proto3 JSON mapping of etcd's
    // messages with the protos' field names (grpc-gateway's `OrigName`).
    let encoded = prost::Message::encode_to_vec(&descriptors);
    let json = [
        ".etcdserverpb",
        ".mvccpb",
        ".authpb",
        ".v3lockpb",
        ".v3electionpb",
    ];
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .preserve_proto_field_names()
        // As grpc-gateway v1 (etcd 3.4): unknown fields are ignored.
        .ignore_unknown_fields()
        .build(&json)?;
    tonic_prost_build::configure()
        .include_file("_includes.rs")
        // Zero-copy `Bytes` for keys, values and Raft messages.
        .bytes(".flotilla.raft")
        .bytes(".flotilla.kv")
        .bytes(".flotilla.shard")
        .bytes(".etcdserverpb")
        .bytes(".mvccpb")
        .bytes(".authpb")
        .bytes(".v3lockpb")
        .bytes(".v3electionpb")
        .compile_fds(descriptors)?;
    include_json(&json)
}

/// Puts each JSON-mapped package's serde impls (`<package>.serde.rs`)
/// into its module, beside prost's messages, in prost's module tree.
fn include_json(packages: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("_includes.rs");
    let mut tree = std::fs::read_to_string(&out)?;
    for package in packages {
        let name = package.trim_start_matches('.');
        let messages = format!("include!(\"{name}.rs\");");
        if !tree.contains(&messages) {
            return Err(format!("prost's module tree has no package {name}").into());
        }
        tree = tree.replace(
            &messages,
            &format!("{messages}\ninclude!(\"{name}.serde.rs\");"),
        );
    }
    std::fs::write(out, tree)?;
    Ok(())
}

/// Lists the `.proto` files under `dir`, recursively.
fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
