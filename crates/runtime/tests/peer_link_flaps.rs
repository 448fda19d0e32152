//! A peer link survives a network that keeps failing it. A node's
//! outbound link to a peer goes through the test kit's loopback fault
//! proxy, which is
//!
//! - cut (every connection closed, new ones closed at once, as a refused
//!   connection is) and healed again and again, at random moments of the
//!   link's connect–stream–reconnect cycle, while messages keep being
//!   queued;
//! - turned into a black hole (connections stay open but nothing passes,
//!   ever: a peer host that vanished, a NAT that forgot the flow, a peer
//!   that accepted a connection and never served it).
//!
//! After every heal, a message sent after it must reach the peer within a
//! bound: a few reconnects, plus the keepalive timeout for a black hole.
//!
//! A cluster test once never saw an old leader learn the new one: its
//! peer's link had connected to a proxy whose accept loop had died, so
//! the connection sat in the kernel's backlog and the stream waited
//! forever, and every later message was dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use flotilla_proto::raft::v1::raft_transport_server::RaftTransportServer;
use flotilla_raft::rng::SplitMix64;
use flotilla_raft::{Message, MessageBody, NodeId, Term};
use flotilla_runtime::transport::{BATCH_DECODE_MAX, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT};
use flotilla_runtime::{InboundService, Transport};
use flotilla_testkit::proxy::{Mode, Proxy};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

const CLUSTER: u64 = 7;
const CUT_ROUNDS: u32 = 30;
/// How long a healed link may take to reconnect and deliver again: the
/// link's backoff is at most 1 s, so this is several reconnects.
const RECONNECT_LIMIT: Duration = Duration::from_secs(5);

/// The peer: a `RaftTransport` server whose node publishes the highest
/// heartbeat sequence number it received.
async fn start_peer() -> (SocketAddr, watch::Receiver<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (node_tx, mut node_rx) = mpsc::channel::<Message>(1024);
    let (_closing_tx, closing) = watch::channel(false);
    let service = InboundService::new(CLUSTER, NodeId(2), node_tx, closing);
    tokio::spawn(async move {
        let _keep = _closing_tx;
        tonic::transport::Server::builder()
            .add_service(
                RaftTransportServer::new(service).max_decoding_message_size(BATCH_DECODE_MAX),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let (seen_tx, seen) = watch::channel(0u64);
    tokio::spawn(async move {
        while let Some(m) = node_rx.recv().await {
            if let MessageBody::Heartbeat { read_seq, .. } = m.body {
                seen_tx.send_if_modified(|s| {
                    let newer = read_seq > *s;
                    *s = (*s).max(read_seq);
                    newer
                });
            }
        }
    });
    (addr, seen)
}

/// A large message, so that batches fill the stream's flow-control
/// window and queue behind it, as a leader's appends to a follower do.
fn ballast() -> Message {
    let data = bytes::Bytes::from(vec![0u8; 32 * 1024]);
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::Snapshot(flotilla_raft::SnapshotChunk {
            meta: flotilla_raft::SnapshotMeta::default(),
            offset: 0,
            total_len: data.len() as u64,
            data,
        }),
    }
}

fn heartbeat(seq: u64) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: flotilla_raft::LogIndex(0),
            read_seq: seq,
        },
    }
}

/// A node's link to a peer behind a proxy, with numbered messages being
/// queued on it every millisecond.
struct Link {
    proxy: Proxy,
    seen: watch::Receiver<u64>,
    sent: watch::Receiver<u64>,
    transport: Transport,
    _stop: watch::Sender<bool>,
    sender: tokio::task::JoinHandle<()>,
}

impl Link {
    async fn start() -> Link {
        let (peer, seen) = start_peer().await;
        let proxy = Proxy::start(peer.to_string()).await;
        let (stop_tx, stop) = watch::channel(false);
        let peers = BTreeMap::from([
            (NodeId(1), "127.0.0.1:1".to_string()),
            (NodeId(2), proxy.addr().to_string()),
        ]);
        let transport = Transport::start(CLUSTER, NodeId(1), &peers, stop);
        let (sent_tx, sent) = watch::channel(0u64);
        let sender = {
            let transport = transport.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                for seq in 1.. {
                    tick.tick().await;
                    transport.send(vec![ballast(), heartbeat(seq)]);
                    sent_tx.send_replace(seq);
                }
            })
        };
        Link {
            proxy,
            seen,
            sent,
            transport,
            _stop: stop_tx,
            sender,
        }
    }

    /// Puts the proxy in `mode` for `d`, then lets traffic pass, and
    /// checks that a message sent after that reaches the peer in `limit`.
    async fn fail_then_heal(&mut self, mode: Mode, d: Duration, limit: Duration, round: u32) {
        self.proxy.set(mode);
        tokio::time::sleep(d).await;
        self.proxy.set(Mode::Pass);
        let healed_at = *self.sent.borrow();
        let delivered = timeout(limit, self.seen.wait_for(|&s| s > healed_at))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(
            delivered,
            "round {round} ({mode:?} for {d:?}): nothing sent after the heal reached \
             the peer within {limit:?} (last seen {}, sent {}, dropped {})",
            *self.seen.borrow(),
            *self.sent.borrow(),
            self.transport.dropped()
        );
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.sender.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_link_delivers_again_after_every_cut() {
    let mut link = Link::start().await;
    let mut rng = SplitMix64::new(0x5EED);
    for round in 0..CUT_ROUNDS {
        let cut = Duration::from_millis(1 + rng.range(0, 80));
        link.fail_then_heal(Mode::Cut, cut, RECONNECT_LIMIT, round)
            .await;
        // Heal lengths from none to a few reconnect periods.
        tokio::time::sleep(Duration::from_millis(rng.range(0, 150))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_link_leaves_a_black_hole() {
    let mut link = Link::start().await;
    // The hung connection is given up after the keepalive timeout, then
    // the link reconnects.
    let limit = KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + RECONNECT_LIMIT;
    for round in 0..3 {
        link.fail_then_heal(Mode::BlackHole, Duration::from_millis(200), limit, round)
            .await;
    }
}
