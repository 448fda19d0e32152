//! A worker process: drives the I/O-free [`Worker`] state machine with a
//! gRPC client to the coordinator, runs tasks on blocking threads while a
//! heartbeat reports their progress, and serves its map outputs to other
//! workers' reducers through a [`ShuffleService`].
//!
//! Files: map outputs go to the job's shared directory when it has one,
//! else to `<work dir>/out` (served by the shuffle); spills and fetched
//! inputs go to `<work dir>/scratch`. Both are removed when the worker exits
//! (with the work directory itself if the worker created it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flotilla_mapreduce::apps;
use flotilla_mapreduce::task::{MapTask, ReduceTask, TaskKind, TaskRef, map_output_name};
use flotilla_mapreduce::time::Millis;
use flotilla_mapreduce::worker::{
    TaskOutcome, Worker, WorkerAction, WorkerConfig, WorkerEvent, WorkerExit,
};
use flotilla_proto::mapreduce::v1 as pb;
use flotilla_proto::mapreduce::v1::coordinator_client::CoordinatorClient;
use flotilla_tls::{ClientTls, ServerTls};
use tokio::net::TcpListener;
use tonic::transport::Channel;

use super::convert::{done_to_pb, reply_from_pb, task_ref_to_pb};
use super::effects::RealEffects;
use super::error::TaskError;
use super::job::{AppSpec, JobSpec};
use super::map_task::{self, Control, TaskEnv};
use super::reduce_task;
use super::shuffle::{ShuffleService, fetch_to_file};

/// How to run a worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator's address, `host:port`.
    pub coordinator: String,
    /// Where the shuffle service listens (port 0 picks one).
    pub shuffle_listen: SocketAddr,
    /// The `host:port` other workers use to reach the shuffle service, if
    /// not the listening address.
    pub advertise: Option<String>,
    /// Work directory; `None` makes (and later removes) a temporary one.
    pub work_dir: Option<PathBuf>,
    /// Retry and give-up timing.
    pub config: WorkerConfig,
    /// TLS toward the coordinator and other workers, and on the shuffle
    /// service (`None`: plaintext).
    pub tls: Option<WorkerTls>,
}

/// A worker's TLS: it serves its map outputs with one certificate and
/// dials the coordinator and other workers' shuffle services with the
/// same one, checking theirs against the same CA.
#[derive(Debug, Clone)]
pub struct WorkerTls {
    /// The shuffle service's side.
    pub serve: Arc<ServerTls>,
    /// The dialing side.
    pub dial: Arc<ClientTls>,
}

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The shuffle service could not listen.
    #[error("cannot listen on {addr} for the shuffle service: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The work directory could not be made.
    #[error("cannot create work directory {}: {source}", .path.display())]
    WorkDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The coordinator address is not a valid URI.
    #[error("bad coordinator address {addr}: {why}")]
    Address {
        /// As given.
        addr: String,
        /// Why.
        why: String,
    },
    /// The job cannot run here (unknown app: a version mismatch).
    #[error("cannot run job: {0}")]
    Job(String),
}

/// The connection and identity a worker's calls need.
struct Session {
    client: CoordinatorClient<Channel>,
    worker_id: u64,
    start: Instant,
    env: Option<Arc<TaskEnv>>,
    job_id: Arc<AtomicU64>,
    shuffle_addr: String,
    work_dir: PathBuf,
    dial: Option<Arc<ClientTls>>,
}

impl Session {
    fn now(&self) -> Millis {
        Millis(self.start.elapsed().as_millis() as u64)
    }
}

