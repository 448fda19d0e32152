//! A minimal HTTP/1.1 client over `std::net`, for tests of what a member
//! serves over HTTP/1.1 on its client port (etcd's `/health` and JSON
//! gateway): exact bytes on the wire, no client library between the test
//! and the server. Every read has a timeout; a test that waits for a
//! stream gives up at its deadline with what it saw.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long one read waits.
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// A connection to `endpoint` with a read timeout.
pub fn connect(endpoint: &str) -> TcpStream {
    let conn = TcpStream::connect(endpoint).unwrap_or_else(|e| panic!("connect {endpoint}: {e}"));
    conn.set_read_timeout(Some(READ_TIMEOUT))
        .expect("a read timeout");
    conn
}

/// Sends `POST path` with `body` on `conn` (keep-alive unless `close`).
pub fn send(conn: &mut TcpStream, endpoint: &str, path: &str, body: &[u8], close: bool) {
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).expect("send a head");
    // A server may answer (and close) before it has read a body it
    // refuses: the answer is then what the test reads.
    let _ = conn.write_all(body);
}

/// Reads one response with a `content-length` from `conn`, within 20 s:
/// (status, body).
pub fn read_response(conn: &mut TcpStream) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    loop {
        if let Some(response) = whole_response(&got) {
            return response;
        }
        assert!(Instant::now() < deadline, "no whole response in {got:?}");
        if read_some(conn, &mut got) == 0 {
            panic!(
                "the connection closed mid-response: {:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
}

/// The response in `got`, once it is all there.
fn whole_response(got: &[u8]) -> Option<(u16, String)> {
    let end = got.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap_or_else(|| panic!("no content-length in {head}"))
        .trim()
        .parse()
        .expect("a content-length");
    let body = got.get(end + 4..end + 4 + len)?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, String::from_utf8_lossy(body).into_owned()))
}

/// Reads what has come; 0 at the end of the stream (a timeout reads
/// nothing but is no end).
fn read_some(conn: &mut TcpStream, into: &mut Vec<u8>) -> usize {
    let mut buf = [0u8; 8192];
    match conn.read(&mut buf) {
        Ok(0) => 0,
        Ok(n) => {
            into.extend_from_slice(&buf[..n]);
            n
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            usize::MAX
        }
        Err(e) => panic!("read: {e}"),
    }
}

/// `POST path` on a fresh connection: (status, body).
pub fn post(endpoint: &str, path: &str, body: &str) -> (u16, String) {
    let mut conn = connect(endpoint);
    send(&mut conn, endpoint, path, body.as_bytes(), true);
    read_response(&mut conn)
}

/// `GET path` on a fresh connection: (status, body).
pub fn get(endpoint: &str, path: &str) -> (u16, String) {
    let mut conn = connect(endpoint);
    let head = format!("GET {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).expect("send a head");
    read_response(&mut conn)
}

/// Reads the stream on `conn` into `seen` until `count` copies of `want`
/// are in it, within 20 s.
pub fn read_until(conn: &mut TcpStream, seen: &mut String, want: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while seen.matches(want).count() < count {
        assert!(
            Instant::now() < deadline,
            "not {count} of {want:?} in {seen}"
        );
        got.clear();
        if read_some(conn, &mut got) == 0 {
            panic!("the stream ended before {count} of {want:?}: {seen}");
        }
        seen.push_str(&String::from_utf8_lossy(&got));
    }
}
