//! The tokio executor of a [`flotilla_host::Host`]: the task that runs
//! one Raft group on real time, sockets and files. It turns the timer,
//! peer messages, requests and finished disk work into the host's events,
//! and carries out the host's actions: messages go to the [`Transport`],
//! syncs and snapshot jobs run on the blocking pool (never on a runtime
//! worker), and the status goes to a `watch` after every round.
//!
//! Everything the member decides (the Ready loop's durability order,
//! group commit, snapshot scheduling, request tracking) is the host's
//! (`crates/host`), which the simulator runs on virtual time; what is
//! here only waits.
//!
//! Invariant: one sync and one snapshot job run at a time, as the host
//! asks; a [`Pump::SyncNow`] is synced before any other event reaches the
//! host.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_host::{Action, Host, HostOptions, Pump, SnapshotTask, StateMachine, Waiter, Waiters};
use flotilla_raft::{LogIndex, Message};
use flotilla_wal::{GroupHandle, Lsn, Wal, WalError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use flotilla_host::{FatalError, StartError};

use super::handle::{NodeHandle, Request};
use super::transport::Transport;
use crate::metrics::Metrics;

/// How a node runs: what the host decides with ([`HostOptions`]: the
/// Raft configuration, snapshot interval, overload bounds; a server sets
/// [`PROPOSALS_PENDING_MAX`] and [`READS_PENDING_MAX`]) and what only
/// the executor needs.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The host's options (the Raft core's ticks are `tick` long).
    pub host: HostOptions,
    /// The tick interval.
    pub tick: Duration,
    /// Requests queued for the node beyond which callers wait.
    pub request_queue: usize,
    /// Where the node records what it does.
    pub metrics: Arc<Metrics>,
}

impl NodeOptions {
    /// A server's node: the Raft configuration `raft` (seeded by the
    /// caller: [`crate::start_seed`]), a snapshot every
    /// `snapshot_entries` applied entries, ticks of `tick`, at most
    /// [`PROPOSALS_PENDING_MAX`] proposals and [`READS_PENDING_MAX`] reads
    /// waiting, and its own metrics.
    pub fn server(
        raft: flotilla_raft::Config,
        snapshot_entries: u64,
        tick: Duration,
    ) -> NodeOptions {
        NodeOptions {
            host: HostOptions {
                raft,
                snapshot_entries,
                snapshot_log_bytes: None,
                proposals_pending_max: PROPOSALS_PENDING_MAX,
                reads_pending_max: READS_PENDING_MAX,
            },
            tick,
            request_queue: 8192,
            metrics: Arc::new(Metrics::default()),
        }
    }
}

/// A running node: its handle and its task.
pub struct RaftNode<SM: StateMachine> {
    /// Sends requests to the node.
    pub handle: NodeHandle<SM::Output>,
    /// The node's task; ends with `Ok` on shutdown.
    pub task: JoinHandle<Result<(), FatalError>>,
}

/// A tokio oneshot as the host's [`Waiter`].
pub(crate) struct Tx<T>(pub(crate) oneshot::Sender<T>);

impl<T> Waiter<T> for Tx<T> {
    fn answer(self, value: T) {
        // A caller that left (deadline, cancelled) is not an error.
        let _ = self.0.send(value);
    }

    fn gave_up(&self) -> bool {
        self.0.is_closed()
    }
}

/// The host's waiters in production: oneshots.
pub(crate) struct Oneshots;

impl<O> Waiters<O> for Oneshots {
    type Propose = Tx<Result<flotilla_host::Applied<O>, flotilla_host::NodeError>>;
    type Index = Tx<Result<LogIndex, flotilla_host::NodeError>>;
}

/// Most queued items taken per loop iteration, so a flood of one kind
/// cannot starve the timer.
const DRAIN_MAX: usize = 4096;
/// Most proposals waiting for their entry to apply (etcd refuses writes
/// with "too many requests" once 5,000 committed entries wait to apply;
/// this counts what waits for commitment too). Each holds its command
/// until applied, so this, times the request size limit, bounds them.
pub const PROPOSALS_PENDING_MAX: usize = 32_768;
/// Most ReadIndex requests waiting to be confirmed and applied.
pub const READS_PENDING_MAX: usize = 32_768;

/// What the driver's task receives.
struct Queues<Output> {
    inbound: mpsc::Receiver<Message>,
    requests: mpsc::Receiver<Request<Output>>,
    snapshots: mpsc::UnboundedReceiver<(LogIndex, Option<bytes::Bytes>)>,
}

