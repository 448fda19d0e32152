//! The KV state machine as this server runs it
//! ([`flotilla_host::kv_app::KvMachine`] publishing to the [`WatchHub`]),
//! and how plain etcd requests become log commands.
//!
//! Requests that come through the plain etcd API carry no client session:
//! each gets a fresh session id (this node's id, its boot nonce and a
//! counter, with the top bit set so it never collides with a Rust clerk's
//! id) and sequence number 1. The replica's session table then records
//! each one like any other (it is bounded and expires old sessions), and
//! such a request is applied at most once, as in etcd.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flotilla_kv::{Command, Op, ReadConsistency, Request};

pub use flotilla_host::kv_app::{KvOutput, UnreadableCommand, encode_snapshot};

use super::watch::WatchHub;

/// The replicated KV state machine, publishing to the server's watch hub.
pub type KvMachine = flotilla_host::kv_app::KvMachine<WatchHub>;

/// Mints the session ids of plain etcd requests.
#[derive(Debug)]
pub struct SessionIds {
    base: u64,
    next: AtomicU64,
}

impl SessionIds {
    /// Ids for node `node`, unique across its restarts.
    pub fn new(node: u64) -> SessionIds {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // 1 | 15 bits of node | 24 bits of boot time | 24-bit counter.
        let base = flotilla_kv::SERVER_MINTED
            | ((node & 0x7fff) << 48)
            | ((nanos >> 20) & 0xff_ffff) << 24;
        SessionIds {
            base,
            next: AtomicU64::new(0),
        }
    }

    /// The command that carries `op` for a session-less request.
    pub fn command(&self, op: Op) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
        Command {
            stamp_ms: now_ms(),
            request: Request {
                client: self.base | n,
                seq: 1,
                read: ReadConsistency::Linearizable,
                resumed: false,
                op,
            },
        }
        .encode()
    }
}

/// The wall clock in ms: the stamp of a proposed command.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_distinct_and_carry_the_top_bit() {
        let ids = SessionIds::new(3);
        let a = Command::decode(&ids.command(Op::put("a", "1"))).unwrap();
        let b = Command::decode(&ids.command(Op::put("a", "1"))).unwrap();
        assert_ne!(a.request.client, b.request.client);
        assert_eq!(a.request.client >> 63, 1);
        assert_eq!((a.request.client >> 48) & 0x7fff, 3);
        assert_eq!(a.request.seq, 1);
    }
}