/// Runs a worker until it is told to exit or the coordinator is gone.
pub async fn run(options: WorkerOptions) -> Result<WorkerExit, WorkerError> {
    let (work_dir, owned) = match &options.work_dir {
        Some(dir) => (dir.clone(), false),
        None => (temp_work_dir(), true),
    };
    for sub in ["out", "scratch"] {
        let path = work_dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|source| WorkerError::WorkDir { path, source })?;
    }
    let listener = TcpListener::bind(options.shuffle_listen)
        .await
        .map_err(|source| WorkerError::Bind {
            addr: options.shuffle_listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| WorkerError::Bind {
        addr: options.shuffle_listen,
        source,
    })?;
    let job_id = Arc::new(AtomicU64::new(0));
    let shuffle = ShuffleService::new(work_dir.join("out"), job_id.clone());
    let (serve_tls, dial) = match options.tls {
        Some(tls) => (Some(tls.serve), Some(tls.dial)),
        None => (None, None),
    };
    let server = tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(
        pb::shuffle_server::ShuffleServer::new(shuffle),
        flotilla_tls::incoming(listener, serve_tls),
    ));
    let channel = channel_to(&options.coordinator, dial.as_ref())
        .map_err(|why| WorkerError::Address {
            addr: options.coordinator.clone(),
            why,
        })?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(20));
    let channel = match &dial {
        Some(tls) => flotilla_tls::lazy_channel(channel, tls),
        None => channel.connect_lazy(),
    };
    let mut session = Session {
        client: CoordinatorClient::new(channel),
        worker_id: 0,
        start: Instant::now(),
        env: None,
        job_id,
        shuffle_addr: options
            .advertise
            .clone()
            .unwrap_or_else(|| bound.to_string()),
        work_dir: work_dir.clone(),
        dial,
    };
    let result = drive(&mut session, options.config).await;
    server.abort();
    if owned {
        let _ = std::fs::remove_dir_all(&work_dir);
    } else {
        // The job has ended (or its coordinator is gone): nothing here is
        // wanted any more.
        for sub in ["out", "scratch"] {
            let _ = std::fs::remove_dir_all(work_dir.join(sub));
        }
    }
    result
}

/// An endpoint for `addr` (`host:port`): `https` when the worker dials
/// over TLS, so that the connector and the name checked agree.
pub(crate) fn channel_to(
    addr: &str,
    tls: Option<&Arc<ClientTls>>,
) -> Result<tonic::transport::Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(|e| e.to_string())
}

fn temp_work_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("flotilla-mr-worker-{}-{nanos}", std::process::id()))
}

/// The state machine loop.
async fn drive(session: &mut Session, config: WorkerConfig) -> Result<WorkerExit, WorkerError> {
    let mut machine = Worker::new(config);
    let mut actions = machine.handle(WorkerEvent::Start { now: session.now() });
    loop {
        let Some(action) = actions.pop() else {
            return Err(WorkerError::Job("worker state machine stalled".into()));
        };
        let event = match action {
            WorkerAction::Exit(exit) => return Ok(exit),
            WorkerAction::Register => register(session).await?,
            WorkerAction::RequestTask => request(session).await,
            WorkerAction::RunMap(task) => run_map(session, task).await,
            WorkerAction::RunReduce(task) => run_reduce(session, task).await,
            WorkerAction::Report(outcome) => report(session, outcome).await,
            WorkerAction::SleepUntil(t) => {
                tokio::time::sleep(Duration::from_millis(t.since(session.now()).0)).await;
                WorkerEvent::Wake { now: session.now() }
            }
        };
        actions = machine.handle(event);
    }
}

fn rpc_failed(session: &Session, status: &tonic::Status) -> WorkerEvent {
    WorkerEvent::RpcFailed {
        error: flotilla_proto::signal::with_causes(
            format!("{}: {}", status.code(), status.message()),
            status,
        ),
        now: session.now(),
    }
}

