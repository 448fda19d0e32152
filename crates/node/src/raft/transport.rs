//! Outbound peer transport: one long-lived gRPC client stream per peer,
//! fed by a bounded queue.
//!
//! [`Transport::send`] never blocks the Raft task: it encodes each message
//! and puts it on its peer's queue, dropping it when the queue is full or
//! the peer is unknown (Raft retransmits what matters; a slow peer must not
//! stall the leader). Each peer's task batches whatever is queued into one
//! [`MessageBatch`], so a burst costs one HTTP/2 frame, and the stream's
//! flow control slows the batches to what the peer takes. When the stream
//! breaks, the task drops what is queued (it is stale by then) and
//! reconnects with capped exponential backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flotilla_proto::raft::v1::MessageBatch;
use flotilla_proto::raft::v1::raft_transport_client::RaftTransportClient;
use flotilla_raft::{Encode, Message, NodeId};
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE_MESSAGES: usize = 4096;
/// Most messages in one batch.
const BATCH_MESSAGES_MAX: usize = 512;
/// Most payload bytes in one batch (beyond the first message).
const BATCH_BYTES_MAX: usize = 4 << 20;

/// Sends Raft messages to peers. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Transport {
    peers: Arc<HashMap<NodeId, mpsc::Sender<Bytes>>>,
    dropped: Arc<AtomicU64>,
}

impl Transport {
    /// Starts one sender task per peer (`peers` maps ids to `host:port`;
    /// this node's own id is skipped). Tasks end on `shutdown`.
    pub fn start(
        cluster_id: u64,
        me: NodeId,
        peers: &BTreeMap<NodeId, String>,
        shutdown: watch::Receiver<bool>,
    ) -> Transport {
        let mut queues = HashMap::new();
        for (&id, addr) in peers {
            if id == me {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MESSAGES);
            queues.insert(id, tx);
            let link = PeerLink {
                cluster_id,
                me,
                addr: addr.clone(),
            };
            tokio::spawn(link.run(rx, shutdown.clone()));
        }
        Transport {
            peers: Arc::new(queues),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues `msgs` for their receivers; drops what does not fit.
    pub fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let delivered = self
                .peers
                .get(&m.to)
                .is_some_and(|q| q.try_send(m.to_bytes()).is_ok());
            if !delivered {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Messages dropped so far (full queue or unknown peer).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

struct PeerLink {
    cluster_id: u64,
    me: NodeId,
    addr: String,
}

impl PeerLink {
    async fn run(self, mut queue: mpsc::Receiver<Bytes>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let stop = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => true,
                connected = self.stream(&mut queue) => {
                    if connected { backoff = Duration::from_millis(50); }
                    false
                }
            };
            if stop || queue.is_closed() {
                return;
            }
            // Drop what queued up while the link was down: it is stale.
            while queue.try_recv().is_ok() {}
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Connects and streams batches until the stream breaks; returns
    /// whether a connection was made.
    async fn stream(&self, queue: &mut mpsc::Receiver<Bytes>) -> bool {
        let Ok(endpoint) = Endpoint::from_shared(format!("http://{}", self.addr)) else {
            return false;
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer = %self.addr, error = %e, "cannot connect to peer");
                return false;
            }
        };
        tracing::debug!(peer = %self.addr, "connected to peer");
        let mut client = RaftTransportClient::new(channel);
        let (btx, brx) = mpsc::channel::<MessageBatch>(16);
        let mut call = tokio::spawn(async move {
            client
                .send(tokio_stream::wrappers::ReceiverStream::new(brx))
                .await
        });
        loop {
            let first = tokio::select! {
                _ = &mut call => return true,
                m = queue.recv() => m,
            };
            let Some(first) = first else { return true };
            let batch = self.batch(first, queue);
            if btx.send(batch).await.is_err() {
                call.abort();
                return true;
            }
        }
    }

    fn batch(&self, first: Bytes, queue: &mut mpsc::Receiver<Bytes>) -> MessageBatch {
        let mut bytes = first.len();
        let mut messages = vec![first];
        while messages.len() < BATCH_MESSAGES_MAX && bytes < BATCH_BYTES_MAX {
            match queue.try_recv() {
                Ok(m) => {
                    bytes += m.len();
                    messages.push(m);
                }
                Err(_) => break,
            }
        }
        MessageBatch {
            cluster_id: self.cluster_id,
            from: self.me.get(),
            messages,
        }
    }
}
