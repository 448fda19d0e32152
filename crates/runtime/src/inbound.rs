//! Inbound peer transport: the `RaftTransport` gRPC service. Each peer's
//! stream of batches is decoded and stepped into the node's task; on a
//! server hosting several Raft groups, into the task of the group each
//! message is tagged with ([`InboundService::with_group`]).
//!
//! Peers are untrusted input (STYLE.md practice 11): a batch from another
//! cluster is refused, and a message that fails to decode, or is not
//! addressed to this node, or claims another sender than the batch is
//! dropped and counted, never a panic; so is a message for a group this
//! server does not host, and a batch whose group tags do not match its
//! messages one for one is refused whole. A member removed from the group
//! is told so ([`super::transport::REMOVED_PREFIX`]), so that it stops.
//! With `--peer-client-cert-auth` ([`Transport::peer_cert_auth`]) a
//! connection that did not present a certificate from the peer CA is
//! refused before any of its batches is read ([`require_peer`]).
//! Backpressure: the node's inbound
//! queue is bounded and this service awaits room in it, so a flooding peer
//! is slowed by HTTP/2 flow control rather than growing memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_proto::raft::v1::raft_transport_server::RaftTransport;
use flotilla_proto::raft::v1::{MessageBatch, SendSummary};
use flotilla_raft::{Decode, Message, NodeId};
use flotilla_tls::PeerIdentity;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

use super::transport::{REMOVED_PREFIX, Transport};
use crate::metrics::Metrics;
use flotilla_proto::signal;

/// The `RaftTransport` service of one node. A peer's stream holds no
/// state beyond the batch being stepped; it ends with the peer's call,
/// on shutdown, or when the server's HTTP/2 keepalive finds the peer
/// gone.
#[derive(Clone, Debug)]
pub struct InboundService {
    cluster_id: u64,
    me: NodeId,
    /// The node of each group this server hosts (group 0: a one-group
    /// server's only node).
    nodes: Arc<BTreeMap<u64, mpsc::Sender<Message>>>,
    rejected: Arc<AtomicU64>,
    closing: watch::Receiver<bool>,
    transport: Option<Transport>,
    metrics: Option<Arc<Metrics>>,
}

impl InboundService {
    /// Steps what peers of `cluster_id` send to `me` into `node`. Open
    /// streams end when `closing` turns true, so a graceful shutdown of
    /// the server does not wait for peers to hang up.
    pub fn new(
        cluster_id: u64,
        me: NodeId,
        node: mpsc::Sender<Message>,
        closing: watch::Receiver<bool>,
    ) -> InboundService {
        InboundService {
            cluster_id,
            me,
            nodes: Arc::new(BTreeMap::from([(0, node)])),
            rejected: Arc::new(AtomicU64::new(0)),
            closing,
            transport: None,
            metrics: None,
        }
    }

    /// Steps the messages tagged with `group` into `node` too: one of the
    /// groups of a server hosting several ([`Transport::for_group`]).
    pub fn with_group(mut self, group: u64, node: mpsc::Sender<Message>) -> InboundService {
        Arc::make_mut(&mut self.nodes).insert(group, node);
        self
    }

    /// Refuses the messages of members that `transport`'s peer table lists
    /// as removed.
    pub fn with_removed_from(mut self, transport: Transport) -> InboundService {
        self.transport = Some(transport);
        self
    }

    /// Counts the messages dropped as invalid in `metrics` too.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> InboundService {
        self.metrics = Some(metrics);
        self
    }

    /// Messages dropped as invalid so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Counts a dropped message; logs the 1st, 2nd, 4th, 8th... so that a
    /// flooding peer cannot flood the log too.
    fn reject(&self, from: u64) {
        let n = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(m) = &self.metrics {
            m.peer_messages_undecodable.fetch_add(1, Ordering::Relaxed);
        }
        if n.is_power_of_two() {
            tracing::warn!(
                from,
                dropped = n,
                "dropped a peer message that does not decode, or is not addressed to this \
                 node, or not from the batch's sender, or is for a group this server does \
                 not host"
            );
        }
    }

    /// The message in `raw`, if valid, with its entries copied out of
    /// the stream's buffer ([`super::owned`]): the log and the store keep
    /// them far longer than the batch lives.
    fn decode(&self, batch: &MessageBatch, raw: bytes::Bytes) -> Option<Message> {
        let m = Message::from_bytes(&raw).ok()?;
        let valid = m.to == self.me && m.from.get() == batch.from;
        valid.then(|| super::owned::detach_entries(m))
    }
}

/// Refuses `request` unless it came on a connection accepted as a
/// member's with a checked peer certificate, when `transport` requires
/// one. The server's connection type puts the [`PeerIdentity`] in every
/// request; a request without one (a test's in-process server) is not a
/// TLS connection and is refused when certificates are required.
pub fn require_peer<T>(transport: Option<&Transport>, request: &Request<T>) -> Result<(), Status> {
    if !transport.is_some_and(Transport::peer_cert_auth) {
        return Ok(());
    }
    let verified = request
        .extensions()
        .get::<PeerIdentity>()
        .is_some_and(|p| p.verified_peer);
    if verified {
        return Ok(());
    }
    tracing::warn!("refused a peer call from a connection without a peer certificate");
    Err(Status::unauthenticated(
        "the peer service takes only members: connect with a certificate from the peer CA",
    ))
}

#[tonic::async_trait]
impl RaftTransport for InboundService {
    async fn send(
        &self,
        request: Request<Streaming<MessageBatch>>,
    ) -> Result<Response<SendSummary>, Status> {
        require_peer(self.transport.as_ref(), &request)?;
        let mut stream = request.into_inner();
        let mut received = 0u64;
        let mut closing = self.closing.clone();
        loop {
            let next = tokio::select! {
                next = stream.message() => next?,
                _ = closing.wait_for(|c| *c) => None,
            };
            let Some(mut batch) = next else { break };
            if batch.cluster_id != self.cluster_id {
                tracing::warn!(
                    from = batch.from,
                    cluster = batch.cluster_id,
                    "refused messages from a node of another cluster"
                );
                return Err(Status::failed_precondition(format!(
                    "peer belongs to cluster {:016x}, this node to {:016x}",
                    batch.cluster_id, self.cluster_id
                )));
            }
            if self
                .transport
                .as_ref()
                .is_some_and(|t| t.is_removed(NodeId(batch.from)))
            {
                let message = format!(
                    "{REMOVED_PREFIX}: member {} was removed from the cluster",
                    batch.from
                );
                return Err(signal::status(
                    tonic::Code::FailedPrecondition,
                    message,
                    signal::Kind::RemovedMember,
                ));
            }
            if let Some(t) = &self.transport
                && !batch.from_addr.is_empty()
            {
                t.learn(NodeId(batch.from), &batch.from_addr);
            }
            let groups = std::mem::take(&mut batch.groups);
            if !groups.is_empty() && groups.len() != batch.messages.len() {
                return Err(Status::invalid_argument(format!(
                    "a batch of {} messages has {} group tags; it needs one per message, or none",
                    batch.messages.len(),
                    groups.len()
                )));
            }
            for (i, raw) in std::mem::take(&mut batch.messages).into_iter().enumerate() {
                let group = groups.get(i).copied().unwrap_or(0);
                let node = self.nodes.get(&group);
                let Some((node, m)) = node.zip(self.decode(&batch, raw)) else {
                    self.reject(batch.from);
                    continue;
                };
                received += 1;
                if node.send(m).await.is_err() {
                    return Err(Status::unavailable("the node is shutting down"));
                }
            }
        }
        Ok(Response::new(SendSummary { received }))
    }
}