/// The executor's side of one running host.
struct Driver<SM: StateMachine> {
    host: Host<SM, Oneshots>,
    wal: Wal,
    transport: Transport,
    status: watch::Sender<flotilla_host::NodeStatus>,
    metrics: Arc<Metrics>,
    /// Where snapshot jobs send their result: the index they were taken
    /// at, and the encoded state (`None` if the job panicked). Unbounded,
    /// but one job runs at a time, so at most one result waits.
    snapshots: mpsc::UnboundedSender<(LogIndex, Option<bytes::Bytes>)>,
    /// The sync the host asked for ([`Action::Sync`]), if one runs.
    sync: Option<SyncTask>,
}

/// The sync that runs on the blocking pool.
struct SyncTask {
    handle: JoinHandle<Result<Lsn, WalError>>,
    started: Instant,
}

impl<SM: StateMachine> RaftNode<SM> {
    /// Recovers the node from `storage` (restoring `sm` from the saved
    /// snapshot) and starts its task. The task runs until `shutdown`
    /// becomes true or the WAL fails.
    pub fn start(
        opts: NodeOptions,
        storage: GroupHandle,
        sm: Arc<Mutex<SM>>,
        transport: Transport,
        inbound: mpsc::Receiver<Message>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<RaftNode<SM>, StartError> {
        let wal = storage.wal();
        let host = Host::new(opts.host, storage, sm, opts.metrics.replica.clone())?;
        let (status_tx, status_rx) = watch::channel(host.status().clone());
        let (req_tx, req_rx) = mpsc::channel(opts.request_queue);
        let (snap_tx, snap_rx) = mpsc::unbounded_channel();
        let mut driver = Driver {
            host,
            wal,
            transport,
            status: status_tx,
            metrics: opts.metrics.clone(),
            snapshots: snap_tx,
            sync: None,
        };
        // The member table the state holds, before any message leaves.
        driver.execute();
        let queues = Queues {
            inbound,
            requests: req_rx,
            snapshots: snap_rx,
        };
        let task = tokio::spawn(driver.run(opts.tick, queues, shutdown));
        let handle = NodeHandle {
            requests: req_tx,
            status: status_rx,
        };
        Ok(RaftNode { handle, task })
    }
}

/// Syncs `wal` up to `lsn` (everything written, for `None`) on the
/// blocking pool, and waits for it.
async fn sync_off_thread(wal: &Wal, lsn: Option<Lsn>) -> Result<(), FatalError> {
    let wal = wal.clone();
    let synced = tokio::task::spawn_blocking(move || match lsn {
        Some(lsn) => wal.sync_to(lsn),
        None => wal.sync(),
    });
    synced
        .await
        .map_err(|e| FatalError::SyncTask(e.to_string()))??;
    Ok(())
}

impl<SM: StateMachine> Driver<SM> {
    async fn run(
        mut self,
        tick: Duration,
        queues: Queues<SM::Output>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), FatalError> {
        let Queues {
            mut inbound,
            mut requests,
            mut snapshots,
        } = queues;
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                done = async { (&mut self.sync.as_mut().expect("guarded").handle).await }, if self.sync.is_some() => {
                    let lsn = done.map_err(|e| FatalError::SyncTask(e.to_string()))?;
                    lsn?;
                    if let Some(task) = self.sync.take() {
                        self.metrics.fsync.observe(task.started.elapsed());
                    }
                    self.host.synced();
                }
                _ = ticker.tick() => self.host.tick(),
                Some(m) = inbound.recv() => self.step(m),
                Some(r) = requests.recv() => self.request(r),
                Some((index, data)) = snapshots.recv() => {
                    let started = Instant::now();
                    self.host.snapshot_built(index, data);
                    tracing::debug!(%index, ms = started.elapsed().as_millis() as u64, "compacted the log to a built snapshot");
                }
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            for _ in 0..DRAIN_MAX {
                match inbound.try_recv() {
                    Ok(m) => self.step(m),
                    Err(_) => break,
                }
            }
            for _ in 0..DRAIN_MAX {
                match requests.try_recv() {
                    Ok(r) => self.request(r),
                    Err(_) => break,
                }
            }
            self.pump().await?;
            self.execute();
            self.status.send_if_modified(|s| {
                let changed = s != self.host.status();
                if changed {
                    s.clone_from(self.host.status());
                }
                changed
            });
        }
        // Everything written so far becomes durable before the task ends.
        sync_off_thread(&self.wal, None).await
    }

