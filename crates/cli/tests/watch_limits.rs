//! A watch stream holds at most `WATCHES_PER_STREAM_MAX` watches (issue
//! 19's audit: every per-stream structure has a bound): the create
//! beyond it is answered created and canceled, with a reason that says
//! the limit, and the stream goes on; once a watch is canceled there is
//! room again. One real server; the creates are pipelined on one stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_common;

use std::time::Duration;

use bytes::Bytes;
use cluster_common::Cluster;
use flotilla_etcd::watch_service::WATCHES_PER_STREAM_MAX;
use flotilla_proto::etcdserverpb as pb;
use flotilla_proto::etcdserverpb::watch_client::WatchClient;
use pb::watch_request::RequestUnion;
use tokio::sync::mpsc;
use tonic::Streaming;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

fn create(id: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
            key: Bytes::from(format!("k{id}")),
            watch_id: id,
            ..Default::default()
        })),
    }
}

async fn next(rx: &mut Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), rx.message())
        .await
        .expect("no watch response within 10 s")
        .unwrap()
        .expect("the watch stream ended")
}

#[test]
fn a_stream_refuses_watches_beyond_its_limit_and_has_room_after_a_cancel() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start("watch-limit", 1);
    cluster.wait_leader(&rt);
    let endpoint = format!("http://{}", cluster.endpoints[0]);
    rt.block_on(async move {
        let mut client = WatchClient::connect(endpoint).await.unwrap();
        let (tx, requests) = mpsc::channel(64);
        let mut rx = client
            .watch(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        let max = WATCHES_PER_STREAM_MAX as i64;
        let sender = {
            let tx = tx.clone();
            tokio::spawn(async move {
                for id in 1..=max + 1 {
                    tx.send(create(id)).await.unwrap();
                }
            })
        };
        for id in 1..=max {
            let r = next(&mut rx).await;
            assert!(r.created && !r.canceled, "watch {id}: {r:?}");
        }
        sender.await.unwrap();
        let over = next(&mut rx).await;
        assert_eq!(over.watch_id, max + 1);
        assert!(over.created && over.canceled, "{over:?}");
        assert!(
            over.cancel_reason
                .contains(&WATCHES_PER_STREAM_MAX.to_string()),
            "the reason names the limit: {}",
            over.cancel_reason
        );
        // Cancel one: the same create now succeeds.
        let cancel = pb::WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(pb::WatchCancelRequest {
                watch_id: 1,
            })),
        };
        tx.send(cancel).await.unwrap();
        let canceled = next(&mut rx).await;
        assert!(canceled.canceled && canceled.watch_id == 1, "{canceled:?}");
        tx.send(create(max + 1)).await.unwrap();
        let made = next(&mut rx).await;
        assert!(
            made.created && !made.canceled && made.watch_id == max + 1,
            "{made:?}"
        );
    });
}
