//! The gateway's gRPC side: a JSON call becomes a gRPC call to this
//! member's own services, in process (the tonic [`Routes`] the gRPC port
//! serves, so every check, limit and error is the one a gRPC client
//! meets), and the answer's messages and status come back for the JSON
//! side to render.
//!
//! Framing is gRPC's: each message is a 5-byte prefix (a compression flag,
//! always 0 here, and the length, big-endian) and the encoded message.
//! The status is in the trailers (`grpc-status`, `grpc-message`), or in
//! the headers of a trailers-only answer.

use std::convert::Infallible;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tonic::Code;
use tonic::codegen::Service;
use tonic::service::Routes;

/// The body of a gRPC request: frames as they are sent.
pub type RequestBody = http_body_util::StreamBody<
    tokio_stream::wrappers::ReceiverStream<Result<http_body::Frame<Bytes>, Infallible>>,
>;

/// One message in gRPC's framing.
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.extend_from_slice(&[0]);
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    out.freeze()
}

/// A gRPC status: its code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcStatus {
    /// The code.
    pub code: Code,
    /// The message.
    pub message: String,
}

impl GrpcStatus {
    /// An `INVALID_ARGUMENT` (or other) status made here.
    pub fn new(code: Code, message: impl Into<String>) -> GrpcStatus {
        GrpcStatus {
            code,
            message: message.into(),
        }
    }
}

/// Calls `path` (`/etcdserverpb.KV/Range`) on `routes` with a request
/// body whose frames come from `body`, and the caller's `token` (an HTTP
/// `Authorization` value) as metadata `authorization`.
pub async fn call(
    mut routes: Routes,
    path: &'static str,
    body: RequestBody,
    token: Option<http::HeaderValue>,
) -> Result<Answer, GrpcStatus> {
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers");
    if let Some(t) = token {
        request = request.header(http::header::AUTHORIZATION, t);
    }
    let request = request
        .body(body)
        .map_err(|e| GrpcStatus::new(Code::Internal, format!("gateway: {e}")))?;
    std::future::poll_fn(|cx| Service::<http::Request<RequestBody>>::poll_ready(&mut routes, cx))
        .await
        .map_err(|e: Infallible| match e {})?;
    let response = routes.call(request).await.map_err(|e| match e {})?;
    let (parts, body) = response.into_parts();
    // A trailers-only answer: the status is in the headers.
    if let Some(status) = status_of(&parts.headers) {
        return Err(status);
    }
    Ok(Answer {
        body,
        buffer: BytesMut::new(),
        ended: false,
    })
}

/// The status a header map carries, if it carries one other than OK.
fn status_of(headers: &http::HeaderMap) -> Option<GrpcStatus> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    let code = Code::from_i32(code);
    if code == Code::Ok {
        return None;
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some(GrpcStatus { code, message })
}

/// gRPC percent-encodes its messages' bytes outside printable ASCII.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The messages of an answer, as they come.
pub struct Answer {
    body: tonic::body::Body,
    buffer: BytesMut,
    ended: bool,
}

