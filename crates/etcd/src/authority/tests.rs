//! The filter against header blocks as grpc-go encodes them (indexed
//! fields, literals with incremental indexing, Huffman strings), against
//! ordinary clients' blocks, and against garbage.

use loona_hpack::{Decoder, Encoder};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Normalized;
use super::block::{FRAME_PAYLOAD_BYTES_MAX, FrameHead, TYPE_CONTINUATION, TYPE_HEADERS};
use super::filter::{Filter, HELD_BYTES_MAX};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const TYPE_DATA: u8 = 0x0;
const TYPE_SETTINGS: u8 = 0x4;

/// A grpc-go request's block (computed with RFC 7541's Huffman table):
/// `:method POST` and `:scheme http` indexed; `:path
/// /etcdserverpb.Maintenance/Status`, `:authority http://127.0.0.1:2379`,
/// `content-type application/grpc`, `user-agent grpc-go/1.26.0` with
/// indexed names and `te trailers` with a literal name, all Huffman coded
/// and added to the dynamic table.
const GRPC_GO_FIRST: &[u8] = &[
    0x83, 0x86, 0x44, 0x97, 0x60, 0xa9, 0x24, 0x88, 0x2d, 0x9d, 0xcb, 0x65, 0x71, 0xaf, 0xa0, 0x66,
    0xa9, 0x25, 0xa8, 0x75, 0x10, 0xac, 0x6e, 0x48, 0xd3, 0x6a, 0x3f, 0x41, 0x8f, 0x9d, 0x29, 0xae,
    0xe3, 0x0c, 0x04, 0x4e, 0xae, 0x05, 0xc0, 0xb8, 0x6e, 0x09, 0x97, 0x5f, 0x5f, 0x8b, 0x1d, 0x75,
    0xd0, 0x62, 0x0d, 0x26, 0x3d, 0x4c, 0x4d, 0x65, 0x64, 0x7a, 0x8a, 0x9a, 0xca, 0xc8, 0xb4, 0xc7,
    0x60, 0x2b, 0x89, 0xc5, 0xc1, 0x40, 0x82, 0x49, 0x7f, 0x86, 0x4d, 0x83, 0x35, 0x05, 0xb1, 0x1f,
];
/// The next request on the connection: a new `:path
/// /etcdserverpb.KV/Range` (Huffman, indexed), then `:authority`,
/// `content-type`, `user-agent` and `te` as references to the dynamic
/// table (indexes 66 down to 63).
const GRPC_GO_SECOND: &[u8] = &[
    0x83, 0x86, 0x44, 0x90, 0x60, 0xa9, 0x24, 0x88, 0x2d, 0x9d, 0xcb, 0x65, 0x71, 0xaf, 0x9b, 0x8b,
    0x1b, 0x47, 0x54, 0xc5, 0xc2, 0xc1, 0xc0, 0xbf,
];

/// The first block as GRPC_GO_FIRST, with `:path /etcdserverpb.KV/Range`
/// and `:authority 127.0.0.1:2379`: what etcd's Go clients send.
const GRPC_GO_PLAIN: &[u8] = &[
    0x83, 0x86, 0x44, 0x90, 0x60, 0xa9, 0x24, 0x88, 0x2d, 0x9d, 0xcb, 0x65, 0x71, 0xaf, 0x9b, 0x8b,
    0x1b, 0x47, 0x54, 0xc5, 0x41, 0x8a, 0x08, 0x9d, 0x5c, 0x0b, 0x81, 0x70, 0xdc, 0x13, 0x2e, 0xbf,
    0x5f, 0x8b, 0x1d, 0x75, 0xd0, 0x62, 0x0d, 0x26, 0x3d, 0x4c, 0x4d, 0x65, 0x64, 0x7a, 0x8a, 0x9a,
    0xca, 0xc8, 0xb4, 0xc7, 0x60, 0x2b, 0x89, 0xc5, 0xc1, 0x40, 0x82, 0x49, 0x7f, 0x86, 0x4d, 0x83,
    0x35, 0x05, 0xb1, 0x1f,
];

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn fields(list: &[(&str, &str)]) -> Fields {
    let bytes = |s: &str| s.as_bytes().to_vec();
    list.iter().map(|(n, v)| (bytes(n), bytes(v))).collect()
}

fn request(path: &str, authority: &str) -> Fields {
    fields(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-go/1.26.0"),
        ("te", "trailers"),
    ])
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = payload.len();
    FrameHead {
        len,
        kind,
        flags,
        stream,
    }
    .write(&mut out);
    out.extend_from_slice(payload);
    out
}

/// Preface, the client's SETTINGS and WINDOW_UPDATE-like noise, then `rest`.
fn connection(rest: &[Vec<u8>]) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(TYPE_SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
    out.extend(frame(0x8, 0, 0, &[0, 0x0e, 0, 0x01]));
    for f in rest {
        out.extend_from_slice(f);
    }
    out
}

