//! What etcd serves over HTTP/1.1 on its client port, beside gRPC:
//! `GET /health`, `GET /version` and `GET /metrics`, with etcd 3.4's
//! bodies, so load balancers, Kubernetes probes and Prometheus scrape a
//! Flotilla member as they scrape etcd. One port serves both: the server
//! accepts HTTP/1.1 and HTTP/2, and requests for other paths go on to the
//! gRPC services.
//!
//! `/health` is healthy when this member knows a leader and a
//! linearizable read barrier (a ReadIndex round) completes within a
//! second, as etcd's checks a quorum read: 200 `{"health":"true"}`, else
//! 503 `{"health":"false"}`.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::core::Core;

/// How long `/health` waits for the read barrier.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// The HTTP routes, over `core`.
pub fn routes(core: Core) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(core)
}

/// What answers a path no route serves: a gRPC call of an unknown method
/// gets gRPC's `UNIMPLEMENTED` (as tonic's own fallback), anything else
/// HTTP's 404, with Go's body, as etcd answers.
pub async fn fallback(headers: axum::http::HeaderMap) -> axum::response::Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"));
    if grpc {
        let status = tonic::Status::unimplemented("");
        return status.into_http::<axum::body::Body>().into_response();
    }
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}

async fn health(State(core): State<Core>) -> impl IntoResponse {
    let healthy = core.node.leader().is_some()
        && matches!(
            tokio::time::timeout(HEALTH_TIMEOUT, core.read_barrier()).await,
            Ok(Ok(()))
        );
    let (code, body) = if healthy {
        (StatusCode::OK, r#"{"health":"true"}"#)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#)
    };
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
}

async fn version() -> impl IntoResponse {
    let body = format!(
        r#"{{"etcdserver":"{}","etcdcluster":"3.4.0"}}"#,
        crate::cluster::VERSION
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics(State(core): State<Core>) -> impl IntoResponse {
    let body = core.metrics.render(&core.node.status());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
