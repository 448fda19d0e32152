//! `flotilla health`: asks each endpoint's `GET /health` and exits 0 only
//! if every one answered 200, else 1, saying per endpoint what it got.
//!
//! It exists for container health checks: the images (`Dockerfile`,
//! `deploy/build-image.sh`) carry the `flotilla` binary and nothing else,
//! no curl or wget, so their `HEALTHCHECK` runs this. It speaks plain
//! HTTP/1.1 over `std::net`, with a bounded wait at every step, so a
//! member that accepts and never answers cannot hang a probe. A member's
//! `/health` is 200 while it knows a leader and a quorum read completes
//! (see `flotilla_etcd::http`); the metrics port serves the same path
//! over plain HTTP even when the client port speaks TLS, so a TLS
//! cluster is probed there.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

/// The most of an answer read: `/health`'s is a few dozen bytes, and a
/// probe must not buffer whatever a wrong port sends.
const ANSWER_MAX: u64 = 64 * 1024;

/// `flotilla health` arguments.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Comma-separated `host:port` (or `http://host:port`) list: client
    /// ports, or metrics ports (plain HTTP even on a TLS cluster)
    /// (default: the cluster `flotilla up` started here, as the other
    /// client commands).
    #[arg(long, env = "FLOTILLA_ENDPOINTS", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// How long each endpoint may take to connect, and then to answer,
    /// in seconds.
    #[arg(long, default_value_t = 3)]
    timeout_secs: u64,
}

/// Runs `flotilla health`: one line per endpoint, healthy ones on stdout,
/// the others on stderr; exit 0 if all are healthy, else 1.
pub fn main(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let endpoints = if args.endpoints.is_empty() {
        super::default_endpoints()
    } else {
        args.endpoints
    };
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let mut all_healthy = true;
    for endpoint in &endpoints {
        match probe(endpoint, timeout) {
            Ok(body) => println!("{endpoint} is healthy: {body}"),
            Err(why) => {
                all_healthy = false;
                eprintln!("{endpoint} is unhealthy: {why}");
            }
        }
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `GET /health` of `endpoint`: the body of a 200, else why not.
fn probe(endpoint: &str, timeout: Duration) -> Result<String, String> {
    let host = host_port(endpoint)?;
    let addrs = host
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("{host} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(conn) => return ask(conn, host, timeout),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// The `host:port` of an endpoint given as `host:port` or
/// `http://host:port[/]`.
fn host_port(endpoint: &str) -> Result<&str, String> {
    if endpoint.starts_with("https://") {
        return Err("https is not supported here: probe the metrics port \
                    (--metrics-listen), which serves /health over plain HTTP"
            .to_string());
    }
    let host = endpoint.strip_prefix("http://").unwrap_or(endpoint);
    let host = host.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(format!("not a host:port: {endpoint:?}"));
    }
    Ok(host)
}

/// Sends the request on `conn` and judges the answer.
fn ask(mut conn: TcpStream, host: &str, timeout: Duration) -> Result<String, String> {
    let io = |e: std::io::Error| format!("talking to {host}: {e}");
    conn.set_read_timeout(Some(timeout)).map_err(io)?;
    conn.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    conn.take(ANSWER_MAX).read_to_end(&mut answer).map_err(io)?;
    judge(&answer)
}

/// A whole HTTP answer: the trimmed body of a 200, else the status and
/// body.
fn judge(answer: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!("not an HTTP answer: {:?}", truncated(&text)));
    };
    let status = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1."))
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    let body = truncated(body.trim());
    match status {
        Some(200) => Ok(body.to_string()),
        Some(code) => Err(format!("HTTP {code}: {body}")),
        None => Err(format!("not an HTTP answer: {:?}", truncated(head))),
    }
}

/// At most the first 200 bytes of `s` (on a character boundary), for a
/// message.
fn truncated(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_may_be_urls_but_not_https() {
        assert_eq!(host_port("10.0.0.1:2379"), Ok("10.0.0.1:2379"));
        assert_eq!(host_port("http://m1:2379/"), Ok("m1:2379"));
        assert!(
            host_port("https://m1:2379")
                .unwrap_err()
                .contains("metrics port")
        );
        assert!(host_port("http://m1:2379/health").is_err());
        assert!(host_port("").is_err());
    }

    #[test]
    fn only_a_200_is_healthy() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n{\"health\":\"true\"}";
        assert_eq!(judge(ok), Ok(r#"{"health":"true"}"#.to_string()));
        let down = b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"health\":\"false\"}";
        assert_eq!(
            judge(down),
            Err(r#"HTTP 503: {"health":"false"}"#.to_string())
        );
        assert!(
            judge(b"SSH-2.0-OpenSSH\r\n")
                .unwrap_err()
                .contains("not an HTTP")
        );
        assert!(
            judge(b"garbage\r\n\r\n")
                .unwrap_err()
                .contains("not an HTTP")
        );
    }

    #[test]
    fn a_member_that_answers_nothing_is_unhealthy_within_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        // Accepted by the kernel's backlog, never answered.
        let started = std::time::Instant::now();
        let why = probe(&endpoint, Duration::from_secs(1)).unwrap_err();
        assert!(why.contains("talking to"), "{why}");
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(listener);
    }
}