/// Everything the filter passes on, fed `input` in pieces of `piece` bytes.
fn filtered(input: &[u8], piece: usize) -> Vec<u8> {
    let mut filter = Filter::default();
    let mut out = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        filter.feed(chunk, &mut out).unwrap();
    }
    filter.finish(&mut out);
    out
}

/// The frames in `bytes` after the preface.
fn frames(bytes: &[u8]) -> Vec<(FrameHead, Vec<u8>)> {
    assert_eq!(&bytes[..PREFACE.len()], PREFACE);
    let mut rest = &bytes[PREFACE.len()..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let head = FrameHead::parse(rest).unwrap();
        let end = FrameHead::BYTES + head.len;
        out.push((head, rest[FrameHead::BYTES..end].to_vec()));
        rest = &rest[end..];
    }
    out
}

/// The header lists a server decodes from `bytes`, with the frames'
/// flags; checks the frame size bound and block framing.
fn server_reads(bytes: &[u8]) -> Vec<(u32, Fields)> {
    let mut server = Decoder::new();
    let mut blocks = Vec::new();
    let mut open: Option<(u32, Vec<u8>)> = None;
    for (head, payload) in frames(bytes) {
        assert!(head.len <= FRAME_PAYLOAD_BYTES_MAX, "{head:?}");
        let fragment = match head.kind {
            TYPE_HEADERS => {
                assert!(open.is_none(), "a block in a block");
                assert_eq!(head.flags & PADDED, 0, "rewritten blocks carry no padding");
                let skip = if head.flags & PRIORITY != 0 { 5 } else { 0 };
                open = Some((head.stream, Vec::new()));
                payload[skip..].to_vec()
            }
            TYPE_CONTINUATION => payload,
            _ => {
                assert!(open.is_none(), "a frame inside a block");
                continue;
            }
        };
        let (stream, mut block) = open.take().unwrap();
        assert_eq!(stream, head.stream);
        block.extend(fragment);
        if head.flags & END_HEADERS != 0 {
            blocks.push((stream, server.decode(&block).unwrap()));
        } else {
            open = Some((stream, block));
        }
    }
    blocks
}

#[test]
fn grpc_go_blocks_lose_the_scheme_and_keep_everything_else() {
    let data = frame(TYPE_DATA, END_STREAM, 1, &[0, 0, 0, 0, 2, 8, 1]);
    let input = connection(&[
        frame(TYPE_HEADERS, END_HEADERS, 1, GRPC_GO_FIRST),
        data.clone(),
        frame(TYPE_HEADERS, END_HEADERS, 3, GRPC_GO_SECOND),
    ]);
    let out = filtered(&input, input.len());
    assert_eq!(
        server_reads(&out),
        vec![
            (
                1,
                request("/etcdserverpb.Maintenance/Status", "127.0.0.1:2379")
            ),
            (3, request("/etcdserverpb.KV/Range", "127.0.0.1:2379")),
        ]
    );
    let data_at = out.windows(data.len()).position(|w| w == data);
    assert!(data_at.is_some(), "DATA goes on untouched");
    let settings = &input[..PREFACE.len() + 2 * FrameHead::BYTES + 10];
    assert_eq!(
        &out[..settings.len()],
        settings,
        "preface and SETTINGS untouched"
    );
}

#[test]
fn the_output_does_not_depend_on_how_the_input_arrives() {
    let input = connection(&[
        frame(TYPE_HEADERS, END_HEADERS, 1, GRPC_GO_FIRST),
        frame(TYPE_DATA, END_STREAM, 1, &[7; 40]),
        frame(TYPE_HEADERS, END_HEADERS | END_STREAM, 3, GRPC_GO_SECOND),
    ]);
    let whole = filtered(&input, input.len());
    for piece in 1..input.len() {
        assert_eq!(filtered(&input, piece), whole, "in pieces of {piece}");
    }
}

#[test]
fn an_ordinary_client_s_bytes_go_through_unchanged() {
    let mut encoder = Encoder::new();
    let first = request("/etcdserverpb.KV/Range", "127.0.0.1:2379");
    let as_refs = |f: &Fields| -> Vec<(Vec<u8>, Vec<u8>)> { f.clone() };
    let block = encoder.encode(as_refs(&first).iter().map(|(n, v)| (&n[..], &v[..])));
    // A later block with a scheme: the first decided, nothing is read.
    let later = request("/etcdserverpb.KV/Put", "http://127.0.0.1:2379");
    let block2 = encoder.encode(later.iter().map(|(n, v)| (&n[..], &v[..])));
    let input = connection(&[
        frame(TYPE_HEADERS, END_HEADERS, 1, &block),
        frame(TYPE_DATA, END_STREAM, 1, &[1; 100]),
        frame(TYPE_HEADERS, END_HEADERS, 3, &block2),
    ]);
    for piece in [1, 7, 64, input.len()] {
        assert_eq!(filtered(&input, piece), input);
    }
    let mut filter = Filter::default();
    let mut out = Vec::new();
    filter.feed(&input, &mut out).unwrap();
    assert!(filter.is_through() && !filter.is_rewriting());
}

