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
    tonic_prost_build::configure()
        .include_file("_includes.rs")
        // Zero-copy `Bytes` for keys, values and Raft messages.
        .bytes(".flotilla.raft")
        .bytes(".flotilla.kv")
        .bytes(".etcdserverpb")
        .bytes(".mvccpb")
        .bytes(".v3lockpb")
        .bytes(".v3electionpb")
        .compile_fds(descriptors)?;
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
