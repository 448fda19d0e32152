//! Applications on simulated nodes, and clients that talk to them over the
//! simulated network.
//!
//! A [`Service`] (for example the KV server) is plugged into every node
//! through a [`ServiceFactory`], without this crate knowing its type: the
//! simulator hands it each Ready (after persisting, before `advance`), the
//! messages clients send to its node, and asks it after each Ready whether
//! it wants a snapshot. A crash drops the instance; a restart builds a new
//! one from the snapshot on the node's disk, and Raft hands it the
//! committed entries after that snapshot.
//!
//! Clients are [`Actor`]s with an address (from [`Cluster::new_client`]).
//! Their messages and the services' replies cross the same [`Network`] as
//! Raft's traffic, with the same faults: a request to a server counts as a
//! request (dropped with the request-loss rate), a reply as a response.
//! A message that reaches a client lands in its inbox and wakes it.
//!
//! The simulator's own model of the application (a digest of the applied
//! entries, used by the state-machine-safety invariant) keeps running
//! beside the service: a service snapshot is stored behind the model's
//! header, which is stripped before the service sees it.
//!
//! [`Network`]: crate::net::Network

use std::any::Any;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use flotilla_raft::{LogIndex, NodeId, RawNode, Ready, Snapshot};

use crate::cluster::{Actor, Cluster, Event};
use crate::invariants::Violation;

/// Addresses from here on are clients (node ids are below).
pub const CLIENT_ADDR_BASE: u64 = 1 << 32;

/// Messages a service sends: (client address, bytes).
pub type Outbox = Vec<(u64, Bytes)>;

/// An application run by every simulated node. Errors are fatal to the run
/// (they name what went wrong).
pub trait Service {
    /// Handles a Ready (persisted, not yet advanced past): restore its
    /// snapshot if asked, apply its committed entries, serve its reads.
    fn on_ready(&mut self, raft: &RawNode, rd: &Ready, out: &mut Outbox) -> Result<(), String>;

    /// A message from the client at `from`; `now_ns` is the node's clock.
    fn on_client(
        &mut self,
        raft: &mut RawNode,
        from: u64,
        msg: &Bytes,
        now_ns: u64,
        out: &mut Outbox,
    );

    /// A snapshot to compact the log with, if one is due: its index (the
    /// last applied) and its data.
    fn snapshot_if_due(&mut self, raft: &RawNode) -> Option<(LogIndex, Bytes)>;

    /// The service itself, for tests that inspect it.
    fn as_any(&self) -> &dyn Any;
}

/// Builds a node's service from the snapshot on its disk, if any.
pub type ServiceFactory = Rc<dyn Fn(NodeId, Option<&Snapshot>) -> Result<Box<dyn Service>, String>>;

struct Inbox {
    actor: usize,
    msgs: Vec<(u64, Bytes)>,
}

/// The services of a cluster and its clients' inboxes.
#[derive(Default)]
pub(crate) struct Services {
    factory: Option<ServiceFactory>,
    running: Vec<Option<Box<dyn Service>>>,
    inboxes: BTreeMap<u64, Inbox>,
    next_client: u64,
}

impl Services {
    pub(crate) fn new(factory: Option<ServiceFactory>, nodes: usize) -> Services {
        Services {
            factory,
            running: (0..nodes).map(|_| None).collect(),
            inboxes: BTreeMap::new(),
            next_client: CLIENT_ADDR_BASE,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.factory.is_some()
    }

    pub(crate) fn stop(&mut self, idx: usize) {
        if let Some(s) = self.running.get_mut(idx) {
            *s = None;
        }
    }
}

impl Cluster {
    /// Builds and starts a cluster whose nodes each run a service.
    pub fn with_service(cfg: crate::ClusterConfig, factory: ServiceFactory) -> Cluster {
        Cluster::build(cfg, Some(factory))
    }

    /// The service of node `idx`, if it runs.
    pub fn service(&self, idx: usize) -> Option<&dyn Service> {
        self.svc.running.get(idx).and_then(|s| s.as_deref())
    }

    /// A fresh client address.
    pub fn new_client(&mut self) -> u64 {
        let a = self.svc.next_client;
        self.svc.next_client += 1;
        a
    }

    /// Starts `actor` as the client at `addr`: messages to `addr` go to its
    /// inbox and wake it. Returns the actor's id.
    pub fn spawn_client(&mut self, addr: u64, actor: Box<dyn Actor>) -> usize {
        let id = self.spawn(actor);
        self.svc.inboxes.insert(
            addr,
            Inbox {
                actor: id,
                msgs: Vec::new(),
            },
        );
        id
    }

    /// Takes the messages that reached the client at `addr`.
    pub fn take_inbox(&mut self, addr: u64) -> Vec<(u64, Bytes)> {
        self.svc
            .inboxes
            .get_mut(&addr)
            .map(|i| std::mem::take(&mut i.msgs))
            .unwrap_or_default()
    }

    /// Sends a client's request to a node (by id).
    pub fn send_to_server(&mut self, from: u64, to: NodeId, data: Bytes) {
        self.send_client_msg(from, to.get(), data, true);
    }