    fn step(&mut self, m: Message) {
        // The log line comes at the 1st, 2nd, 4th, 8th... refusal, so a
        // flooding peer cannot flood the log too.
        let from = m.from;
        if let Err((e, refused)) = self.host.step(m)
            && refused.is_power_of_two()
        {
            tracing::warn!(%from, refused, "dropped a peer message: {e}");
        }
    }

    fn request(&mut self, r: Request<SM::Output>) {
        match r {
            Request::Propose(data, tx) => self.host.propose(data, Tx(tx)),
            Request::ReadIndex(tx) => self.host.read_index(Tx(tx)),
            Request::ConfChange(cc, tx) => self.host.change_membership(&cc, Tx(tx)),
            Request::TransferLeader(to, tx) => {
                // The caller may have gone; the transfer goes on.
                let _ = tx.send(self.host.transfer_leader(to));
            }
            Request::LogTail(n, with_data, tx) => {
                let _ = tx.send(log_tail(self.host.raw(), n, with_data));
            }
        }
    }

    /// Carries out the host's actions, in order.
    fn execute(&mut self) {
        for action in self.host.take_actions() {
            match action {
                Action::Send(messages) => self.transport.send(messages),
                Action::SetPeers(table) => self.transport.set_peers(&table.addrs, &table.removed),
                Action::Sync(lsn) => {
                    let wal = self.wal.clone();
                    self.sync = Some(SyncTask {
                        handle: tokio::task::spawn_blocking(move || wal.sync_to(lsn)),
                        started: Instant::now(),
                    });
                }
                Action::Snapshot(task) => self.spawn_snapshot(task),
            }
        }
    }

    /// Handles the host's Readys; one that carries a snapshot is synced
    /// before the host goes on. A pass of 50 ms or more (the host's lock
    /// on the machine held that long) is logged at debug level: that is
    /// what a stall of the writes through this member looks like.
    async fn pump(&mut self) -> Result<(), FatalError> {
        let pumped = Instant::now();
        while let Pump::SyncNow(lsn) = self.host.pump()? {
            // A Ready with a snapshot: it must be durable before the
            // host goes on. Its messages so far leave meanwhile.
            self.execute();
            let started = Instant::now();
            sync_off_thread(&self.wal, Some(lsn)).await?;
            self.metrics.fsync.observe(started.elapsed());
            self.host.resume()?;
            let ms = started.elapsed().as_millis() as u64;
            tracing::debug!(ms, "a snapshot's Ready is durable");
        }
        let ms = pumped.elapsed().as_millis() as u64;
        if ms >= 50 {
            tracing::debug!(ms, "a slow pump");
        }
        Ok(())
    }

    /// Builds a snapshot on the blocking pool; its result comes back
    /// through `snapshots`.
    fn spawn_snapshot(&self, task: SnapshotTask) {
        let (wal, done) = (self.wal.clone(), self.snapshots.clone());
        let index = task.index;
        tokio::spawn(async move {
            let started = Instant::now();
            let data = tokio::task::spawn_blocking(move || task.run(&wal))
                .await
                .ok();
            let ms = started.elapsed().as_millis() as u64;
            let bytes = data.as_ref().map(bytes::Bytes::len);
            tracing::debug!(%index, ?bytes, ms, "built a snapshot and wrote its file");
            let _ = done.send((index, data));
        });
    }
}

/// The last `n` entries `raw` holds, oldest first.
fn log_tail(
    raw: &flotilla_raft::RawNode,
    n: usize,
    with_data: bool,
) -> Vec<crate::handle::LogEntryInfo> {
    use flotilla_raft::EntryKind;
    let last = raw.status().last_index.0;
    let first = last.saturating_sub(n as u64).saturating_add(1).max(1);
    (first..=last)
        .filter_map(|i| raw.entry(flotilla_raft::LogIndex(i)))
        .map(|e| crate::handle::LogEntryInfo {
            index: e.index,
            term: e.term,
            kind: match e.kind {
                EntryKind::Noop => "noop",
                EntryKind::Command => "command",
                EntryKind::ConfChange => "conf-change",
            },
            bytes: e.data.len(),
            data: with_data.then(|| e.data.clone()),
        })
        .collect()
}