async fn register(session: &mut Session) -> Result<WorkerEvent, WorkerError> {
    let request = pb::RegisterRequest {
        shuffle_addr: session.shuffle_addr.clone(),
        pid: std::process::id(),
        hostname: std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    let reply = match session.client.register(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return Ok(rpc_failed(session, &status)),
    };
    let spec = reply
        .job
        .and_then(JobSpec::from_pb)
        .ok_or_else(|| WorkerError::Job("the coordinator sent no job".into()))?;
    session.worker_id = reply.worker_id;
    session.job_id.store(spec.job_id, Ordering::Relaxed);
    session.env = Some(Arc::new(task_env(
        spec,
        &session.work_dir,
        session.dial.clone(),
    )?));
    Ok(WorkerEvent::Registered { now: session.now() })
}

fn task_env(
    spec: JobSpec,
    work_dir: &Path,
    dial: Option<Arc<ClientTls>>,
) -> Result<TaskEnv, WorkerError> {
    let app = match &spec.app {
        AppSpec::BuiltIn { name, params } => {
            Some(apps::build(name, params).map_err(|e| WorkerError::Job(e.to_string()))?)
        }
        AppSpec::Streaming { .. } => None,
    };
    Ok(TaskEnv {
        fx: RealEffects::new(spec.output_dir.clone()),
        map_dir: spec
            .shared_dir
            .clone()
            .unwrap_or_else(|| work_dir.join("out")),
        scratch: work_dir.join("scratch"),
        spec,
        app,
        dial,
    })
}

async fn request(session: &mut Session) -> WorkerEvent {
    let request = pb::TaskRequest {
        worker_id: session.worker_id,
    };
    match session.client.request_task(request).await {
        Ok(reply) => match reply_from_pb(reply.into_inner()) {
            Ok(reply) => WorkerEvent::Reply {
                reply,
                now: session.now(),
            },
            Err(e) => WorkerEvent::RpcFailed {
                error: e.to_string(),
                now: session.now(),
            },
        },
        Err(status) => rpc_failed(session, &status),
    }
}

async fn report(session: &mut Session, outcome: TaskOutcome) -> WorkerEvent {
    let worker_id = session.worker_id;
    let client = &mut session.client;
    let result = match &outcome {
        TaskOutcome::Done { task, report } => {
            client
                .report_done(done_to_pb(worker_id, *task, report))
                .await
        }
        TaskOutcome::Failed { task, error } => {
            let failure = pb::TaskFailure {
                worker_id,
                task: Some(task_ref_to_pb(*task)),
                error: error.clone(),
            };
            client.report_failure(failure).await
        }
        TaskOutcome::FetchFailed {
            task,
            map_index,
            map_attempt,
            error,
        } => {
            let failure = pb::FetchFailure {
                worker_id,
                task: Some(task_ref_to_pb(*task)),
                map_index: *map_index,
                map_attempt: map_attempt.0,
                error: error.clone(),
            };
            client.report_fetch_failure(failure).await
        }
        TaskOutcome::Abandoned { .. } => return WorkerEvent::Reported { now: session.now() },
    };
    match result {
        Ok(_) => WorkerEvent::Reported { now: session.now() },
        Err(status) => rpc_failed(session, &status),
    }
}

fn outcome_of(
    task: TaskRef,
    result: Result<flotilla_mapreduce::task::DoneReport, TaskError>,
) -> TaskOutcome {
    match result {
        Ok(report) => TaskOutcome::Done { task, report },
        Err(TaskError::Abandoned) => TaskOutcome::Abandoned { task },
        Err(TaskError::Fetch {
            map_index,
            map_attempt,
            from,
            why,
        }) => TaskOutcome::FetchFailed {
            task,
            map_index,
            map_attempt,
            error: format!("{from}: {why}"),
        },
        Err(e) => TaskOutcome::Failed {
            task,
            error: e.to_string(),
        },
    }
}

/// Runs one task: `work` gets the job's environment and the task's
/// control, and runs while heartbeats report progress; its result becomes
/// the task's outcome. A worker that has no job fails the task.
async fn run_task<F, Fut>(session: &mut Session, task: TaskRef, work: F) -> WorkerEvent
where
    F: FnOnce(Arc<TaskEnv>, Arc<Control>) -> Fut,
    Fut: std::future::Future<Output = Result<flotilla_mapreduce::task::DoneReport, TaskError>>,
{
    let Some(env) = session.env.clone() else {
        let outcome = TaskOutcome::Failed {
            task,
            error: "worker has no job".into(),
        };
        return WorkerEvent::TaskFinished {
            outcome,
            now: session.now(),
        };
    };
    let control = Arc::new(Control::default());
    let result = with_heartbeat(session, task, &control, work(env, control.clone())).await;
    WorkerEvent::TaskFinished {
        outcome: outcome_of(task, result),
        now: session.now(),
    }
}

/// A task's blocking part that panicked, as a task failure.
fn panicked(cmd: &str, e: tokio::task::JoinError) -> TaskError {
    TaskError::Command {
        cmd: cmd.into(),
        status: format!("panicked: {e}"),
        stderr_tail: String::new(),
    }
}

async fn run_map(session: &mut Session, task: MapTask) -> WorkerEvent {
    let task_ref = TaskRef {
        kind: TaskKind::Map,
        index: task.index,
        attempt: task.attempt,
    };
    run_task(session, task_ref, |env, control| async move {
        tokio::task::spawn_blocking(move || map_task::run(&env, &task, &control))
            .await
            .unwrap_or_else(|e| Err(panicked("map", e)))
    })
    .await
}

async fn run_reduce(session: &mut Session, task: ReduceTask) -> WorkerEvent {
    let task_ref = TaskRef {
        kind: TaskKind::Reduce,
        index: task.index,
        attempt: task.attempt,
    };
    run_task(session, task_ref, |env, control| async move {
        let inputs = gather_inputs(&env, &task).await?;
        tokio::task::spawn_blocking(move || reduce_task::run(&env, &task, inputs, &control))
            .await
            .unwrap_or_else(|e| Err(panicked("reduce", e)))
    })
    .await
}

/// Local paths of a reduce task's inputs: shared files checked in place,
/// others copied from their hosts' shuffle services.
async fn gather_inputs(env: &TaskEnv, task: &ReduceTask) -> Result<Vec<PathBuf>, TaskError> {
    let mut paths = Vec::with_capacity(task.inputs.len());
    for input in &task.inputs {
        let name = map_output_name(input.map_index, input.map_attempt, task.index);
        if input.host.is_empty() {
            let dir = env
                .spec
                .shared_dir
                .clone()
                .unwrap_or_else(|| env.map_dir.clone());
            let path = dir.join(&name);
            let size = std::fs::metadata(&path).map(|m| m.len());
            if size.as_ref().ok() != Some(&input.bytes) {
                return Err(TaskError::Fetch {
                    map_index: input.map_index,
                    map_attempt: input.map_attempt,
                    from: path.display().to_string(),
                    why: match size {
                        Ok(n) => format!("{n} bytes, the map reported {}", input.bytes),
                        Err(e) => e.to_string(),
                    },
                });
            }
            paths.push(path);
        } else {
            let dest = env
                .scratch
                .join(format!("fetch-a{}-{name}", task.attempt.0));
            fetch_to_file(env.spec.job_id, input, task.index, &dest, env.dial.as_ref()).await?;
            paths.push(dest);
        }
    }
    Ok(paths)
}

/// Runs `work` while reporting progress every heartbeat period; a "no
/// longer wanted" answer sets the cancel flag, which the task checks.
async fn with_heartbeat<F>(
    session: &mut Session,
    task: TaskRef,
    control: &Control,
    work: F,
) -> Result<flotilla_mapreduce::task::DoneReport, TaskError>
where
    F: std::future::Future<Output = Result<flotilla_mapreduce::task::DoneReport, TaskError>>,
{
    let period = session
        .env
        .as_ref()
        .map(|e| e.spec.progress_interval)
        .unwrap_or(Duration::from_secs(1));
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    tokio::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = ticks.tick() => {
                let report = pb::ProgressReport {
                    worker_id: session.worker_id,
                    task: Some(task_ref_to_pb(task)),
                    bytes_done: control.bytes.load(Ordering::Relaxed),
                };
                let call = session.client.report_progress(report);
                // A lost heartbeat is harmless; the coordinator times out
                // only after several.
                if let Ok(Ok(reply)) = tokio::time::timeout(period, call).await
                    && !reply.into_inner().keep_going
                {
                    control.cancel.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}
