//! gRPC's health protocol (`grpc.health.v1.Health`), as etcd serves it on
//! its client port, for Kubernetes' gRPC probes, `grpc_health_probe` and
//! load balancers.
//!
//! A member is `SERVING` while it knows a leader (so it can answer
//! linearizable requests, directly or through the leader) and
//! `NOT_SERVING` while it knows none (an election, or a partition that
//! cut it off), which is what a balancer should route by. The service
//! names are the whole server (`""`) and each etcd service the port
//! serves; any other name is `NOT_FOUND` for `Check` and
//! `SERVICE_UNKNOWN` for `Watch`, as the protocol says. `Watch` sends
//! the status at once and then each change; it ends with the client or
//! the server.

use flotilla_proto::health::v1::health_check_response::ServingStatus;
use flotilla_proto::health::v1::health_server::Health;
use flotilla_proto::health::v1::{HealthCheckRequest, HealthCheckResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::core::Core;

/// The names a client may ask about: the whole server and etcd's
/// services on this port.
const SERVICES: [&str; 5] = [
    "",
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Cluster",
];

/// `grpc.health.v1.Health` of one member.
#[derive(Clone)]
pub struct HealthService {
    core: Core,
    closing: watch::Receiver<bool>,
}

impl HealthService {
    /// The service over `core`; its watches end when `closing` turns true.
    pub fn new(core: Core, closing: watch::Receiver<bool>) -> HealthService {
        HealthService { core, closing }
    }
}

/// The status of a member that knows `leader`.
fn status_of(leader: bool) -> ServingStatus {
    if leader {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        if !SERVICES.contains(&service.as_str()) {
            return Err(Status::not_found(format!("unknown service {service:?}")));
        }
        let status = status_of(self.core.node.leader().is_some());
        Ok(Response::new(response(status)))
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(4);
        let known = SERVICES.contains(&request.get_ref().service.as_str());
        let mut status = self.core.node.watch_status();
        let mut closing = self.closing.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                // An unknown service stays unknown (no service registers
                // later), and the stream stays open, as the protocol says.
                let now = if known {
                    status_of(status.borrow_and_update().leader.is_some())
                } else {
                    ServingStatus::ServiceUnknown
                };
                if last != Some(now) {
                    last = Some(now);
                    if tx.send(Ok(response(now))).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    changed = status.changed() => if changed.is_err() { return },
                    _ = closing.wait_for(|c| *c) => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
