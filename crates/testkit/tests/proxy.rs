//! The fault proxy itself, against an echo server: each mode does what
//! its docs say, for connections open when it begins and for new ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use flotilla_testkit::proxy::{Mode, Net, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a read must stay unanswered to count as "nothing passes":
/// loopback echoes take microseconds.
const SILENCE: Duration = Duration::from_millis(200);

/// An echo server on a loopback port, on the current runtime.
async fn start_echo() -> String {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    target
}

/// Whether `s` stays open and silent for [`SILENCE`].
async fn silent(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 8];
    tokio::time::timeout(SILENCE, s.read(&mut buf))
        .await
        .is_err()
}

/// Writes `data` and reads its echo.
async fn echoes(s: &mut TcpStream, data: &[u8]) {
    let mut buf = vec![0u8; data.len()];
    s.write_all(data).await.unwrap();
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, data);
}

/// A stalled link holds bytes and delivers them in order when it heals;
/// a delayed link delivers; a cut link closes its connection and closes
/// new ones at once.
#[test]
fn proxy_stalls_without_loss_and_cuts_connections() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = rt.block_on(start_echo());
    let net = Net::start(&["unused:1".to_string(), target]);
    let addr = net.addr(0, 1);
    let steps = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 6];
        s.write_all(b"ab").await.unwrap();
        s.read_exact(&mut buf[..2]).await.unwrap();
        // Both directions of a link's connections stall: the echo of
        // "cd" comes back only after the link heals (here, to a delay).
        net.set(0, 1, Mode::Stall);
        s.write_all(b"cd").await.unwrap();
        net.set(0, 1, Mode::Delay(Duration::from_millis(5)));
        s.write_all(b"ef").await.unwrap();
        s.read_exact(&mut buf[2..]).await.unwrap();
        assert_eq!(&buf, b"abcdef", "nothing lost or reordered");
        net.set(0, 1, Mode::Cut);
        assert_eq!(s.read(&mut buf).await.unwrap_or(0), 0, "cut: closed");
        let mut t = TcpStream::connect(addr).await.unwrap();
        assert_eq!(t.read(&mut buf).await.unwrap_or(0), 0, "cut: new ones too");
        net.heal();
        let mut u = TcpStream::connect(addr).await.unwrap();
        echoes(&mut u, b"gh").await;
    };
    let limit = Duration::from_secs(30);
    rt.block_on(async { tokio::time::timeout(limit, steps).await })
        .expect("the proxy steps finish within 30 s");
}

/// A black hole keeps the connections open when it began, and those made
/// during it, and passes nothing on them ever, not even after it ends;
/// connections made after it pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_black_hole_holds_connections_and_later_ones_pass() {
    let proxy = Proxy::start(start_echo().await).await;
    let steps = async {
        let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
        echoes(&mut before, b"ab").await;
        proxy.set(Mode::BlackHole);
        before.write_all(b"cd").await.unwrap();
        assert!(silent(&mut before).await, "open, passing nothing");
        let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
        during.write_all(b"ef").await.unwrap();
        assert!(silent(&mut during).await, "new ones too");
        proxy.set(Mode::Pass);
        before.write_all(b"gh").await.unwrap();
        during.write_all(b"ij").await.unwrap();
        assert!(silent(&mut before).await, "still nothing after it ends");
        assert!(silent(&mut during).await, "nor on those made during it");
        let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
        echoes(&mut after, b"kl").await;
    };
    tokio::time::timeout(Duration::from_secs(30), steps)
        .await
        .expect("the proxy steps finish within 30 s");
}
