//! A member serving TLS in process (`flotilla_etcd::server::run` with
//! mutual TLS for clients and peers): etcd's KV over TLS, and the peer
//! services (Raft messages, joins, forwarded writes) refusing every
//! connection that is not a member's with a certificate from the peer CA,
//! however good its client certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use flotilla_etcd::server::{Listeners, ServerConfig, run};
use flotilla_proto::etcdserverpb::cluster_client::ClusterClient;
use flotilla_proto::etcdserverpb::kv_client::KvClient;
use flotilla_proto::etcdserverpb::{MemberListRequest, PutRequest, RangeRequest};
use flotilla_proto::raft::v1::proposals_client::ProposalsClient;
use flotilla_proto::raft::v1::raft_transport_client::RaftTransportClient;
use flotilla_proto::raft::v1::{JoinRequest, MessageBatch};
use flotilla_raft::NodeId;
use flotilla_testkit::Scratch;
use flotilla_tls::generate::{Written, write_set};
use flotilla_tls::{ClientTls, ClientTlsFiles, ServerTlsFiles, TlsFiles};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

fn member_files(w: &Written, name: &str) -> TlsFiles {
    let (_, pair) = w.members.iter().find(|(n, _)| n == name).unwrap();
    TlsFiles {
        cert: pair.cert.clone(),
        key: pair.key.clone(),
        ca: Some(w.ca.clone()),
    }
}

/// Member 1 serving mutual TLS with `w`'s node1 certificate (and
/// plaintext on the same port with `plaintext_too`); its address.
async fn member(
    scratch: &Scratch,
    w: &Written,
    plaintext_too: bool,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let cfg = ServerConfig {
        tls: Some(ServerTlsFiles {
            client: member_files(w, "node1"),
            client_cert_auth: true,
            peer: member_files(w, "node1"),
            peer_client_cert_auth: true,
            peer_allowed_cn: None,
        }),
        plaintext_too,
        ..ServerConfig::founder(NodeId(1), endpoint.clone(), scratch.path.join("data"))
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = Listeners {
        grpc: listener,
        metrics: None,
    };
    tokio::spawn(run(cfg, listeners, async move {
        let _ = stopped.await;
    }));
    (endpoint, stop)
}

fn channel(addr: &str, tls: ClientTls) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(5));
    flotilla_tls::lazy_channel(endpoint, &Arc::new(tls))
}

fn client_tls(w: &Written) -> ClientTls {
    ClientTls::new(&ClientTlsFiles {
        ca: w.ca.clone(),
        cert: Some(w.client.cert.clone()),
        key: Some(w.client.key.clone()),
    })
    .unwrap()
}

/// A put, retried until the member leads (it elects itself after an
/// election timeout), then read back.
async fn round_trip(kv: &mut KvClient<Channel>) {
    let put = PutRequest {
        key: b"k".to_vec().into(),
        value: b"v".to_vec().into(),
        ..Default::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match kv.put(put.clone()).await {
            Ok(_) => break,
            // Polled until the deadline: no leader yet.
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => panic!("no put over TLS within 30 s: {s:?}"),
        }
    }
    let got = kv
        .range(RangeRequest {
            key: b"k".to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&got.kvs[0].value[..], b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_use_etcd_s_api_and_only_members_reach_the_peer_services() {
    let scratch = Scratch::new("etcd-tls");
    let w = write_set(
        &scratch.path.join("certs"),
        &["node1".into(), "node2".into()],
        &[],
        "client",
    )
    .unwrap();
    let other = write_set(
        &scratch.path.join("other"),
        &["node2".into()],
        &[],
        "client",
    )
    .unwrap();
    let (addr, _stop) = member(&scratch, &w, false).await;

    let client = channel(&addr, client_tls(&w));
    round_trip(&mut KvClient::new(client.clone())).await;
    speaks_no_plaintext(&addr).await;

    // A client's connection, though its certificate is from the CA, is
    // no member's: every peer service refuses it.
    let batch = MessageBatch {
        cluster_id: 0,
        from: 2,
        messages: Vec::new(),
        from_addr: String::new(),
        groups: Vec::new(),
    };
    let refused = RaftTransportClient::new(client.clone())
        .send(tokio_stream::iter([batch]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    refuses_peer_calls(client).await;

    // A member's connection gets through to the service's own answer.
    let peer = ClientTls::for_peers(&member_files(&w, "node2")).unwrap();
    let join = ProposalsClient::new(channel(&addr, peer))
        .join(JoinRequest { id: 5 })
        .await
        .unwrap_err();
    assert_eq!(join.code(), Code::NotFound, "{join:?}");

    // A member of another CA does not even connect: its handshake ends
    // in an alert, which the client sees on its first read or write under
    // TLS 1.3, as a transport failure of one kind or another; never the
    // service's own answer.
    let stranger = ClientTls::for_peers(&TlsFiles {
        ca: Some(w.ca.clone()),
        ..member_files(&other, "node2")
    })
    .unwrap();
    let join = ProposalsClient::new(channel(&addr, stranger))
        .join(JoinRequest { id: 5 })
        .await
        .unwrap_err();
    assert!(
        matches!(
            join.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "{join:?}"
    );
}

/// Asserts that a join on `client`'s connection is refused as no
/// member's.
async fn refuses_peer_calls(client: Channel) {
    let join = ProposalsClient::new(client)
        .join(JoinRequest { id: 5 })
        .await
        .unwrap_err();
    assert_eq!(join.code(), Code::Unauthenticated, "{join:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_schemes_on_one_port_serve_clients_and_only_tls_members() {
    let scratch = Scratch::new("etcd-tls-both");
    let w = write_set(
        &scratch.path.join("certs"),
        &["node1".into()],
        &[],
        "client",
    )
    .unwrap();
    let (addr, _stop) = member(&scratch, &w, true).await;

    let secure = channel(&addr, client_tls(&w));
    round_trip(&mut KvClient::new(secure)).await;
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    round_trip(&mut KvClient::new(plain.clone())).await;

    // A plaintext connection is never a member's.
    refuses_peer_calls(plain.clone()).await;

    // Members are listed in both schemes, TLS first; peers speak TLS.
    let list = ClusterClient::new(plain)
        .member_list(MemberListRequest::default())
        .await
        .unwrap()
        .into_inner();
    let me = &list.members[0];
    assert_eq!(
        me.client_ur_ls,
        vec![format!("https://{addr}"), format!("http://{addr}")]
    );
    assert_eq!(me.peer_ur_ls, vec![format!("https://{addr}")]);

    // etcd's HTTP endpoints answer in plaintext too.
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("etcdserver"), "{answer}");
}

/// Asserts that a plaintext client gets nothing from the TLS-only port
/// at `addr`: its connection fails, whatever the transport calls it.
async fn speaks_no_plaintext(addr: &str) {
    let read = RangeRequest {
        key: b"k".to_vec().into(),
        ..Default::default()
    };
    let plain = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let refused = KvClient::new(plain).range(read).await.unwrap_err();
    assert!(
        matches!(
            refused.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled
        ),
        "{refused:?}"
    );
}
