//! The coordinator's gRPC server. Every request becomes one event for the
//! I/O-free [`Coordinator`] (under a mutex that nothing awaits under); a
//! ticker feeds it the time so timeouts fire; an [`Observer`] sees every
//! action and a progress snapshot (the CLI draws its progress bars from
//! them).
//!
//! When the job ends (done or failed) the server keeps answering "exit" for
//! [`ServeOptions::linger`], or until every registered worker has been told,
//! then stops. Every output is final before the job counts as done, so
//! stopping never cuts a write short.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_mapreduce::coordinator::{Action, Coordinator, Event, Outcome, Progress, Stats};
use flotilla_mapreduce::task::{AttemptId, DoneReport, Reply, WorkerId};
use flotilla_mapreduce::time::Millis;
use flotilla_proto::mapreduce::v1 as pb;
use flotilla_tls::ServerTls;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::console;
use super::convert::{reply_to_pb, task_ref_from_pb};
use super::files::remove_stale_temps;
use super::job::PreparedJob;

/// Sees what the coordinator does.
pub trait Observer: Send + Sync + 'static {
    /// Called after each event with its actions and the new progress.
    fn on_actions(&self, actions: &[Action], progress: &Progress);
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn on_actions(&self, _: &[Action], _: &Progress) {}
}

/// Server tunables.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How often the clock ticks (timeouts are checked).
    pub tick: Duration,
    /// How long to keep telling workers to exit after the job ends.
    pub linger: Duration,
    /// TLS for workers' connections (`None`: plaintext).
    pub tls: Option<Arc<ServerTls>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tick: Duration::from_millis(100),
            linger: Duration::from_secs(1),
            tls: None,
        }
    }
}

/// How a job went.
#[derive(Debug, Clone)]
pub struct JobSummary {
    /// Done or failed.
    pub outcome: Outcome,
    /// Counters.
    pub stats: Stats,
    /// Final sizes.
    pub progress: Progress,
    /// From start to the end of the job.
    pub elapsed: Duration,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The scheduling configuration is invalid.
    #[error(transparent)]
    Config(#[from] flotilla_mapreduce::coordinator::ConfigError),
    /// The gRPC server failed.
    #[error("coordinator server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

struct Shared {
    coord: Mutex<Coordinator>,
    start: Instant,
    spec: pb::JobSpec,
    shared_mode: bool,
    observer: Arc<dyn Observer>,
    ended: watch::Sender<Option<Duration>>,
    told_exit: Mutex<BTreeSet<WorkerId>>,
}

impl Shared {
    fn now(&self) -> Millis {
        Millis(self.start.elapsed().as_millis() as u64)
    }

    fn handle(&self, event: Event) -> Vec<Action> {
        let mut coord = self.coord.lock().unwrap_or_else(|p| p.into_inner());
        let actions = coord.handle(event);
        if *coord.outcome() != Outcome::Running && self.ended.borrow().is_none() {
            self.ended.send_replace(Some(self.start.elapsed()));
        }
        // Under the lock, so observers see events in the order they happened.
        self.observer.on_actions(&actions, &coord.progress());
        actions
    }
}

#[derive(Clone)]
struct Service(Arc<Shared>);

fn bad(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for Service {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        let r = request.into_inner();
        let host = if self.0.shared_mode {
            String::new()
        } else {
            r.shuffle_addr
        };
        let now = self.0.now();
        for action in self.0.handle(Event::Register { host, now }) {
            if let Action::Registered { worker } = action {
                return Ok(Response::new(pb::RegisterReply {
                    worker_id: worker.0,
                    job: Some(self.0.spec.clone()),
                }));
            }
        }
        Err(Status::internal("registration produced no worker id"))
    }

    async fn request_task(
        &self,
        request: Request<pb::TaskRequest>,
    ) -> Result<Response<pb::TaskReply>, Status> {
        let worker = WorkerId(request.into_inner().worker_id);
        let now = self.0.now();
        for action in self.0.handle(Event::RequestTask { worker, now }) {
            if let Action::Reply { reply, .. } = action {
                if matches!(reply, Reply::Exit(_)) {
                    self.0
                        .told_exit
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(worker);
                }
                return Ok(Response::new(reply_to_pb(reply)));
            }
        }
        Err(Status::internal("task request produced no reply"))
    }

    async fn report_progress(
        &self,
        request: Request<pb::ProgressReport>,
    ) -> Result<Response<pb::ProgressReply>, Status> {
        let r = request.into_inner();
        let task = task_ref_from_pb(r.task).map_err(bad)?;
        let event = Event::Progress {
            worker: WorkerId(r.worker_id),
            task,
            bytes_done: r.bytes_done,
            now: self.0.now(),
        };
        let keep_going = self.0.handle(event).iter().any(|a| {
            matches!(
                a,
                Action::KeepGoing {
                    keep_going: true,
                    ..
                }
            )
        });
        Ok(Response::new(pb::ProgressReply { keep_going }))
    }

    async fn report_done(
        &self,
        request: Request<pb::TaskDone>,
    ) -> Result<Response<pb::ReportReply>, Status> {
        let r = request.into_inner();
        let task = task_ref_from_pb(r.task).map_err(bad)?;
        let report = DoneReport {
            partition_bytes: r.partition_bytes,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
        };
        let worker = WorkerId(r.worker_id);
        self.0.handle(Event::Done {
            worker,
            task,
            report,
            now: self.0.now(),
        });
        Ok(Response::new(pb::ReportReply {}))
    }

    async fn report_failure(
        &self,
        request: Request<pb::TaskFailure>,
    ) -> Result<Response<pb::ReportReply>, Status> {
        let r = request.into_inner();
        let task = task_ref_from_pb(r.task).map_err(bad)?;
        let worker = WorkerId(r.worker_id);
        self.0.handle(Event::Failed {
            worker,
            task,
            error: r.error,
            now: self.0.now(),
        });
        Ok(Response::new(pb::ReportReply {}))
    }

    async fn report_fetch_failure(
        &self,
        request: Request<pb::FetchFailure>,
    ) -> Result<Response<pb::ReportReply>, Status> {
        let r = request.into_inner();
        let task = task_ref_from_pb(r.task).map_err(bad)?;
        self.0.handle(Event::FetchFailed {
            worker: WorkerId(r.worker_id),
            task,
            map_index: r.map_index,
            map_attempt: AttemptId(r.map_attempt),
            error: r.error,
            now: self.0.now(),
        });
        Ok(Response::new(pb::ReportReply {}))
    }
}

/// Runs `job`'s coordinator on `listener` until the job ends (plus the
/// linger period), and its web console on `console` ([`crate::console`])
/// if given; returns its summary.
pub async fn serve(
    listener: TcpListener,
    job: PreparedJob,
    options: ServeOptions,
    observer: Arc<dyn Observer>,
    console: Option<TcpListener>,
) -> Result<JobSummary, ServeError> {
    let coord = Coordinator::new(job.core.clone(), job.splits.clone())?;
    let (ended_tx, ended_rx) = watch::channel(None);
    let start = Instant::now();
    let (history, observer) = recorded(console.is_some(), start, observer);
    let shared = Arc::new(Shared {
        coord: Mutex::new(coord),
        start,
        spec: job.spec.to_pb(),
        shared_mode: job.spec.shared_dir.is_some(),
        observer,
        ended: ended_tx,
        told_exit: Mutex::new(BTreeSet::new()),
    });
    let ticker = {
        let shared = shared.clone();
        let tick = options.tick;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let now = shared.now();
                shared.handle(Event::Tick { now });
            }
        })
    };
    let console = console
        .zip(history)
        .map(|(listener, history)| serve_console(listener, &shared, history));
    let shutdown = wait_for_end(shared.clone(), ended_rx, options.linger);
    let service = pb::coordinator_server::CoordinatorServer::new(Service(shared.clone()));
    // One service per port: served directly, without tonic's router.
    let result = tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(
            service,
            flotilla_tls::incoming(listener, options.tls),
            shutdown,
        )
        .await;
    ticker.abort();
    if let Some(console) = console {
        console.abort();
    }
    result?;
    remove_stale_temps(&job.spec.output_dir);
    let coord = shared.coord.lock().unwrap_or_else(|p| p.into_inner());
    let elapsed = shared
        .ended
        .borrow()
        .unwrap_or_else(|| shared.start.elapsed());
    Ok(JobSummary {
        outcome: coord.outcome().clone(),
        stats: coord.stats().clone(),
        progress: coord.progress(),
        elapsed,
    })
}

