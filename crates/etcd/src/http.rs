//! What etcd serves over HTTP/1.1 on its client port, beside gRPC:
//! `GET /health`, `GET /version` and `GET /metrics`, with etcd 3.4's
//! bodies, so load balancers, Kubernetes probes and Prometheus scrape a
//! Flotilla member as they scrape etcd; the web console's page and JSON
//! (`GET /`, `/api/status`, `/api/cluster`: [`crate::console`]); other
//! paths get 404, and another method on a path served here 405. The JSON
//! gateway (`POST /v3/...`) and the connection itself are
//! [`crate::gateway`]'s.
//!
//! One port serves both, split per connection before gRPC sees it
//! ([`is_http1`]): a connection that opens with an HTTP/1.1 request line
//! is served over HTTP/1.1; every other goes to the gRPC server
//! untouched, so the gRPC path is the same as without this module. A
//! request head is read within [`HEAD_TIMEOUT`] and at most [`HEAD_MAX`]
//! bytes.
//!
//! The metrics port (`--metrics-listen`) serves the same `GET` endpoints
//! ([`serve_metrics_port`]), without the JSON gateway or gRPC, and at
//! most [`METRICS_CONNS_MAX`] connections at a time.
//!
//! `/health` is healthy when this member knows a leader and a
//! linearizable read barrier (a ReadIndex round) completes within a
//! second, as etcd's checks a quorum read: 200 `{"health":"true"}`, else
//! 503 `{"health":"false"}`.

use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::core::Core;

/// How long `/health` waits for the read barrier.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
pub const HEAD_MAX: usize = 8192;

/// The first 4 bytes of the HTTP/1.1 methods.
const METHODS: [&[u8]; 7] = [
    b"GET ", b"HEAD", b"POST", b"PUT ", b"DELE", b"OPTI", b"PATC",
];

/// Whether a connection's first bytes open an HTTP/1.1 request (a method
/// and a space) rather than HTTP/2's preface (`PRI * HTTP/2.0`).
pub fn is_http1(first: &[u8]) -> bool {
    METHODS.iter().any(|m| first.starts_with(m))
}

/// Whether bytes a connection opened with may still grow into an
/// HTTP/1.1 method (an empty start may).
pub fn may_open_http1(first: &[u8]) -> bool {
    METHODS
        .iter()
        .any(|m| m.starts_with(first) || first.starts_with(m))
}

/// Whether a connection opens with an HTTP/1.1 request: its first bytes,
/// waited for until 4 have come (a client may send fewer in its first
/// segment) or they can no longer start a method. The caller bounds the
/// wait.
pub async fn opens_http1(conn: &tokio::net::TcpStream) -> bool {
    let mut first = [0u8; 4];
    loop {
        let Ok(n) = conn.peek(&mut first).await else {
            return false;
        };
        if n == 0 || n >= 4 || !METHODS.iter().any(|m| m.starts_with(&first[..n])) {
            return is_http1(&first[..n]);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether `GET path` is one of these endpoints.
pub(crate) fn serves(path: &str) -> bool {
    matches!(path, "/health" | "/version" | "/metrics") || crate::console::serves(path)
}

/// The status, the content type and the body of `GET path`.
pub(crate) async fn answer(core: &Core, path: &str) -> (StatusCode, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/health" => {
            if healthy(core).await {
                (StatusCode::OK, TEXT, r#"{"health":"true"}"#.into())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    r#"{"health":"false"}"#.into(),
                )
            }
        }
        "/version" => {
            let body = format!(
                r#"{{"etcdserver":"{}","etcdcluster":"3.4.0"}}"#,
                crate::cluster::VERSION
            );
            (StatusCode::OK, "application/json", body)
        }
        "/metrics" => {
            let body = core
                .metrics
                .render(&core.node.status(), &core.peers_sent_bytes());
            (StatusCode::OK, "text/plain; version=0.0.4", body)
        }
        _ if crate::console::serves(path) => crate::console::answer(core, path).await,
        _ => (StatusCode::NOT_FOUND, TEXT, "404 page not found\n".into()),
    }
}

/// The most connections the metrics port serves at once; more wait in
/// the listen queue.
pub const METRICS_CONNS_MAX: usize = 64;

/// Serves the `GET` endpoints of [`answer`] over HTTP/1.1 on the metrics
/// port until `stop` turns true.
pub async fn serve_metrics_port(
    listener: TcpListener,
    core: Core,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(METRICS_CONNS_MAX));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = conn else {
            // Out of file descriptors, say: pause rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let core = core.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |req| {
                let core = core.clone();
                async move { Ok::<_, std::convert::Infallible>(get_only(&core, &req).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(HEAD_MAX)
                .serve_connection(io, service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "a metrics-port connection ended with an error");
            }
        });
    }
}

/// One request on the metrics port: `GET` of a path served here, else
/// 405 (a path served here) or 404.
async fn get_only<B>(core: &Core, req: &Request<B>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let path = req.uri().path();
    let (status, content_type, body) = match req.method() {
        &Method::GET => answer(core, path).await,
        _ if serves(path) => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "Method Not Allowed\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, TEXT, "404 page not found\n".into()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

/// A leader is known and a read barrier completes in time.
async fn healthy(core: &Core) -> bool {
    core.node.leader().is_some()
        && matches!(
            tokio::time::timeout(HEALTH_TIMEOUT, core.read_barrier()).await,
            Ok(Ok(()))
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_requests_are_told_from_http2_s_preface() {
        assert!(is_http1(b"GET /health HTTP/1.1\r\n"));
        assert!(is_http1(b"POST /v3/kv/range"));
        assert!(!is_http1(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(!is_http1(b"GE"));
        assert!(!is_http1(b""));
    }

    /// What `opens_http1` decides for a client that sends `parts`, the
    /// later ones after a pause.
    async fn decided(parts: &[&'static [u8]]) -> bool {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let parts = parts.to_vec();
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            for p in parts {
                c.write_all(p).await.unwrap();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            // Done sending: a peek past what was sent sees the end.
            c.shutdown().await.unwrap();
            c
        });
        let (conn, _) = listener.accept().await.unwrap();
        let decided = opens_http1(&conn).await;
        drop(client.await.unwrap());
        decided
    }

    #[tokio::test]
    async fn a_request_line_split_across_segments_is_still_http1() {
        assert!(decided(&[b"GE", b"T /health HTTP/1.1\r\n\r\n"]).await);
        assert!(decided(&[b"G", b"E", b"T /"]).await);
        assert!(!decided(&[b"PR", b"I * HTTP/2.0"]).await);
        assert!(
            !decided(&[b"GX"]).await,
            "no method starts so: decided at once"
        );
        assert!(!decided(&[]).await, "closed without a byte");
    }
}
