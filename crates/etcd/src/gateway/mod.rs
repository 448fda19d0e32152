//! HTTP/1.1 on the client port, as etcd serves it beside gRPC: `GET
//! /health`, `/version` and `/metrics` ([`crate::http`]), and etcd's JSON
//! gateway: `POST /v3/kv/range` and the other paths of [`routes`], with
//! the proto3 JSON mapping of etcd's messages (base64 bytes, 64-bit
//! integers as strings, the protos' field names, zero values left out,
//! unknown fields ignored), as `curl` users and etcd's gateway clients
//! speak it.
//!
//! A JSON call is proxied to this member's own gRPC services, in process
//! ([`grpc`]), as etcd's grpc-gateway proxies to its gRPC server: the
//! same checks, limits and errors as for a gRPC client. An error is
//! answered as etcd's gateway answers it: `{"error", "message", "code"}`
//! with the HTTP status of the gRPC code ([`http_status`]). Streaming
//! methods (`/v3/watch`, `/v3/lease/keepalive`, `/v3/election/observe`,
//! `/v3/maintenance/snapshot`) answer with one JSON object per line,
//! `{"result": ...}`, and `{"error": ...}` if the stream fails; the
//! request of a bidirectional one holds one or more JSON values, and its
//! gRPC side stays open until the HTTP client leaves (so a watch goes on
//! after the request body ends, as with etcd).
//!
//! Bounds: a request head within [`crate::http::HEAD_TIMEOUT`] and
//! [`crate::http::HEAD_MAX`] bytes; a body of at most [`body_max`]
//! bytes within [`BODY_TIMEOUT`]; the connection keeps its place under the client connection cap
//! while it is served (keep-alive included).

pub mod grpc;
pub mod routes;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::service::Routes;

use crate::core::Core;
use grpc::GrpcStatus;
use routes::{Route, Shape};

/// A response body: whole, or streamed.
type Body = BoxBody<Bytes, Infallible>;

/// The most of an oversized body read (and dropped) before answering.
pub const DRAIN_MAX: usize = 64 << 20;

/// How long a client may take to send a request body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The largest request body: a request at etcd's size limit, base64 and
/// JSON making it up to 4/3 as large, and room for the rest.
pub fn body_max(max_request_bytes: usize) -> usize {
    max_request_bytes * 2 + (64 << 10)
}

