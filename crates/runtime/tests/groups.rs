//! Several Raft groups share one server's peer links: each group's
//! messages leave on the same link, tagged with the group, and the
//! receiving server steps each into its node of that group. A message
//! for a group the server does not host is dropped and counted; a batch
//! whose tags do not match its messages one for one is refused whole.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_proto::raft::v1::MessageBatch;
use flotilla_proto::raft::v1::raft_transport_client::RaftTransportClient;
use flotilla_proto::raft::v1::raft_transport_server::RaftTransportServer;
use flotilla_raft::{Encode, LogIndex, Message, MessageBody, NodeId, Term};
use flotilla_runtime::transport::BATCH_DECODE_MAX;
use flotilla_runtime::{InboundService, Transport};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

const CLUSTER: u64 = 7;
const WAIT: Duration = Duration::from_secs(10);

fn heartbeat(seq: u64) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: LogIndex(0),
            read_seq: seq,
        },
    }
}

fn seq_of(m: &Message) -> u64 {
    match m.body {
        MessageBody::Heartbeat { read_seq, .. } => read_seq,
        _ => panic!("not a heartbeat: {m:?}"),
    }
}

/// Server 2 hosting groups 0, 5 and 9, each node a channel.
struct Server {
    addr: String,
    nodes: BTreeMap<u64, mpsc::Receiver<Message>>,
    service: InboundService,
    _closing: watch::Sender<bool>,
}

async fn server() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (closing_tx, closing) = watch::channel(false);
    let mut nodes = BTreeMap::new();
    let (tx0, rx0) = mpsc::channel(64);
    nodes.insert(0, rx0);
    let mut service = InboundService::new(CLUSTER, NodeId(2), tx0, closing);
    for group in [5, 9] {
        let (tx, rx) = mpsc::channel(64);
        nodes.insert(group, rx);
        service = service.with_group(group, tx);
    }
    let serving = service.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                RaftTransportServer::new(serving).max_decoding_message_size(BATCH_DECODE_MAX),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    Server {
        addr,
        nodes,
        service,
        _closing: closing_tx,
    }
}

#[tokio::test]
async fn each_group_gets_its_own_messages_over_one_link() {
    let mut s = server().await;
    let (_stop_tx, stop) = watch::channel(false);
    let peers = BTreeMap::from([(NodeId(2), s.addr.clone())]);
    let shared = Transport::start(CLUSTER, NodeId(1), &peers, stop);
    let (g5, g9, g4) = (
        shared.for_group(5),
        shared.for_group(9),
        shared.for_group(4),
    );
    assert_eq!((g5.group(), shared.group()), (5, 0));
    assert_eq!(g5.peers(), shared.peers(), "the groups share the links");
    shared.send(vec![heartbeat(1)]);
    g5.send(vec![heartbeat(2), heartbeat(3)]);
    g9.send(vec![heartbeat(4)]);
    g4.send(vec![heartbeat(5)]);
    g5.send(vec![heartbeat(6)]);
    let mut got: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (group, want) in [(0, 1), (5, 3), (9, 1)] {
        let rx = s.nodes.get_mut(&group).unwrap();
        for _ in 0..want {
            let m = timeout(WAIT, rx.recv()).await.unwrap().unwrap();
            got.entry(group).or_default().push(seq_of(&m));
        }
    }
    let want = BTreeMap::from([(0, vec![1]), (5, vec![2, 3, 6]), (9, vec![4])]);
    assert_eq!(got, want, "in order, each to its group");
    for rx in s.nodes.values_mut() {
        assert!(rx.try_recv().is_err(), "nothing else arrived");
    }
    assert_eq!(s.service.rejected(), 1, "group 4 is not hosted there");
}

#[tokio::test]
async fn a_batch_whose_tags_do_not_match_its_messages_is_refused() {
    let s = server().await;
    let mut client = RaftTransportClient::connect(format!("http://{}", s.addr))
        .await
        .unwrap();
    let batch = MessageBatch {
        cluster_id: CLUSTER,
        from: 1,
        messages: vec![heartbeat(1).to_bytes(), heartbeat(2).to_bytes()],
        from_addr: String::new(),
        groups: vec![5],
    };
    let err = client
        .send(tokio_stream::iter(vec![batch]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("2 messages has 1 group tags"),
        "{err}"
    );
}