impl Answer {
    /// The next message; `Ok(None)` once the answer ended well, the
    /// status once it ended with one.
    pub async fn next(&mut self) -> Result<Option<Bytes>, GrpcStatus> {
        loop {
            if let Some(message) = self.take_message()? {
                return Ok(Some(message));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                None => self.ended = true,
                Some(Err(e)) => return Err(GrpcStatus::new(Code::Internal, e.to_string())),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buffer.extend_from_slice(&data),
                    Err(frame) => {
                        self.ended = true;
                        if let Some(status) = frame.trailers_ref().and_then(status_of) {
                            return Err(status);
                        }
                    }
                },
            }
        }
    }

    /// A whole message from the buffer, if one is there.
    fn take_message(&mut self) -> Result<Option<Bytes>, GrpcStatus> {
        if self.buffer.len() < 5 {
            return self.truncated();
        }
        if self.buffer[0] != 0 {
            let what = "gateway: a compressed message from the server";
            return Err(GrpcStatus::new(Code::Internal, what));
        }
        let len = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]);
        let len = len as usize;
        if self.buffer.len() < 5 + len {
            return self.truncated();
        }
        self.buffer.advance(5);
        Ok(Some(self.buffer.split_to(len).freeze()))
    }

    /// No whole message: fine unless the answer ended with a part of one.
    fn truncated(&self) -> Result<Option<Bytes>, GrpcStatus> {
        if self.ended && !self.buffer.is_empty() {
            let what = "gateway: the server's answer ended inside a message";
            return Err(GrpcStatus::new(Code::Internal, what));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_length() {
        assert_eq!(&frame(b"abc")[..], b"\0\0\0\0\x03abc");
        assert_eq!(&frame(b"")[..], b"\0\0\0\0\0");
    }

    #[test]
    fn messages_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b%C3%A9"), "a bé");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn a_status_is_read_from_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(status_of(&h), None);
        h.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(status_of(&h), None, "OK is no error");
        h.insert("grpc-status", "3".parse().unwrap());
        h.insert("grpc-message", "key%20is%20not%20provided".parse().unwrap());
        let s = status_of(&h).unwrap();
        assert_eq!(
            (s.code, s.message.as_str()),
            (Code::InvalidArgument, "key is not provided")
        );
    }

    /// An answer whose body gives `frames`.
    fn answer(frames: Vec<http_body::Frame<Bytes>>) -> Answer {
        let stream = tokio_stream::iter(frames.into_iter().map(Ok::<_, Infallible>));
        Answer {
            body: tonic::body::Body::new(http_body_util::StreamBody::new(stream)),
            buffer: BytesMut::new(),
            ended: false,
        }
    }

    fn data(b: &[u8]) -> http_body::Frame<Bytes> {
        http_body::Frame::data(Bytes::copy_from_slice(b))
    }

    fn trailers(status: &str) -> http_body::Frame<Bytes> {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", status.parse().unwrap());
        http_body::Frame::trailers(h)
    }

    #[tokio::test]
    async fn messages_are_read_whole_across_and_within_chunks() {
        let (one, two, empty) = (frame(b"one"), frame(b"two!"), frame(b""));
        let mut both = one.to_vec();
        both.extend_from_slice(&two[..6]);
        let mut a = answer(vec![
            data(&both),
            data(&two[6..]),
            data(&empty),
            trailers("0"),
        ]);
        assert_eq!(a.next().await, Ok(Some(Bytes::from_static(b"one"))));
        assert_eq!(a.next().await, Ok(Some(Bytes::from_static(b"two!"))));
        assert_eq!(a.next().await, Ok(Some(Bytes::new())), "an empty message");
        assert_eq!(a.next().await, Ok(None));
    }

    #[tokio::test]
    async fn a_status_in_the_trailers_ends_the_answer() {
        let mut a = answer(vec![data(&frame(b"x")), trailers("5")]);
        assert_eq!(a.next().await, Ok(Some(Bytes::from_static(b"x"))));
        assert_eq!(a.next().await.unwrap_err().code, Code::NotFound);
        assert_eq!(a.next().await, Ok(None), "and nothing comes after it");
    }

    #[tokio::test]
    async fn a_cut_or_compressed_message_is_an_error() {
        let cut = frame(b"abcdef");
        let mut a = answer(vec![data(&cut[..7])]);
        let e = a.next().await.unwrap_err();
        assert!(e.message.contains("ended inside a message"), "{e:?}");
        let mut a = answer(vec![data(&cut[..3])]);
        assert_eq!(
            a.next().await.unwrap_err().code,
            Code::Internal,
            "a cut prefix"
        );
        let mut compressed = cut.to_vec();
        compressed[0] = 1;
        let e = answer(vec![data(&compressed)]).next().await.unwrap_err();
        assert!(e.message.contains("compressed"), "{e:?}");
    }
}