/// Serves one HTTP/1.1 connection until the client closes it.
pub async fn serve<S>(core: Core, routes: Routes, conn: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(conn);
    let service = hyper::service::service_fn(move |req| {
        let (core, routes) = (core.clone(), routes.clone());
        async move { Ok::<_, Infallible>(handle(core, routes, req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(crate::http::HEAD_TIMEOUT)
        .max_buf_size(crate::http::HEAD_MAX)
        .serve_connection(io, service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "an HTTP/1.1 connection ended with an error");
    }
}

/// One request.
async fn handle(core: Core, routes: Routes, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let gateway = path.starts_with("/v3/") || path.starts_with("/v3beta/");
    // As etcd: a path it serves, asked with another method, is 405; a
    // path it does not serve is 404, whatever the method.
    match (&method, routes::find(&path)) {
        (&Method::POST, Some(route)) => {
            let limit = body_max(core.max_request_bytes);
            let token = req.headers().get(http::header::AUTHORIZATION).cloned();
            proxy(routes, route, req.into_body(), limit, token).await
        }
        (_, Some(_)) => text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n"),
        (_, None) if gateway => text(StatusCode::NOT_FOUND, "Not Found\n"),
        (&Method::GET, None) => {
            let (status, content_type, body) = crate::http::answer(&core, &path).await;
            whole(status, content_type, body)
        }
        (_, None) if crate::http::serves(&path) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
        }
        (_, None) => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

/// A JSON call: the request's messages to gRPC, the answer back.
async fn proxy(
    routes: Routes,
    route: &'static Route,
    body: Incoming,
    limit: usize,
    token: Option<http::HeaderValue>,
) -> Response<Body> {
    let read = tokio::time::timeout(BODY_TIMEOUT, read_body(body, limit));
    let Ok(read) = read.await else {
        let what = format!("gateway: the request body did not arrive within {BODY_TIMEOUT:?}");
        return error(&GrpcStatus::new(Code::DeadlineExceeded, what));
    };
    let body = match read {
        Ok(Some(b)) => b,
        Ok(None) => {
            let what = format!(
                "etcdserver: request is too large (a gateway body holds at most {limit} bytes)"
            );
            return error(&GrpcStatus::new(Code::InvalidArgument, what));
        }
        Err(e) => return error(&GrpcStatus::new(Code::InvalidArgument, e)),
    };
    let parsed = (route.requests)(&body)
        .map_err(|e| format!("the body is not JSON of {}'s request: {e}", route.grpc));
    let mut messages = match parsed {
        Ok(m) => m,
        // etcd's gateway: a bad unary body is an invalid argument, a bad
        // stream an unknown error.
        Err(e) if route.shape == Shape::Bidi => return error(&GrpcStatus::new(Code::Unknown, e)),
        Err(e) => return error(&GrpcStatus::new(Code::InvalidArgument, e)),
    };
    if route.shape != Shape::Bidi {
        // One request: the first value, or the empty message.
        messages.truncate(1);
        if messages.is_empty() {
            messages.push(Bytes::new());
        }
    }
    let (tx, rx) = mpsc::channel(messages.len().max(1));
    for m in &messages {
        // The channel holds them all.
        let _ = tx.try_send(Ok(http_body::Frame::data(grpc::frame(m))));
    }
    // A bidirectional call stays open while the HTTP client listens.
    let keep_open = (route.shape == Shape::Bidi).then_some(tx);
    let request = StreamBody::new(ReceiverStream::new(rx));
    let answer = match grpc::call(routes, route.grpc, request, token).await {
        Ok(a) => a,
        Err(status) => return error(&status),
    };
    match route.shape {
        Shape::Unary => unary(route, answer).await,
        Shape::ServerStream | Shape::Bidi => streamed(route, answer, keep_open),
    }
}

/// The request body, if it holds at most `limit` bytes. A larger one is
/// read to its end (up to [`DRAIN_MAX`] bytes, and within the caller's
/// deadline) but not kept, so the client, still sending, gets the answer
/// instead of a connection reset.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Option<Bytes>, String> {
    let mut kept = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("gateway: reading the request body: {e}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > DRAIN_MAX {
            break;
        }
        if total <= limit {
            kept.extend_from_slice(&data);
        }
    }
    Ok((total <= limit).then(|| kept.freeze()))
}

/// A unary call's one message (and the status after it).
async fn unary(route: &'static Route, mut answer: grpc::Answer) -> Response<Body> {
    let message = match answer.next().await {
        Ok(Some(m)) => m,
        Ok(None) => return error(&GrpcStatus::new(Code::Internal, "gateway: no response")),
        Err(status) => return error(&status),
    };
    if let Err(status) = answer.next().await {
        return error(&status);
    }
    match (route.response)(&message) {
        Ok(json) => whole(StatusCode::OK, "application/json", json),
        Err(e) => error(&GrpcStatus::new(Code::Internal, e)),
    }
}

/// A streaming call: one JSON object per line, as the messages come.
fn streamed<T: Send + 'static>(
    route: &'static Route,
    mut answer: grpc::Answer,
    keep_open: Option<T>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<http_body::Frame<Bytes>, Infallible>>(16);
    tokio::spawn(async move {
        let _keep_open = keep_open;
        loop {
            // The client left (hyper dropped the body): dropping the
            // answer ends the gRPC call, even one with nothing to send.
            let next = tokio::select! {
                next = answer.next() => next,
                () = tx.closed() => break,
            };
            // A result line, or an error line that ends the stream.
            let (line, last) = match next {
                Ok(Some(m)) => match (route.response)(&m) {
                    Ok(json) => (format!("{{\"result\":{json}}}\n"), false),
                    Err(e) => (stream_error(&GrpcStatus::new(Code::Internal, e)), true),
                },
                Ok(None) => break,
                Err(status) => (stream_error(&status), true),
            };
            let frame = Ok(http_body::Frame::data(Bytes::from(line)));
            if tx.send(frame).await.is_err() || last {
                break;
            }
        }
    });
    let body = StreamBody::new(ReceiverStream::new(rx)).boxed();
    with_headers(StatusCode::OK, "application/json", body)
}

/// A stream's error line, as grpc-gateway v1 writes it (its fields in
/// its order).
fn stream_error(status: &GrpcStatus) -> String {
    let http = http_status(status.code);
    format!(
        "{{\"error\":{{\"grpc_code\":{},\"http_code\":{},\"message\":{},\"http_status\":{}}}}}\n",
        status.code as i32,
        http.as_u16(),
        json_string(&status.message),
        json_string(http.canonical_reason().unwrap_or("")),
    )
}

/// An error answer, as etcd's gateway writes it (its fields in its
/// order).
fn error(status: &GrpcStatus) -> Response<Body> {
    let message = json_string(&status.message);
    let body = format!(
        "{{\"error\":{message},\"message\":{message},\"code\":{}}}",
        status.code as i32
    );
    whole(http_status(status.code), "application/json", body)
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The HTTP status grpc-gateway v1 gives a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    whole(status, "text/plain; charset=utf-8", body.to_string())
}

fn whole(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    with_headers(status, content_type, Full::new(Bytes::from(body)).boxed())
}

/// The response with etcd's headers (CORS open to every origin, as
/// etcd's default `--cors`).
fn with_headers(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        header::HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::HeaderValue::from_static("accept, content-type, authorization"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_grpc_gateway_s_http_statuses() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::OutOfRange), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            http_status(Code::Unknown),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            http_status(Code::Unimplemented),
            StatusCode::NOT_IMPLEMENTED
        );
    }

    #[test]
    fn a_stream_error_names_its_codes() {
        let line = stream_error(&GrpcStatus::new(
            Code::NotFound,
            "etcdserver: requested lease not found",
        ));
        assert_eq!(
            line,
            "{\"error\":{\"grpc_code\":5,\"http_code\":404,\"message\":\"etcdserver: requested lease not found\",\"http_status\":\"Not Found\"}}\n"
        );
    }
}