/// With a console, `observer` behind a [`console::Recorder`] whose history
/// starts at `start`; without, `observer` alone (attempts are recorded only
/// for a console to show).
fn recorded(
    console: bool,
    start: Instant,
    observer: Arc<dyn Observer>,
) -> (Option<Arc<Mutex<console::History>>>, Arc<dyn Observer>) {
    if !console {
        return (None, observer);
    }
    let history = Arc::new(Mutex::new(console::History::new(start)));
    let recorder = console::Recorder {
        history: Arc::clone(&history),
        inner: observer,
    };
    (Some(history), Arc::new(recorder))
}

/// Serves the console on `listener`, each `/api/job` made from the
/// coordinator's state and `history` at the time of the request.
fn serve_console(
    listener: TcpListener,
    shared: &Arc<Shared>,
    history: Arc<Mutex<console::History>>,
) -> tokio::task::JoinHandle<()> {
    let shared = Arc::clone(shared);
    let snapshot: console::Snapshot = Arc::new(move || {
        let coord = shared.coord.lock().unwrap_or_else(|p| p.into_inner());
        let history = history.lock().unwrap_or_else(|p| p.into_inner());
        console::job_json(&history, coord.outcome(), &coord.progress(), coord.stats())
    });
    tokio::spawn(console::serve(listener, snapshot))
}

/// Resolves once the job has ended and every worker was told to exit, or the
/// linger period after the end has passed.
async fn wait_for_end(
    shared: Arc<Shared>,
    mut ended: watch::Receiver<Option<Duration>>,
    linger: Duration,
) {
    if ended.wait_for(Option::is_some).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + linger;
    while tokio::time::Instant::now() < deadline {
        let registered = shared
            .coord
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .progress()
            .workers;
        let told = shared
            .told_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        if told >= registered {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
