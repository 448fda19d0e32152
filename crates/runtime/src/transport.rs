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
//!
//! A stream can also hang without breaking: the peer's host vanished or
//! its network drops packets (TCP retries for many minutes), or the peer
//! accepted the connection but never serves it. HTTP/2 keepalive pings
//! catch that: a connection whose pings go unanswered for
//! [`KEEPALIVE_TIMEOUT`] is closed, which ends the call, and the link
//! reconnects. The task watches the call while it waits for room in the
//! stream too, so a call that ended never holds the link, and gives up a
//! stream that takes nothing for [`STREAM_STALL_MAX`] while batches wait.
//!
//! The peer set follows the group's replicated member table
//! ([`Transport::set_peers`]): a new member gets a link, a removed one's
//! link ends (its queue is dropped). A peer the table does not list yet
//! but that reached this node, naming its address, gets a link too
//! ([`Transport::learn`], at most [`LEARNED_MAX`], a slot idle for
//! [`LEARNED_IDLE`] going to a newcomer): a member whose table
//! predates the leader's addition (it was down meanwhile) must answer
//! that leader to learn the entries that add it, or it stays behind for
//! good (found by the hosted simulator's membership sweeps, seed 368).
//! A peer that answers "you were removed"
//! ([`signal::Kind::RemovedMember`]) sets [`Transport::evicted`], on
//! which the server stops, as etcd does when it learns it was removed.
//!
//! With [`PeerTls`] every link dials over TLS as a member
//! ([`flotilla_tls::ClientTls::for_peers`]: the peer's certificate is
//! checked against the address dialed), and the peer services take only
//! connections that presented a peer certificate when it says so
//! ([`Transport::peer_cert_auth`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_proto::raft::v1::raft_transport_client::RaftTransportClient;
use flotilla_proto::raft::v1::{MessageBatch, SendSummary};
use flotilla_proto::signal;
use flotilla_raft::{Encode, Message, NodeId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinError;
use tonic::Status;
use tonic::transport::Endpoint;

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE_MESSAGES: usize = 4096;
/// Most messages in one batch.
const BATCH_MESSAGES_MAX: usize = 512;
/// A batch takes more messages while it holds fewer payload bytes than
/// this, so it ends up at most this plus one message.
const BATCH_BYTES_MAX: usize = 4 << 20;
/// The largest batch a node decodes ([`super::InboundService`]'s server
/// is built with it). One message is bounded by the Raft configuration's
/// `max_msg_bytes` and `snapshot_chunk_bytes` (1 MiB by default), or by a
/// single entry, which the request size limit bounds; a batch is at most
/// [`BATCH_BYTES_MAX`] plus one message. gRPC's default of 4 MiB was
/// below that: a link with 4 MiB queued sent batches its peer refused,
/// reconnected and refused again, and never delivered.
pub const BATCH_DECODE_MAX: usize = 64 << 20;

/// How often a peer connection is pinged (HTTP/2 keepalive), idle or not.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping may go unanswered before the connection is given up.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);
/// A stream that takes no batch for this long, though batches wait, is
/// given up and the link reconnects. HTTP/2 flow control makes a slow
/// peer take batches slowly, never not at all; in cluster tests a stream
/// once waited forever after a cut and heal, its call neither ending nor
/// taking anything.
const STREAM_STALL_MAX: Duration = Duration::from_secs(5);
/// A stream that lived this long proved the peer reachable: the next
/// reconnect starts from the shortest backoff again.
const STREAM_HEALTHY_AFTER: Duration = Duration::from_secs(1);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Most peers linked because they reached this node while its member
/// table does not list them ([`Transport::learn`]); more are ignored
/// until the table catches up.
pub const LEARNED_MAX: usize = 8;
/// A learned peer that sent nothing for this long gives its slot up to a
/// new one, so that whoever filled the slots must keep sending to hold
/// them.
pub const LEARNED_IDLE: Duration = Duration::from_secs(30);
/// The longest peer address taken from a peer's batch.
const LEARNED_ADDR_MAX: usize = 256;

/// How a peer's refusal of a removed member's messages begins (for
/// people: the refusal carries [`signal::Kind::RemovedMember`]).
pub const REMOVED_PREFIX: &str = "flotilla: member removed";

/// How members reach one another over TLS.
#[derive(Clone, Debug)]
pub struct PeerTls {
    /// Dials peers with this member's peer certificate.
    pub dial: Arc<flotilla_tls::ClientTls>,
    /// Whether the peer services refuse connections without a checked
    /// peer certificate (etcd's `--peer-client-cert-auth`).
    pub require_cert: bool,
}

/// Sends Raft messages to peers. Cheap to clone.
///
/// Several Raft groups hosted by the same servers share one transport
/// (one link per peer server, each batch carrying every group's
/// messages, tagged): [`Transport::for_group`] gives each group its
/// sender. Their member tables must then agree on the servers' ids and
/// addresses (the sharded store's groups all span the same servers).
#[derive(Clone, Debug)]
pub struct Transport {
    cluster_id: u64,
    me: NodeId,
    /// The group whose messages [`Transport::send`] tags (0 for a server
    /// of one group).
    group: u64,
    /// One link per other member of the replicated member table
    /// ([`Transport::set_peers`]) and per learned peer; a removed or
    /// moved member's ends.
    peers: Arc<Mutex<HashMap<NodeId, Peer>>>,
    /// The member table last given to [`Transport::set_peers`].
    table: Arc<Mutex<BTreeMap<NodeId, String>>>,
    /// Peers not in `table` that reached this node, with the address
    /// they named and when they last sent (bound: [`LEARNED_MAX`]);
    /// dropped once the table lists them or removes them, or when a new
    /// one needs the slot of one idle for [`LEARNED_IDLE`].
    learned: Arc<Mutex<BTreeMap<NodeId, (String, Instant)>>>,
    /// This node's own address in the table, sent with every batch.
    my_addr: Arc<Mutex<String>>,
    /// The members removed from the group: the member table's list, one
    /// id per removal ever made (etcd keeps the same list).
    removed: Arc<Mutex<BTreeSet<NodeId>>>,
    dropped: Arc<AtomicU64>,
    evicted: Arc<watch::Sender<bool>>,
    shutdown: watch::Receiver<bool>,
    /// Local routes: members reached at these addresses whatever the
    /// member table says (see [`Transport::set_routes`]).
    routes: Arc<Mutex<BTreeMap<NodeId, String>>>,
    /// TLS toward peers, if configured.
    tls: Option<PeerTls>,
    /// Bytes of messages handed to each peer's stream since start (a
    /// counter per peer ever linked: bound, the members and learned peers
    /// this node ever had).
    sent: Arc<Mutex<BTreeMap<NodeId, Arc<AtomicU64>>>>,
}

#[derive(Debug)]
struct Peer {
    addr: String,
    /// Bound: [`PEER_QUEUE_MESSAGES`] encoded messages, each at most the
    /// Raft configuration's `max_msg_bytes` of entries (or one entry, or
    /// one snapshot chunk); the core's in-flight limit stops appends to
    /// a peer that does not answer long before the queue fills. Each
    /// message goes with its group.
    queue: mpsc::Sender<(u64, Bytes)>,
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
        Self::start_with_tls(cluster_id, me, peers, shutdown, None)
    }

    /// [`Transport::start`], dialing peers over TLS if `tls` is given.
    pub fn start_with_tls(
        cluster_id: u64,
        me: NodeId,
        peers: &BTreeMap<NodeId, String>,
        shutdown: watch::Receiver<bool>,
        tls: Option<PeerTls>,
    ) -> Transport {
        let t = Transport {
            cluster_id,
            me,
            group: 0,
            peers: Arc::new(Mutex::new(HashMap::new())),
            table: Arc::new(Mutex::new(BTreeMap::new())),
            learned: Arc::new(Mutex::new(BTreeMap::new())),
            my_addr: Arc::new(Mutex::new(String::new())),
            removed: Arc::new(Mutex::new(BTreeSet::new())),
            dropped: Arc::new(AtomicU64::new(0)),
            evicted: Arc::new(watch::channel(false).0),
            shutdown,
            routes: Arc::new(Mutex::new(BTreeMap::new())),
            tls,
            sent: Arc::new(Mutex::new(BTreeMap::new())),
        };
        t.set_peers(peers, &BTreeSet::new());
        t
    }

    /// The same links, sending for Raft group `group`: its messages go on
    /// the links this transport shares, tagged with the group, and the
    /// receiving server's [`crate::InboundService`] steps them into its
    /// node of that group.
    pub fn for_group(&self, group: u64) -> Transport {
        Transport {
            group,
            ..self.clone()
        }
    }

    /// The group this transport sends for.
    pub fn group(&self) -> u64 {
        self.group
    }

    /// Points the transport at `peers`: starts links to new members (or
    /// moved ones), ends links to those no longer listed, and remembers
    /// `removed` so that their messages are refused.
    pub fn set_peers(&self, peers: &BTreeMap<NodeId, String>, removed: &BTreeSet<NodeId>) {
        peers.clone_into(&mut crate::lock(&self.table));
        removed.clone_into(&mut crate::lock(&self.removed));
        if let Some(mine) = peers.get(&self.me) {
            mine.clone_into(&mut crate::lock(&self.my_addr));
        }
        crate::lock(&self.learned).retain(|id, _| !peers.contains_key(id) && !removed.contains(id));
        self.relink();
    }

    /// A peer that reached this node names its address: if the member
    /// table does not list it (and it was not removed), it gets a link
    /// there, so this node can answer it. False if nothing changed.
    pub fn learn(&self, id: NodeId, addr: &str) -> bool {
        self.learn_at(id, addr, Instant::now())
    }

    /// [`Transport::learn`] at `now`.
    fn learn_at(&self, id: NodeId, addr: &str, now: Instant) -> bool {
        if id == self.me
            || !plausible_addr(addr)
            || crate::lock(&self.table).contains_key(&id)
            || crate::lock(&self.removed).contains(&id)
        {
            return false;
        }
        {
            let mut learned = crate::lock(&self.learned);
            if let Some((known, heard)) = learned.get_mut(&id)
                && known == addr
            {
                *heard = now;
                return false;
            }
            if learned.len() >= LEARNED_MAX && !learned.contains_key(&id) {
                learned.retain(|_, (_, heard)| now.duration_since(*heard) < LEARNED_IDLE);
                if learned.len() >= LEARNED_MAX {
                    return false;
                }
            }
            learned.insert(id, (addr.to_string(), now));
        }
        tracing::info!(peer = %id, addr, "linked a peer that reached this node before its member table lists it");
        self.relink();
        true
    }

    /// Links exactly the table's members and the learned peers, at their
    /// routed addresses where a route is set.
    fn relink(&self) {
        let mut peers = crate::lock(&self.table).clone();
        for (id, (addr, _)) in crate::lock(&self.learned).iter() {
            peers.entry(*id).or_insert_with(|| addr.clone());
        }
        for (id, addr) in crate::lock(&self.routes).iter() {
            if let Some(a) = peers.get_mut(id) {
                a.clone_from(addr);
            }
        }
        let mut links = crate::lock(&self.peers);
        links.retain(|id, p| peers.get(id) == Some(&p.addr));
        for (&id, addr) in &peers {
            if id == self.me || links.contains_key(&id) {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MESSAGES);
            let link = PeerLink {
                cluster_id: self.cluster_id,
                me: self.me,
                my_addr: Arc::clone(&self.my_addr),
                addr: addr.clone(),
                evicted: Arc::clone(&self.evicted),
                tls: self.tls.as_ref().map(|t| Arc::clone(&t.dial)),
                sent: Arc::clone(crate::lock(&self.sent).entry(id).or_default()),
            };
            tokio::spawn(link.run(rx, self.shutdown.clone()));
            links.insert(
                id,
                Peer {
                    addr: addr.clone(),
                    queue: tx,
                },
            );
        }
    }

    /// Bytes of Raft messages handed to each peer's stream since this node
    /// started, by peer (every group's messages on the shared links).
    pub fn sent_bytes(&self) -> Vec<(NodeId, u64)> {
        crate::lock(&self.sent)
            .iter()
            .map(|(id, n)| (*id, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Local routes: this node reaches each member in `routes` at the
    /// address given there instead of the member table's, from now on
    /// (links already open to another address are restarted), and so does
    /// its forwarding (which asks [`Transport::addr`]). For
    /// deployments where members see one another at different addresses
    /// (proxies, NAT; `flotilla server --cluster-token`): the replicated
    /// table holds one address per member, which a snapshot from the
    /// leader would otherwise impose on every member.
    pub fn set_routes(&self, routes: BTreeMap<NodeId, String>) {
        *crate::lock(&self.routes) = routes;
        self.relink();
    }

    /// A channel to a member at `addr` (`host:port`), over TLS if peers
    /// speak it, connected on first use: what membership forwarding and
    /// joining use besides the Raft links.
    pub fn lazy_channel(&self, endpoint: Endpoint) -> tonic::transport::Channel {
        match &self.tls {
            Some(tls) => flotilla_tls::lazy_channel(endpoint, &tls.dial),
            None => endpoint.connect_lazy(),
        }
    }

    /// Whether the peer services must refuse a connection that did not
    /// present a peer certificate.
    pub fn peer_cert_auth(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.require_cert)
    }

    /// The peers there are links to, sorted.
    pub fn peers(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = crate::lock(&self.peers).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The address of the link to `id` (none to this node itself).
    pub fn addr(&self, id: NodeId) -> Option<String> {
        crate::lock(&self.peers).get(&id).map(|p| p.addr.clone())
    }

    /// Whether `id` was removed from the group.
    pub fn is_removed(&self, id: NodeId) -> bool {
        crate::lock(&self.removed).contains(&id)
    }

    /// Becomes true when a peer says this node was removed.
    pub fn evicted(&self) -> watch::Receiver<bool> {
        self.evicted.subscribe()
    }

    /// Queues `msgs` for their receivers; drops what does not fit.
    pub fn send(&self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let links = crate::lock(&self.peers);
        for m in msgs {
            let delivered = links
                .get(&m.to)
                .is_some_and(|p| p.queue.try_send((self.group, m.to_bytes())).is_ok());
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

/// A peer address as a batch may name it: `host:port`, short, with a
/// port that is a number.
fn plausible_addr(addr: &str) -> bool {
    addr.len() <= LEARNED_ADDR_MAX
        && addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        })
}

struct PeerLink {
    cluster_id: u64,
    me: NodeId,
    /// This node's address, named in every batch.
    my_addr: Arc<Mutex<String>>,
    addr: String,
    evicted: Arc<watch::Sender<bool>>,
    tls: Option<Arc<flotilla_tls::ClientTls>>,
    /// Bytes handed to this peer's stream ([`Transport::sent_bytes`]).
    sent: Arc<AtomicU64>,
}

impl PeerLink {
    async fn run(
        self,
        mut queue: mpsc::Receiver<(u64, Bytes)>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let started = tokio::time::Instant::now();
            let stop = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => true,
                () = self.stream(&mut queue) => false,
            };
            if stop || queue.is_closed() {
                return;
            }
            // A peer that accepts connections only to close them (or a
            // proxy in front of a dead one) is retried with backoff too.
            if started.elapsed() >= STREAM_HEALTHY_AFTER {
                tracing::info!(peer = %self.addr, "lost the stream to peer; reconnecting");
                backoff = BACKOFF_MIN;
            }
            // Drop what queued up while the link was down: it is stale.
            while queue.try_recv().is_ok() {}
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Connects and streams batches until the stream breaks, hangs past
    /// the keepalive timeout, or the queue closes.
    async fn stream(&self, queue: &mut mpsc::Receiver<(u64, Bytes)>) {
        let Ok(endpoint) = Endpoint::from_shared(format!("http://{}", self.addr)) else {
            return;
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let connected = match &self.tls {
            Some(tls) => endpoint.connect_with_connector(tls.connector()).await,
            None => endpoint.connect().await,
        };
        let channel = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer = %self.addr, error = %e, "cannot connect to peer");
                return;
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
                ended = &mut call => return self.ended(ended),
                m = queue.recv() => m,
            };
            let Some(first) = first else { return };
            let batch = self.batch(first, queue);
            let bytes: usize = batch.messages.iter().map(Bytes::len).sum();
            tokio::select! {
                ended = &mut call => return self.ended(ended),
                sent = btx.send(batch) => if sent.is_err() {
                    call.abort();
                    return;
                } else {
                    self.sent.fetch_add(bytes as u64, Ordering::Relaxed);
                },
                () = tokio::time::sleep(STREAM_STALL_MAX) => {
                    tracing::warn!(peer = %self.addr, "the stream to peer took nothing for {STREAM_STALL_MAX:?}; reconnecting");
                    call.abort();
                    return;
                }
            }
        }
    }

    /// The call ended: a peer that refuses this node as removed evicts it.
    fn ended(&self, ended: Result<Result<tonic::Response<SendSummary>, Status>, JoinError>) {
        match ended {
            Ok(Err(status)) if signal::kind(&status) == Some(signal::Kind::RemovedMember) => {
                tracing::warn!(peer = %self.addr, "{}", status.message());
                self.evicted.send_replace(true);
            }
            Ok(Err(status)) => {
                tracing::debug!(peer = %self.addr, error = %status, "stream to peer ended");
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }

    fn batch(&self, first: (u64, Bytes), queue: &mut mpsc::Receiver<(u64, Bytes)>) -> MessageBatch {
        let mut bytes = first.1.len();
        let mut groups = vec![first.0];
        let mut messages = vec![first.1];
        while messages.len() < BATCH_MESSAGES_MAX && bytes < BATCH_BYTES_MAX {
            match queue.try_recv() {
                Ok((group, m)) => {
                    bytes += m.len();
                    groups.push(group);
                    messages.push(m);
                }
                Err(_) => break,
            }
        }
        // A one-group server's batches stay as older builds sent them.
        if groups.iter().all(|&g| g == 0) {
            groups.clear();
        }
        MessageBatch {
            cluster_id: self.cluster_id,
            from: self.me.get(),
            messages,
            from_addr: crate::lock(&self.my_addr).clone(),
            groups,
        }
    }
}

#[cfg(test)]
mod tests {
    use flotilla_raft::{MessageBody, Term};

    use super::*;

    fn table(ids: &[u64]) -> BTreeMap<NodeId, String> {
        ids.iter()
            .map(|&i| (NodeId(i), format!("127.0.0.1:{}", 1 + i)))
            .collect()
    }

    /// The address member `id`'s link dials.
    fn addr(t: &Transport, id: u64) -> String {
        crate::lock(&t.peers)[&NodeId(id)].addr.clone()
    }

    #[tokio::test]
    async fn the_peer_set_follows_the_member_table() {
        let (stop_tx, stop) = watch::channel(false);
        let t = Transport::start(7, NodeId(1), &table(&[1, 2, 3]), stop);
        assert_eq!(t.peers(), [NodeId(2), NodeId(3)], "not itself");
        t.set_peers(&table(&[1, 3, 4]), &BTreeSet::from([NodeId(2)]));
        assert_eq!(t.peers(), [NodeId(3), NodeId(4)]);
        assert!(t.is_removed(NodeId(2)) && !t.is_removed(NodeId(4)));
        let to = |id| Message {
            from: NodeId(1),
            to: NodeId(id),
            term: Term(1),
            body: MessageBody::TimeoutNow,
        };
        t.send(vec![to(2), to(4)]);
        assert_eq!(t.dropped(), 1, "the removed peer's message is dropped");
        // A moved member gets a new link at its new address.
        let mut moved = table(&[1, 3, 4]);
        moved.insert(NodeId(4), "127.0.0.1:9".to_string());
        t.set_peers(&moved, &BTreeSet::new());
        assert_eq!(addr(&t, 4), "127.0.0.1:9");
        stop_tx.send_replace(true);
    }

    #[tokio::test]
    async fn a_peer_that_reached_this_node_is_answered_until_the_table_lists_it() {
        let (stop_tx, stop) = watch::channel(false);
        let t = Transport::start(7, NodeId(1), &table(&[1, 2, 3]), stop);
        assert!(t.learn(NodeId(9), "127.0.0.1:9009"), "a new leader");
        assert_eq!(t.peers(), [NodeId(2), NodeId(3), NodeId(9)]);
        assert!(!t.learn(NodeId(9), "127.0.0.1:9009"), "already linked");
        t.set_peers(&table(&[1, 2, 3]), &BTreeSet::new());
        assert_eq!(addr(&t, 9), "127.0.0.1:9009", "a table without it keeps it");
        assert!(
            !t.learn(NodeId(2), "127.0.0.1:1"),
            "the table's address wins"
        );
        assert!(!t.learn(NodeId(1), "127.0.0.1:1"), "not itself");
        for bad in ["", "nohost", ":1", "h:0", "h:x", &"h".repeat(300)] {
            assert!(!t.learn(NodeId(10), bad), "{bad:?}");
        }
        // A table that removes it ends the link and refuses it again.
        t.set_peers(&table(&[1, 2, 3]), &BTreeSet::from([NodeId(9)]));
        assert_eq!(t.peers(), [NodeId(2), NodeId(3)]);
        assert!(!t.learn(NodeId(9), "127.0.0.1:9009"));
        // A table that lists it takes over, at the table's address.
        assert!(t.learn(NodeId(8), "127.0.0.1:9008"));
        let mut with_8 = table(&[1, 2, 3]);
        with_8.insert(NodeId(8), "127.0.0.1:7008".to_string());
        t.set_peers(&with_8, &BTreeSet::new());
        assert_eq!(addr(&t, 8), "127.0.0.1:7008");
        t.set_peers(&table(&[1, 2, 3]), &BTreeSet::new());
        assert_eq!(t.peers(), [NodeId(2), NodeId(3)], "not learned any more");
        // At most LEARNED_MAX at once, while they keep sending: a slot
        // idle for LEARNED_IDLE goes to a newcomer.
        let learned = (20..40)
            .filter(|&i| t.learn(NodeId(i), &format!("h:{i}")))
            .count();
        assert_eq!(learned, LEARNED_MAX);
        let later = Instant::now() + LEARNED_IDLE;
        assert!(
            !t.learn_at(NodeId(41), "h:41", later - LEARNED_IDLE / 2),
            "all busy"
        );
        assert!(
            !t.learn_at(NodeId(20), "h:20", later - LEARNED_IDLE / 2),
            "20 sends again"
        );
        assert!(
            t.learn_at(NodeId(41), "h:41", later),
            "the idle ones give way"
        );
        let learned: Vec<NodeId> = crate::lock(&t.learned).keys().copied().collect();
        assert_eq!(learned, [NodeId(20), NodeId(41)]);
        stop_tx.send_replace(true);
    }

    #[tokio::test]
    async fn a_learned_slot_goes_to_a_newcomer_only_when_all_are_taken() {
        let (stop_tx, stop) = watch::channel(false);
        let t = Transport::start(7, NodeId(1), &table(&[1, 2, 3]), stop);
        let learned =
            || -> Vec<u64> { crate::lock(&t.learned).keys().map(|id| id.get()).collect() };
        let base = Instant::now();
        let idle = base + LEARNED_IDLE;
        assert!(t.learn_at(NodeId(20), "h:20", base));
        assert!(t.learn_at(NodeId(21), "h:21", idle));
        assert_eq!(learned(), [20, 21], "with room left, an idle one stays");
        for i in 22..20 + LEARNED_MAX as u64 {
            assert!(t.learn_at(NodeId(i), &format!("h:{i}"), idle));
        }
        // Idle for exactly LEARNED_IDLE: its slot goes.
        assert!(t.learn_at(NodeId(41), "h:41", idle));
        let mut expected: Vec<u64> = (21..20 + LEARNED_MAX as u64).collect();
        expected.push(41);
        assert_eq!(learned(), expected);
        stop_tx.send_replace(true);
    }

    #[tokio::test]
    async fn local_routes_beat_the_member_table() {
        let (stop_tx, stop) = watch::channel(false);
        let t = Transport::start(7, NodeId(1), &table(&[1, 2, 3]), stop);
        let proxy = BTreeMap::from([(NodeId(2), "127.0.0.1:7002".to_string())]);
        t.set_routes(proxy);
        assert_eq!(
            addr(&t, 2),
            "127.0.0.1:7002",
            "the open link moves to the route"
        );
        // A table from elsewhere (a leader's snapshot) changes member 3
        // but not the routed member 2.
        let mut theirs = table(&[1, 2, 3]);
        theirs.insert(NodeId(2), "127.0.0.1:8002".to_string());
        theirs.insert(NodeId(3), "127.0.0.1:8003".to_string());
        t.set_peers(&theirs, &BTreeSet::new());
        assert_eq!(addr(&t, 2), "127.0.0.1:7002");
        assert_eq!(addr(&t, 3), "127.0.0.1:8003");
        stop_tx.send_replace(true);
    }
}