    fn send_client_msg(&mut self, from: u64, to: u64, data: Bytes, request: bool) {
        let fates = self.net.route(
            &mut self.rng,
            self.now,
            (from, to),
            request,
            data.len() as u64,
        );
        let kind = if request { "request" } else { "reply" };
        self.trace(|| {
            let lost = if fates.is_empty() { " (lost)" } else { "" };
            format!("client {kind} {from}->{to} {}B{lost}", data.len())
        });
        for at in fates {
            self.schedule(
                at,
                Event::Client {
                    from,
                    to,
                    data: data.clone(),
                    request,
                },
            );
        }
    }

    fn send_outbox(&mut self, from: u64, out: Outbox) {
        for (to, data) in out {
            self.send_client_msg(from, to, data, false);
        }
    }

    /// A client message arrives (at a node or at a client).
    pub(crate) fn deliver_client(&mut self, from: u64, to: u64, data: Bytes, request: bool) {
        if !self.net.link_up(from, to) {
            self.net.counters.dropped += 1;
            return;
        }
        if to >= CLIENT_ADDR_BASE {
            let Some(inbox) = self.svc.inboxes.get_mut(&to) else {
                return;
            };
            inbox.msgs.push((from, data));
            let actor = inbox.actor;
            self.wake_actor(actor);
            return;
        }
        let idx = (to as usize).wrapping_sub(1);
        let (Some(node), Some(Some(svc))) =
            (self.nodes.get_mut(idx), self.svc.running.get_mut(idx))
        else {
            self.net.counters.dropped += 1;
            return;
        };
        let Some(raft) = node.raft.as_mut() else {
            return;
        };
        self.net.delivered(to, request);
        let mut out = Vec::new();
        svc.on_client(raft, from, &data, self.now, &mut out);
        self.send_outbox(to, out);
        self.drain(idx);
    }

    /// Builds node `idx`'s service from the (model-stripped) snapshot.
    pub(crate) fn start_service(&mut self, idx: usize, snap: Option<&Snapshot>) {
        let Some(factory) = self.svc.factory.clone() else {
            return;
        };
        let id = self.nodes[idx].id;
        let stripped = snap.map(strip_snapshot);
        match factory(id, stripped.as_ref()) {
            Ok(s) => self.svc.running[idx] = Some(s),
            Err(e) => {
                let f = self.fail(format!("node {id} cannot start its service: {e}"));
                self.failure.get_or_insert(f);
            }
        }
    }

    /// Hands a Ready to node `idx`'s service.
    pub(crate) fn service_ready(&mut self, idx: usize, rd: &Ready) {
        let (Some(raft), Some(Some(svc))) =
            (self.nodes[idx].raft.as_ref(), self.svc.running.get_mut(idx))
        else {
            return;
        };
        let mut out = Vec::new();
        let result = match (&rd.snapshot, rd.restore_snapshot) {
            (Some(snap), true) => {
                let stripped = Ready {
                    soft_state: rd.soft_state,
                    restore_snapshot: true,
                    snapshot: Some(strip_snapshot(snap)),
                    committed_entries: rd.committed_entries.clone(),
                    read_states: rd.read_states.clone(),
                    dropped_reads: rd.dropped_reads.clone(),
                    ..Ready::default()
                };
                svc.on_ready(raft, &stripped, &mut out)
            }
            _ => svc.on_ready(raft, rd, &mut out),
        };
        let id = self.nodes[idx].id;
        if let Err(detail) = result {
            return self.violation(Violation {
                invariant: "service",
                detail: format!("node {id}: {detail}"),
            });
        }
        self.send_outbox(id.get(), out);
    }

    /// Asks node `idx`'s service for a snapshot; returns whether the log
    /// was compacted.
    pub(crate) fn service_snapshot(&mut self, idx: usize) -> bool {
        let node = &mut self.nodes[idx];
        let (Some(raft), Some(Some(svc))) = (node.raft.as_mut(), self.svc.running.get_mut(idx))
        else {
            return false;
        };
        let Some((index, data)) = svc.snapshot_if_due(raft) else {
            return false;
        };
        let app = node.app;
        if index != app.last_applied {
            let detail = format!(
                "node {} service snapshot at {index} but {} applied",
                node.id, app.last_applied
            );
            self.violation(Violation {
                invariant: "service",
                detail,
            });
            return false;
        }
        let mut framed = crate::driver::encode_app_snapshot(index, app.digest, 0).to_vec();
        framed.extend_from_slice(&data);
        if raft.compact(index, Bytes::from(framed)).is_ok() {
            node.app.last_snapshot = index;
            return true;
        }
        false
    }
}

/// The snapshot without the simulator's model header.
fn strip_snapshot(s: &Snapshot) -> Snapshot {
    let header = crate::driver::app_snapshot_header_len(&s.data);
    Snapshot {
        meta: s.meta.clone(),
        data: s.data.slice(header.min(s.data.len())..),
    }
}
