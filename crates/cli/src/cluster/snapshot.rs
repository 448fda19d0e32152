//! `flotilla snapshot save|status|restore`: backups of a running cluster
//! (etcd's Maintenance.Snapshot; `etcdctl snapshot save` writes the same
//! file) and new clusters built from them.
//!
//! - `save FILE` asks a member (the first that answers) for a backup of
//!   everything committed before the request, writes it to `FILE.part`,
//!   syncs it and renames it to FILE, so FILE is whole or absent.
//! - `status FILE` checks the file and prints, as etcdctl does, its hash
//!   (HashKV), revision, number of keys and size.
//! - `restore FILE --data-dir DIR --id N --peers ...` builds member N's
//!   data directory of a new cluster from it; run it once per member with
//!   the same `--peers` (and `--cluster-token`), then start each member
//!   with `flotilla server` on its directory.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use clap::{Args, Subcommand};
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use flotilla_raft::NodeId;

use super::{EndpointArgs, runtime};

/// `flotilla snapshot` arguments.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    command: SnapshotCommand,
    #[command(flatten)]
    endpoints: EndpointArgs,
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Saves a backup of the cluster to FILE.
    Save {
        /// Where to write it.
        file: PathBuf,
    },
    /// Checks a backup and prints its hash, revision, keys and size.
    Status {
        /// The backup.
        file: PathBuf,
    },
    /// Builds a new cluster member's data directory from a backup.
    Restore {
        /// The backup.
        file: PathBuf,
        /// The new member's data directory (must not exist or be empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// The new member's id.
        #[arg(long)]
        id: u64,
        /// The new cluster's founding members, as `flotilla server`'s
        /// `--peers`: `ID=HOST:PORT,...`.
        #[arg(long, value_delimiter = ',', required = true)]
        peers: Vec<String>,
        /// The new cluster's token, as `flotilla server`'s.
        #[arg(long)]
        cluster_token: Option<String>,
    },
}

/// Runs `flotilla snapshot`.
pub fn main(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SnapshotCommand::Save { file } => save(&args.endpoints, &file),
        SnapshotCommand::Status { file } => {
            let s = flotilla_etcd::backup::status(&read(&file)?)
                .with_context(|| format!("{}", file.display()))?;
            println!("{:x}, {}, {}, {} B", s.hash, s.revision, s.keys, s.size);
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCommand::Restore {
            file,
            data_dir,
            id,
            peers,
            cluster_token,
        } => {
            let peers = super::server::parse_peers(&peers)?;
            if !peers.contains_key(&NodeId(id)) {
                bail!("--id {id} is not among --peers");
            }
            let s = flotilla_etcd::backup::restore(
                &read(&file)?,
                &data_dir,
                NodeId(id),
                &peers,
                cluster_token.as_deref(),
            )
            .with_context(|| format!("restoring {}", file.display()))?;
            println!(
                "restored revision {} ({} keys) into {} for member {id}",
                s.revision,
                s.keys,
                data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read(file: &PathBuf) -> anyhow::Result<Bytes> {
    std::fs::read(file)
        .map(Bytes::from)
        .with_context(|| format!("reading {}", file.display()))
}

/// `save`: see the module docs.
fn save(endpoints: &EndpointArgs, file: &PathBuf) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    let client = endpoints.client(&rt)?;
    let data = rt.block_on(async {
        let mut last = String::new();
        for i in 0..client.endpoints().len() {
            match fetch(client.conn(i).await?).await {
                Ok(data) => return Ok(data),
                Err(e) => last = format!("{}: {e}", client.endpoints()[i]),
            }
        }
        bail!("no member sent a snapshot ({last})")
    })?;
    let part = file.with_extension("part");
    let mut f =
        std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
    f.write_all(&data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", part.display()))?;
    std::fs::rename(&part, file).with_context(|| format!("renaming to {}", file.display()))?;
    println!("Snapshot saved at {}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// The whole snapshot stream of one member.
async fn fetch(ch: flotilla_client::Conn) -> anyhow::Result<Bytes> {
    let mut stream = MaintenanceClient::new(ch)
        .max_decoding_message_size(flotilla_client::client::RESPONSE_BYTES_MAX)
        .snapshot(pb::SnapshotRequest {})
        .await?
        .into_inner();
    let mut data = BytesMut::new();
    while let Some(chunk) = stream.message().await? {
        data.extend_from_slice(&chunk.blob);
        if chunk.remaining_bytes == 0 {
            return Ok(data.freeze());
        }
    }
    bail!(
        "the stream ended {} bytes in, before the snapshot did",
        data.len()
    )
}
