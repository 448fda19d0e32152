//! A small HTTP/1.1 server of read-only pages, for the consoles that a
//! process serves on a port of its own (the MapReduce coordinator's, the
//! shard server's): `GET` of a path that [`Pages`] knows is answered
//! with its content type and body, made fresh for each request; another
//! method on such a path is 405, any other path 404.
//!
//! Invariants: at most [`CONNS_MAX`] connections are served at once
//! (more wait in the listen queue); a client has [`HEAD_TIMEOUT`] to send
//! its request's head; nothing a client sends can end the loop.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections served at once; more wait to be accepted.
pub const CONNS_MAX: usize = 32;
/// How long a client has to send its request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What a path serves: its content type and body, or `None` for a path
/// not served.
pub type Pages = Arc<dyn Fn(&str) -> Option<(&'static str, String)> + Send + Sync>;

/// Serves `pages` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, pages: Pages) {
    let permits = Arc::new(Semaphore::new(CONNS_MAX));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: pause rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let pages = Arc::clone(&pages);
        tokio::spawn(async move {
            let _permit = permit;
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |req| {
                let answer = answer(&pages, &req);
                async move { Ok::<_, Infallible>(answer) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(io, service)
                .await;
        });
    }
}

/// One request's answer.
pub fn answer<B>(pages: &Pages, req: &Request<B>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, kind, body) = match (req.method(), pages(req.uri().path())) {
        (&Method::GET, Some((kind, body))) => (StatusCode::OK, kind, body),
        (_, Some(_)) => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "405 method not allowed\n".to_string(),
        ),
        (_, None) => (
            StatusCode::NOT_FOUND,
            TEXT,
            "404 page not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(kind),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn pages() -> Pages {
        Arc::new(|path| match path {
            "/" => Some(("text/html; charset=utf-8", "<p>hi</p>".to_string())),
            "/api/x" => Some(("application/json", "{\"n\":1}".to_string())),
            _ => None,
        })
    }

    async fn ask(method: Method, path: &str) -> (StatusCode, String, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let r = answer(&pages(), &req);
        let kind = r.headers()[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, kind, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_server_answers_a_get_over_a_real_connection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, pages()));
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = "GET /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("{\"n\":1}"), "{answer}");
        server.abort();
    }

    #[tokio::test]
    async fn a_known_path_is_served_with_its_type_and_others_are_refused() {
        let (s, k, b) = ask(Method::GET, "/").await;
        assert_eq!(
            (s, k.as_str(), b.as_str()),
            (StatusCode::OK, "text/html; charset=utf-8", "<p>hi</p>")
        );
        let (s, k, b) = ask(Method::GET, "/api/x").await;
        assert_eq!(
            (s, k.as_str(), b.as_str()),
            (StatusCode::OK, "application/json", "{\"n\":1}")
        );
        let (s, _, b) = ask(Method::POST, "/api/x").await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n")
        );
        let (s, k, b) = ask(Method::GET, "/nope").await;
        assert_eq!(
            (s, b.as_str()),
            (StatusCode::NOT_FOUND, "404 page not found\n")
        );
        assert_eq!(k, "text/plain; charset=utf-8");
    }
}
