//! The shuffle: each worker that keeps map outputs on its own disk serves
//! them to reducers over gRPC ([`ShuffleService`]), and reducers copy each
//! input they need to local scratch space with [`fetch_to_file`], checking
//! its size against what the map reported. An unreachable host or a short
//! copy is a [`TaskError::Fetch`], which the worker reports so that the
//! coordinator re-runs the map.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_mapreduce::task::{MapOutput, map_output_name};
use flotilla_proto::mapreduce::v1 as pb;
use flotilla_proto::mapreduce::v1::shuffle_client::ShuffleClient;
use tonic::{Request, Response, Status};

use super::error::TaskError;

/// The most bytes one Fetch returns (well under gRPC's 4 MiB message limit).
pub const FETCH_CHUNK_BYTES: u32 = 1 << 20;

/// Serves the map outputs in one directory.
#[derive(Debug, Clone)]
pub struct ShuffleService {
    dir: PathBuf,
    job_id: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ShuffleService {
    /// Serves `dir`; `job_id` is set once the worker has registered (0
    /// refuses everything).
    pub fn new(dir: PathBuf, job_id: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        ShuffleService { dir, job_id }
    }

    fn read_chunk(path: &Path, offset: u64, max: u32) -> std::io::Result<(Vec<u8>, u64)> {
        let mut file = std::fs::File::open(path)?;
        let total = file.metadata()?.len();
        file.seek(SeekFrom::Start(offset.min(total)))?;
        let mut data = Vec::new();
        file.take(u64::from(max.min(FETCH_CHUNK_BYTES)))
            .read_to_end(&mut data)?;
        Ok((data, total))
    }
}

#[tonic::async_trait]
impl pb::shuffle_server::Shuffle for ShuffleService {
    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchReply>, Status> {
        let r = request.into_inner();
        let job = self.job_id.load(std::sync::atomic::Ordering::Relaxed);
        if job == 0 || r.job_id != job {
            return Err(Status::failed_precondition(format!(
                "this worker serves job {job}, not {}",
                r.job_id
            )));
        }
        let name = map_output_name(
            r.map_index,
            flotilla_mapreduce::task::AttemptId(r.map_attempt),
            r.partition,
        );
        let path = self.dir.join(&name);
        let (offset, max) = (r.offset, r.max_bytes);
        let read = tokio::task::spawn_blocking(move || Self::read_chunk(&path, offset, max))
            .await
            .map_err(|e| Status::internal(format!("reader task: {e}")))?;
        match read {
            Ok((data, total_bytes)) => Ok(Response::new(pb::FetchReply { data, total_bytes })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Status::not_found(format!("no map output {name}")))
            }
            Err(e) => Err(Status::internal(format!("reading {name}: {e}"))),
        }
    }
}

/// Copies partition `partition` of `output` from its host into `dest`.
pub async fn fetch_to_file(
    job_id: u64,
    output: &MapOutput,
    partition: u32,
    dest: &Path,
    tls: Option<&std::sync::Arc<flotilla_tls::ClientTls>>,
) -> Result<(), TaskError> {
    let fail = |why: String| TaskError::Fetch {
        map_index: output.map_index,
        map_attempt: output.map_attempt,
        from: output.host.clone(),
        why,
    };
    let endpoint = crate::worker::channel_to(&output.host, tls)
        .map_err(|e| fail(format!("bad address: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30));
    let connected = match tls {
        Some(tls) => endpoint.connect_with_connector(tls.connector()).await,
        None => endpoint.connect().await,
    };
    let channel = connected.map_err(|e| {
        fail(flotilla_proto::signal::with_causes(
            format!("connect: {e}"),
            &e,
        ))
    })?;
    let mut client = ShuffleClient::new(channel).max_decoding_message_size(8 << 20);
    let mut file = std::fs::File::create(dest).map_err(TaskError::io("create", dest))?;
    let mut offset = 0u64;
    loop {
        let reply = client
            .fetch(pb::FetchRequest {
                job_id,
                map_index: output.map_index,
                map_attempt: output.map_attempt.0,
                partition,
                offset,
                max_bytes: FETCH_CHUNK_BYTES,
            })
            .await
            .map_err(|s| fail(format!("{}: {}", s.code(), s.message())))?
            .into_inner();
        if reply.total_bytes != output.bytes {
            return Err(fail(format!(
                "size {} differs from the {} bytes the map reported",
                reply.total_bytes, output.bytes
            )));
        }
        if reply.data.is_empty() {
            break;
        }
        file.write_all(&reply.data)
            .map_err(TaskError::io("write", dest))?;
        offset += reply.data.len() as u64;
    }
    if offset != output.bytes {
        return Err(fail(format!("got {offset} of {} bytes", output.bytes)));
    }
    Ok(())
}
