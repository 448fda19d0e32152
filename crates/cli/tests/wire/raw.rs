//! Calls with bodies of raw bytes: a codec that passes them through as
//! they are, so random bytes reach the server's decoder and its answers
//! come back undecoded.

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream;
use tonic::transport::Channel;

/// Bytes in, bytes out.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

async fn ready(ch: Channel) -> Result<tonic::client::Grpc<Channel>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    Ok(grpc)
}

/// `body` as the request of the unary `method`.
pub async fn unary(ch: Channel, method: &'static str, body: Bytes) -> Result<(), tonic::Status> {
    let path = PathAndQuery::from_static(method);
    ready(ch)
        .await?
        .unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(|_| ())
}

/// `messages` on the streaming `method`, then the client's end of the
/// stream; every answer is read until the server ends its side, which it
/// must do once the client's side has ended.
pub async fn stream(
    ch: Channel,
    method: &'static str,
    messages: Vec<Bytes>,
) -> Result<(), tonic::Status> {
    let path = PathAndQuery::from_static(method);
    let request = tonic::Request::new(tokio_stream::iter(messages));
    let mut answers = ready(ch)
        .await?
        .streaming(request, path, RawCodec)
        .await?
        .into_inner();
    while answers.message().await?.is_some() {}
    Ok(())
}
