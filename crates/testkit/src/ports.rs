//! Free loopback ports for servers a test starts. Invariant: ports come
//! from below the kernel's ephemeral range, and one process never hands
//! out the same port twice until it has walked the whole range.

use std::sync::atomic::{AtomicU32, Ordering};

/// Loopback ports handed to servers start here.
const TEST_PORTS_LOW: u32 = 10_000;

/// A loopback port that was free a moment ago, for a server a test starts.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct loopback ports that were free a moment ago. They are
/// taken below the kernel's ephemeral range, because a port that `bind`
/// to port 0 handed out and that was then released can be handed out
/// again at once — to a fault proxy's listener, or as the source port of
/// one of the many connections a cluster under test opens — before the
/// server that was meant to get it binds it (a CI run lost two members of
/// a five-member cluster to "address already in use" that way). The
/// walk starts at an offset from the process id, so test binaries run
/// one after another do not retry the same ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let high = ephemeral_low().max(TEST_PORTS_LOW + 1000);
    let span = high - TEST_PORTS_LOW;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut ports = Vec::with_capacity(n);
    for _ in 0..span {
        if ports.len() == n {
            break;
        }
        let port = TEST_PORTS_LOW + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).expect("test ports fit in u16");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    assert_eq!(ports.len(), n, "no {n} free loopback ports below {high}");
    ports
}

/// The first port of the kernel's ephemeral range (Linux's default when
/// it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