#[test]
fn a_grpc_go_client_without_a_scheme_goes_through_unchanged() {
    let input = connection(&[
        frame(TYPE_HEADERS, END_HEADERS, 1, GRPC_GO_PLAIN),
        frame(TYPE_DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]),
        frame(TYPE_HEADERS, END_HEADERS, 3, GRPC_GO_SECOND),
    ]);
    assert_eq!(filtered(&input, 3), input);
    let want = request("/etcdserverpb.KV/Range", "127.0.0.1:2379");
    assert_eq!(server_reads(&input)[0], (1, want));
}

#[test]
fn the_outline_finds_the_authority_and_counts_huffman_strings() {
    use super::scan::outline;
    let found = outline(GRPC_GO_FIRST).unwrap();
    assert_eq!(found.huffman_strings, 6);
    let authority = found.authority.unwrap();
    assert_eq!(&*authority.decoded().unwrap(), b"http://127.0.0.1:2379");
    // A literal name, not Huffman coded, in a field without indexing.
    let mut block = vec![0x00, 10];
    block.extend(b":authority");
    block.push(3);
    block.extend(b"h:1");
    let found = outline(&block).unwrap();
    assert_eq!(
        (
            found.huffman_strings,
            &*found.authority.unwrap().decoded().unwrap()
        ),
        (0, &b"h:1"[..])
    );
    assert!(
        outline(GRPC_GO_SECOND).unwrap().authority.is_none(),
        "by reference"
    );
    assert!(outline(&[0x41, 0x85, 1]).is_none(), "cut short");
    assert!(
        outline(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_none(),
        "integer too long"
    );
}

#[test]
fn blocks_with_more_huffman_strings_than_a_grpc_request_are_not_decoded() {
    // `te` with an empty Huffman-coded value, without indexing, many times.
    let mut many = GRPC_GO_FIRST.to_vec();
    for _ in 0..40 {
        many.extend([0x00, 0x82, 0x49, 0x7f, 0x80]);
    }
    let first = connection(&[frame(TYPE_HEADERS, END_HEADERS, 1, &many)]);
    assert_eq!(filtered(&first, 50), first, "the server judges it");
    let later = connection(&[
        frame(TYPE_HEADERS, END_HEADERS, 1, GRPC_GO_FIRST),
        frame(TYPE_HEADERS, END_HEADERS, 3, &many),
    ]);
    let mut filter = Filter::default();
    assert!(filter.feed(&later, &mut Vec::new()).is_err());
}

#[test]
fn padding_priority_and_continuation_are_read_and_priority_is_kept() {
    // The first block in a padded HEADERS with priority, split over a
    // CONTINUATION.
    let (a, b) = GRPC_GO_FIRST.split_at(30);
    let mut headers = vec![3u8]; // pad length
    headers.extend([0x80, 0, 0, 0, 15]); // exclusive, depends on 0, weight 16
    headers.extend(a);
    headers.extend([0; 3]);
    let input = connection(&[
        frame(TYPE_HEADERS, PADDED | PRIORITY | END_STREAM, 5, &headers),
        frame(TYPE_CONTINUATION, END_HEADERS, 5, b),
    ]);
    let out = filtered(&input, 5);
    let heads = frames(&out);
    let (head, payload) = &heads[2];
    assert_eq!(head.flags, PRIORITY | END_STREAM | END_HEADERS);
    assert_eq!(&payload[..5], &[0x80, 0, 0, 0, 15]);
    let want = request("/etcdserverpb.Maintenance/Status", "127.0.0.1:2379");
    assert_eq!(server_reads(&out), vec![(5, want)]);
}

#[test]
fn a_large_rewritten_block_is_split_into_frames_the_server_accepts() {
    let mut list = request("/etcdserverpb.KV/Put", "https://member-1:2379/ignored");
    list.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
    let block = Encoder::new().encode(list.iter().map(|(n, v)| (&n[..], &v[..])));
    let (a, b) = block.split_at(FRAME_PAYLOAD_BYTES_MAX);
    let (b, c) = b.split_at(FRAME_PAYLOAD_BYTES_MAX);
    let input = connection(&[
        frame(TYPE_HEADERS, 0, 1, a),
        frame(TYPE_CONTINUATION, 0, 1, b),
        frame(TYPE_CONTINUATION, END_HEADERS, 1, c),
    ]);
    let out = filtered(&input, 1000);
    list[3].1 = b"member-1:2379".to_vec();
    assert_eq!(server_reads(&out), vec![(1, list)]);
    assert!(frames(&out).len() >= 5, "HEADERS and CONTINUATIONs");
}

#[test]
fn schemes_are_recognised_as_rfc_3986_spells_them() {
    use super::block::without_scheme;
    let cases: &[(&str, Option<&str>)] = &[
        ("http://127.0.0.1:2379", Some("127.0.0.1:2379")),
        ("unix+tls://h:1/p", Some("h:1")),
        ("127.0.0.1:2379", None),
        ("://h:1", None),
        ("1ttp://h:1", None),
        ("http://", None),
        ("ht tp://h", None),
    ];
    for (value, want) in cases {
        let got = without_scheme(value.as_bytes());
        assert_eq!(got, want.map(str::as_bytes), "{value}");
    }
}

#[test]
fn unreadable_first_blocks_go_through_for_the_server_to_refuse() {
    let bad_hpack = frame(TYPE_HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff]);
    let lone_continuation = frame(TYPE_CONTINUATION, END_HEADERS, 1, GRPC_GO_FIRST);
    let bad_padding = frame(TYPE_HEADERS, PADDED | END_HEADERS, 1, &[200, 1, 2]);
    let interrupted = [
        frame(TYPE_HEADERS, 0, 1, &GRPC_GO_FIRST[..10]),
        frame(TYPE_DATA, 0, 1, &[1, 2, 3]),
    ];
    let huge = frame(TYPE_HEADERS, 0, 1, &vec![0; HELD_BYTES_MAX]);
    let cases = [
        connection(&[bad_hpack]),
        connection(&[lone_continuation]),
        connection(&[bad_padding]),
        connection(&interrupted),
        connection(&[huge]),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    for input in cases {
        assert_eq!(filtered(&input, 100), input);
    }
}

#[test]
fn an_unreadable_block_after_rewriting_began_is_an_error() {
    let input = connection(&[
        frame(TYPE_HEADERS, END_HEADERS, 1, GRPC_GO_FIRST),
        frame(TYPE_HEADERS, END_HEADERS, 3, &[0xff, 0xff, 0xff]),
    ]);
    let mut filter = Filter::default();
    assert!(filter.feed(&input, &mut Vec::new()).is_err());
    assert!(filter.is_rewriting());
}

#[tokio::test]
async fn reads_through_the_adapter_see_the_filtered_stream() {
    let input = connection(&[
        frame(TYPE_HEADERS, END_HEADERS, 1, GRPC_GO_FIRST),
        frame(TYPE_DATA, END_STREAM, 1, &[9; 20_000]),
        frame(TYPE_HEADERS, END_HEADERS, 3, GRPC_GO_SECOND),
    ]);
    let (mut client, server) = tokio::io::duplex(1024);
    let write = input.clone();
    let writer = tokio::spawn(async move {
        client.write_all(&write).await.unwrap();
        client.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    Normalized::new(server).read_to_end(&mut got).await.unwrap();
    writer.await.unwrap();
    assert_eq!(got, filtered(&input, input.len()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Nothing a client sends makes the filter panic, in any pieces, cut
    /// anywhere; what it passes on before deciding is the input itself.
    #[test]
    fn garbage_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..600),
        with_preface in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        piece in 1usize..64,
    ) {
        let mut input = if with_preface { PREFACE.to_vec() } else { Vec::new() };
        input.extend(tail);
        let input = &input[..cut.index(input.len() + 1)];
        let mut filter = Filter::default();
        let mut out = Vec::new();
        let mut failed = false;
        for chunk in input.chunks(piece) {
            if filter.feed(chunk, &mut out).is_err() {
                failed = true;
                break;
            }
        }
        filter.finish(&mut out);
        if !filter.is_rewriting() {
            prop_assert!(!failed);
            prop_assert_eq!(&out[..], input);
        }
    }

    /// Frames with random HEADERS and CONTINUATION payloads after a
    /// grpc-go first block: the filter either rewrites or refuses.
    #[test]
    fn random_blocks_after_rewriting_began_never_panic(
        payloads in proptest::collection::vec(
            (any::<bool>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..80)),
            0..6,
        ),
    ) {
        let mut parts = vec![frame(TYPE_HEADERS, END_HEADERS, 1, GRPC_GO_FIRST)];
        for (i, (continuation, flags, payload)) in payloads.into_iter().enumerate() {
            let kind = if continuation { TYPE_CONTINUATION } else { TYPE_HEADERS };
            parts.push(frame(kind, flags, 3 + 2 * i as u32, &payload));
        }
        let input = connection(&parts);
        let mut filter = Filter::default();
        let mut out = Vec::new();
        let _ = filter.feed(&input, &mut out);
        filter.finish(&mut out);
        prop_assert!(filter.is_rewriting());
    }
}
