//! A loopback fault proxy: one TCP proxy per directed link between
//! members (member i reaches member j only through proxy i→j), whose mode
//! can be switched while the cluster runs.
//!
//! Modes: `Pass`; `Delay(d)` holds every chunk until `d` after it was read
//! (latency without a throughput cap); `Stall` stops reading and
//! forwarding but closes nothing, so bytes wait in the proxy and in the
//! kernel's buffers — a partition as TCP sees a network that drops
//! packets (the sender's writes block, nothing is lost or reordered, and
//! on healing everything held flows on); `Cut` closes every connection and
//! closes new ones at once, as a refused connection does.
//!
//! Proxies listen on 127.0.0.1:0 only and run on their own small runtime,
//! so they keep forwarding while the test thread blocks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a link does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Stall,
    Cut,
}

/// Chunks in flight per direction of one connection.
const CHUNKS_QUEUED_MAX: usize = 64;
const CHUNK_BYTES_MAX: usize = 64 * 1024;

/// One directed link: a listener forwarding to `target`.
struct Link {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Link {
    async fn start(target: String) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Pass);
        tokio::spawn(accept_loop(listener, target, rx));
        Link { addr, mode }
    }
}

/// Accepts until the runtime stops. An accept that fails (a connection
/// aborted before it was accepted) must not end the loop: the link would
/// then take connections into the kernel's backlog that nobody forwards,
/// and a member's stream over one would wait forever.
async fn accept_loop(listener: TcpListener, target: String, mode: watch::Receiver<Mode>) {
    loop {
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(e) => {
                eprintln!("proxy to {target}: accept failed ({e}); accepting on");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        if *mode.borrow() == Mode::Cut {
            continue; // dropped: closed at once
        }
        tokio::spawn(connection(inbound, target.clone(), mode.clone()));
    }
}

/// Forwards one connection both ways until either side closes or the
/// link is cut.
async fn connection(inbound: TcpStream, target: String, mut mode: watch::Receiver<Mode>) {
    let Ok(outbound) = TcpStream::connect(&target).await else {
        return; // the member is down: close, as it would
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (ir, iw) = inbound.into_split();
    let (or, ow) = outbound.into_split();
    let (a, b) = (mode.clone(), mode.clone());
    tokio::select! {
        biased;
        _ = mode.wait_for(|m| *m == Mode::Cut) => {}
        _ = pump(ir, ow, a) => {}
        _ = pump(or, iw, b) => {}
    }
}

/// One direction: a reader that stamps chunks and a writer that releases
/// them when the mode allows.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mode: watch::Receiver<Mode>) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(CHUNKS_QUEUED_MAX);
    let mut read_mode = mode.clone();
    let reader = async move {
        let mut buf = vec![0u8; CHUNK_BYTES_MAX];
        loop {
            if read_mode.wait_for(|m| *m != Mode::Stall).await.is_err() {
                return;
            }
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    if tx.send((Instant::now(), chunk)).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let mut write_mode = mode;
    let writer = async move {
        while let Some((read_at, chunk)) = rx.recv().await {
            let Ok(m) = write_mode.wait_for(|m| *m != Mode::Stall).await.map(|m| *m) else {
                return;
            };
            // A cut is final at once: nothing read before it (or after it,
            // before this connection's task noticed) may still pass.
            if m == Mode::Cut {
                return;
            }
            if let Mode::Delay(d) = m {
                tokio::time::sleep_until(read_at + d).await;
                if *write_mode.borrow() == Mode::Cut {
                    return;
                }
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
}

/// Proxies for every directed link of an `n`-member cluster.
pub struct Net {
    links: BTreeMap<(usize, usize), Link>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Net {
    /// Proxies from every member to every other member's `endpoints`
    /// entry (0-based indices).
    pub fn start(endpoints: &[String]) -> Net {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let n = endpoints.len();
        let mut links = BTreeMap::new();
        for i in 0..n {
            for (j, target) in endpoints.iter().enumerate() {
                if i != j {
                    links.insert((i, j), rt.block_on(Link::start(target.clone())));
                }
            }
        }
        Net {
            links,
            rt: Some(rt),
        }
    }

    /// The address member `from` uses to reach member `to`.
    pub fn addr(&self, from: usize, to: usize) -> SocketAddr {
        self.links[&(from, to)].addr
    }

    /// Sets the mode of the link `from`→`to`.
    pub fn set(&self, from: usize, to: usize, mode: Mode) {
        self.links[&(from, to)].mode.send_replace(mode);
    }

    /// Every link back to `Pass`.
    pub fn heal(&self) {
        self.set_all(Mode::Pass);
    }

    /// Every link in `mode`.
    pub fn set_all(&self, mode: Mode) {
        for link in self.links.values() {
            link.mode.send_replace(mode);
        }
    }

    /// Links between members of different groups in `mode`; members not
    /// listed form one more group. Links inside a group are untouched.
    pub fn partition(&self, groups: &[Vec<usize>], mode: Mode) {
        let group_of = |m: usize| groups.iter().position(|g| g.contains(&m));
        for &(i, j) in self.links.keys() {
            if group_of(i) != group_of(j) {
                self.set(i, j, mode);
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
