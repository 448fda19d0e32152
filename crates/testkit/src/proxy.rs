//! The loopback TCP fault proxy: a [`Proxy`] forwards connections to one
//! target, and its [`Mode`] can be switched while traffic flows; a
//! [`Net`] puts one between every two members of a cluster (member i
//! reaches member j only through proxy i→j) on a runtime of its own, so
//! the proxies keep forwarding while the test thread blocks.
//!
//! Modes: `Pass`; `Delay(d)` holds every chunk until `d` after it was read
//! (latency without a throughput cap); `Stall` stops reading and
//! forwarding but closes nothing, so bytes wait in the proxy and in the
//! kernel's buffers — a partition as TCP sees a network that drops
//! packets (the sender's writes block, nothing is lost or reordered, and
//! on healing everything held flows on); `Cut` closes every connection and
//! closes new ones at once, as a refused connection does; `BlackHole`
//! keeps every connection open and passes nothing on it, ever, not even
//! after the mode ends (connections made meanwhile too), while
//! connections made after it ends pass — a peer host that vanished, a NAT
//! that forgot the flow, a peer that accepted and never served.
//!
//! Invariants: nothing read before a `Cut` or `BlackHole` is delivered
//! after it; in every other mode nothing is lost or reordered. Proxies
//! listen on 127.0.0.1:0 only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a proxy does with traffic (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything at once.
    Pass,
    /// Deliver every chunk `d` after it was read.
    Delay(Duration),
    /// Read and forward nothing, close nothing; flows on when healed.
    Stall,
    /// Close every connection, and new ones at once.
    Cut,
    /// Keep every connection open and pass nothing, ever (connections
    /// made meanwhile too); connections made after it ends pass.
    BlackHole,
}

impl Mode {
    /// Whether a connection open when this mode begins never passes
    /// another byte.
    fn ends_connections(self) -> bool {
        matches!(self, Mode::Cut | Mode::BlackHole)
    }
}

/// Chunks in flight per direction of one connection.
const CHUNKS_QUEUED_MAX: usize = 64;
const CHUNK_BYTES_MAX: usize = 64 * 1024;
/// A pause after a failed accept, so a persistent failure (out of file
/// descriptors) does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(5);

/// One proxy: a loopback listener forwarding to a target.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`, in
    /// [`Mode::Pass`], on the current tokio runtime until it stops.
    pub async fn start(target: impl Into<String>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback listener for the proxy");
        let addr = listener.local_addr().expect("the proxy listener's address");
        let (mode, rx) = watch::channel(Mode::Pass);
        tokio::spawn(accept_loop(listener, target.into(), rx));
        Proxy { addr, mode }
    }

    /// Where to connect to reach the target through this proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches to `mode`, for open connections and new ones.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Accepts until the runtime stops. An accept that fails (a connection
/// aborted before it was accepted) must not end the loop: the proxy would
/// then take connections into the kernel's backlog that nobody forwards,
/// and a stream over one would wait forever.
async fn accept_loop(listener: TcpListener, target: String, mode: watch::Receiver<Mode>) {
    loop {
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            Err(e) => {
                eprintln!("proxy to {target}: accept failed ({e}); accepting on");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let now = *mode.borrow();
        match now {
            Mode::Cut => continue, // dropped: closed at once
            Mode::BlackHole => {
                tokio::spawn(hold_forever(inbound));
                continue;
            }
            Mode::Pass | Mode::Delay(_) | Mode::Stall => {}
        }
        tokio::spawn(connection(inbound, target.clone(), mode.clone()));
    }
}

/// Forwards one connection both ways until either side closes, the proxy
/// cuts it, or a black hole swallows it.
async fn connection(inbound: TcpStream, target: String, mut mode: watch::Receiver<Mode>) {
    let Ok(outbound) = TcpStream::connect(&target).await else {
        return; // the target is down: close, as it would
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut ir, mut iw) = inbound.into_split();
    let (mut or, mut ow) = outbound.into_split();
    let (a, b) = (mode.clone(), mode.clone());
    tokio::select! {
        biased;
        _ = mode.wait_for(|m| m.ends_connections()) => {}
        _ = pump(&mut ir, &mut ow, a) => {}
        _ = pump(&mut or, &mut iw, b) => {}
    }
    // Decided by the mode now, not by which branch won: a pump may see
    // the black hole begin before the branch above does.
    if *mode.borrow() == Mode::BlackHole {
        hold_forever((ir, iw, or, ow)).await;
    }
}

/// Keeps sockets open, never reading or writing them.
async fn hold_forever<T>(_sockets: T) {
    std::future::pending::<()>().await;
}

/// One direction: a reader that stamps chunks and a writer that releases
/// them when the mode allows.
async fn pump(from: &mut OwnedReadHalf, to: &mut OwnedWriteHalf, mode: watch::Receiver<Mode>) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_QUEUED_MAX);
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
                    if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
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
            // A cut or black hole is final at once: nothing read before it
            // (or after it, before this connection's task noticed) may
            // still pass.
            if m.ends_connections() {
                return;
            }
            if let Mode::Delay(d) = m {
                tokio::time::sleep_until(read_at + d).await;
                if write_mode.borrow().ends_connections() {
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

/// Proxies for every directed link among `n` endpoints (a cluster's
/// members), on their own one-thread runtime.
pub struct Net {
    links: BTreeMap<(usize, usize), Proxy>,
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
            .expect("a runtime for the proxies");
        let n = endpoints.len();
        let mut links = BTreeMap::new();
        for i in 0..n {
            for (j, target) in endpoints.iter().enumerate() {
                if i != j {
                    links.insert((i, j), rt.block_on(Proxy::start(target.clone())));
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
        self.links[&(from, to)].addr()
    }

    /// Sets the mode of the link `from`→`to`.
    pub fn set(&self, from: usize, to: usize, mode: Mode) {
        self.links[&(from, to)].set(mode);
    }

    /// Every link back to `Pass`.
    pub fn heal(&self) {
        self.set_all(Mode::Pass);
    }

    /// Every link in `mode`.
    pub fn set_all(&self, mode: Mode) {
        for link in self.links.values() {
            link.set(mode);
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
    /// Stops every proxy: their connections close.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
